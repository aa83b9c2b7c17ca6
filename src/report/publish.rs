//! Whether a run may replace the committed reference report.
//!
//! A quick run, a run of some groups, a run of uncommitted code or a run
//! without its flamegraphs is worth reading, but under `target/`; only a
//! complete run of committed code goes into `target-reports/`. Every reason
//! a run falls short is collected, so one refusal lists them all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::criterion::Flamegraph;
use super::flamegraphs::{self, FlamePlan};
use super::EXPECTED_GROUPS;
use crate::results::ResultsFile;

/// The command that makes the latency group's flamegraphs.
const PROFILE_LATENCY: &str = "cargo bench --bench latency -- --profile-time 5";

/// One way a run falls short of a reference run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReference {
    /// Groups measured with `WSBENCH_QUICK=1`.
    Quick { groups: Vec<String> },
    /// Groups of [`EXPECTED_GROUPS`] the results lack.
    GroupsMissing { groups: Vec<String> },
    /// The groups were measured at more than one commit: each commit with its groups.
    MixedCommits {
        commits: BTreeMap<String, Vec<String>>,
    },
    /// Groups measured with uncommitted changes to code that measures.
    DirtyCommit { commit: String, groups: Vec<String> },
    /// Groups measured outside a git checkout, so no commit names the code.
    NoCommit { groups: Vec<String> },
    /// Latency benchmarks without a flamegraph (no `--profile-time` run).
    FlamegraphsMissing { benches: Vec<String> },
    /// Flamegraphs written before their group was measured: another run's.
    FlamegraphsStale { benches: Vec<String> },
    /// Flamegraphs of the published report this run has no replacement
    /// for, relative to the report directory.
    FlamegraphsDropped { files: Vec<String> },
}

impl fmt::Display for NotReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReference::Quick { groups } => write!(
                f,
                "quick run (WSBENCH_QUICK=1) of {}: rerun them without WSBENCH_QUICK",
                groups.join(", ")
            ),
            NotReference::GroupsMissing { groups } => write!(
                f,
                "groups not measured: {}: run `cargo bench` for the whole suite",
                groups.join(", ")
            ),
            NotReference::MixedCommits { commits } => {
                let each: Vec<String> = commits
                    .iter()
                    .map(|(commit, groups)| format!("{commit} ({})", groups.join(", ")))
                    .collect();
                write!(
                    f,
                    "groups measured at different commits: {}: rerun `cargo bench` at one commit",
                    each.join("; ")
                )
            }
            NotReference::DirtyCommit { commit, groups } => write!(
                f,
                "{} measured with uncommitted changes ({commit}): commit them and rerun `cargo bench`",
                groups.join(", ")
            ),
            NotReference::NoCommit { groups } => write!(
                f,
                "{} measured outside a git checkout, so no commit names the code",
                groups.join(", ")
            ),
            NotReference::FlamegraphsMissing { benches } => write!(
                f,
                "no flamegraph for {}: run `{PROFILE_LATENCY}`",
                benches.join(", ")
            ),
            NotReference::FlamegraphsStale { benches } => write!(
                f,
                "flamegraphs older than their group's results (another run's): {}: profile again \
                 after measuring, e.g. `{PROFILE_LATENCY}`",
                benches.join(", ")
            ),
            NotReference::FlamegraphsDropped { files } => write!(
                f,
                "the published report has flamegraphs this run does not replace: {}: profile \
                 those benchmarks (`cargo bench --bench GROUP -- --profile-time 5`) or delete the \
                 files by hand",
                files.join(", ")
            ),
        }
    }
}

/// Why [`super::publish`] wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRefused {
    pub reasons: Vec<NotReference>,
}

