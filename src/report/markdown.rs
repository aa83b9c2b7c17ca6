//! `summary.md`: the run, then one table per group with the stacks side by
//! side, the charts, the flamegraphs and criterion's estimates.
//!
//! Every number is read from the results file or criterion's files; the
//! only text written here by hand is what the groups and sources mean.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use super::claims::{best_of_row, fmt_times, key_metrics, row_versus};
use super::criterion::CriterionScan;
use super::data::{
    cmp_groups, cmp_stacks, fmt_bytes, fmt_duration_ns, fmt_num, fmt_sig, fmt_value,
    ordered_stacks, params_label, row_ratios, unit_label, value_text, Cell, Pivot, FLOOR_STACK,
};
use super::flamegraphs::FlamePlan;
use super::plots::Plot;
use crate::metrics::{self, Better, Source};
use crate::results::{GroupResults, Measurement, ResultsFile, RunInfo};
use crate::rounds::CLAIM_THRESHOLD;

/// Everything the summary is made from.
pub struct Inputs<'a> {
    pub results_path: &'a Path,
    pub criterion_dir: &'a Path,
    pub file: &'a ResultsFile,
    pub groups_present: &'a [String],
    pub groups_missing: &'a [String],
    pub plots: &'a [Plot],
    pub flames: &'a FlamePlan,
    pub criterion: &'a CriterionScan,
}

/// What each group measures, in a sentence.
fn group_blurb(group: &str) -> Option<&'static str> {
    Some(match group {
        "latency" => "Round trips on one connection with one message in flight.",
        "throughput" => "Messages streamed with a window of messages in flight.",
        "scaling" => {
            "Many concurrent connections; `connect` is the rate of new handshakes. Points with \
             `client_procs` ran the client as that many worker processes (`wsbench worker`, each verifying \
             its echoes, their histograms added up exactly), where both ends of every connection would not fit \
             in one process's descriptors: the server's process then holds one per connection."
        }
        "cores" => {
            "The server on 1, 2, 4, ... worker threads (`server_threads`), each thread count on as many CPUs \
             of its own (`server_cpus`), at `conns` connections with one message in flight each; the client \
             as `client_procs` worker processes, one per CPU of its own (`client_cpus`). \
             `server_core_share` and `client_core_share` are CPU time over wall time, in cores: a curve that \
             flattens while the client's share is near its `client_procs` is the client's limit. Thread \
             counts this machine cannot place are listed as skipped, with the reason."
        }
        "load" => {
            "Fixed offered rates, open loop: each step is a fraction (`step`) of the stack's own closed-loop \
             rate; `corrected_*` is latency from the intended send time, `rtt_p99_us` from the actual send; \
             the knees are the highest offered rate within a p99 limit with 99% answered; \
             `server_cpu_ms_per_million_msgs` is every stack at one common `rate`."
        }
        "broadcast" => {
            "One room per stack, every message to every member (the sender included), five members sending \
             at a fixed total `rate` of broadcasts per second, open loop, grown through the `room` sizes; \
             `corrected_*` is a delivery's latency from the broadcast's intended send time; \
             `room_capacity_conns` is the largest room whose p99 stayed within `p99_limit_us` with every delivery \
             made; past the first room over that limit only the largest is run, for half as long, for its memory \
             and cost (its latency is a backlog, and not comparable). \
             The `slow-consumer` entries: a room of 100 in which one member stops reading for `pause_ms`; \
             `bench_peak_rss_bytes` is the bench process's own peak over a stack's rooms."
        }
        "headroom" => {
            "Whether the client is lighter than the leanest servers: `client_cpu_per_server_cpu` is the client's \
             CPU over the server's for the same verified round trips, on each client `driver`, in closed loops \
             of `conns` connections with `window` messages in flight; near or above 1, a server as fast would be \
             measured at the client's limit."
        }
        "memory" => "Allocations per round trip, and live bytes per idle connection under each settings profile.",
        "placement" => {
            "The same round trip with the threads placed differently; `rtt_cv` is the coefficient of \
             variation of round trips over repeated rounds (lower = more stable)."
        }
        "conformance" => "RFC 6455 cases: ✓ = behaves as the RFC asks, ✗ = does not (the outcome follows).",
        "leak" => "Live bytes left over after many connect/close cycles; near zero means nothing leaks.",
        "secure" => {
            "What `wss://` and permessage-deflate cost: every stack over plain TCP (`plain`) and TLS (`tls`), \
             and the stacks with permessage-deflate compressed too (`deflate`, `tls+deflate`), on one \
             connection through the one driver that speaks all four; `content` is JSON-like text or random \
             bytes; `frame_bytes_per_message_byte` is the echoes' frame bytes per message byte (below 1 where \
             compression paid); handshakes are full TLS handshakes (no resumption). Memory per idle \
             connection in each cell is in the memory group (`cell`)."
        }
        _ => return None,
    })
}

