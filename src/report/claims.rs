//! What a run lets the report claim about two stacks, and whether another
//! run makes the same claims.
//!
//! The report's ratio tables set each stack of a row beside the row's
//! fastest WebSocket stack and beside the raw-TCP floor. Where both
//! figures were measured in the same interleaved rounds
//! ([`crate::rounds`]), each ratio carries the interval of the median of
//! its per-round ratios, and only a ratio whose whole interval lies beyond
//! the threshold is a claim ("this stack is slower than that one"); the
//! others are within noise. [`claims`] lists a run's claims, and
//! [`confirm`] looks for each in another run (`wsbench claims`).
//!
//! Two levels: a claim is made only beyond the threshold, and another run
//! confirms it when its own interval lies wholly on the claim's side of 1,
//! the same order beyond that run's noise. The threshold is the margin that
//! lets the order hold in a run with other processes, memory layout and
//! drift; asking the other run to clear it again would fail about half the
//! claims whose true ratio sits near the threshold, however right their
//! order is. How many clear it again is counted beside.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::data::{params_label, Pivot, FLOOR_STACK};
use crate::compare::stats::Interval;
use crate::metrics::{self, Better, Metric};
use crate::results::{Measurement, ResultsFile};
use crate::rounds::{self, Paired, Standing};

/// Per group, the metrics the report leads with and sets stacks side by
/// side in (its ratio tables); the claims are made in these.
pub fn key_metrics(group: &str) -> &'static [&'static Metric] {
    match group {
        "latency" => &[&metrics::RTT_P50_US, &metrics::RTT_P99_US],
        // msgs/s would give the same ratios as MiB/s again.
        "throughput" => &[&metrics::MIB_PER_S],
        // Not the closed loop's p99: with many connections in flight it is
        // the length of the queue on the server's core (Little's law), not
        // the stack's latency, and its tail moves between runs by more than
        // any threshold; the load group's p99 at a fixed offered rate is the
        // latency under load.
        "scaling" => &[&metrics::MSGS_PER_S, &metrics::HANDSHAKES_PER_S],
        "cores" => &[&metrics::MSGS_PER_S],
        // The steps of the sweep are measured once each; the equal-work
        // rounds are what pairs the stacks.
        "load" => &[&metrics::SERVER_CPU_MS_PER_MILLION_MSGS],
        "memory" => &[
            &metrics::LIVE_BYTES_PER_IDLE_CONN,
            &metrics::SERVER_ALLOC_BYTES_PER_RTT,
            &metrics::SERVER_ALLOCS_PER_RTT,
        ],
        _ => &[],
    }
}

/// How many times worse one figure is than a reference measured in the
/// same rounds (1 = the same; above 1 = worse, whichever way the metric
/// runs), with the interval of that ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Versus {
    pub times: f64,
    pub lo: f64,
    pub hi: f64,
    pub coverage: f64,
    pub rounds: usize,
    /// 2 when the interval spans a pair of runs ([`Paired::runs`]).
    pub runs: usize,
}

impl Versus {
    /// `m` against `reference`; `None` unless both were measured in the
    /// same rounds and the metric has a better direction.
    pub fn of(m: &Measurement, reference: &Measurement, better: Better) -> Option<Versus> {
        let (a, b) = (m.rounds.as_ref()?, reference.rounds.as_ref()?);
        // Worse = higher cost ratio: m/ref for a time, ref/m for a rate.
        let p = match better {
            Better::Lower => Paired::of(a, b)?,
            Better::Higher => Paired::of(b, a)?,
            Better::Neither => return None,
        };
        Some(Versus {
            times: p.ratio,
            lo: p.interval.lo,
            hi: p.interval.hi,
            coverage: p.coverage,
            rounds: p.rounds,
            runs: p.runs,
        })
    }

    /// `Some(true)` when the whole interval says worse by more than
    /// `threshold`, `Some(false)` when it says better, `None` within noise.
    pub fn worse(&self, threshold: f64) -> Option<bool> {
        let interval = Interval {
            lo: self.lo,
            hi: self.hi,
        };
        match rounds::standing(interval, threshold) {
            Standing::Higher => Some(true),
            Standing::Lower => Some(false),
            Standing::WithinNoise => None,
        }
    }

