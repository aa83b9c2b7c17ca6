//! One run from several clients: each `wsbench run --histogram-out FILE`
//! writes its share (its counts, and its round trips as HDR histograms in
//! the standard V2 serialization, deflated and base64-encoded as
//! HdrHistogram's interval logs carry them), and `wsbench merge FILE...`
//! adds the shares up exactly. Counts are summed and histograms added
//! bucket by bucket, so a merged percentile is that of every round trip of
//! every client, never an average of percentiles.
//!
//! The clients may run on other hosts, started by whatever spreads jobs
//! there (ssh, a CI matrix, a job runner): a share records its machine and
//! its measured stretch, and shares of different stacks, settings or
//! wsbench builds, or stretches that did not run at the same time, are
//! refused with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::metrics::{self, Metric, Source};
use crate::results::{GroupResults, Measurement, Params, RunInfo, Subject};

/// The format of a share; a reader refuses others.
pub const PART_SCHEMA: u32 = 1;

/// How much of the shortest stretch all the shares must have run at the
/// same time, by their hosts' clocks: their rates add up only where they
/// ran together.
pub const MIN_OVERLAP: f64 = 0.5;

/// The histograms of a closed-loop share: every round trip, from the send.
pub const RTT: &str = "rtt";
/// Open loop: round trips from their intended send time.
pub const CORRECTED: &str = "corrected";
/// Open loop: how late the client came to each send.
pub const LATENESS: &str = "lateness";

/// One client's share of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub schema: u32,
    /// The machine this client ran on and the wsbench build it ran.
    pub run: RunInfo,
    pub stack: String,
    pub stack_version: String,
    /// The run's settings as results name them (size_bytes, kind, conns,
    /// window, arrivals, transport, ...): every share of one run must have
    /// the same.
    pub params: Params,
    /// Where this client sent its load; not compared, since hosts may reach
    /// one server by different addresses.
    pub url: Option<String>,
    pub conns: usize,
    /// Round trips completed and verified.
    pub round_trips: u64,
    /// The rate this client offered (open loop), messages per second.
    pub offered_per_s: Option<f64>,
    /// When the measured stretch began, by this host's clock.
    pub started_unix_ms: u64,
    pub elapsed_ns: u64,
    /// The client's CPU over the stretch.
    pub client_cpu_ns: u64,
    /// Nanoseconds, by name ([`RTT`], [`CORRECTED`], [`LATENESS`]), each
    /// V2-deflate serialized and base64-encoded.
    pub histograms: BTreeMap<String, String>,
}

impl Part {
    /// The client's rate over its own stretch.
    pub fn msgs_per_s(&self) -> f64 {
        self.round_trips as f64 / (self.elapsed_ns as f64 / 1e9).max(1e-12)
    }

    fn ends_unix_ms(&self) -> f64 {
        self.started_unix_ms as f64 + self.elapsed_ns as f64 / 1e6
    }
}

/// `h` in HdrHistogram's V2 serialization, deflated, base64.
pub fn encode(h: &Histogram<u64>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| anyhow::anyhow!("serializing a histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The histogram [`encode`] wrote.
pub fn decode(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("a histogram that is not base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("a histogram that does not deserialize: {e:?}"))
}

pub fn write(path: &Path, part: &Part) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(part)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

pub fn read(path: &Path) -> anyhow::Result<Part> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let part: Part = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a share written by `wsbench run --histogram-out`",
            path.display()
        )
    })?;
    anyhow::ensure!(
        part.schema == PART_SCHEMA,
        "{}: share format {}, this wsbench reads {PART_SCHEMA}",
        path.display(),
        part.schema
    );
    Ok(part)
}

/// Several shares of one run, added up.
#[derive(Debug)]
pub struct Merged {
    /// The first share's run (the build is the same for all).
    pub run: RunInfo,
    pub stack: String,
    pub stack_version: String,
    pub params: Params,
    pub parts: usize,
    /// Each share's machine, as "CPU, kernel", one entry per distinct one.
    pub machines: Vec<String>,
    pub conns: usize,
    pub round_trips: u64,
    /// The sum of the shares' rates (they ran at the same time).
    pub msgs_per_s: f64,
    pub offered_per_s: Option<f64>,
    pub client_cpu_ns: u64,
    /// How much of the shortest stretch every share ran at once.
    pub overlap: f64,
    pub histograms: BTreeMap<String, Histogram<u64>>,
}