impl fmt::Display for PublishRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not publishing: the results are not a complete reference run, so the published report \
             is left as it is"
        )?;
        for reason in &self.reasons {
            write!(f, "\n  - {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PublishRefused {}

/// Every reason the run in `file`, with the flamegraphs `found` and the
/// copies `plan` would make, cannot replace the report in `published`.
pub fn check(
    file: &ResultsFile,
    found: &[Flamegraph],
    plan: &FlamePlan,
    published: &Path,
) -> Result<(), PublishRefused> {
    let mut reasons = Vec::new();
    let groups = |pick: &dyn Fn(&crate::results::RunInfo) -> bool| -> Vec<String> {
        let mut names: Vec<String> = file
            .groups
            .iter()
            .filter(|(_, g)| pick(&g.run))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort_by(|a, b| super::data::cmp_groups(a, b));
        names
    };

    let quick = groups(&|run| run.quick);
    if !quick.is_empty() {
        reasons.push(NotReference::Quick { groups: quick });
    }
    let missing: Vec<String> = EXPECTED_GROUPS
        .iter()
        .filter(|g| !file.groups.contains_key(**g))
        .map(|g| g.to_string())
        .collect();
    if !missing.is_empty() {
        reasons.push(NotReference::GroupsMissing { groups: missing });
    }

    let mut commits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in groups(&|_| true) {
        commits
            .entry(file.groups[&name].run.commit.clone())
            .or_default()
            .push(name);
    }
    for (commit, groups) in &commits {
        if commit == "unknown" {
            reasons.push(NotReference::NoCommit {
                groups: groups.clone(),
            });
        } else if commit.ends_with("-dirty") {
            reasons.push(NotReference::DirtyCommit {
                commit: commit.clone(),
                groups: groups.clone(),
            });
        }
    }
    if commits.len() > 1 {
        reasons.push(NotReference::MixedCommits { commits });
    }

    let latency: Vec<(&str, &str)> = file
        .groups
        .get("latency")
        .map(|g| {
            g.measurements
                .iter()
                .map(|m| (m.stack.as_str(), m.bench.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let unprofiled = flamegraphs::unprofiled("latency", &latency, found);
    if !unprofiled.is_empty() {
        reasons.push(NotReference::FlamegraphsMissing {
            benches: unprofiled,
        });
    }

    let mut stale = Vec::new();
    for copy in &plan.all {
        let group = copy.bench.split('/').next().unwrap_or_default();
        let Some(measured) = file.groups.get(group).and_then(|g| epoch(&g.run.date)) else {
            continue;
        };
        let written = std::fs::metadata(&copy.source).and_then(|m| m.modified());
        // An unreadable time is no evidence of staleness; the copy itself
        // fails later if the file cannot be read.
        if written.is_ok_and(|t| t < measured) {
            stale.push(copy.bench.clone());
        }
    }
    if !stale.is_empty() {
        reasons.push(NotReference::FlamegraphsStale { benches: stale });
    }

    let replaced: Vec<&str> = plan
        .all
        .iter()
        .chain(&plan.per_stack)
        .map(|c| c.dest.as_str())
        .collect();
    let dropped: Vec<String> = published_flamegraphs(published)
        .into_iter()
        .filter(|f| !replaced.contains(&f.as_str()))
        .collect();
    if !dropped.is_empty() {
        reasons.push(NotReference::FlamegraphsDropped { files: dropped });
    }

    if reasons.is_empty() {
        Ok(())
    } else {
        Err(PublishRefused { reasons })
    }
}

/// The flamegraphs of the report at `dir`, as `flamegraphs/<name>`, sorted.
fn published_flamegraphs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("flamegraphs")) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| format!("flamegraphs/{}", e.file_name().to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// The instant of a run record's date, `YYYY-MM-DDTHH:MM:SSZ` as
/// [`crate::machine::now_rfc3339`] writes it; `None` for anything else.
fn epoch(date: &str) -> Option<SystemTime> {
    let (day, time) = date.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = day.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let mut hms = time.splitn(3, ':').map(str::parse::<i64>);
    let (h, m, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of the
    // one that wrote the date.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_back_as_written() {
        assert_eq!(
            epoch("1970-01-02T00:00:01Z"),
            Some(UNIX_EPOCH + Duration::from_secs(86_401))
        );
        assert_eq!(
            epoch("2000-03-01T00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_868_800))
        );
        assert_eq!(epoch("yesterday"), None);
    }
}
