//! The report's charts, each made from the results file alone.
//!
//! A chart shows one slice of its figures: when a bench measured several
//! values of a parameter the chart does not plot (kind, window, ...), it
//! takes the preferred one (binary messages, 32 B) or else the most common
//! one, and names it in the subtitle, so that no line mixes two settings.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::data::{
    cmp_values, fmt_bytes, fmt_si, ordered_stacks, params_label, stack_rank, value_text,
    FLOOR_STACK,
};
use super::svg::{Axis, BarChart, BarSeries, LineChart, Scale, Series};
use crate::metrics::{self, Metric};
use crate::results::{Measurement, ResultsFile};
use crate::settings::Profile;
use crate::stacks::STACKS;

/// A chart's file and either its SVG or why it was not drawn.
#[derive(Debug)]
pub struct Plot {
    pub file: &'static str,
    pub title: &'static str,
    pub outcome: Result<String, String>,
}

/// Colours for stacks after the floor (Tableau 10, which stays readable
/// for the common colour-vision deficiencies).
const PALETTE: [&str; 9] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f",
];
const FLOOR_COLOUR: &str = "#666666";
/// Colours for series that are not stacks (profiles, server/client).
const SERIES_PALETTE: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"];

/// A stack keeps its colour in every chart: it follows the stacks table.
pub fn stack_colour(stack: &str) -> String {
    if stack == FLOOR_STACK {
        return FLOOR_COLOUR.to_string();
    }
    let rank = stack_rank(stack);
    let index = if rank < STACKS.len() {
        // The floor takes no palette slot.
        let floor_before = STACKS.iter().take(rank).any(|s| s.name == FLOOR_STACK);
        rank - usize::from(floor_before)
    } else {
        STACKS.len() + stack.bytes().map(usize::from).sum::<usize>()
    };
    PALETTE[index % PALETTE.len()].to_string()
}

/// How a chart picks the value of a parameter it does not plot.
enum Prefer {
    Value(Value),
    Largest,
}

/// Figures of one metric with a finite value.
fn figures<'a>(file: &'a ResultsFile, group: &str, metrics: &[&Metric]) -> Vec<&'a Measurement> {
    file.groups
        .get(group)
        .map(|g| {
            g.measurements
                .iter()
                .filter(|m| metrics.iter().any(|d| d.name == m.metric) && m.value.is_finite())
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps the figures of one setting of every parameter except `free`;
/// returns them and the setting chosen.
fn slice<'a>(
    mut ms: Vec<&'a Measurement>,
    free: &[&str],
    prefer: &[(&str, Prefer)],
) -> (Vec<&'a Measurement>, Vec<(String, Value)>) {
    let keys: std::collections::BTreeSet<String> = ms
        .iter()
        .flat_map(|m| m.params.keys().cloned())
        .filter(|k| !free.contains(&k.as_str()))
        .collect();
    let mut fixed = Vec::new();
    for key in keys {
        let mut counts: Vec<(Value, usize)> = Vec::new();
        for m in &ms {
            let v = m.params.get(&key).cloned().unwrap_or(Value::Null);
            match counts.iter_mut().find(|(x, _)| *x == v) {
                Some((_, n)) => *n += 1,
                None => counts.push((v, 1)),
            }
        }
        counts.sort_by(|a, b| cmp_values(&key, &a.0, &b.0));
        let preferred = prefer
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, p)| match p {
                Prefer::Value(v) => counts.iter().find(|(x, _)| x == v).map(|(x, _)| x.clone()),
                Prefer::Largest => counts.last().map(|(x, _)| x.clone()),
            });
        let most_common = || {
            let most = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
            counts
                .iter()
                .find(|(_, n)| *n == most)
                .map(|(x, _)| x.clone())
                .unwrap_or(Value::Null)
        };
        let chosen = preferred.unwrap_or_else(most_common);
        ms.retain(|m| m.params.get(&key).unwrap_or(&Value::Null) == &chosen);
        if !chosen.is_null() {
            fixed.push((key, chosen));
        }
    }
    (ms, fixed)
}

