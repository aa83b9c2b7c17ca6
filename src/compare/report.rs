//! From the rounds of two builds to verdicts, and from verdicts to the
//! table, Markdown and JSON. Nothing here measures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::metrics::{self, Kind, MetricDef};
use super::stats::{self, Interval, NoInterval, Verdict};

/// Which interval judges timings. One method today; the option stays so
/// that `--method paired` and the JSON's `"method": "paired"` keep meaning
/// what they meant.
///
/// An unpaired method (the ratio of each build's medians, each build's
/// rounds resampled on their own) was dropped: a percentile bootstrap of a
/// median of a few rounds does not reach the coverage it names, and the
/// ratio of two independent medians has no distribution-free interval
/// short of assuming both builds' rounds differ by a pure shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// One ratio per round: the median over its windows of head_k/base_k,
    /// window k of each build measured back to back; the interval is that
    /// of the median of the rounds' ratios, from their order statistics.
    Paired,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Paired => "paired",
        }
    }
}

/// Every round's values of one metric of one stack. Round r of the base and
/// round r of the head were measured together, window by window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    /// The whole-round figure of each round.
    pub base: Vec<f64>,
    pub head: Vec<f64>,
    /// Each round's per-window figures (empty for untimed metrics).
    #[serde(default)]
    pub base_windows: Vec<Vec<f64>>,
    #[serde(default)]
    pub head_windows: Vec<Vec<f64>>,
}

impl Samples {
    /// One head/base ratio per round: the median of the window ratios when
    /// both builds have the same windows, else the whole-round ratio.
    /// `None` when a ratio is undefined (a zero base).
    pub fn round_ratios(&self) -> Option<Vec<f64>> {
        let rounds = self.base.len().min(self.head.len());
        (0..rounds)
            .map(
                |r| match (self.base_windows.get(r), self.head_windows.get(r)) {
                    (Some(b), Some(h)) if !b.is_empty() && b.len() == h.len() => {
                        let pairs: Vec<(f64, f64)> =
                            b.iter().copied().zip(h.iter().copied()).collect();
                        stats::median(&stats::paired_ratios(&pairs)?)
                    }
                    _ => stats::ratio(self.base[r], self.head[r]),
                },
            )
            .collect()
    }
}

/// How timings are judged.
#[derive(Debug, Clone, Copy)]
pub struct Judging {
    pub method: Method,
    pub threshold: f64,
    /// The coverage asked of each interval ([`stats::CONFIDENCE`]).
    pub confidence: f64,
}

/// One line of the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub stack: String,
    pub metric: String,
    /// The phase of the quick set that measured it (latency/32B, ...).
    #[serde(default)]
    pub phase: String,
    pub unit: String,
    /// "timing" or "exact".
    pub kind: String,
    /// Medians over rounds.
    pub base: f64,
    pub head: f64,
    /// head / base: for timings the median of the rounds' ratios, for
    /// exact metrics the ratio of the medians; `None` when base is zero.
    pub ratio: Option<f64>,
    /// The interval of the median ratio (timings only): order statistics
    /// of the rounds' ratios.
    pub interval: Option<Interval>,
    /// The exact probability that `interval` holds the median ratio (0.961
    /// for 12 rounds at 95% asked); `None` without an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// The paired method's ratio of each round (timings only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_ratios: Vec<f64>,
    pub verdict: Verdict,
    /// Something the reader should know: an exact metric that varied
    /// between rounds of one build, a missing side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub base_rounds: Vec<f64>,
    pub head_rounds: Vec<f64>,
}

/// Judges one metric of one stack.
pub fn judge(stack: &str, def: &MetricDef, samples: &Samples, how: &Judging) -> Row {
    let base_median = stats::median(&samples.base).unwrap_or(f64::NAN);
    let head_median = stats::median(&samples.head).unwrap_or(f64::NAN);
    let mut row = Row {
        stack: stack.to_string(),
        metric: def.name().to_string(),
        phase: def.phase.to_string(),
        unit: def.unit().to_string(),
        kind: match def.kind {
            Kind::Timing => "timing",
            Kind::Exact { .. } => "exact",
        }
        .to_string(),
        base: base_median,
        head: head_median,
        ratio: stats::ratio(base_median, head_median),
        interval: None,
        coverage: None,
        round_ratios: Vec::new(),
        verdict: Verdict::Inconclusive,
        note: None,
        base_rounds: samples.base.clone(),
        head_rounds: samples.head.clone(),
    };
    if samples.base.is_empty() || samples.head.is_empty() {
        row.note = Some("not measured on both sides".into());
        return row;
    }
    match def.kind {
        Kind::Timing => {
            let Some(ratios) = samples.round_ratios() else {
                row.ratio = None;
                row.note = Some("no interval: a base value is zero".into());
                return row;
            };
            row.ratio = stats::median(&ratios);
            match stats::median_interval(&ratios, how.confidence) {
                Ok(m) => {
                    row.interval = Some(m.interval);
                    row.coverage = Some(m.rank.coverage);
                    row.verdict = stats::timing_verdict(m.interval, def.better(), how.threshold);
                }
                Err(NoInterval::TooFew { values, needed }) => {
                    row.note = Some(format!(
                        "no interval: {values} rounds are too few for {}% ({needed} needed)",
                        fmt_percent(how.confidence)
                    ));
                }
                Err(NoInterval::Undefined) => {
                    row.note = Some("no interval: a ratio is undefined".into());
                }
            }
            row.round_ratios = ratios;
        }
        Kind::Exact { tolerance } => {
            row.verdict = stats::exact_verdict(base_median, head_median, def.better(), tolerance);
            let varied: Vec<String> = [("base", &samples.base), ("head", &samples.head)]
                .into_iter()
                .filter(|(_, v)| spread(v) > 0.0)
                .map(|(side, v)| format!("{side} by {}", fmt_value(spread(v))))
                .collect();
            if !varied.is_empty() {
                row.note = Some(format!("rounds varied: {}", varied.join(", ")));
            }
        }
    }
    row
}

