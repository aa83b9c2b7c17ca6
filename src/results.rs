//! The JSON record of a benchmark run: `target/wsbench/results.json`.
//!
//! Every figure a bench measures becomes one [`Measurement`]. Measurements
//! are grouped by benchmark group ("latency", "throughput", ...), and each
//! group carries the [`RunInfo`] of the run that measured it, so a later run
//! of one group replaces that group and keeps the others. The report step
//! reads this file; nothing here measures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::metrics::{self, Metric, Source};
use crate::rounds::{self, Rounds};
use crate::stacks::StackInfo;
use crate::workload::Figures;

/// Bumped when the layout changes incompatibly; readers refuse other
/// versions, except the ones [`upgrade`] knows how to read.
pub const SCHEMA_VERSION: u32 = 2;

/// The whole results file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResultsFile {
    pub schema: u32,
    /// Keyed by group name.
    pub groups: BTreeMap<String, GroupResults>,
}

/// One group's figures and the run that produced them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupResults {
    pub run: RunInfo,
    /// The run whose rounds [`attach_pair`] set beside this run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_run: Option<RunInfo>,
    pub measurements: Vec<Measurement>,
}

/// Where, when and with what a run was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// `git rev-parse HEAD`, with `-dirty` appended when the tree had changes.
    pub commit: String,
    /// RFC 3339, UTC.
    pub date: String,
    /// CPU model, as /proc/cpuinfo names it.
    pub cpu: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    /// `uname -sr`.
    pub kernel: String,
    /// `rustc -V` of the toolchain that built the bench.
    pub rustc: String,
    /// Placement of client and server threads (see `placement.rs`).
    pub placement: String,
    pub server_threads: usize,
    pub client_threads: usize,
    /// True for `WSBENCH_QUICK=1` runs: shorter sweeps and measuring times.
    pub quick: bool,
    /// Every stack's name and version, e.g. "axum" -> "axum 0.8.9".
    pub versions: BTreeMap<String, String>,
    /// `net.ipv4.tcp_congestion_control`, which every socket of client and
    /// servers uses: it decides large-message throughput on loopback (BBR
    /// paces with timers of its own where cubic does not). "unknown" in
    /// records written before it was recorded.
    #[serde(default = "unknown")]
    pub tcp_congestion_control: String,
    /// The servers' echo write policy (see `settings::EchoPolicy`) where a
    /// group does not sweep it; a group that does records it as the
    /// parameter `echo`. "flush-each" in records written before.
    #[serde(default = "flush_each")]
    pub echo: String,
    /// The allocator's setting for this process and its child servers
    /// (`machine::fix_malloc`): large-message figures depend on it.
    /// "unknown" in records written before it was recorded.
    #[serde(default = "unknown")]
    pub malloc: String,
    /// How the client waited on many connections in its open-loop runs
    /// (`client::Driver`): "io_uring" or "epoll"; the broadcast room's
    /// client is epoll only, and the closed loops do not use it (a lone
    /// connection blocks in `read`, many wait through the runtime).
    /// "unknown" in records written before it was recorded (they used
    /// epoll).
    #[serde(default = "unknown")]
    pub client_driver: String,
}

fn flush_each() -> String {
    "flush-each".into()
}

fn unknown() -> String {
    "unknown".into()
}

/// A measurement's parameters: size_bytes, conns, window, kind, profile,
/// case, ...
pub type Params = BTreeMap<String, serde_json::Value>;