/// Adds up `parts` (each with the file it came from, for messages), or
/// says why they are not shares of one run.
pub fn merge(parts: &[(PathBuf, Part)]) -> anyhow::Result<Merged> {
    let Some((first_path, first)) = parts.first() else {
        anyhow::bail!("nothing to merge: give the files `wsbench run --histogram-out` wrote");
    };
    for (path, part) in &parts[1..] {
        let differ = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "{} and {} are not shares of one run: {what} {a} against {b}",
                first_path.display(),
                path.display()
            )
        };
        if part.stack != first.stack {
            return Err(differ("stack", &first.stack, &part.stack));
        }
        if part.stack_version != first.stack_version {
            return Err(differ("version", &first.stack_version, &part.stack_version));
        }
        if part.run.commit != first.run.commit {
            return Err(differ(
                "wsbench commit",
                &first.run.commit,
                &part.run.commit,
            ));
        }
        let keys: std::collections::BTreeSet<&String> =
            first.params.keys().chain(part.params.keys()).collect();
        for key in keys {
            let (a, b) = (first.params.get(key), part.params.get(key));
            if a != b {
                let show = |v: Option<&serde_json::Value>| match v {
                    Some(v) => v.to_string(),
                    None => "(unset)".to_string(),
                };
                return Err(differ(key, &show(a), &show(b)));
            }
        }
        let names = |p: &Part| p.histograms.keys().cloned().collect::<Vec<_>>().join(", ");
        if part.histograms.keys().ne(first.histograms.keys()) {
            return Err(differ("histograms", &names(first), &names(part)));
        }
    }

    // Every stretch must have run while the others did.
    let latest_start = parts
        .iter()
        .map(|(_, p)| p.started_unix_ms as f64)
        .fold(f64::MIN, f64::max);
    let earliest_end = parts
        .iter()
        .map(|(_, p)| p.ends_unix_ms())
        .fold(f64::MAX, f64::min);
    let shortest_ms = parts
        .iter()
        .map(|(_, p)| p.elapsed_ns as f64 / 1e6)
        .fold(f64::MAX, f64::min);
    let overlap = ((earliest_end - latest_start) / shortest_ms.max(1e-9)).clamp(0.0, 1.0);
    if overlap < MIN_OVERLAP {
        anyhow::bail!(
            "the shares did not run at the same time: all of them ran together for {:.0}% of the shortest stretch (at least {:.0}% needed; each share records its start by its host's clock, so clocks must agree, and a longer --duration leaves more room for starting the clients apart)",
            overlap * 100.0,
            MIN_OVERLAP * 100.0
        );
    }

    let mut histograms: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for (path, part) in parts {
        for (name, text) in &part.histograms {
            let h = decode(text).with_context(|| format!("{}: {name}", path.display()))?;
            match histograms.get_mut(name) {
                None => {
                    histograms.insert(name.clone(), h);
                }
                Some(sum) => sum.add(&h).map_err(|e| {
                    anyhow::anyhow!("{}: {name} cannot be added: {e:?}", path.display())
                })?,
            }
        }
    }
    let mut machines: Vec<String> = Vec::new();
    for (_, p) in parts {
        let machine = format!("{}, {}", p.run.cpu, p.run.kernel);
        if !machines.contains(&machine) {
            machines.push(machine);
        }
    }
    let offered_per_s = parts
        .iter()
        .map(|(_, p)| p.offered_per_s)
        .sum::<Option<f64>>();
    Ok(Merged {
        run: first.run.clone(),
        stack: first.stack.clone(),
        stack_version: first.stack_version.clone(),
        params: first.params.clone(),
        parts: parts.len(),
        machines,
        conns: parts.iter().map(|(_, p)| p.conns).sum(),
        round_trips: parts.iter().map(|(_, p)| p.round_trips).sum(),
        msgs_per_s: parts.iter().map(|(_, p)| p.msgs_per_s()).sum(),
        offered_per_s,
        client_cpu_ns: parts.iter().map(|(_, p)| p.client_cpu_ns).sum(),
        overlap,
        histograms,
    })
}