    /// "1.23× (1.18–1.27)", with "≈ " in front when within noise.
    pub fn text(&self, threshold: f64) -> String {
        let noise = if self.worse(threshold).is_none() {
            "≈ "
        } else {
            ""
        };
        format!(
            "{noise}{}× ({}–{})",
            fmt_times(self.times),
            fmt_times(self.lo),
            fmt_times(self.hi)
        )
    }
}

/// Ratios read best with two decimals near 1 and fewer when large.
pub fn fmt_times(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.2}")
    } else if r < 100.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// A row's stacks against its best WebSocket stack and against the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowVersus {
    pub to_best: Option<Versus>,
    pub to_floor: Option<Versus>,
}

/// The stack (column) a row's best WebSocket figure is in: the best median.
pub fn best_of_row(pivot: &Pivot, row: usize, better: Better) -> Option<usize> {
    let contenders = (0..pivot.stacks.len())
        .filter(|&s| pivot.stacks[s] != FLOOR_STACK)
        .filter_map(|s| pivot.value(row, s).map(|m| (s, m.value)))
        .filter(|(_, v)| v.is_finite() && *v > 0.0);
    match better {
        Better::Lower => contenders.min_by(|a, b| a.1.total_cmp(&b.1)),
        Better::Higher => contenders.max_by(|a, b| a.1.total_cmp(&b.1)),
        Better::Neither => None,
    }
    .map(|(s, _)| s)
}

/// Every stack of a row against the row's best and the floor, where they
/// were measured in the same rounds.
pub fn row_versus(pivot: &Pivot, row: usize, better: Better) -> BTreeMap<usize, RowVersus> {
    let best = best_of_row(pivot, row, better).and_then(|s| pivot.value(row, s));
    let floor = (0..pivot.stacks.len())
        .find(|&s| pivot.stacks[s] == FLOOR_STACK)
        .and_then(|s| pivot.value(row, s));
    (0..pivot.stacks.len())
        .filter_map(|s| pivot.value(row, s).map(|m| (s, m)))
        .map(|(s, m)| {
            let vs = |r: Option<&Measurement>| r.and_then(|r| Versus::of(m, r, better));
            (
                s,
                RowVersus {
                    to_best: vs(best),
                    to_floor: vs(floor),
                },
            )
        })
        .collect()
}

/// One claim: `better` did better than `worse` on `metric` at these
/// parameters, by `times` (interval `lo`..`hi`), in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub group: String,
    pub metric: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub better: String,
    pub worse: String,
    pub times: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Claim {
    /// Whether two claims are about the same two figures (either order).
    pub fn same_pair(&self, other: &Claim) -> bool {
        self.group == other.group
            && self.metric == other.metric
            && self.params == other.params
            && ((self.better == other.better && self.worse == other.worse)
                || (self.better == other.worse && self.worse == other.better))
    }

    pub fn describe(&self) -> String {
        let pairs: Vec<(String, serde_json::Value)> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        format!(
            "{} {} [{}]: {} better than {}, {}× ({}–{})",
            self.group,
            self.metric,
            params_label(&pairs, ", "),
            self.better,
            self.worse,
            fmt_times(self.times),
            fmt_times(self.lo),
            fmt_times(self.hi)
        )
    }
}

/// The claims of a run's ratio tables: each stack against its row's best
/// WebSocket stack and against the floor, where the interval clears
/// `threshold`. A pair that is both (the best against the floor) counts
/// once.
pub fn claims(file: &ResultsFile, threshold: f64) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, group) in &file.groups {
        for metric in key_metrics(name) {
            let values: Vec<&Measurement> = group
                .measurements
                .iter()
                .filter(|m| m.metric == metric.name)
                .collect();
            if values.is_empty() {
                continue;
            }
            let pivot = Pivot::new(&values, &[]);
            for row in 0..pivot.rows.len() {
                let best = best_of_row(&pivot, row, metric.better);
                let floor = pivot.stacks.iter().position(|s| s == FLOOR_STACK);
                for (s, rv) in row_versus(&pivot, row, metric.better) {
                    let m = pivot.value(row, s).expect("row_versus gives filled cells");
                    for (versus, other) in [(rv.to_best, best), (rv.to_floor, floor)] {
                        let (Some(v), Some(o)) = (versus, other) else {
                            continue;
                        };
                        let Some(worse) = v.worse(threshold) else {
                            continue;
                        };
                        let (better_stack, worse_stack) = if worse {
                            (pivot.stacks[o].clone(), m.stack.clone())
                        } else {
                            (m.stack.clone(), pivot.stacks[o].clone())
                        };
                        let key = (
                            name.clone(),
                            metric.name,
                            format!("{:?}", m.params),
                            better_stack.clone(),
                            worse_stack.clone(),
                        );
                        if !seen.insert(key) {
                            continue;
                        }
                        // Times worse of the worse stack against the better.
                        let (times, lo, hi) = if worse {
                            (v.times, v.lo, v.hi)
                        } else {
                            (1.0 / v.times, 1.0 / v.hi, 1.0 / v.lo)
                        };
                        out.push(Claim {
                            group: name.clone(),
                            metric: metric.name.to_string(),
                            params: m.params.clone(),
                            better: better_stack,
                            worse: worse_stack,
                            times,
                            lo,
                            hi,
                        });
                    }
                }
            }
        }
    }
    out
}