/// What a source is, for the marks on figures that do not come from the
/// same place as the rest of their table.
fn source_meaning(source: &str) -> &'static str {
    Source::parse(source)
        .map(Source::meaning)
        .unwrap_or("see the bench that wrote it")
}

/// Lower or higher is better, from the catalogue; `None` for metrics it
/// lacks (an older file) or that are neither.
fn better_of(name: &str) -> Option<Better> {
    metrics::find(name)
        .map(|m| m.better)
        .filter(|b| *b != Better::Neither)
}

/// The load group's tables in reading order: the knees, equal work, then
/// each step's figures ([`crate::workload::LOAD_FIGURES`]).
const LOAD_HEAD: &[&metrics::Metric] = &[
    &metrics::KNEE_MSGS_PER_S,
    &metrics::SERVER_CPU_MS_PER_MILLION_MSGS,
];

/// The broadcast group's tables in reading order: the capacity, the slow
/// consumer's finding, then each room size's figures.
const BROADCAST_HEAD: &[&metrics::Metric] =
    &[&metrics::ROOM_CAPACITY_CONNS, &metrics::SLOW_DISCONNECTED];

/// Key metrics first, then the known ones in their order, then the rest by name.
fn metric_order(group: &str, metric: &str) -> (usize, usize, String) {
    let position = |list: &[&metrics::Metric]| list.iter().position(|k| k.name == metric);
    let first = match group {
        "load" => position(LOAD_HEAD)
            .or_else(|| position(crate::workload::LOAD_FIGURES).map(|i| i + LOAD_HEAD.len())),
        "broadcast" => {
            use crate::workload::broadcast::{ROOM_FIGURES, SLOW_FIGURES};
            position(BROADCAST_HEAD)
                .or_else(|| position(ROOM_FIGURES).map(|i| i + BROADCAST_HEAD.len()))
                .or_else(|| {
                    position(SLOW_FIGURES).map(|i| i + BROADCAST_HEAD.len() + ROOM_FIGURES.len())
                })
        }
        _ => position(key_metrics(group)),
    };
    match first {
        Some(i) => (0, i, String::new()),
        None => match metrics::ALL.iter().position(|m| m.name == metric) {
            Some(i) => (1, i, String::new()),
            None => (2, 0, metric.to_string()),
        },
    }
}

/// A table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Marks for figures from an unusual source, numbered through the document.
#[derive(Default)]
struct Marks {
    by_source: BTreeMap<String, String>,
}

impl Marks {
    const SYMBOLS: [&'static str; 6] = ["†", "‡", "§", "¶", "◊", "※"];

    fn mark(&mut self, source: &str) -> String {
        let next = self.by_source.len();
        self.by_source
            .entry(source.to_string())
            .or_insert_with(|| {
                Self::SYMBOLS
                    .get(next)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("*{next}"))
            })
            .clone()
    }
}

/// A table of numbers: columns right-aligned so that digits line up.
fn table_header(out: &mut String, first: &str, columns: &[String]) {
    table_header_aligned(out, first, columns, "---:|");
}

/// A table of text: columns left-aligned.
fn text_table_header(out: &mut String, first: &str, columns: &[String]) {
    table_header_aligned(out, first, columns, "---|");
}