/// Parameters from pairs.
pub fn params(pairs: &[(&str, serde_json::Value)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// One figure. Built only by [`Measurement::new`] (or read from a file),
/// so its metric, unit and source are the catalogue's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Measurement {
    /// Benchmark group: latency, throughput, scaling, memory, cpu,
    /// placement, conformance, leak.
    pub group: String,
    /// The benchmark id as criterion shows it, e.g. "latency/axum/binary/32B".
    pub bench: String,
    pub stack: String,
    /// Crate (or Python package) and version, e.g. "axum 0.8.9".
    pub stack_version: String,
    /// Parameters: size_bytes, conns, window, kind, profile, ...
    pub params: BTreeMap<String, serde_json::Value>,
    /// What was measured: the name of a [`metrics`] entry (rtt_p50_us,
    /// msgs_per_s, server_allocs_per_rtt, ...).
    pub metric: String,
    pub value: f64,
    /// Unit of `value`: us, ns, msgs/s, MiB/s, bytes, allocs, conns/s, ratio, bool.
    pub unit: String,
    /// Where the figure comes from: criterion, histogram, schedstat,
    /// allocator, rss, proc, probe, wallclock.
    pub source: String,
    /// Placement the figure was measured under.
    pub placement: String,
    /// A short text for figures that are outcomes rather than numbers
    /// (conformance cases, skipped points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The figure in each of the interleaved rounds it was measured in
    /// (timed groups), with its interval; `value` is then their median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<Rounds>,
}

/// What a measurement is of: everything but the figure.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub bench: &'a str,
    /// A stack's name, or what else names the server (a URL).
    pub stack: &'a str,
    /// "axum 0.8.9", or "unknown" for a server that is no row of the table.
    pub stack_version: &'a str,
    pub params: &'a Params,
    pub placement: &'a str,
}

impl Measurement {
    /// A figure of `metric` from `source`. A source the catalogue does not
    /// allow for the metric is a bug in the caller, and panics.
    pub fn new(subject: &Subject<'_>, metric: &'static Metric, value: f64, source: Source) -> Self {
        assert!(
            metric.allows(source),
            "{}: metric {} cannot come from {}",
            subject.bench,
            metric.name,
            source.as_str()
        );
        Measurement {
            group: subject.group.to_string(),
            bench: subject.bench.to_string(),
            stack: subject.stack.to_string(),
            stack_version: subject.stack_version.to_string(),
            params: subject.params.clone(),
            metric: metric.name.to_string(),
            value,
            unit: metric.unit.as_str().to_string(),
            source: source.as_str().to_string(),
            placement: subject.placement.to_string(),
            detail: None,
            rounds: None,
        }
    }

