//! `results.csv`: every figure as one row, for spreadsheets and scripts.
//!
//! Fields are quoted as RFC 4180 asks (a field with a comma, a quote or a
//! line break is wrapped in quotes, its quotes doubled), because details
//! such as conformance outcomes are free text.

use std::collections::BTreeMap;

use super::criterion::{split_id, Estimate};
use super::data::{cmp_groups, params_kv};
use crate::results::{Measurement, ResultsFile, RunInfo};

pub const HEADER: [&str; 17] = [
    "group",
    "bench",
    "stack",
    "stack_version",
    "params",
    "metric",
    "value",
    "unit",
    "source",
    "placement",
    "detail",
    "commit",
    "date",
    "interval_lo",
    "interval_hi",
    "interval_coverage",
    "rounds",
];

/// One field, quoted when it must be.
pub fn field(text: &str) -> String {
    let needs_quotes = text.contains([',', '"', '\n', '\r'])
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace);
    if needs_quotes {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn push_row(out: &mut String, fields: &[&str]) {
    let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&line.join(","));
    out.push('\n');
}

/// `f64`'s own shortest text, which reads back to the same number.
fn number(v: f64) -> String {
    format!("{v}")
}

fn measurement_row(out: &mut String, group: &str, m: &Measurement, run: &RunInfo) {
    // Figures measured in interleaved rounds: their interval and the
    // value of each round (separated by spaces).
    let r = m.rounds.as_ref();
    let interval = r.and_then(|r| r.interval);
    let opt = |v: Option<f64>| v.map(number).unwrap_or_default();
    let rounds: Vec<String> = r
        .map(|r| r.values.iter().map(|v| number(*v)).collect())
        .unwrap_or_default();
    push_row(
        out,
        &[
            group,
            &m.bench,
            &m.stack,
            &m.stack_version,
            &params_kv(&m.params),
            &m.metric,
            &number(m.value),
            &m.unit,
            &m.source,
            &m.placement,
            m.detail.as_deref().unwrap_or(""),
            &run.commit,
            &run.date,
            &opt(interval.map(|i| i.lo)),
            &opt(interval.map(|i| i.hi)),
            &opt(r.and_then(|r| r.coverage)),
            &rounds.join(" "),
        ],
    );
}

/// Criterion's estimates as rows with source `criterion`. The run columns
/// come from the results group of the same name when there is one; the
/// estimates themselves are from criterion's last run of that benchmark.
fn estimate_rows(out: &mut String, file: &ResultsFile, e: &Estimate, stacks: &[String]) {
    let (_, stack, _) = split_id(&e.full_id, stacks);
    let group_name = e.group_id.split('/').next().unwrap_or(&e.group_id);
    let run = file.groups.get(group_name).map(|g| &g.run);
    let version = run
        .and_then(|r| r.versions.get(&stack))
        .map(String::as_str)
        .unwrap_or("");
    let mut params = BTreeMap::new();
    if let Some((kind, n)) = &e.throughput {
        params.insert(format!("throughput_{kind}"), serde_json::Value::from(*n));
    }
    let params = params_kv(&params);
    let level = format!("confidence level {}", e.confidence_level);
    let figures = [
        ("criterion_mean_ns", e.mean_ns, ""),
        (
            "criterion_mean_ci_lower_ns",
            e.mean_lower_ns,
            level.as_str(),
        ),
        (
            "criterion_mean_ci_upper_ns",
            e.mean_upper_ns,
            level.as_str(),
        ),
        ("criterion_median_ns", e.median_ns, ""),
    ];
    for (metric, value, detail) in figures {
        push_row(
            out,
            &[
                &e.group_id,
                &e.full_id,
                &stack,
                version,
                &params,
                metric,
                &number(value),
                "ns",
                "criterion",
                run.map(|r| r.placement.as_str()).unwrap_or(""),
                detail,
                run.map(|r| r.commit.as_str()).unwrap_or(""),
                run.map(|r| r.date.as_str()).unwrap_or(""),
                "",
                "",
                "",
                "",
            ],
        );
    }
}

/// The whole file: results in group order (file order within a group),
/// then criterion's estimates.
pub fn render(file: &ResultsFile, estimates: &[Estimate], stacks: &[String]) -> String {
    let mut out = String::new();
    push_row(&mut out, &HEADER);
    let mut groups: Vec<(&String, _)> = file.groups.iter().collect();
    groups.sort_by(|a, b| cmp_groups(a.0, b.0));
    for (name, group) in groups {
        for m in &group.measurements {
            measurement_row(&mut out, name, m, &group.run);
        }
    }
    for e in estimates {
        estimate_rows(&mut out, file, e, stacks);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field(""), "");
    }
}