/// What another run says about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The other run's interval lies wholly on the claim's side of 1.
    Confirmed,
    /// The other run's interval holds 1: no order there.
    WithinNoise,
    /// The other run's interval lies wholly on the other side of 1.
    Reversed,
    /// The other run lacks one of the figures, or did not measure them in
    /// the same rounds.
    Missing,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Confirmed => "confirmed",
            Outcome::WithinNoise => "within noise",
            Outcome::Reversed => "REVERSED",
            Outcome::Missing => "missing",
        }
    }
}

/// What `other` says about `claim`, and its times-worse there (whose
/// `worse(threshold)` says whether it clears the threshold again).
pub fn confirm(claim: &Claim, other: &ResultsFile) -> (Outcome, Option<Versus>) {
    let Some(group) = other.groups.get(&claim.group) else {
        return (Outcome::Missing, None);
    };
    let find = |stack: &str| {
        group
            .measurements
            .iter()
            .find(|m| m.stack == stack && m.metric == claim.metric && m.params == claim.params)
    };
    let better = metrics::find(&claim.metric).map(|m| m.better);
    let versus = match (find(&claim.worse), find(&claim.better), better) {
        (Some(w), Some(b), Some(better)) => Versus::of(w, b, better),
        _ => None,
    };
    match versus {
        None => (Outcome::Missing, None),
        // Times worse of the claimed worse stack: above 1 is the claim's order.
        Some(v) => match v.worse(0.0) {
            Some(true) => (Outcome::Confirmed, Some(v)),
            Some(false) => (Outcome::Reversed, Some(v)),
            None => (Outcome::WithinNoise, Some(v)),
        },
    }
}

/// How another run's verdicts on a run's claims add up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub threshold: f64,
    pub claims: usize,
    pub confirmed: usize,
    /// Of those confirmed, the ones whose interval there clears the
    /// threshold again.
    pub beyond_threshold: usize,
    pub within_noise: usize,
    pub reversed: usize,
    pub missing: usize,
}

impl Tally {
    pub fn new(threshold: f64) -> Tally {
        Tally {
            threshold,
            ..Tally::default()
        }
    }

    fn add(&mut self, outcome: Outcome, there: Option<Versus>) {
        self.claims += 1;
        match outcome {
            Outcome::Confirmed => {
                self.confirmed += 1;
                if there.is_some_and(|v| v.worse(self.threshold) == Some(true)) {
                    self.beyond_threshold += 1;
                }
            }
            Outcome::WithinNoise => self.within_noise += 1,
            Outcome::Reversed => self.reversed += 1,
            Outcome::Missing => self.missing += 1,
        }
    }

    /// "531 of 532 confirmed (447 of them beyond the 10% threshold
    /// again), 1 within noise, 0 reversed, 0 missing".
    pub fn text(&self) -> String {
        format!(
            "{} of {} confirmed ({} of them beyond the {:.0}% threshold again), {} within noise, {} reversed, {} missing",
            self.confirmed,
            self.claims,
            self.beyond_threshold,
            self.threshold * 100.0,
            self.within_noise,
            self.reversed,
            self.missing
        )
    }
}

/// What `other` says about each of `claims`.
pub fn tally(claims: &[Claim], other: &ResultsFile, threshold: f64) -> Tally {
    let mut t = Tally::new(threshold);
    for c in claims {
        let (outcome, there) = confirm(c, other);
        t.add(outcome, there);
    }
    t
}