impl Merged {
    /// The merged figures, in the order `wsbench run` lists them; the
    /// servers' CPU is not among them (the clients did not run it).
    pub fn figures(&self) -> Vec<(&'static Metric, f64, Source)> {
        let us = |name: &str, q: f64| {
            self.histograms
                .get(name)
                .map(|h| h.value_at_quantile(q) as f64 / 1e3)
        };
        let max_us = |name: &str| self.histograms.get(name).map(|h| h.max() as f64 / 1e3);
        let size_bytes = self
            .params
            .get("size_bytes")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
        let mut out: Vec<(&'static Metric, Option<f64>, Source)> = Vec::new();
        if let Some(offered) = self.offered_per_s {
            out.push((&metrics::OFFERED_MSGS_PER_S, Some(offered), Source::Harness));
        }
        out.push((
            &metrics::MSGS_PER_S,
            Some(self.msgs_per_s),
            Source::Wallclock,
        ));
        if self.offered_per_s.is_none() {
            let mib = self.msgs_per_s * size_bytes / (1u64 << 20) as f64;
            out.extend([
                (&metrics::MIB_PER_S, Some(mib), Source::Wallclock),
                (&metrics::RTT_P50_US, us(RTT, 0.5), Source::Histogram),
                (&metrics::RTT_P90_US, us(RTT, 0.9), Source::Histogram),
                (&metrics::RTT_P99_US, us(RTT, 0.99), Source::Histogram),
                (&metrics::RTT_P999_US, us(RTT, 0.999), Source::Histogram),
            ]);
        } else {
            out.extend([
                (
                    &metrics::CORRECTED_P50_US,
                    us(CORRECTED, 0.5),
                    Source::Histogram,
                ),
                (
                    &metrics::CORRECTED_P99_US,
                    us(CORRECTED, 0.99),
                    Source::Histogram,
                ),
                (
                    &metrics::CORRECTED_P999_US,
                    us(CORRECTED, 0.999),
                    Source::Histogram,
                ),
                (
                    &metrics::CORRECTED_MAX_US,
                    max_us(CORRECTED),
                    Source::Histogram,
                ),
                (&metrics::RTT_P99_US, us(RTT, 0.99), Source::Histogram),
                (
                    &metrics::CLIENT_LATENESS_P99_US,
                    us(LATENESS, 0.99),
                    Source::Histogram,
                ),
                (
                    &metrics::CLIENT_LATENESS_MAX_US,
                    max_us(LATENESS),
                    Source::Histogram,
                ),
            ]);
        }
        let cpu_per_msg = self.client_cpu_ns as f64 / self.round_trips.max(1) as f64;
        out.extend([
            (
                &metrics::CLIENT_CPU_NS_PER_MSG,
                Some(cpu_per_msg),
                Source::Schedstat,
            ),
            (
                &metrics::ROUND_TRIPS_VERIFIED,
                Some(self.round_trips as f64),
                Source::Client,
            ),
        ]);
        out.into_iter()
            .filter_map(|(m, v, s)| v.map(|v| (m, v, s)))
            .collect()
    }

    /// The merged run as results.json records it: one group, "merge", its
    /// parameters those of the shares with the connections summed and the
    /// number of shares.
    pub fn records(&self) -> GroupResults {
        let mut params = self.params.clone();
        params.insert("conns".into(), self.conns.into());
        params.insert("parts".into(), self.parts.into());
        let kind = params
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("binary")
            .to_string();
        let size = params
            .get("size_bytes")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let bench = format!("merge/{}/{kind}/{size}B", self.stack);
        let subject = Subject {
            group: "merge",
            bench: &bench,
            stack: &self.stack,
            stack_version: &self.stack_version,
            params: &params,
            placement: &self.run.placement,
        };
        let measurements = self
            .figures()
            .into_iter()
            .map(|(metric, value, source)| Measurement::new(&subject, metric, value, source))
            .collect();
        GroupResults {
            run: self.run.clone(),
            pair_run: None,
            measurements,
        }
    }

    /// What `wsbench merge` prints.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "stack {} ({}) from {} shares on {} machine{} ({}): {} connections, {} verified round trips; all ran together for {:.0}% of the shortest stretch\n",
            self.stack,
            self.stack_version,
            self.parts,
            self.machines.len(),
            if self.machines.len() == 1 { "" } else { "s" },
            self.machines.join("; "),
            self.conns,
            self.round_trips,
            self.overlap * 100.0
        );
        let figures: Vec<String> = self
            .figures()
            .into_iter()
            .map(|(metric, value, _)| format!("{} {value:.1}", metric.name))
            .collect();
        text.push_str(&format!("  {}\n", figures.join(", ")));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = crate::client::new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    fn part(round_trips: u64, started_unix_ms: u64, values: &[u64]) -> Part {
        Part {
            schema: PART_SCHEMA,
            run: crate::machine::run_info(
                crate::placement::Placement::Unpinned,
                1,
                false,
                crate::settings::EchoPolicy::FlushEach,
                crate::client::Driver::Epoll,
            ),
            stack: "axum".into(),
            stack_version: "axum 0.8.9".into(),
            params: crate::results::params(&[
                ("size_bytes", 32.into()),
                ("kind", "binary".into()),
                ("window", 1.into()),
            ]),
            url: Some("ws://10.0.0.1:9001/".into()),
            conns: 2,
            round_trips,
            offered_per_s: None,
            started_unix_ms,
            elapsed_ns: 1_000_000_000,
            client_cpu_ns: round_trips * 1_000,
            histograms: [(RTT.to_string(), encode(&histogram(values)).unwrap())].into(),
        }
    }