fn spread(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    if xs.is_empty() {
        0.0
    } else {
        max - min
    }
}

/// Judges every metric of the table for every stack, in stack order then
/// table order. `samples` is keyed by (stack, [`MetricDef::key`]).
pub fn judge_all(
    stacks: &[String],
    samples: &BTreeMap<(String, String), Samples>,
    how: &Judging,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for stack in stacks {
        for def in metrics::METRICS {
            if let Some(s) = samples.get(&(stack.clone(), def.key())) {
                rows.push(judge(stack, def, s, how));
            }
        }
    }
    rows
}

fn fmt_value(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1000.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// 95 for 0.95, 96.1 for 0.9614: one decimal unless it is zero.
pub fn fmt_percent(p: f64) -> String {
    let pct = format!("{:.1}", p * 100.0);
    pct.strip_suffix(".0").map(str::to_string).unwrap_or(pct)
}

/// What the interval column means, for the header of the table: the
/// method, the confidence asked and the coverage `rounds` give exactly.
pub fn interval_legend(rounds: usize, confidence: f64) -> String {
    match stats::median_rank(rounds, confidence) {
        Some(r) => format!(
            "interval: order statistics {} and {} of the {rounds} sorted round ratios, \
             {}% requested, {}% exact (distribution-free)",
            r.k,
            rounds + 1 - r.k,
            fmt_percent(confidence),
            fmt_percent(r.coverage)
        ),
        None => format!(
            "no interval: {rounds} rounds are too few for {}% ({} needed); \
             timings are inconclusive",
            fmt_percent(confidence),
            stats::min_values_for(confidence)
        ),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "-".into())
}

fn fmt_interval(row: &Row) -> String {
    match (&row.interval, row.kind.as_str()) {
        (Some(i), _) => format!("{:.3}..{:.3}", i.lo, i.hi),
        // Exact metrics have no interval; the difference says more than a
        // ratio, which is undefined from zero.
        (None, "exact") => {
            let diff = row.head - row.base;
            let sign = if diff >= 0.0 { "+" } else { "" };
            format!("exact, {sign}{}", fmt_value(diff))
        }
        (None, _) => "-".into(),
    }
}

fn cells(row: &Row) -> [String; 7] {
    [
        if row.phase.is_empty() {
            format!("{} ({})", row.metric, row.unit)
        } else {
            format!("{} ({}, {})", row.metric, row.unit, row.phase)
        },
        row.stack.clone(),
        fmt_value(row.base),
        fmt_value(row.head),
        fmt_ratio(row.ratio),
        fmt_interval(row),
        match &row.note {
            Some(n) => format!("{} ({n})", row.verdict.as_str()),
            None => row.verdict.as_str().to_string(),
        },
    ]
}

const HEADERS: [&str; 7] = [
    "metric", "stack", "base", "head", "ratio", "interval", "verdict",
];

/// The plain-text table for the terminal.
pub fn text_table(rows: &[Row]) -> String {
    let all: Vec<[String; 7]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(str::len);
    for r in &all {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            // Numbers right-aligned, words left-aligned.
            if (2..=4).contains(&i) {
                let _ = write!(l, "{c:>w$}  ");
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &HEADERS);
    for r in &all {
        line(&mut out, &r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// The table as Markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", HEADERS.join(" | "));
    out.push_str("| --- | --- | ---: | ---: | ---: | --- | --- |\n");
    for r in rows {
        let mut c = cells(r);
        if r.verdict == Verdict::Regression {
            c[6] = format!("**{}**", c[6]);
        }
        let _ = writeln!(out, "| {} |", c.join(" | "));
    }
    out
}

/// Rows whose verdict is a regression.
pub fn regressions(rows: &[Row]) -> usize {
    rows.iter()
        .filter(|r| r.verdict == Verdict::Regression)
        .count()
}

/// "1 regression, 2 improvements, 40 no change, 11 inconclusive".
pub fn summary(rows: &[Row]) -> String {
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    let regressions = count(Verdict::Regression);
    let improvements = count(Verdict::Improvement);
    format!(
        "{regressions} regression{}, {improvements} improvement{}, {} no change, {} inconclusive",
        if regressions == 1 { "" } else { "s" },
        if improvements == 1 { "" } else { "s" },
        count(Verdict::NoChange),
        count(Verdict::Inconclusive)
    )
}