    /// The catalogue's definition of this figure's metric.
    pub fn definition(&self) -> Option<&'static Metric> {
        metrics::find(&self.metric)
    }

    /// A parameter as a string or a number's text.
    pub fn param(&self, key: &str) -> Option<String> {
        self.params.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// Collects one group's measurements, each made through the catalogue.
pub struct Recorder {
    group: String,
    placement: String,
    measurements: Vec<Measurement>,
}

impl Recorder {
    pub fn new(group: &str, placement: &str) -> Recorder {
        Recorder {
            group: group.to_string(),
            placement: placement.to_string(),
            measurements: Vec::new(),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Adds one figure; returns it so a caller can attach a detail.
    pub fn add(
        &mut self,
        bench: &str,
        stack: &StackInfo,
        params: &Params,
        metric: &'static Metric,
        value: f64,
        source: Source,
    ) -> &mut Measurement {
        let version = stack.package_version();
        let subject = Subject {
            group: &self.group,
            bench,
            stack: stack.name,
            stack_version: &version,
            params,
            placement: &self.placement,
        };
        self.measurements
            .push(Measurement::new(&subject, metric, value, source));
        self.measurements.last_mut().expect("just pushed")
    }

    /// Adds `metrics` as `sample` measured them. A metric its workload does
    /// not measure is a bug in the caller, and panics.
    pub fn add_sample(
        &mut self,
        bench: &str,
        stack: &StackInfo,
        params: &Params,
        sample: &impl Figures,
        metrics: &[&'static Metric],
    ) {
        for &metric in metrics {
            let (value, source) = sample.figure(metric).unwrap_or_else(|| {
                panic!("{bench}: this workload does not measure {}", metric.name)
            });
            self.add(bench, stack, params, metric, value, source);
        }
    }

    /// Adds `metrics` as measured in interleaved rounds of `block`, one
    /// sample per round: each figure is the median over the rounds (a
    /// count, the total), with the rounds and their interval kept beside
    /// it.
    #[allow(clippy::too_many_arguments)]
    pub fn add_rounds(
        &mut self,
        bench: &str,
        stack: &StackInfo,
        params: &Params,
        block: &str,
        samples: &[impl Figures],
        metrics: &[&'static Metric],
    ) {
        for &metric in metrics {
            let figures: Vec<(f64, Source)> = samples
                .iter()
                .map(|s| {
                    s.figure(metric).unwrap_or_else(|| {
                        panic!("{bench}: this workload does not measure {}", metric.name)
                    })
                })
                .collect();
            let Some(&(_, source)) = figures.first() else {
                continue;
            };
            let values: Vec<f64> = figures.iter().map(|f| f.0).collect();
            if rounds::is_total(metric) {
                self.add(bench, stack, params, metric, values.iter().sum(), source);
            } else {
                self.add_median_of_rounds(bench, stack, params, metric, block, values, source);
            }
        }
    }

    /// Adds `metric` as the median of its `values` in the rounds of
    /// `block`, keeping the rounds and their interval beside it.
    #[allow(clippy::too_many_arguments)]
    pub fn add_median_of_rounds(
        &mut self,
        bench: &str,
        stack: &StackInfo,
        params: &Params,
        metric: &'static Metric,
        block: &str,
        values: Vec<f64>,
        source: Source,
    ) -> &mut Measurement {
        let r = Rounds::new(block, values);
        let m = self.add(bench, stack, params, metric, r.median(), source);
        m.rounds = Some(r);
        m
    }

    /// Adds figures made elsewhere (the probe's table).
    pub fn extend(&mut self, measurements: impl IntoIterator<Item = Measurement>) {
        self.measurements.extend(measurements);
    }

    pub fn measurements(&self) -> &[Measurement] {
        &self.measurements
    }

    pub fn into_measurements(self) -> Vec<Measurement> {
        self.measurements
    }
}

/// The default location: `$CARGO_TARGET_DIR/wsbench/results.json`, or
/// `target/wsbench/results.json` below the current directory.
pub fn default_path() -> PathBuf {
    target_dir().join("wsbench").join("results.json")
}

/// The cargo target directory this process should write under.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

impl ResultsFile {
    /// Reads a results file. A missing file, bad JSON or another schema
    /// version are errors that say which.
    pub fn load(path: &Path) -> anyhow::Result<ResultsFile> {
        let text = std::fs::read(path).with_context(|| {
            format!("no results at {}: run `cargo bench` first", path.display())
        })?;
        ResultsFile::from_json(&text, path)
    }

    /// Parses a results file read from `path` (named in errors): an older
    /// schema this build knows is upgraded; another schema or bad JSON are
    /// errors that say which.
    pub fn from_json(bytes: &[u8], path: &Path) -> anyhow::Result<ResultsFile> {
        let mut file: ResultsFile = serde_json::from_slice(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid wsbench results file ({e}); rerun `cargo bench` to write a new one",
                path.display()
            )
        })?;
        if file.schema == 1 {
            upgrade_v1(&mut file);
        }
        if file.schema != SCHEMA_VERSION {
            anyhow::bail!(
                "{} has schema {} but this wsbench reads schema {SCHEMA_VERSION}: rerun `cargo bench` to write a new one",
                path.display(),
                file.schema
            );
        }
        // A metric this build's catalogue lacks (a file from a newer
        // build) is kept: reports show it as they find it.
        Ok(file)
    }

    /// Reads the file if it exists, or starts an empty one.
    pub fn load_or_default(path: &Path) -> anyhow::Result<ResultsFile> {
        if path.exists() {
            ResultsFile::load(path)
        } else {
            Ok(ResultsFile {
                schema: SCHEMA_VERSION,
                groups: BTreeMap::new(),
            })
        }
    }

    /// Replaces one group's results, keeping every other group.
    pub fn replace_group(&mut self, group: &str, results: GroupResults) {
        self.groups.insert(group.to_string(), results);
    }

    /// Every measurement of every group.
    pub fn measurements(&self) -> impl Iterator<Item = &Measurement> {
        self.groups.values().flat_map(|g| g.measurements.iter())
    }

    /// Writes the file atomically: a temporary file beside it, then a rename,
    /// so a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        write_atomically(path, json.as_bytes())
    }
}

/// Reads a schema 1 file as schema 2: probe outcomes were recorded under
/// the case's name as the metric; now the metric is `conforms` and the
/// case a parameter. Old metric names become the catalogue's.
fn upgrade_v1(file: &mut ResultsFile) {
    for group in file.groups.values_mut() {
        for m in &mut group.measurements {
            upgrade_measurement(m);
        }
    }
    file.schema = 2;
}

/// Renames what older builds wrote to the catalogue's names (see
/// [`metrics::legacy_name`]) and moves a probe case out of the name.
pub fn upgrade_measurement(m: &mut Measurement) {
    if let Some(now) = metrics::legacy_name(&m.metric) {
        m.metric = now.name.to_string();
    } else if m.source == Source::Probe.as_str() && metrics::find(&m.metric).is_none() {
        let case = std::mem::replace(&mut m.metric, metrics::CONFORMS.name.to_string());
        m.params.insert("case".into(), case.into());
    }
}

/// Sets the rounds of `pair`, a second full run of the same commit, beside
/// `file`'s own, figure by figure, so that a report claims only what both
/// runs claim ([`crate::rounds::Paired::of`]). Refuses, changing nothing,
/// when a group is missing, of another commit or mode, or the same run
/// again, or when a figure
/// measured in rounds has no partner measured in as many rounds of the
/// same block: a claim would then rest on one run.
pub fn attach_pair(file: &mut ResultsFile, pair: &ResultsFile) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut found: Vec<(String, usize, Vec<f64>)> = Vec::new();
    for (name, group) in &file.groups {
        let Some(other) = pair.groups.get(name) else {
            problems.push(format!("the pair has no {name} group"));
            continue;
        };
        if other.run.commit != group.run.commit || other.run.quick != group.run.quick {
            problems.push(format!(
                "{name}: the pair's run is of commit {}{}, this one of {}{}",
                other.run.commit,
                if other.run.quick { " (quick)" } else { "" },
                group.run.commit,
                if group.run.quick { " (quick)" } else { "" },
            ));
            continue;
        }
        if other.run.date == group.run.date {
            problems.push(format!(
                "{name}: the pair's run started at {}, as this one did: the same run, not a second",
                group.run.date
            ));
            continue;
        }
        for (i, m) in group.measurements.iter().enumerate() {
            let Some(rounds) = &m.rounds else { continue };
            let partner = other
                .measurements
                .iter()
                .find(|o| o.stack == m.stack && o.metric == m.metric && o.params == m.params);
            match partner.and_then(|o| o.rounds.as_ref()) {
                Some(r) if r.block == rounds.block && r.values.len() == rounds.values.len() => {
                    found.push((name.clone(), i, r.values.clone()))
                }
                _ => problems.push(format!(
                    "{name} {} {} {}: no partner in the pair measured in the same rounds",
                    m.stack,
                    m.metric,
                    serde_json::Value::Object(m.params.clone().into_iter().collect()),
                )),
            }
        }
    }
    if !problems.is_empty() {
        const SHOWN: usize = 5;
        let more = problems.len().saturating_sub(SHOWN);
        problems.truncate(SHOWN);
        if more > 0 {
            problems.push(format!("and {more} more"));
        }
        anyhow::bail!("not a pair of this run: {}", problems.join("; "));
    }
    for (name, group) in file.groups.iter_mut() {
        group.pair_run = Some(pair.groups[name].run.clone());
    }
    for (name, i, values) in found {
        let m = &mut file
            .groups
            .get_mut(&name)
            .expect("found in it")
            .measurements[i];
        m.rounds.as_mut().expect("found with rounds").pair = Some(values);
    }
    Ok(())
}

/// [`attach_pair`] with the pair read from `pair`, naming both files when
/// they do not pair (`file` was read from `path`).
pub fn attach_pair_file(file: &mut ResultsFile, path: &Path, pair: &Path) -> anyhow::Result<()> {
    attach_pair(file, &ResultsFile::load(pair)?)
        .with_context(|| format!("{} cannot pair with {}", pair.display(), path.display()))
}

/// Merges one group's results into the file at `path` (created if absent).
pub fn merge_group(path: &Path, group: &str, results: GroupResults) -> anyhow::Result<()> {
    let mut file = ResultsFile::load_or_default(path)?;
    file.replace_group(group, results);
    file.save(path)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .context("results path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