fn setting_text(fixed: &[(String, Value)]) -> String {
    params_label(fixed, ", ")
}

/// The source most figures come from, and the stacks whose figures come
/// from another one (marked with `*` in the chart).
fn odd_sources(ms: &[&Measurement]) -> (String, BTreeMap<String, String>) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in ms {
        *counts.entry(m.source.as_str()).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    let main = counts
        .iter()
        .find(|(_, n)| **n == most)
        .map(|(s, _)| s.to_string())
        .unwrap_or_default();
    let odd = ms
        .iter()
        .filter(|m| m.source != main)
        .map(|m| (m.stack.clone(), m.source.clone()))
        .collect();
    (main, odd)
}

fn odd_note(main: &str, odd: &BTreeMap<String, String>) -> Option<String> {
    if odd.is_empty() {
        return None;
    }
    let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (stack, source) in odd {
        by_source.entry(source).or_default().push(stack);
    }
    let parts: Vec<String> = by_source
        .iter()
        .map(|(source, stacks)| format!("{} from {source}", stacks.join(", ")))
        .collect();
    Some(format!(
        "* {}; the others from {main}: compare with care.",
        parts.join("; ")
    ))
}

fn stack_label(stack: &str, odd: &BTreeMap<String, String>) -> String {
    if odd.contains_key(stack) {
        format!("{stack}*")
    } else {
        stack.to_string()
    }
}

fn missing(file: &ResultsFile, group: &str, metrics: &[&Metric]) -> String {
    if file.groups.contains_key(group) {
        let names: Vec<&str> = metrics.iter().map(|m| m.name).collect();
        format!("group {group} has no {} figures", names.join("/"))
    } else {
        format!("group {group} was not measured")
    }
}

fn latency_percentiles(file: &ResultsFile) -> Result<String, String> {
    const METRICS: [(&Metric, &str); 4] = [
        (&metrics::RTT_P50_US, "p50"),
        (&metrics::RTT_P90_US, "p90"),
        (&metrics::RTT_P99_US, "p99"),
        (&metrics::RTT_P999_US, "p99.9"),
    ];
    let names: Vec<&Metric> = METRICS.iter().map(|(m, _)| *m).collect();
    let all = figures(file, "latency", &names);
    if all.is_empty() {
        return Err(missing(file, "latency", &names));
    }
    let prefer = [
        ("kind", Prefer::Value("binary".into())),
        ("size_bytes", Prefer::Value(32.into())),
    ];
    let (ms, fixed) = slice(all, &[], &prefer);
    let stacks = ordered_stacks(ms.iter().map(|m| m.stack.as_str()));
    let series: Vec<BarSeries> = stacks
        .iter()
        .map(|stack| BarSeries {
            name: stack.clone(),
            colour: stack_colour(stack),
            values: METRICS
                .iter()
                .map(|(metric, _)| {
                    ms.iter()
                        .find(|m| &m.stack == stack && m.metric == metric.name)
                        .map(|m| m.value)
                })
                .collect(),
        })
        .collect();
    let scale = Scale::auto(ms.iter().map(|m| m.value), 20.0);
    BarChart {
        title: "Round-trip latency percentiles".into(),
        subtitle: setting_text(&fixed),
        x_label: "percentile".into(),
        categories: METRICS.iter().map(|(_, label)| label.to_string()).collect(),
        y: Axis::new("round trip (µs), lower is better", scale),
        series,
        notes: vec![],
    }
    .to_svg()
    .map_err(|e| e.to_string())
}