/// The claims of `file`'s ratio tables at `threshold`, then those of a
/// discussion (`made`) that they lack (the same two stacks, metric and
/// parameters, either way round): every claim a published report and its
/// discussion make.
pub fn with_discussion(file: &ResultsFile, threshold: f64, made: &[Claim]) -> Vec<Claim> {
    let mut all = claims(file, threshold);
    for c in made {
        if !all.iter().any(|d| d.same_pair(c)) {
            all.push(c.clone());
        }
    }
    all
}

/// The claims `list` of `file` as Markdown and, with `against`, what that
/// run says about each; ends with the counts.
pub fn render(
    file: &ResultsFile,
    list: &[Claim],
    against: Option<&ResultsFile>,
    threshold: f64,
) -> String {
    let mut out = String::new();
    let pair = pair_runs(file);
    let rule = if pair.is_some() {
        "ratios whose interval lies beyond it in both runs of the pair (each run's interval the order statistics of its paired round ratios; \
         shown: this run's ratio and the span of the two intervals)"
    } else {
        "ratios whose whole interval (order statistics of the paired round ratios) lies beyond it"
    };
    let _ = writeln!(
        out,
        "# Claims\n\n{} claims at threshold {:.0}%: {rule}.",
        list.len(),
        threshold * 100.0
    );
    if let Some(pair) = pair {
        let _ = writeln!(out, "The pair: {pair}.");
    }
    if against.is_some() {
        let _ = writeln!(
            out,
            "Another run confirms a claim when its interval lies wholly on the claim's side of 1, and says whether it clears the threshold again."
        );
    }
    let _ = writeln!(out);
    if let Some(other) = against {
        let _ = writeln!(out, "{}\n", machines(file, other));
    }
    let mut tally = Tally::new(threshold);
    for c in list {
        match against {
            None => {
                let _ = writeln!(out, "- {}", c.describe());
            }
            Some(other) => {
                let (outcome, v) = confirm(c, other);
                tally.add(outcome, v);
                let there = v
                    .map(|v| format!("; there {}", v.text(threshold)))
                    .unwrap_or_default();
                let _ = writeln!(out, "- {}: **{}**{there}", c.describe(), outcome.as_str());
            }
        }
    }
    if against.is_some() {
        let _ = writeln!(out, "\nOf the claims: {}.", tally.text());
    }
    out
}

/// When and at which commit each group's two runs were made, where `file`
/// has a pair ([`crate::results::attach_pair`]): "latency 2026-12-03T17:40:02Z and 2026-12-03T18:41:10Z, ...,
/// commit 11d6075".
fn pair_runs(file: &ResultsFile) -> Option<String> {
    let mut commits = BTreeSet::new();
    let runs: Vec<String> = file
        .groups
        .iter()
        .filter_map(|(name, g)| {
            let pair = g.pair_run.as_ref()?;
            commits.insert(g.run.commit.chars().take(7).collect::<String>());
            Some(format!("{name} {} and {}", g.run.date, pair.date))
        })
        .collect();
    if runs.is_empty() {
        return None;
    }
    let commits: Vec<String> = commits.into_iter().collect();
    Some(format!(
        "{}; commit {}",
        runs.join(", "),
        commits.join(", ")
    ))
}

/// Where each run was made, and a warning when the CPUs differ: stacks'
/// ratios move with the hardware (one CPU model favoured the interpreted
/// stacks twice as much as another), which no interval over one run's
/// rounds can cover, so a claim missed there is not only noise.
pub fn machines(file: &ResultsFile, other: &ResultsFile) -> String {
    let describe = |f: &ResultsFile| -> String {
        let runs: BTreeSet<String> = f
            .groups
            .values()
            .map(|g| {
                let commit: String = g.run.commit.chars().take(7).collect();
                format!("{}, {}, commit {commit}", g.run.cpu, g.run.kernel)
            })
            .collect();
        runs.into_iter().collect::<Vec<_>>().join("; ")
    };
    let mut text = format!(
        "This run: {}. The other: {}.",
        describe(file),
        describe(other)
    );
    if !same_cpus(file, other) {
        text.push_str(
            " **The runs were made on different CPUs**: what follows compares machines as well as runs.",
        );
    }
    text
}

/// Whether every group of both runs names one CPU model.
pub fn same_cpus(file: &ResultsFile, other: &ResultsFile) -> bool {
    let cpus: BTreeSet<&str> = file
        .groups
        .values()
        .chain(other.groups.values())
        .map(|g| g.run.cpu.as_str())
        .collect();
    cpus.len() <= 1
}
