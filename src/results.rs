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

/// Bumped when the layout changes incompatibly; readers refuse other versions.
pub const SCHEMA_VERSION: u32 = 1;

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
}

fn unknown() -> String {
    "unknown".into()
}

/// One figure.
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
    /// What was measured, with its unit in the name where it helps:
    /// rtt_p50_us, msgs_per_s, server_allocs_per_rtt, ...
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
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("no results at {}: run `cargo bench` first", path.display())
        })?;
        let file: ResultsFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a wsbench results file", path.display()))?;
        if file.schema != SCHEMA_VERSION {
            anyhow::bail!(
                "{} has schema {} but this wsbench reads schema {SCHEMA_VERSION}: rerun `cargo bench`",
                path.display(),
                file.schema
            );
        }
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