    fn of(parts: Vec<Part>) -> Vec<(PathBuf, Part)> {
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (PathBuf::from(format!("part{i}.json")), p))
            .collect()
    }

    #[test]
    fn a_histogram_survives_its_encoding() {
        let h = histogram(&[20_000, 21_000, 1_500_000]);
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        assert!(decode("not base64!").is_err());
    }

    #[test]
    fn shares_add_up_exactly() {
        let a = part(3, 1_000, &[10_000, 20_000, 30_000]);
        let b = part(2, 1_100, &[40_000, 50_000]);
        let merged = merge(&of(vec![a, b])).unwrap();
        assert_eq!(merged.parts, 2);
        assert_eq!(merged.conns, 4);
        assert_eq!(merged.round_trips, 5);
        assert_eq!(merged.histograms[RTT].len(), 5);
        assert!((merged.msgs_per_s - 5.0).abs() < 1e-9);
        assert!((merged.overlap - 0.9).abs() < 1e-9);
        let figures = merged.figures();
        let figure = |name: &str| figures.iter().find(|f| f.0.name == name).unwrap().1;
        // The median of all five, not the mean of the two medians.
        assert!((figure("rtt_p50_us") - 30.0).abs() < 0.1);
        assert!((figure("client_cpu_ns_per_msg") - 1_000.0).abs() < 1e-9);
        let records = merged.records();
        assert!(records
            .measurements
            .iter()
            .all(|m| m.group == "merge" && m.params["conns"] == 4 && m.params["parts"] == 2));
    }

    #[test]
    fn shares_of_different_runs_are_refused() {
        let base = || part(3, 1_000, &[10_000]);
        let mut other_stack = base();
        other_stack.stack = "yawc".into();
        let mut other_size = base();
        other_size.params.insert("size_bytes".into(), 64.into());
        let mut other_build = base();
        other_build.run.commit = "0000000".into();
        let mut later = base();
        later.started_unix_ms += 600;
        for (other, needle) in [
            (other_stack, "stack axum against yawc"),
            (other_size, "size_bytes 32 against 64"),
            (other_build, "wsbench commit"),
            (later, "did not run at the same time"),
        ] {
            let err = merge(&of(vec![base(), other])).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert!(merge(&[]).is_err());
    }
}