fn table_header_aligned(out: &mut String, first: &str, columns: &[String], align: &str) {
    let _ = writeln!(
        out,
        "| {} | {} |",
        cell(first),
        columns
            .iter()
            .map(|c| cell(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|{}", align.repeat(columns.len()));
}

fn table_row(out: &mut String, first: &str, cells: &[String]) {
    let _ = writeln!(
        out,
        "| {} | {} |",
        cell(first),
        cells
            .iter()
            .map(|c| cell(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

pub fn render(inp: &Inputs) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# wsbench report\n");
    let _ = writeln!(
        out,
        "Made from `{}`. Every figure below comes from that file (or, where marked, from criterion's \
         files under `{}`); `results.json` and `results.csv` beside this file hold all of them.\n",
        inp.results_path.display(),
        inp.criterion_dir.display()
    );
    let quick: Vec<&str> = inp
        .groups_present
        .iter()
        .filter(|g| inp.file.groups[*g].run.quick)
        .map(String::as_str)
        .collect();
    if !quick.is_empty() {
        let _ = writeln!(
            out,
            "> **Quick run** (`WSBENCH_QUICK=1`) for {}: shorter sweeps and measuring times. Good for \
             checking that everything works, not for conclusions.\n",
            quick.join(", ")
        );
    }
    let _ = writeln!(out, "Groups measured: {}.", inp.groups_present.join(", "));
    if inp.groups_missing.is_empty() {
        let _ = writeln!(out, "\nEvery group of the suite was measured.\n");
    } else {
        let _ = writeln!(
            out,
            "\n**Not measured in this run: {}.** Run `cargo bench` (or `cargo bench --bench <group>`) to \
             measure them; each bench adds its group to the results file and keeps the others.\n",
            inp.groups_missing.join(", ")
        );
    }
    runs_section(&mut out, inp);
    let mut marks = Marks::default();
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "Stacks are columns, in the order of the stacks table; `{FLOOR_STACK}` is the floor: the same \
         echo over plain TCP with no WebSocket. Ratios say how many times slower (or costlier) a stack \
         is than the fastest WebSocket stack of the row and than the floor: 1.00× = as good.\n"
    );
    for group in inp.groups_present {
        group_section(&mut out, group, &inp.file.groups[group], &mut marks);
    }
    plots_section(&mut out, inp.plots);
    flames_section(&mut out, inp);
    criterion_section(&mut out, inp);
    out
}

/// Whether two run records differ only in their date: the groups of one
/// `cargo bench`, measured one after another by the same code, on the same
/// machine, with the same settings.
fn same_setup(a: &RunInfo, b: &RunInfo) -> bool {
    RunInfo {
        date: String::new(),
        ..a.clone()
    } == RunInfo {
        date: String::new(),
        ..b.clone()
    }
}

/// The run info, once per distinct setup (run records that differ only in
/// their date are one): one column per setup, headed by the groups it
/// measured, with the dates of its first and last group.
fn runs_section(out: &mut String, inp: &Inputs) {
    let mut runs: Vec<(&RunInfo, Vec<String>, Vec<&str>)> = Vec::new();
    for group in inp.groups_present {
        let run = &inp.file.groups[group].run;
        match runs.iter_mut().find(|(r, _, _)| same_setup(r, run)) {
            Some((_, groups, dates)) => {
                groups.push(group.clone());
                dates.push(&run.date);
            }
            None => runs.push((run, vec![group.clone()], vec![&run.date])),
        }
    }
    if runs.len() == 1 {
        let _ = writeln!(
            out,
            "## Run\n\nAll groups come from one setup: the same commit, machine, settings and versions.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "## Runs\n\nThe groups come from {} different setups (commit, machine, settings or versions): compare figures across groups with care.\n",
            runs.len()
        );
    }
    let headers: Vec<String> = runs.iter().map(|(_, g, _)| g.join(", ")).collect();
    text_table_header(out, "", &headers);
    type Field = fn(&RunInfo) -> String;
    let fields: [(&str, Field); 13] = [
        ("commit", |r| format!("`{}`", r.commit)),
        ("cpu", |r| r.cpu.clone()),
        ("cpus", |r| r.cpus.to_string()),
        ("memory", |r| fmt_bytes(r.memory_bytes as f64)),
        ("kernel", |r| r.kernel.clone()),
        ("rustc", |r| r.rustc.clone()),
        ("TCP congestion control", |r| {
            r.tcp_congestion_control.clone()
        }),
        ("allocator", |r| r.malloc.clone()),
        ("client driver", |r| r.client_driver.clone()),
        ("placement", |r| r.placement.clone()),
        ("server threads", |r| r.server_threads.to_string()),
        ("client threads", |r| r.client_threads.to_string()),
        ("quick", |r| {
            if r.quick {
                "yes (WSBENCH_QUICK=1)".into()
            } else {
                "no".into()
            }
        }),
    ];
    let dates: Vec<String> = runs
        .iter()
        .map(|(_, _, dates)| {
            let first = dates.iter().min().expect("a date per group");
            let last = dates.iter().max().expect("a date per group");
            if first == last {
                first.to_string()
            } else {
                format!("{first} to {last}")
            }
        })
        .collect();
    table_row(out, "date", &dates);
    for (name, get) in fields {
        let cells: Vec<String> = runs.iter().map(|(r, _, _)| get(r)).collect();
        table_row(out, name, &cells);
    }
    let _ = writeln!(out);
    // Versions get their own table: one row per stack reads better than a
    // long list in one cell.
    let mut version_sets: Vec<(&BTreeMap<String, String>, Vec<String>)> = Vec::new();
    for (run, groups, _) in &runs {
        match version_sets.iter_mut().find(|(v, _)| *v == &run.versions) {
            Some((_, g)) => g.extend(groups.iter().cloned()),
            None => version_sets.push((&run.versions, groups.clone())),
        }
    }
    let stacks = ordered_stacks(
        version_sets
            .iter()
            .flat_map(|(v, _)| v.keys().map(String::as_str)),
    );
    if stacks.is_empty() {
        let _ = writeln!(out, "The results record no stack versions.\n");
        return;
    }
    let _ = writeln!(out, "### Stack versions\n");
    let headers: Vec<String> = if version_sets.len() == 1 {
        vec!["version".to_string()]
    } else {
        version_sets.iter().map(|(_, g)| g.join(", ")).collect()
    };
    text_table_header(out, "stack", &headers);
    for stack in &stacks {
        let cells: Vec<String> = version_sets
            .iter()
            .map(|(v, _)| v.get(stack).cloned().unwrap_or_else(|| "–".into()))
            .collect();
        table_row(out, stack, &cells);
    }
    let _ = writeln!(out);
}

/// The first part of a bench id: `scaling` of `scaling/axum/100`.
fn bench_family(bench: &str) -> &str {
    bench.split('/').next().unwrap_or(bench)
}

fn group_section(out: &mut String, name: &str, group: &GroupResults, marks: &mut Marks) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(blurb) = group_blurb(name) {
        let _ = writeln!(out, "{blurb}\n");
    }
    let stacks = ordered_stacks(group.measurements.iter().map(|m| m.stack.as_str()));
    let _ = writeln!(
        out,
        "{} figures from {} stacks, commit `{}`, {}.\n",
        group.measurements.len(),
        stacks.len(),
        group.run.commit,
        group.run.date
    );
    if group.measurements.is_empty() {
        return;
    }
    let mut used_marks: BTreeSet<String> = BTreeSet::new();
    if name == "conformance" {
        conformance_table(out, group);
    } else {
        let skipped: Vec<&Measurement> = group
            .measurements
            .iter()
            .filter(|m| m.metric == metrics::SKIPPED.name)
            .collect();
        let mut metrics: Vec<&str> = group
            .measurements
            .iter()
            .map(|m| m.metric.as_str())
            .filter(|m| *m != metrics::SKIPPED.name)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        metrics.sort_by_key(|m| metric_order(name, m));
        for metric in metrics {
            let values: Vec<&Measurement> = group
                .measurements
                .iter()
                .filter(|m| m.metric == metric)
                .collect();
            let families: BTreeSet<&str> = values.iter().map(|m| bench_family(&m.bench)).collect();
            let skipped_here: Vec<&Measurement> = skipped
                .iter()
                .copied()
                .filter(|m| families.contains(bench_family(&m.bench)))
                .collect();
            let pivot = Pivot::new(&values, &skipped_here);
            let with_ratios = key_metrics(name).iter().any(|k| k.name == metric);
            metric_table(out, metric, &pivot, with_ratios, marks, &mut used_marks);
        }
        if !skipped.is_empty() {
            let _ = writeln!(out, "Points the bench skipped:\n");
            for m in &skipped {
                let _ = writeln!(
                    out,
                    "- `{}` ({}): {}",
                    m.bench,
                    m.stack,
                    m.detail.as_deref().unwrap_or("no reason given")
                );
            }
            let _ = writeln!(out);
        }
        match name {
            "load" => load_notes(out, group),
            "broadcast" => broadcast_notes(out, group),
            "secure" => secure_matrix(out, group),
            _ => {}
        }
    }
    for source in used_marks {
        let mark = marks.mark(&source);
        let _ = writeln!(
            out,
            "{mark} from `{source}`: {}.  ",
            source_meaning(&source)
        );
    }
    let _ = writeln!(out);
}

/// The secure group per stack: each workload in each cell (plain, TLS,
/// deflate, both), its headline figure and the server's CPU per message,
/// each with its ratio to the plain cell's, and the echoes' frame bytes
/// per message byte where compressed.
fn secure_matrix(out: &mut String, group: &GroupResults) {
    const CELLS: [&str; 4] = ["plain", "tls", "deflate", "tls+deflate"];
    let param = |m: &Measurement, k: &str| m.params.get(k).map(value_text).unwrap_or_default();
    let find = |stack: &str, cell: &str, row: &(String, String, String, String), metric: &str| {
        group.measurements.iter().find(|m| {
            m.stack == stack
                && m.metric == metric
                && param(m, "cell") == cell
                && (
                    param(m, "workload"),
                    param(m, "size_bytes"),
                    param(m, "content"),
                ) == (row.0.clone(), row.1.clone(), row.2.clone())
        })
    };
    let stacks = ordered_stacks(group.measurements.iter().map(|m| m.stack.as_str()));
    let _ = writeln!(
        out,
        "#### The matrix per stack\n\nEach cell: the workload's figure (mean round trip for latency, MiB/s for \
         throughput, new connections per second for handshakes), then the server's CPU per message, each \
         with its ratio to the plain cell's; `B/B` is the echoes' frame bytes per message byte where \
         compressed. A stack without permessage-deflate has no deflate cells (`–`).\n"
    );
    for stack in stacks {
        let mut rows: Vec<(String, String, String, String)> = Vec::new();
        for m in group.measurements.iter().filter(|m| m.stack == stack) {
            let workload = param(m, "workload");
            let primary = match workload.as_str() {
                "latency" => metrics::RTT_MEAN_US.name,
                "throughput" => metrics::MIB_PER_S.name,
                "handshakes" => metrics::HANDSHAKES_PER_S.name,
                _ => continue,
            };
            let row = (
                workload,
                param(m, "size_bytes"),
                param(m, "content"),
                primary.to_string(),
            );
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
        rows.sort_by_key(|r| {
            let order = ["latency", "throughput", "handshakes"];
            let w = order.iter().position(|o| *o == r.0).unwrap_or(9);
            (w, r.1.parse::<u64>().unwrap_or(0), r.2.clone())
        });
        let _ = writeln!(out, "**{stack}**\n");
        let columns: Vec<String> = CELLS.iter().map(|c| c.to_string()).collect();
        table_header(out, "workload", &columns);
        for row in &rows {
            let base = find(&stack, "plain", row, &row.3);
            let base_cpu = find(&stack, "plain", row, metrics::SERVER_CPU_NS_PER_MSG.name);
            let cells: Vec<String> = CELLS
                .iter()
                .map(|cell| {
                    let Some(m) = find(&stack, cell, row, &row.3) else {
                        return "–".to_string();
                    };
                    let ratio = |m: &Measurement, b: Option<&Measurement>| match b {
                        Some(b) if b.value > 0.0 && *cell != "plain" => {
                            format!(" ({:.2}×)", m.value / b.value)
                        }
                        _ => String::new(),
                    };
                    let mut text = format!(
                        "{} {}{}",
                        fmt_value(m.value, &m.unit),
                        unit_label(&m.unit),
                        ratio(m, base)
                    );
                    if let Some(cpu) = find(&stack, cell, row, metrics::SERVER_CPU_NS_PER_MSG.name)
                    {
                        let _ = write!(
                            text,
                            " · {} ns{}",
                            fmt_value(cpu.value, "ns"),
                            ratio(cpu, base_cpu)
                        );
                    }
                    if cell.contains("deflate") {
                        if let Some(f) = find(
                            &stack,
                            cell,
                            row,
                            metrics::FRAME_BYTES_PER_MESSAGE_BYTE.name,
                        ) {
                            let _ = write!(text, " · {:.3} B/B", f.value);
                        }
                    }
                    text
                })
                .collect();
            let label = match row.0.as_str() {
                "handshakes" => "handshakes".to_string(),
                w => format!(
                    "{w} {} {}",
                    row.1.parse::<f64>().map(fmt_bytes).unwrap_or_default(),
                    row.2
                ),
            };
            table_row(out, &label, &cells);
        }
        let _ = writeln!(out);
    }
}

/// What the load group's tables cannot say in a number: knees the sweep
/// did not bracket, and steps where the client fell behind.
fn load_notes(out: &mut String, group: &GroupResults) {
    let noted: Vec<&Measurement> = group
        .measurements
        .iter()
        .filter(|m| {
            m.metric == metrics::KNEE_MSGS_PER_S.name
                || (m.metric == metrics::CLIENT_BEHIND.name && m.value > 0.0)
        })
        .filter(|m| has_detail(m))
        .collect();
    detail_list(out, "Notes on these figures", &noted);
}

/// What the broadcast group's numbers cannot say: what each server did
/// about the member that stopped reading, and where a capacity is a
/// bound or may be the client's.
fn broadcast_notes(out: &mut String, group: &GroupResults) {
    let noted = |metric: &str| -> Vec<&Measurement> {
        group
            .measurements
            .iter()
            .filter(|m| m.metric == metric && has_detail(m))
            .collect()
    };
    let findings = noted(metrics::SLOW_DISCONNECTED.name);
    if !findings.is_empty() {
        let _ = writeln!(
            out,
            "What each server did about the member that stopped reading:\n"
        );
        text_table_header(out, "stack", &["finding".to_string()]);
        for m in findings {
            let _ = writeln!(
                out,
                "| {} | {} |",
                cell(&m.stack),
                cell(m.detail.as_deref().unwrap_or_default())
            );
        }
        let _ = writeln!(out);
    }
    detail_list(
        out,
        "Notes on the capacities",
        &noted(metrics::ROOM_CAPACITY_CONNS.name),
    );
}

fn has_detail(m: &Measurement) -> bool {
    m.detail.as_deref().is_some_and(|d| !d.is_empty())
}

/// `title`, then each measurement's bench, stack and detail as a list;
/// nothing when there are none.
fn detail_list(out: &mut String, title: &str, noted: &[&Measurement]) {
    if noted.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:\n");
    for m in noted {
        let _ = writeln!(
            out,
            "- `{}` ({}): {}",
            m.bench,
            m.stack,
            m.detail.as_deref().unwrap_or_default()
        );
    }
    let _ = writeln!(out);
}

fn metric_table(
    out: &mut String,
    metric: &str,
    pivot: &Pivot,
    with_ratios: bool,
    marks: &mut Marks,
    used_marks: &mut BTreeSet<String>,
) {
    let unit = pivot.main_unit();
    let better = better_of(metric);
    let title = metrics::find(metric)
        .map(|i| format!(": {}", i.title))
        .unwrap_or_default();
    let _ = writeln!(out, "#### `{metric}`{title}\n");
    let mut caption = Vec::new();
    if !unit.is_empty() {
        caption.push(unit_label(&unit).to_string());
    }
    match better {
        Some(Better::Lower) => caption.push("lower is better".into()),
        Some(Better::Higher) => caption.push("higher is better".into()),
        Some(Better::Neither) | None => {}
    }
    let main_source = pivot.main_source();
    if let Some(source) = &main_source {
        caption.push(format!("source `{source}`"));
    }
    if !pivot.constant.is_empty() {
        caption.push(params_label(&pivot.constant, ", "));
    }
    if pivot.duplicates > 0 {
        caption.push(format!(
            "{} repeated figure(s) not shown (the first is)",
            pivot.duplicates
        ));
    }
    let _ = writeln!(out, "{}\n", caption.join(" · "));
    table_header(out, &pivot.varying.join(" · "), &pivot.stacks);
    for row in 0..pivot.rows.len() {
        let cells: Vec<String> = (0..pivot.stacks.len())
            .map(|s| match pivot.cells.get(&(row, s)) {
                Some(Cell::Value(m)) => {
                    let mut text = fmt_value(m.value, &m.unit);
                    if let Some(i) = m.rounds.as_ref().and_then(|r| r.interval) {
                        let _ = write!(
                            text,
                            " ({}–{})",
                            fmt_value(i.lo, &m.unit),
                            fmt_value(i.hi, &m.unit)
                        );
                    }
                    if m.unit != unit && m.unit != "bytes" {
                        text = format!("{text} {}", unit_label(&m.unit));
                    }
                    if main_source.as_deref().is_some_and(|s| s != m.source) {
                        text.push_str(&marks.mark(&m.source));
                        used_marks.insert(m.source.clone());
                    }
                    text
                }
                // Short reasons fit the cell; the list under the table has them all.
                Some(Cell::Skipped(m)) => match m.detail.as_deref() {
                    Some(why) if !why.is_empty() && why.chars().count() <= 32 => {
                        format!("skipped: {why}")
                    }
                    _ => "skipped".to_string(),
                },
                None => "–".to_string(),
            })
            .collect();
        table_row(out, &pivot.row_label(row), &cells);
    }
    let _ = writeln!(out);
    if let (true, Some(better)) = (with_ratios, better) {
        ratio_table(out, pivot, better);
    }
}

fn ratio_table(out: &mut String, pivot: &Pivot, better: Better) {
    let columns: Vec<usize> = (0..pivot.stacks.len())
        .filter(|s| pivot.stacks[*s] != FLOOR_STACK)
        .collect();
    if columns.len() < 2 && !pivot.stacks.iter().any(|s| s == FLOOR_STACK) {
        return;
    }
    let has_floor = pivot.stacks.iter().any(|s| s == FLOOR_STACK);
    if has_floor {
        let _ = writeln!(
            out,
            "Times slower than the fastest WebSocket stack · than `{FLOOR_STACK}`:\n"
        );
    } else {
        let _ = writeln!(out, "Times slower than the fastest WebSocket stack (no `{FLOOR_STACK}` floor in this run):\n");
    }
    let names: Vec<String> = columns.iter().map(|s| pivot.stacks[*s].clone()).collect();
    table_header(out, &pivot.varying.join(" · "), &names);
    let plain = |r: Option<f64>| {
        r.map(|r| format!("{}×", fmt_times(r)))
            .unwrap_or_else(|| "–".into())
    };
    let mut with_rounds = None;
    for row in 0..pivot.rows.len() {
        let ratios = row_ratios(pivot, row, better);
        let versus = row_versus(pivot, row, better);
        // Measured in the same rounds: the ratio with its interval, "≈"
        // within noise; otherwise (deterministic figures) the plain ratio.
        let mut times = |s: usize,
                         paired: Option<crate::report::claims::Versus>,
                         r: Option<f64>| {
            match paired {
                Some(v) => {
                    with_rounds = Some(v);
                    v.text(CLAIM_THRESHOLD)
                }
                None if pivot.value(row, s).is_some_and(|m| m.rounds.is_some()) && r.is_some() => {
                    format!("{} (unpaired)", plain(r))
                }
                None => plain(r),
            }
        };
        let best_stack = best_of_row(pivot, row, better);
        let mut cells = Vec::new();
        for s in &columns {
            let (r, v) = (ratios.get(s), versus.get(s));
            cells.push(match r {
                Some(r) => {
                    let best = if best_stack == Some(*s) {
                        "best".to_string()
                    } else {
                        times(*s, v.and_then(|v| v.to_best), r.to_best)
                    };
                    if has_floor {
                        let floor = times(*s, v.and_then(|v| v.to_floor), r.to_floor);
                        format!("{best} · {floor}")
                    } else {
                        best
                    }
                }
                None => "–".into(),
            });
        }
        table_row(out, &pivot.row_label(row), &cells);
    }
    let _ = writeln!(out);
    if let Some(v) = with_rounds {
        let (r, c, t) = (v.rounds, v.coverage * 100.0, CLAIM_THRESHOLD * 100.0);
        let rule = if v.runs == 2 {
            format!(
                "the span of two intervals, one per run of the pair (this run and a second full run of the same commit), \
                 each of the median of its {r} paired round ratios (order statistics, {c:.1}% coverage); the ratio is this run's. \
                 A ratio is a claim only where both runs' whole intervals lie beyond {t:.0}% the same way"
            )
        } else {
            format!(
                "the interval of the median of the {r} paired round ratios (order statistics, {c:.1}% coverage). \
                 A ratio is a claim only where that whole interval lies beyond {t:.0}% either way"
            )
        };
        let _ = writeln!(
            out,
            "In parentheses: {rule}; ≈ marks the others, within noise (`wsbench claims` lists the claims and checks them against another run).\n"
        );
    }
}

/// Cases as rows, stacks as columns: ✓ when the stack behaves as the RFC
/// asks, ✗ when not, followed by the outcome the probe saw.
fn conformance_table(out: &mut String, group: &GroupResults) {
    let stacks = ordered_stacks(group.measurements.iter().map(|m| m.stack.as_str()));
    // Cases keep the order the bench ran them in: it groups related cases.
    let case_of = |m: &Measurement| m.param("case").unwrap_or_default();
    let mut cases: Vec<String> = Vec::new();
    for m in &group.measurements {
        let case = case_of(m);
        if !cases.contains(&case) {
            cases.push(case);
        }
    }
    text_table_header(out, "case", &stacks);
    let mut passed = vec![0usize; stacks.len()];
    let mut probed = vec![0usize; stacks.len()];
    for case in &cases {
        let cells: Vec<String> = stacks
            .iter()
            .enumerate()
            .map(|(i, stack)| {
                let Some(m) = group
                    .measurements
                    .iter()
                    .find(|m| case_of(m) == *case && &m.stack == stack)
                else {
                    return "–".to_string();
                };
                probed[i] += 1;
                let verdict = if m.value == 1.0 {
                    passed[i] += 1;
                    "✓".to_string()
                } else if m.value == 0.0 {
                    "✗".to_string()
                } else {
                    fmt_num(m.value)
                };
                match m.detail.as_deref().filter(|d| !d.is_empty()) {
                    Some(detail) => format!("{verdict} {detail}"),
                    None => verdict,
                }
            })
            .collect();
        table_row(out, case, &cells);
    }
    let totals: Vec<String> = passed
        .iter()
        .zip(&probed)
        .map(|(p, n)| format!("**{p}/{n}**"))
        .collect();
    table_row(out, "**as the RFC asks**", &totals);
    let _ = writeln!(out);
}

fn plots_section(out: &mut String, plots: &[Plot]) {
    let _ = writeln!(out, "## Charts\n");
    for plot in plots.iter().filter(|p| p.outcome.is_ok()) {
        let _ = writeln!(
            out,
            "### {}\n\n![{}]({})\n",
            plot.title, plot.title, plot.file
        );
    }
    let skipped: Vec<&Plot> = plots.iter().filter(|p| p.outcome.is_err()).collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "Not drawn, for lack of data:\n");
        for plot in skipped {
            let why = plot
                .outcome
                .as_ref()
                .err()
                .map(String::as_str)
                .unwrap_or("");
            let _ = writeln!(out, "- `{}`: {why}.", plot.file);
        }
        let _ = writeln!(out);
    }
}

fn flames_section(out: &mut String, inp: &Inputs) {
    let _ = writeln!(out, "## Flamegraphs\n");
    if inp.flames.all.is_empty() {
        let _ = writeln!(
            out,
            "No flamegraphs under `{}`. To make them, run `cargo bench --bench latency -- --profile-time 5` \
             (criterion then profiles each benchmark instead of measuring it) and make the report again.\n",
            inp.criterion_dir.display()
        );
        return;
    }
    let _ = writeln!(
        out,
        "One per stack, from its small round trip where profiled:\n"
    );
    text_table_header(
        out,
        "stack",
        &["flamegraph".to_string(), "profiled benchmark".to_string()],
    );
    for copy in &inp.flames.per_stack {
        table_row(
            out,
            &copy.stack,
            &[
                format!("[{}]({})", copy.dest, copy.dest),
                format!("`{}`", copy.bench),
            ],
        );
    }
    let _ = writeln!(out, "\nEvery profile found ({}):\n", inp.flames.all.len());
    for copy in &inp.flames.all {
        let _ = writeln!(out, "- [{}]({}): `{}`", copy.dest, copy.dest, copy.bench);
    }
    let _ = writeln!(out);
}

fn criterion_section(out: &mut String, inp: &Inputs) {
    let _ = writeln!(out, "## Criterion\n");
    let index = inp.criterion_dir.join("report").join("index.html");
    if inp.criterion.html_report {
        let _ = writeln!(out, "Criterion's HTML report: `{}`.\n", index.display());
    } else {
        let _ = writeln!(
            out,
            "Criterion's HTML report would be at `{}`; it is not there (run `cargo bench` to make it).\n",
            index.display()
        );
    }
    let mut estimates: Vec<_> = inp.criterion.estimates.iter().collect();
    estimates.sort_by(|a, b| {
        let (ga, gb) = (
            a.full_id.split('/').next().unwrap_or(""),
            b.full_id.split('/').next().unwrap_or(""),
        );
        let sa = a.function_id.as_deref().unwrap_or("");
        let sb = b.function_id.as_deref().unwrap_or("");
        cmp_groups(ga, gb)
            .then_with(|| cmp_stacks(sa, sb))
            .then_with(|| a.full_id.cmp(&b.full_id))
    });
    if estimates.is_empty() {
        let _ = writeln!(
            out,
            "No criterion estimates under `{}`.\n",
            inp.criterion_dir.display()
        );
    } else {
        let _ = writeln!(out, "### Criterion estimates\n");
        let _ = writeln!(
            out,
            "Time per iteration from criterion's last measured run of each benchmark, which may be older \
             than the results file. They are also in `results.csv` with source `criterion`.\n"
        );
        let _ = writeln!(out, "| id | mean | 95% CI | median |\n|---|---:|---:|---:|");
        for e in estimates {
            let level = if (e.confidence_level - 0.95).abs() > 1e-9 {
                format!(" ({}%)", fmt_sig(e.confidence_level * 100.0, 3))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} – {}{level} | {} |",
                cell(&e.full_id),
                fmt_duration_ns(e.mean_ns),
                fmt_duration_ns(e.mean_lower_ns),
                fmt_duration_ns(e.mean_upper_ns),
                fmt_duration_ns(e.median_ns)
            );
        }
        let _ = writeln!(out);
    }
    if !inp.criterion.notes.is_empty() {
        const SHOWN: usize = 20;
        let _ = writeln!(out, "Criterion files that could not be read (skipped):\n");
        for note in inp.criterion.notes.iter().take(SHOWN) {
            let _ = writeln!(out, "- {}", cell(note));
        }
        if inp.criterion.notes.len() > SHOWN {
            let _ = writeln!(out, "- and {} more", inp.criterion.notes.len() - SHOWN);
        }
        let _ = writeln!(out);
    }
}