/// One line per stack of `metric` against the numeric parameter `x_param`.
struct LinePlot<'a> {
    group: &'a str,
    metric: &'static Metric,
    x_param: &'a str,
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x_format: fn(f64) -> String,
    prefer: Vec<(&'a str, Prefer)>,
    /// Parameters besides `x_param` that may change along the curve (each
    /// value is noted under the chart): the scaling points measured with
    /// the client in worker processes, the CPUs of each server thread count.
    free: Vec<&'a str>,
}

fn line_plot(file: &ResultsFile, p: LinePlot) -> Result<String, String> {
    let all: Vec<&Measurement> = figures(file, p.group, &[p.metric])
        .into_iter()
        .filter(|m| m.params.get(p.x_param).and_then(Value::as_f64).is_some())
        .collect();
    if all.is_empty() {
        return Err(missing(file, p.group, &[p.metric]));
    }
    let free: Vec<&str> = std::iter::once(p.x_param)
        .chain(p.free.iter().copied())
        .collect();
    let (ms, fixed) = slice(all, &free, &p.prefer);
    let distinct_xs: BTreeSet<String> = ms
        .iter()
        .filter_map(|m| m.params.get(p.x_param).map(value_text))
        .collect();
    if distinct_xs.len() < 2 {
        return Err(format!(
            "only one value of {} ({}): no curve to draw",
            p.x_label,
            distinct_xs.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let stacks = ordered_stacks(ms.iter().map(|m| m.stack.as_str()));
    let (main, odd) = odd_sources(&ms);
    let mut notes: Vec<String> = odd_note(&main, &odd).into_iter().collect();
    for param in &p.free {
        let mut at: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for m in &ms {
            if let (Some(v), Some(x)) = (m.params.get(*param), m.params.get(p.x_param)) {
                let xs = at.entry(value_text(v)).or_default();
                let x = x.as_f64().unwrap_or(f64::NAN);
                if !xs.contains(&x) {
                    xs.push(x);
                }
            }
        }
        for (v, xs) in at {
            let xs: Vec<String> = xs.into_iter().map(p.x_format).collect();
            notes.push(format!("{param} {v} at {} {}", p.x_label, xs.join(", ")));
        }
    }
    let series: Vec<Series> = stacks
        .iter()
        .map(|stack| Series {
            name: stack_label(stack, &odd),
            colour: stack_colour(stack),
            dashed: stack == FLOOR_STACK,
            points: ms
                .iter()
                .filter(|m| &m.stack == stack)
                .filter_map(|m| {
                    m.params
                        .get(p.x_param)
                        .and_then(Value::as_f64)
                        .map(|x| (x, m.value))
                })
                .collect(),
        })
        .collect();
    let xs: Vec<f64> = ms
        .iter()
        .filter_map(|m| m.params.get(p.x_param).and_then(Value::as_f64))
        .collect();
    let x = Axis::new(p.x_label, Scale::auto(xs.iter().copied(), 8.0))
        .with_format(p.x_format)
        .with_ticks(xs, 9);
    let y = Axis::new(p.y_label, Scale::auto(ms.iter().map(|m| m.value), 20.0));
    LineChart {
        title: p.title.to_string(),
        subtitle: setting_text(&fixed),
        x,
        y,
        series,
        notes,
    }
    .to_svg()
    .map_err(|e| e.to_string())
}

fn fmt_count(v: f64) -> String {
    fmt_si(v)
}

/// Bars per stack, one per value of `series_param` or per metric.
fn memory_per_conn(file: &ResultsFile) -> Result<String, String> {
    let metric: &Metric = &metrics::LIVE_BYTES_PER_IDLE_CONN;
    let all = figures(file, "memory", &[metric]);
    if all.is_empty() {
        return Err(missing(file, "memory", &[metric]));
    }
    // The most connections spread fixed costs thinnest: the fairest per-connection figure.
    let (ms, fixed) = slice(all, &["profile"], &[("conns", Prefer::Largest)]);
    let stacks = ordered_stacks(ms.iter().map(|m| m.stack.as_str()));
    let mut profiles: Vec<Value> = Vec::new();
    for m in &ms {
        let v = m.params.get("profile").cloned().unwrap_or(Value::Null);
        if !profiles.contains(&v) {
            profiles.push(v);
        }
    }
    profiles.sort_by(|a, b| cmp_values("profile", a, b));
    let (main, odd) = odd_sources(&ms);
    let series: Vec<BarSeries> = profiles
        .iter()
        .enumerate()
        .map(|(i, profile)| BarSeries {
            name: if profile.is_null() {
                "(no profile)".into()
            } else {
                value_text(profile)
            },
            colour: profile_colour(profile, i),
            values: stacks
                .iter()
                .map(|stack| {
                    ms.iter()
                        .find(|m| {
                            &m.stack == stack
                                && m.params.get("profile").unwrap_or(&Value::Null) == profile
                        })
                        .map(|m| m.value)
                })
                .collect(),
        })
        .collect();
    let scale = Scale::auto(ms.iter().map(|m| m.value), 30.0);
    BarChart {
        title: "Live memory per idle connection".into(),
        subtitle: setting_text(&fixed),
        x_label: "stack".into(),
        categories: stacks.iter().map(|s| stack_label(s, &odd)).collect(),
        y: Axis::bytes("live bytes per idle connection, lower is better", scale),
        series,
        notes: odd_note(&main, &odd).into_iter().collect(),
    }
    .to_svg()
    .map_err(|e| e.to_string())
}

/// Profiles keep their colour across runs: by their place in the settings.
fn profile_colour(profile: &Value, fallback: usize) -> String {
    let text = value_text(profile);
    let index = Profile::ALL
        .iter()
        .position(|p| p.as_str() == text)
        .unwrap_or(fallback);
    SERIES_PALETTE[index % SERIES_PALETTE.len()].to_string()
}

fn cpu_per_msg(file: &ResultsFile) -> Result<String, String> {
    const METRICS: [(&Metric, &str); 2] = [
        (&metrics::SERVER_CPU_NS_PER_MSG, "server"),
        (&metrics::CLIENT_CPU_NS_PER_MSG, "client"),
    ];
    let names: Vec<&Metric> = METRICS.iter().map(|(m, _)| *m).collect();
    let all = figures(file, "latency", &names);
    if all.is_empty() {
        return Err(missing(file, "latency", &names));
    }
    let prefer = [
        ("kind", Prefer::Value("binary".into())),
        ("size_bytes", Prefer::Value(32.into())),
    ];
    let (ms, fixed) = slice(all, &[], &prefer);
    let stacks = ordered_stacks(ms.iter().map(|m| m.stack.as_str()));
    let (main, odd) = odd_sources(&ms);
    let series: Vec<BarSeries> = METRICS
        .iter()
        .enumerate()
        .map(|(i, (metric, label))| BarSeries {
            name: label.to_string(),
            colour: SERIES_PALETTE[i].to_string(),
            values: stacks
                .iter()
                .map(|stack| {
                    ms.iter()
                        .find(|m| &m.stack == stack && m.metric == metric.name)
                        .map(|m| m.value)
                })
                .collect(),
        })
        .collect();
    let scale = Scale::auto(ms.iter().map(|m| m.value), 30.0);
    BarChart {
        title: "CPU time per message (latency benchmark)".into(),
        subtitle: setting_text(&fixed),
        x_label: "stack".into(),
        categories: stacks.iter().map(|s| stack_label(s, &odd)).collect(),
        y: Axis::new("CPU ns per message, lower is better", scale),
        series,
        notes: odd_note(&main, &odd).into_iter().collect(),
    }
    .to_svg()
    .map_err(|e| e.to_string())
}

/// One line per stack of the `load` group's steps at `conns`
/// connections: `metric` against the rate each step offered (read from
/// the same step's `offered_msgs_per_s`), both axes logarithmic when the
/// values span enough.
fn load_curve(
    file: &ResultsFile,
    conns: u64,
    metric: &'static Metric,
    title: &str,
    y_label: &str,
    y_scale: Option<Scale>,
) -> Result<String, String> {
    let at_conns = |m: &&Measurement| {
        m.params.get("conns").and_then(Value::as_u64) == Some(conns)
            && m.params.contains_key("step")
    };
    let ys: Vec<&Measurement> = figures(file, "load", &[metric])
        .into_iter()
        .filter(at_conns)
        .collect();
    if ys.is_empty() {
        return Err(format!(
            "no {} figures at {conns} connections in the load group",
            metric.name
        ));
    }
    let offered: BTreeMap<(&str, &str), f64> =
        figures(file, "load", &[&metrics::OFFERED_MSGS_PER_S])
            .into_iter()
            .filter(at_conns)
            .map(|m| ((m.stack.as_str(), m.bench.as_str()), m.value))
            .collect();
    let behind: Vec<String> = figures(file, "load", &[&metrics::CLIENT_BEHIND])
        .into_iter()
        .filter(at_conns)
        .filter(|m| m.value > 0.0)
        .map(|m| {
            format!(
                "{} at step {}",
                m.stack,
                m.param("step").unwrap_or_default()
            )
        })
        .collect();
    let stacks = ordered_stacks(ys.iter().map(|m| m.stack.as_str()));
    let (main, odd) = odd_sources(&ys);
    let series: Vec<Series> = stacks
        .iter()
        .map(|stack| {
            let mut points: Vec<(f64, f64)> = ys
                .iter()
                .filter(|m| &m.stack == stack)
                .filter_map(|m| {
                    offered
                        .get(&(m.stack.as_str(), m.bench.as_str()))
                        .map(|x| (*x, m.value))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: stack_label(stack, &odd),
                colour: stack_colour(stack),
                dashed: stack == FLOOR_STACK,
                points,
            }
        })
        .collect();
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let x = Axis::new(
        "offered rate (messages per second)",
        Scale::auto(xs.iter().copied(), 8.0),
    );
    let y_values = ys.iter().map(|m| m.value);
    let y = Axis::new(
        y_label,
        y_scale.unwrap_or_else(|| Scale::auto(y_values, 20.0)),
    );
    let mut notes: Vec<String> = odd_note(&main, &odd).into_iter().collect();
    notes.push(
        "Each stack's steps are fractions of its own closed-loop rate, so the lines cover different rates."
            .to_string(),
    );
    if !behind.is_empty() {
        notes.push(format!(
            "The client was behind its schedule (these points are the client's): {}.",
            behind.join(", ")
        ));
    }
    LineChart {
        title: title.to_string(),
        subtitle: format!(
            "{conns} connections, 32 B binary messages, open loop at a constant rate"
        ),
        x,
        y,
        series,
        notes,
    }
    .to_svg()
    .map_err(|e| e.to_string())
}

/// The secure group's cost of `cell` against the plain cell, per stack and
/// message size: the server's CPU per message in `cell` over the same
/// stack's in `plain`, throughput of JSON-like text.
fn secure_cost(file: &ResultsFile, cell: &str, title: &str) -> Result<String, String> {
    let metric: &Metric = &metrics::SERVER_CPU_NS_PER_MSG;
    let all: Vec<&Measurement> = figures(file, "secure", &[metric])
        .into_iter()
        .filter(|m| {
            m.params.get("workload").and_then(Value::as_str) == Some("throughput")
                && m.params.get("content").and_then(Value::as_str) == Some("json")
        })
        .collect();
    let of = |m: &Measurement, c: &str| m.params.get("cell").and_then(Value::as_str) == Some(c);
    let size = |m: &Measurement| m.params.get("size_bytes").and_then(Value::as_f64);
    let mut points: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for m in all.iter().filter(|m| of(m, cell)) {
        let Some(x) = size(m) else { continue };
        let plain = all
            .iter()
            .find(|p| p.stack == m.stack && of(p, "plain") && size(p) == Some(x));
        if let Some(plain) = plain.filter(|p| p.value > 0.0) {
            points
                .entry(m.stack.clone())
                .or_default()
                .push((x, m.value / plain.value));
        }
    }
    if points.is_empty() {
        return Err(format!(
            "no {cell} and plain throughput figures in the secure group"
        ));
    }
    let stacks = ordered_stacks(points.keys().map(String::as_str));
    let xs: Vec<f64> = points.values().flatten().map(|p| p.0).collect();
    let ys: Vec<f64> = points.values().flatten().map(|p| p.1).collect();
    let series = stacks
        .iter()
        .map(|stack| Series {
            name: stack.clone(),
            colour: stack_colour(stack),
            dashed: stack == FLOOR_STACK,
            points: points[stack].clone(),
        })
        .collect();
    LineChart {
        title: title.to_string(),
        subtitle: "one connection, JSON-like text, server CPU per message over the plain cell's"
            .into(),
        x: Axis::new("message size", Scale::auto(xs.iter().copied(), 8.0))
            .with_format(fmt_bytes)
            .with_ticks(xs, 9),
        y: Axis::new(
            "server CPU per message, times plain's (1 = free)",
            Scale::auto(ys, 20.0),
        ),
        series,
        notes: Vec::new(),
    }
    .to_svg()
    .map_err(|e| e.to_string())
}

/// Every chart, in the order the summary lists them.
pub fn all(file: &ResultsFile) -> Vec<Plot> {
    vec![
        Plot {
            file: "latency_percentiles.svg",
            title: "Round-trip latency percentiles",
            outcome: latency_percentiles(file),
        },
        Plot {
            file: "throughput_vs_size.svg",
            title: "Throughput against message size",
            outcome: line_plot(
                file,
                LinePlot {
                    group: "throughput",
                    metric: &metrics::MIB_PER_S,
                    x_param: "size_bytes",
                    title: "Throughput against message size",
                    x_label: "message size",
                    y_label: "throughput (MiB/s), higher is better",
                    x_format: fmt_bytes,
                    prefer: vec![("kind", Prefer::Value("binary".into()))],
                    free: vec![],
                },
            ),
        },
        Plot {
            file: "scaling_msgs_per_s.svg",
            title: "Messages per second against connections",
            outcome: line_plot(
                file,
                LinePlot {
                    group: "scaling",
                    metric: &metrics::MSGS_PER_S,
                    x_param: "conns",
                    title: "Messages per second against connections",
                    x_label: "concurrent connections",
                    y_label: "messages per second, higher is better",
                    x_format: fmt_count,
                    prefer: vec![],
                    free: vec!["client_procs"],
                },
            ),
        },
        Plot {
            file: "scaling_p99.svg",
            title: "p99 round trip against connections",
            outcome: line_plot(
                file,
                LinePlot {
                    group: "scaling",
                    metric: &metrics::RTT_P99_US,
                    x_param: "conns",
                    title: "p99 round trip against connections",
                    x_label: "concurrent connections",
                    y_label: "p99 round trip (µs), lower is better",
                    x_format: fmt_count,
                    prefer: vec![],
                    free: vec!["client_procs"],
                },
            ),
        },
        Plot {
            file: "cores_msgs_per_s.svg",
            title: "Messages per second against server threads",
            outcome: line_plot(
                file,
                LinePlot {
                    group: "cores",
                    metric: &metrics::MSGS_PER_S,
                    x_param: "server_threads",
                    title: "Messages per second against server threads, each on a CPU of its own",
                    x_label: "server threads",
                    y_label: "messages per second, higher is better",
                    x_format: fmt_count,
                    prefer: vec![],
                    free: vec!["server_cpus"],
                },
            ),
        },
        Plot {
            file: "cores_p99.svg",
            title: "p99 round trip against server threads",
            outcome: line_plot(
                file,
                LinePlot {
                    group: "cores",
                    metric: &metrics::RTT_P99_US,
                    x_param: "server_threads",
                    title: "p99 round trip against server threads, each on a CPU of its own",
                    x_label: "server threads",
                    y_label: "p99 round trip (µs), lower is better",
                    x_format: fmt_count,
                    prefer: vec![],
                    free: vec!["server_cpus"],
                },
            ),
        },
        Plot {
            file: "load_p99_100.svg",
            title: "p99 latency from the intended send against offered rate, 100 connections",
            outcome: load_curve(
                file,
                100,
                &metrics::CORRECTED_P99_US,
                "p99 latency against offered rate, 100 connections",
                "p99 from the intended send (µs), lower is better",
                Some(Scale::Log),
            ),
        },
        Plot {
            file: "load_p99_1000.svg",
            title: "p99 latency from the intended send against offered rate, 1,000 connections",
            outcome: load_curve(
                file,
                1000,
                &metrics::CORRECTED_P99_US,
                "p99 latency against offered rate, 1,000 connections",
                "p99 from the intended send (µs), lower is better",
                Some(Scale::Log),
            ),
        },
        Plot {
            file: "load_cpu_100.svg",
            title: "Server CPU per message against offered rate, 100 connections",
            outcome: load_curve(
                file,
                100,
                &metrics::SERVER_CPU_NS_PER_MSG,
                "Server CPU per message against offered rate, 100 connections",
                "server CPU per message (ns), lower is better",
                None,
            ),
        },
        Plot {
            file: "load_cpu_1000.svg",
            title: "Server CPU per message against offered rate, 1,000 connections",
            outcome: load_curve(
                file,
                1000,
                &metrics::SERVER_CPU_NS_PER_MSG,
                "Server CPU per message against offered rate, 1,000 connections",
                "server CPU per message (ns), lower is better",
                None,
            ),
        },
        Plot {
            file: "broadcast_p99.svg",
            title: "p99 delivery latency against room size",
            outcome: line_plot(
                file,
                LinePlot {
                    group: "broadcast",
                    metric: &metrics::CORRECTED_P99_US,
                    x_param: "room",
                    title: "p99 delivery latency against room size",
                    x_label: "members of the room",
                    y_label: "p99 from the intended send (µs), lower is better",
                    x_format: fmt_count,
                    prefer: vec![],
                    free: vec![],
                },
            ),
        },
        Plot {
            file: "broadcast_deliveries.svg",
            title: "Deliveries per second against room size",
            outcome: line_plot(
                file,
                LinePlot {
                    group: "broadcast",
                    metric: &metrics::DELIVERIES_PER_S,
                    x_param: "room",
                    title: "Deliveries per second against room size",
                    x_label: "members of the room",
                    y_label: "deliveries per second, higher is better",
                    x_format: fmt_count,
                    prefer: vec![],
                    free: vec![],
                },
            ),
        },
        Plot {
            file: "memory_per_conn.svg",
            title: "Live memory per idle connection",
            outcome: memory_per_conn(file),
        },
        Plot {
            file: "cpu_per_msg.svg",
            title: "CPU time per message",
            outcome: cpu_per_msg(file),
        },
        Plot {
            file: "secure_tls_cost.svg",
            title: "What TLS costs the server per message, by message size",
            outcome: secure_cost(
                file,
                "tls",
                "Server CPU per message over TLS, times plain TCP's",
            ),
        },
        Plot {
            file: "secure_deflate_cost.svg",
            title: "What permessage-deflate costs the server per message, by message size",
            outcome: secure_cost(
                file,
                "deflate",
                "Server CPU per message with permessage-deflate, times uncompressed",
            ),
        },
    ]
}
