//! The report step on small synthetic results: which files it writes, what
//! they say, and that a failed report never damages the previous one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use wsbench::report::{generate, ReportOptions, ReportSummary};
use wsbench::results::{GroupResults, Measurement, ResultsFile, RunInfo, SCHEMA_VERSION};

const PLOTS: [&str; 6] = [
    "latency_percentiles.svg",
    "throughput_vs_size.svg",
    "scaling_msgs_per_s.svg",
    "scaling_p99.svg",
    "memory_per_conn.svg",
    "cpu_per_msg.svg",
];

/// A fresh, empty directory of its own for each test.
fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("wsbench-report-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(dir: &Path) -> ReportOptions {
    ReportOptions {
        results_path: dir.join("results.json"),
        criterion_dir: dir.join("criterion"),
        out_dir: dir.join("reports"),
        publish_dir: dir.join("target-reports"),
        pair_path: None,
    }
}

fn run_info() -> RunInfo {
    let versions = [
        ("raw-tcp", "tokio 1.48.0"),
        ("tokio-tungstenite", "tokio-tungstenite 0.29.0"),
        ("axum", "axum 0.8.9"),
        ("python-aiohttp", "aiohttp 3.12.0"),
    ];
    RunInfo {
        commit: "0123abcd-dirty".into(),
        date: "2026-05-01T12:00:00Z".into(),
        cpu: "Synthetic CPU @ 3.00GHz".into(),
        cpus: 2,
        memory_bytes: 8 << 30,
        kernel: "Linux 6.8.0".into(),
        rustc: "rustc 1.95.0".into(),
        placement: "same-core".into(),
        server_threads: 1,
        client_threads: 1,
        quick: false,
        tcp_congestion_control: "bbr".into(),
        echo: "flush-each".into(),
        malloc: "glibc, mmap threshold fixed at 131072 B".into(),
        client_driver: "io_uring".into(),
        versions: versions
            .iter()
            .map(|(s, v)| (s.to_string(), v.to_string()))
            .collect(),
    }
}

const STACKS: [&str; 4] = ["raw-tcp", "tokio-tungstenite", "axum", "python-aiohttp"];

fn version(stack: &str) -> String {
    run_info().versions.get(stack).cloned().unwrap_or_default()
}

/// A cell's figures: one measurement of `bench` per (metric, value, unit,
/// source).
fn cell(
    group: &str,
    bench: &str,
    stack: &str,
    params: &Value,
    figures: &[(&str, f64, &str, &str)],
) -> Vec<Measurement> {
    figures
        .iter()
        .map(|&(metric, value, unit, source)| {
            m(
                group,
                bench,
                stack,
                params.clone(),
                metric,
                value,
                unit,
                source,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn m(
    group: &str,
    bench: &str,
    stack: &str,
    params: Value,
    metric: &str,
    value: f64,
    unit: &str,
    source: &str,
) -> Measurement {
    let params: BTreeMap<String, Value> = match params {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    Measurement {
        group: group.into(),
        bench: bench.into(),
        stack: stack.into(),
        stack_version: version(stack),
        params,
        metric: metric.into(),
        value,
        unit: unit.into(),
        source: source.into(),
        placement: "same-core".into(),
        detail: None,
        rounds: None,
    }
}

/// Slower stacks later in the list, Python much slower: enough spread for
/// ratios and log scales.
fn factor(stack: &str) -> f64 {
    match stack {
        "raw-tcp" => 1.0,
        "tokio-tungstenite" => 1.3,
        "axum" => 1.4,
        _ => 6.0,
    }
}

fn latency() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS {
        let f = factor(stack);
        let params = json!({"size_bytes": 32, "kind": "binary", "conns": 1, "window": 1});
        let bench = format!("latency/{stack}/binary/32B");
        for (metric, us) in [
            ("rtt_mean_us", 11.0),
            ("rtt_p50_us", 10.0),
            ("rtt_p90_us", 12.0),
            ("rtt_p99_us", 20.0),
            ("rtt_p999_us", 45.0),
        ] {
            out.push(m(
                "latency",
                &bench,
                stack,
                params.clone(),
                metric,
                us * f,
                "us",
                "histogram",
            ));
        }
        out.push(m(
            "latency",
            &bench,
            stack,
            params.clone(),
            "round_trips_per_s",
            100_000.0 / f,
            "msgs/s",
            "wallclock",
        ));
        let cpu_source = if stack.starts_with("python") {
            "proc"
        } else {
            "schedstat"
        };
        out.push(m(
            "latency",
            &bench,
            stack,
            params.clone(),
            "server_cpu_ns_per_msg",
            3000.0 * f,
            "ns",
            cpu_source,
        ));
        out.push(m(
            "latency",
            &bench,
            stack,
            params.clone(),
            "client_cpu_ns_per_msg",
            2500.0,
            "ns",
            cpu_source,
        ));
    }
    out
}

fn throughput() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS {
        for size in [64u64, 4096, 1 << 20] {
            let params = json!({"size_bytes": size, "kind": "binary", "window": 64, "conns": 1});
            let bench = format!("throughput/{stack}/binary/{size}B");
            let mib = size as f64 / 64.0 * 10.0 / factor(stack);
            out.push(m(
                "throughput",
                &bench,
                stack,
                params.clone(),
                "mib_per_s",
                mib,
                "MiB/s",
                "wallclock",
            ));
            let msgs = mib * 1048576.0 / size as f64;
            out.push(m(
                "throughput",
                &bench,
                stack,
                params,
                "msgs_per_s",
                msgs,
                "msgs/s",
                "wallclock",
            ));
        }
    }
    out
}

fn scaling() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS {
        for conns in [1u64, 10, 100, 1000] {
            let params = json!({"conns": conns, "size_bytes": 32, "window": 1});
            let bench = format!("scaling/{stack}/{conns}");
            if stack == "python-aiohttp" && conns == 1000 {
                let mut skipped = m(
                    "scaling",
                    &bench,
                    stack,
                    params,
                    "skipped",
                    0.0,
                    "bool",
                    "wallclock",
                );
                skipped.detail = Some("file descriptor limit".into());
                out.push(skipped);
                continue;
            }
            let msgs = 50_000.0 * (conns as f64).sqrt() / factor(stack);
            let c = conns as f64;
            out.extend(cell(
                "scaling",
                &bench,
                stack,
                &params,
                &[
                    ("msgs_per_s", msgs, "msgs/s", "wallclock"),
                    ("rtt_p50_us", 10.0 * c, "us", "histogram"),
                    ("rtt_p99_us", 30.0 * c, "us", "histogram"),
                    ("rtt_p999_us", 60.0 * c, "us", "histogram"),
                ],
            ));
        }
        // The point past one process's descriptors, its client in a worker.
        if !stack.starts_with("python") {
            out.push(m(
                "scaling",
                &format!("scaling/{stack}/19000"),
                stack,
                json!({"conns": 19000, "size_bytes": 32, "window": 1, "client_procs": 1}),
                "msgs_per_s",
                50_000.0 * 1000f64.sqrt() / factor(stack),
                "msgs/s",
                "wallclock",
            ));
        }
        let bench = format!("connect/{stack}");
        out.push(m(
            "scaling",
            &bench,
            stack,
            json!({}),
            "handshakes_per_s",
            9000.0 / factor(stack),
            "conns/s",
            "wallclock",
        ));
    }
    out
}

/// Two thread counts, the Rust stacks only, and a third this machine
/// could not place.
fn cores() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS.iter().filter(|s| !s.starts_with("python")) {
        for (threads, cpus) in [(1u64, "1"), (2, "2-3"), (4, "4-7")] {
            let params = json!({"conns": 1000, "size_bytes": 32, "window": 1,
                "server_threads": threads, "server_cpus": cpus, "client_cpus": "0-1",
                "client_procs": 2});
            let bench = format!("cores/{stack}/{threads}");
            if threads == 4 {
                let mut skipped = m(
                    "cores", &bench, stack, params, "skipped", 0.0, "bool", "harness",
                );
                skipped.detail = Some("4 server thread(s) need as many CPUs".into());
                out.push(skipped);
                continue;
            }
            let msgs = 80_000.0 * threads as f64 / factor(stack);
            out.extend(cell(
                "cores",
                &bench,
                stack,
                &params,
                &[
                    ("msgs_per_s", msgs, "msgs/s", "wallclock"),
                    ("rtt_p99_us", 900.0, "us", "histogram"),
                ],
            ));
        }
    }
    out
}

fn memory() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS {
        let source = if stack.starts_with("python") {
            "rss"
        } else {
            "allocator"
        };
        let bench = format!("memory/{stack}/binary/32B");
        let params = json!({"size_bytes": 32, "kind": "binary"});
        out.push(m(
            "memory",
            &bench,
            stack,
            params.clone(),
            "server_allocs_per_rtt",
            2.0 * factor(stack) - 2.0,
            "allocs",
            source,
        ));
        out.push(m(
            "memory",
            &bench,
            stack,
            params,
            "server_alloc_bytes_per_rtt",
            64.0 * factor(stack),
            "bytes",
            source,
        ));
        for (profile, bytes) in [
            ("suite", 140_000.0),
            ("small-buffers", 12_000.0),
            ("defaults", 150_000.0),
        ] {
            let params = json!({"profile": profile, "conns": 1000});
            let bench = format!("memory/{stack}/idle/{profile}");
            out.push(m(
                "memory",
                &bench,
                stack,
                params,
                "live_bytes_per_idle_conn",
                bytes * factor(stack),
                "bytes",
                source,
            ));
        }
        out.push(m(
            "memory",
            &format!("memory/{stack}/peak"),
            stack,
            json!({"conns": 1000}),
            "peak_live_bytes",
            1e8,
            "bytes",
            source,
        ));
        // A metric this report has never heard of still gets a table.
        out.push(m(
            "memory",
            &format!("memory/{stack}/odd"),
            stack,
            json!({}),
            "mystery_widgets",
            7.0,
            "widgets",
            source,
        ));
    }
    out
}

fn placement() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS {
        for (placement, us) in [
            ("same-core", 10.0),
            ("split-cores", 60.0),
            ("unpinned", 40.0),
        ] {
            let params = json!({"placement": placement, "rounds": 5});
            let bench = format!("placement/{stack}/{placement}");
            out.push(m(
                "placement",
                &bench,
                stack,
                params.clone(),
                "rtt_p50_us",
                us * factor(stack),
                "us",
                "histogram",
            ));
            out.push(m(
                "placement",
                &bench,
                stack,
                params,
                "rtt_cv",
                0.05,
                "ratio",
                "histogram",
            ));
        }
    }
    out
}

fn conformance() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS.iter().filter(|s| **s != "raw-tcp") {
        for (case, ok, detail) in [
            ("unmasked_client_frame", true, "closed with 1002"),
            (
                "oversized_control_frame",
                *stack != "python-aiohttp",
                "answered \"pong\", then closed, 1002",
            ),
        ] {
            let bench = format!("conformance/{stack}/{case}");
            let mut c = m(
                "conformance",
                &bench,
                stack,
                json!({ "case": case }),
                "conforms",
                if ok { 1.0 } else { 0.0 },
                "bool",
                "probe",
            );
            c.detail = Some(detail.into());
            out.push(c);
        }
    }
    out
}

fn leak() -> Vec<Measurement> {
    STACKS
        .iter()
        .map(|stack| {
            let bench = format!("leak/{stack}");
            m(
                "leak",
                &bench,
                stack,
                json!({"cycles": 1000}),
                "live_bytes_after_cycles_delta",
                0.0,
                "bytes",
                "allocator",
            )
        })
        .collect()
}

/// The load group's kinds of figure: each stack's steps (offered rate and
/// the p99 from the intended send), its knees, and the equal-work figure.
fn load() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS {
        let capacity = 100_000.0 / factor(stack);
        for conns in [100, 1000] {
            for step in [0.5, 1.0, 1.25] {
                let bench = format!("load/{stack}/{conns}/{step}");
                let params =
                    json!({"conns": conns, "size_bytes": 32, "step": step, "arrivals": "constant"});
                let p99_us = if step > 1.0 { 50_000.0 } else { 300.0 * step };
                for (metric, value, unit, source) in [
                    ("offered_msgs_per_s", step * capacity, "msgs/s", "harness"),
                    (
                        "msgs_per_s",
                        step.min(1.0) * capacity,
                        "msgs/s",
                        "wallclock",
                    ),
                    ("corrected_p99_us", p99_us, "us", "histogram"),
                    ("rtt_p99_us", p99_us, "us", "histogram"),
                    (
                        "server_cpu_ns_per_msg",
                        5_000.0 * factor(stack),
                        "ns",
                        "schedstat",
                    ),
                ] {
                    out.push(m(
                        "load",
                        &bench,
                        stack,
                        params.clone(),
                        metric,
                        value,
                        unit,
                        source,
                    ));
                }
            }
            for limit in [1000.0, 10_000.0] {
                let bench = format!("load/{stack}/{conns}/knee-{limit}us");
                let params = json!({"conns": conns, "size_bytes": 32, "p99_limit_us": limit});
                out.push(m(
                    "load",
                    &bench,
                    stack,
                    params,
                    "knee_msgs_per_s",
                    capacity,
                    "msgs/s",
                    "sweep",
                ));
            }
            let bench = format!("load/{stack}/{conns}/equal-work");
            let params = json!({"conns": conns, "size_bytes": 32, "rate": 5000.0});
            out.push(m(
                "load",
                &bench,
                stack,
                params,
                "server_cpu_ms_per_million_msgs",
                8_000.0 * factor(stack),
                "ms",
                "schedstat",
            ));
        }
    }
    out
}

/// The broadcast group's kinds of figure: each stack's room sizes, its
/// capacity, and its slow-consumer finding.
fn broadcast() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in STACKS {
        for room in [100, 1000] {
            let bench = format!("broadcast/{stack}/{room}");
            let params = json!({"room": room, "senders": 5, "rate": 50.0, "size_bytes": 32});
            for (metric, value, unit, source) in [
                (
                    "deliveries_per_s",
                    50.0 * room as f64,
                    "msgs/s",
                    "wallclock",
                ),
                (
                    "corrected_p99_us",
                    room as f64 * factor(stack),
                    "us",
                    "histogram",
                ),
            ] {
                out.push(m(
                    "broadcast",
                    &bench,
                    stack,
                    params.clone(),
                    metric,
                    value,
                    unit,
                    source,
                ));
            }
        }
        let params =
            json!({"p99_limit_us": 100_000.0, "rate": 50.0, "senders": 5, "size_bytes": 32});
        out.push(m(
            "broadcast",
            &format!("broadcast/{stack}/capacity"),
            stack,
            params,
            "room_capacity_conns",
            1000.0,
            "conns",
            "sweep",
        ));
        let params = json!({"room": 100, "senders": 5, "rate": 100.0, "size_bytes": 16384, "pause_ms": 10000});
        let mut finding = m(
            "broadcast",
            &format!("broadcast/{stack}/slow-consumer"),
            stack,
            params,
            "slow_disconnected",
            0.0,
            "bool",
            "client",
        );
        finding.detail =
            Some("buffered for it: all 1000 broadcasts delivered after the pause".into());
        out.push(finding);
    }
    out
}

/// The client against the leanest servers, on each driver.
fn headroom() -> Vec<Measurement> {
    let mut out = Vec::new();
    for stack in ["raw-tcp", "fastwebsockets", "tokio-websockets"] {
        for (driver, ratio) in [("io_uring", 0.9), ("epoll", 1.2)] {
            let params = json!({"conns": 4096, "size_bytes": 20, "window": 1, "driver": driver});
            let bench = format!("headroom/{stack}/{driver}/4096x20/1");
            let server_ns = 9_000.0;
            for (metric, value, unit) in [
                ("client_cpu_per_server_cpu", ratio, "ratio"),
                ("client_cpu_ns_per_msg", ratio * server_ns, "ns"),
                ("server_cpu_ns_per_msg", server_ns, "ns"),
            ] {
                out.push(m(
                    "headroom",
                    &bench,
                    stack,
                    params.clone(),
                    metric,
                    value,
                    unit,
                    "schedstat",
                ));
            }
        }
    }
    out
}

/// Two stacks' cells of the secure group: one without permessage-deflate,
/// one with it; throughput at two sizes and the handshakes.
fn secure() -> Vec<Measurement> {
    let mut out = Vec::new();
    for (stack, cells) in [
        ("tokio-tungstenite", &["plain", "tls"][..]),
        ("yawc", &["plain", "tls", "deflate", "tls+deflate"][..]),
    ] {
        for (i, cell) in cells.iter().enumerate() {
            let cost = 1.0 + i as f64 * 0.5;
            for size in [1024, 16384] {
                let params = json!({"cell": cell, "workload": "throughput", "content": "json",
                    "size_bytes": size, "window": 16, "conns": 1});
                let bench = format!("secure/{stack}/{cell}/throughput/json/{size}B");
                for (metric, value, unit, source) in [
                    ("mib_per_s", 300.0 / cost, "MiB/s", "wallclock"),
                    ("server_cpu_ns_per_msg", 10_000.0 * cost, "ns", "schedstat"),
                    (
                        "frame_bytes_per_message_byte",
                        1.0 / cost,
                        "ratio",
                        "client",
                    ),
                ] {
                    out.push(m(
                        "secure",
                        &bench,
                        stack,
                        params.clone(),
                        metric,
                        value,
                        unit,
                        source,
                    ));
                }
            }
            let params = json!({"cell": cell, "workload": "handshakes", "count": 300});
            out.push(m(
                "secure",
                &format!("secure/{stack}/{cell}/handshakes"),
                stack,
                params,
                "handshakes_per_s",
                5000.0 / cost,
                "conns/s",
                "wallclock",
            ));
        }
    }
    out
}

fn results_with(groups: &[(&str, Vec<Measurement>)]) -> ResultsFile {
    let mut file = ResultsFile {
        schema: SCHEMA_VERSION,
        groups: BTreeMap::new(),
    };
    for (name, measurements) in groups {
        file.replace_group(
            name,
            GroupResults {
                run: run_info(),
                pair_run: None,
                measurements: measurements.clone(),
            },
        );
    }
    file
}

fn full_results() -> ResultsFile {
    results_with(&[
        ("latency", latency()),
        ("throughput", throughput()),
        ("scaling", scaling()),
        ("cores", cores()),
        ("load", load()),
        ("headroom", headroom()),
        ("broadcast", broadcast()),
        ("secure", secure()),
        ("memory", memory()),
        ("placement", placement()),
        ("conformance", conformance()),
        ("leak", leak()),
    ])
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every file below `dir` with its bytes, to check that a directory did not change.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names beside the report that look like a staging or set-aside directory.
fn leftovers(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect()
}

/// Parses CSV as RFC 4180 writes it (quoted fields, doubled quotes).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Well-formed enough: one root element, every opened tag closed in order.
fn assert_svg(svg: &str, what: &str) {
    let trimmed = svg.trim();
    assert!(
        trimmed.starts_with("<svg"),
        "{what} does not start with <svg"
    );
    assert!(
        trimmed.ends_with("</svg>"),
        "{what} does not end with </svg>"
    );
    let mut open: Vec<String> = Vec::new();
    let mut rest = trimmed;
    while let Some(start) = rest.find('<') {
        let end = rest[start..]
            .find('>')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("{what}: unclosed '<'"));
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                open.pop().as_deref(),
                Some(name.trim()),
                "{what}: mismatched </{name}>"
            );
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap_or("").to_string());
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "{what}: unclosed tags {open:?}");
}

/// Criterion's files for one benchmark, as criterion lays them out.
fn fake_criterion_bench(
    criterion: &Path,
    dir: &str,
    full_id: &str,
    mean_ns: f64,
    with_flamegraph: bool,
) {
    let bench_dir = criterion.join(dir);
    let parts: Vec<&str> = full_id.splitn(3, '/').collect();
    std::fs::create_dir_all(bench_dir.join("new")).unwrap();
    let benchmark = json!({
        "group_id": parts[0],
        "function_id": parts.get(1),
        "value_str": parts.get(2),
        "throughput": {"Bytes": 32},
        "full_id": full_id,
        "directory_name": dir,
        "title": full_id,
    });
    std::fs::write(bench_dir.join("new/benchmark.json"), benchmark.to_string()).unwrap();
    let estimate = |point: f64| {
        json!({
            "confidence_interval": {"confidence_level": 0.95, "lower_bound": point * 0.9, "upper_bound": point * 1.1},
            "point_estimate": point,
            "standard_error": 1.0,
        })
    };
    let estimates = json!({
        "mean": estimate(mean_ns),
        "median": estimate(mean_ns * 0.98),
        "median_abs_dev": estimate(1.0),
        "slope": null,
        "std_dev": estimate(2.0),
    });
    std::fs::write(bench_dir.join("new/estimates.json"), estimates.to_string()).unwrap();
    if with_flamegraph {
        std::fs::create_dir_all(bench_dir.join("profile")).unwrap();
        std::fs::write(
            bench_dir.join("profile/flamegraph.svg"),
            format!("<svg><!-- {full_id} --></svg>"),
        )
        .unwrap();
    }
}

fn generate_full(name: &str) -> (PathBuf, ReportOptions, ReportSummary) {
    let dir = scratch(name);
    let opts = options(&dir);
    full_results().save(&opts.results_path).unwrap();
    let criterion = &opts.criterion_dir;
    fake_criterion_bench(
        criterion,
        "latency/axum/binary_32B",
        "latency/axum/binary/32B",
        21_000.0,
        true,
    );
    fake_criterion_bench(
        criterion,
        "latency/axum/text_32B",
        "latency/axum/text/32B",
        22_000.0,
        true,
    );
    fake_criterion_bench(
        criterion,
        "latency/raw-tcp/binary_32B",
        "latency/raw-tcp/binary/32B",
        15_000.0,
        false,
    );
    fake_criterion_bench(
        criterion,
        "throughput/tokio-tungstenite/binary_1MiB",
        "throughput/tokio-tungstenite/binary/1MiB",
        5e6,
        true,
    );
    // A profile with no benchmark.json beside it: named from its path.
    std::fs::create_dir_all(criterion.join("scaling/python-aiohttp/100/profile")).unwrap();
    std::fs::write(
        criterion.join("scaling/python-aiohttp/100/profile/flamegraph.svg"),
        "<svg></svg>",
    )
    .unwrap();
    // Criterion files that do not parse are skipped with a note.
    std::fs::create_dir_all(criterion.join("latency/broken/x/new")).unwrap();
    std::fs::write(
        criterion.join("latency/broken/x/new/benchmark.json"),
        "{ not json",
    )
    .unwrap();
    let summary = generate(&opts).unwrap_or_else(|e| panic!("report failed: {e:#}"));
    (dir, opts, summary)
}

#[test]
fn full_results_make_every_file() {
    let (dir, opts, summary) = generate_full("full");
    let out = &opts.out_dir;
    for file in ["summary.md", "claims.md", "results.json", "results.csv"]
        .iter()
        .chain(PLOTS.iter())
    {
        assert!(out.join(file).is_file(), "{file} missing");
        assert!(
            summary.files.contains(&PathBuf::from(file)),
            "{file} not listed in the summary"
        );
    }
    for flame in [
        "flamegraphs/axum.svg",
        "flamegraphs/tokio-tungstenite.svg",
        "flamegraphs/python-aiohttp.svg",
        "flamegraphs/latency__axum__binary_32B.svg",
        "flamegraphs/latency__axum__text_32B.svg",
        "flamegraphs/throughput__tokio-tungstenite__binary_1MiB.svg",
        "flamegraphs/scaling__python-aiohttp__100.svg",
    ] {
        assert!(out.join(flame).is_file(), "{flame} missing");
    }
    // The stack's own flamegraph is its small binary round trip.
    assert!(read(out.join("flamegraphs/axum.svg")).contains("latency/axum/binary/32B"));
    assert!(
        summary.groups_missing.is_empty(),
        "{:?}",
        summary.groups_missing
    );
    assert!(
        summary.plots_skipped.is_empty(),
        "{:?}",
        summary.plots_skipped
    );
    assert_eq!(summary.groups_present[0], "latency");
    assert_eq!(summary.out_dir, opts.out_dir);
    assert!(
        summary.notes.iter().any(|n| n.contains("broken")),
        "{:?}",
        summary.notes
    );
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn summary_names_the_run_the_stacks_and_the_figures() {
    let (dir, opts, _) = generate_full("summary");
    let md = read(opts.out_dir.join("summary.md"));
    for stack in STACKS {
        assert!(md.contains(stack), "summary.md lacks {stack}");
    }
    for info in [
        "0123abcd-dirty",
        "Synthetic CPU @ 3.00GHz",
        "Linux 6.8.0",
        "rustc 1.95.0",
        "same-core",
        "8 GiB",
        "axum 0.8.9",
    ] {
        assert!(md.contains(info), "summary.md lacks run info {info:?}");
    }
    // One run for all groups: its info appears once.
    assert_eq!(md.matches("Synthetic CPU @ 3.00GHz").count(), 1);
    // Stacks as columns, floor first, in the stacks table's order.
    let header = md
        .lines()
        .find(|l| STACKS.iter().all(|s| l.contains(&format!("| {s} |"))))
        .expect("a table with stacks as columns");
    let order: Vec<usize> = STACKS
        .iter()
        .map(|s| header.find(&format!("| {s} |")).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "stack columns out of order: {header}"
    );
    // The p50 of axum (10 µs × 1.4) and its ratios: 14/13 to the fastest, 1.4 to the floor.
    assert!(md.contains("| 14 |"), "axum's p50 missing");
    assert!(md.contains("1.08× · 1.40×"), "axum's ratios missing");
    // Python's memory comes from rss and its CPU from /proc: marked.
    assert!(md.contains("from `rss`"), "rss figures not marked");
    assert!(md.contains("from `proc`"), "proc figures not marked");
    // Skipped points say why.
    assert!(md.contains("file descriptor limit"));
    // Conformance: cases as rows, verdicts and outcomes in the cells.
    assert!(md.contains("| unmasked_client_frame |"));
    assert!(md.contains("✗ answered \"pong\", then closed, 1002"));
    // A metric the report does not know still gets its table.
    assert!(md.contains("`mystery_widgets`"));
    assert!(md.contains("target/criterion/report/index.html") || md.contains("report/index.html"));
    assert!(md.contains("Criterion estimates"));
    assert!(
        md.contains("`latency/axum/binary/32B` | 21 µs"),
        "criterion estimate missing"
    );
    assert!(md.contains("flamegraphs/axum.svg"));
    for plot in PLOTS {
        assert!(md.contains(plot), "summary.md does not show {plot}");
    }
    assert!(!md.contains("Not measured in this run"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn csv_has_one_row_per_figure_and_quotes_text() {
    let (dir, opts, _) = generate_full("csv");
    let results = full_results();
    let rows = parse_csv(&read(opts.out_dir.join("results.csv")));
    assert_eq!(
        rows[0],
        [
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
            "rounds"
        ]
    );
    assert!(rows.iter().all(|r| r.len() == 17), "rows of unequal width");
    let ours: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[8] != "criterion").collect();
    assert_eq!(ours.len(), results.measurements().count());
    let pong = ours
        .iter()
        .find(|r| r[10].contains("pong"))
        .expect("the conformance detail");
    assert_eq!(pong[10], "answered \"pong\", then closed, 1002");
    let p50 = ours
        .iter()
        .find(|r| r[1] == "latency/axum/binary/32B" && r[5] == "rtt_p50_us")
        .expect("axum's p50");
    assert_eq!(p50[4], "conns=1;kind=binary;size_bytes=32;window=1");
    assert_eq!(p50[6].parse::<f64>().unwrap(), 10.0 * 1.4);
    assert_eq!(
        (p50[11].as_str(), p50[12].as_str()),
        ("0123abcd-dirty", "2026-05-01T12:00:00Z")
    );
    let criterion: Vec<&Vec<String>> = rows.iter().filter(|r| r[8] == "criterion").collect();
    assert!(criterion.iter().any(|r| r[1] == "latency/axum/binary/32B"
        && r[5] == "criterion_mean_ns"
        && r[6] == "21000"));
    assert!(criterion.iter().all(|r| r[7] == "ns"));
    let copy: ResultsFile = serde_json::from_str(&read(opts.out_dir.join("results.json"))).unwrap();
    assert_eq!(copy.measurements().count(), results.measurements().count());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn svgs_are_well_formed_and_name_the_stacks() {
    let (dir, opts, _) = generate_full("svg");
    for plot in PLOTS {
        let svg = read(opts.out_dir.join(plot));
        assert_svg(&svg, plot);
        assert!(svg.contains("<title>"), "{plot} has no title");
        // Labels and legends are SVG text in a font family the viewer
        // has, not glyphs drawn from font files.
        assert!(
            svg.contains("<text") && svg.contains("font-family="),
            "{plot} draws no text"
        );
    }
    for plot in [
        "latency_percentiles.svg",
        "throughput_vs_size.svg",
        "scaling_msgs_per_s.svg",
        "scaling_p99.svg",
    ] {
        let svg = read(opts.out_dir.join(plot));
        for stack in STACKS {
            assert!(svg.contains(stack), "{plot} does not name {stack}");
        }
    }
    for plot in ["memory_per_conn.svg", "cpu_per_msg.svg"] {
        let svg = read(opts.out_dir.join(plot));
        // Python's figures come from elsewhere and are starred.
        assert!(
            svg.contains("python-aiohttp*"),
            "{plot} does not mark python-aiohttp"
        );
        assert!(svg.contains("axum"));
    }
    assert!(read(opts.out_dir.join("memory_per_conn.svg")).contains("small-buffers"));
    let throughput = read(opts.out_dir.join("throughput_vs_size.svg"));
    assert!(throughput.contains("(log scale)"));
    // The tested sizes are the x ticks, read as bytes.
    for tick in ["64 B", "4 KiB", "1 MiB"] {
        assert!(
            throughput.contains(tick),
            "throughput_vs_size.svg has no {tick} tick"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_results_fail_clearly_and_keep_the_old_report() {
    let dir = scratch("missing");
    let opts = options(&dir);
    std::fs::create_dir_all(opts.out_dir.join("flamegraphs")).unwrap();
    std::fs::write(opts.out_dir.join("summary.md"), "the previous report").unwrap();
    std::fs::write(opts.out_dir.join("flamegraphs/axum.svg"), "<svg/>").unwrap();
    let before = snapshot(&opts.out_dir);
    let err = generate(&opts).expect_err("no results file");
    let message = err.to_string();
    assert!(message.contains("cargo bench"), "{message}");
    assert!(message.contains("results.json"), "{message}");
    assert_eq!(snapshot(&opts.out_dir), before);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_json_fails_clearly_and_keeps_the_old_report() {
    let dir = scratch("invalid");
    let opts = options(&dir);
    std::fs::write(&opts.results_path, "{\"schema\": 1, \"groups\": ").unwrap();
    std::fs::create_dir_all(&opts.out_dir).unwrap();
    std::fs::write(opts.out_dir.join("summary.md"), "the previous report").unwrap();
    let before = snapshot(&opts.out_dir);
    let message = generate(&opts).expect_err("invalid JSON").to_string();
    assert!(
        message.contains("not a valid wsbench results file"),
        "{message}"
    );
    assert!(message.contains("results.json"), "{message}");
    assert_eq!(snapshot(&opts.out_dir), before);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn other_schema_and_no_groups_fail_clearly() {
    let dir = scratch("empty");
    let opts = options(&dir);
    ResultsFile {
        schema: SCHEMA_VERSION,
        groups: BTreeMap::new(),
    }
    .save(&opts.results_path)
    .unwrap();
    let message = generate(&opts).expect_err("no groups").to_string();
    assert!(
        message.contains("no benchmark groups") && message.contains("cargo bench"),
        "{message}"
    );
    let mut other = full_results();
    other.schema = SCHEMA_VERSION + 1;
    other.save(&opts.results_path).unwrap();
    let message = generate(&opts).expect_err("other schema").to_string();
    assert!(message.contains("schema"), "{message}");
    assert!(!opts.out_dir.exists());
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_partial_file_reports_what_is_there_and_lists_the_rest() {
    let dir = scratch("partial");
    let opts = options(&dir);
    results_with(&[("latency", latency())])
        .save(&opts.results_path)
        .unwrap();
    let summary = generate(&opts).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(summary.groups_present, ["latency"]);
    assert_eq!(
        summary.groups_missing,
        [
            "throughput",
            "scaling",
            "cores",
            "load",
            "headroom",
            "broadcast",
            "secure",
            "memory",
            "placement",
            "conformance",
            "leak"
        ]
    );
    let md = read(opts.out_dir.join("summary.md"));
    assert!(
        md.contains(
            "Not measured in this run: throughput, scaling, cores, load, headroom, broadcast, secure, memory, placement, conformance, leak"
        ),
        "{md}"
    );
    for plot in ["latency_percentiles.svg", "cpu_per_msg.svg"] {
        assert_svg(&read(opts.out_dir.join(plot)), plot);
    }
    for plot in [
        "throughput_vs_size.svg",
        "scaling_msgs_per_s.svg",
        "scaling_p99.svg",
        "memory_per_conn.svg",
    ] {
        assert!(
            !opts.out_dir.join(plot).exists(),
            "{plot} drawn without data"
        );
        assert!(
            md.contains(&format!("`{plot}`")),
            "summary.md does not say {plot} was skipped"
        );
        assert!(summary.plots_skipped.iter().any(|p| p.starts_with(plot)));
    }
    // No criterion directory: no estimates, and how to make flamegraphs.
    assert!(md.contains("cargo bench --bench latency -- --profile-time 5"));
    assert!(!opts.out_dir.join("flamegraphs").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_scaling_curve_runs_to_the_point_measured_through_workers_and_says_so() {
    let dir = scratch("workers-point");
    let opts = options(&dir);
    results_with(&[("latency", latency()), ("scaling", scaling())])
        .save(&opts.results_path)
        .unwrap();
    generate(&opts).unwrap_or_else(|e| panic!("{e:#}"));
    let svg = read(opts.out_dir.join("scaling_msgs_per_s.svg"));
    assert!(
        svg.contains("client_procs 1 at concurrent connections 19k"),
        "{svg}"
    );
    assert!(svg.contains("19k"), "the 19,000 point is on the axis");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_thread_count_draws_no_core_curve_and_says_why() {
    let dir = scratch("one-core");
    let opts = options(&dir);
    let one: Vec<Measurement> = cores()
        .into_iter()
        .filter(|m| m.params["server_threads"] != 2)
        .collect();
    results_with(&[("latency", latency()), ("cores", one)])
        .save(&opts.results_path)
        .unwrap();
    let summary = generate(&opts).unwrap_or_else(|e| panic!("{e:#}"));
    let md = read(opts.out_dir.join("summary.md"));
    for plot in ["cores_msgs_per_s.svg", "cores_p99.svg"] {
        assert!(
            !opts.out_dir.join(plot).exists(),
            "{plot} drawn from one point"
        );
        assert!(
            md.contains(&format!(
                "`{plot}`: only one value of server threads (1): no curve to draw"
            )),
            "{md}"
        );
        assert!(summary.plots_skipped.iter().any(|p| p.starts_with(plot)));
    }
    // Why the curve ends there, from the bench.
    assert!(md.contains("4 server thread(s) need as many CPUs"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_report_replaces_the_old_one_whole() {
    let dir = scratch("replace");
    let opts = options(&dir);
    std::fs::create_dir_all(&opts.out_dir).unwrap();
    std::fs::write(opts.out_dir.join("stale.svg"), "<svg/>").unwrap();
    results_with(&[("memory", memory())])
        .save(&opts.results_path)
        .unwrap();
    let summary = generate(&opts).unwrap();
    assert!(
        !opts.out_dir.join("stale.svg").exists(),
        "a file of the old report survived"
    );
    assert!(opts.out_dir.join("memory_per_conn.svg").is_file());
    let on_disk: Vec<PathBuf> = snapshot(&opts.out_dir).into_keys().collect();
    assert_eq!(on_disk, summary.files);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn defaults_point_at_the_target_directory() {
    let opts = ReportOptions::defaults();
    assert_eq!(opts.results_path, wsbench::results::default_path());
    assert_eq!(
        opts.criterion_dir,
        wsbench::results::target_dir().join("criterion")
    );
    assert_eq!(
        opts.out_dir,
        wsbench::results::target_dir().join("wsbench/report")
    );
    assert_eq!(opts.publish_dir, PathBuf::from("target-reports"));
}

/// The groups of one `cargo bench` are measured one after another, so their
/// dates differ; they are still one setup. A different commit is not.
#[test]
fn groups_of_one_setup_are_one_run_and_another_commit_is_not() {
    let dir = scratch("setups");
    let opts = options(&dir);
    let mut file = results_with(&[("latency", latency()), ("throughput", throughput())]);
    file.groups.get_mut("throughput").unwrap().run.date = "2026-05-01T12:07:00Z".into();
    file.save(&opts.results_path).unwrap();
    generate(&opts).unwrap();
    let md = read(opts.out_dir.join("summary.md"));
    assert!(md.contains("All groups come from one setup"), "{md}");
    assert!(md.contains("2026-05-01T12:00:00Z to 2026-05-01T12:07:00Z"));

    file.groups.get_mut("throughput").unwrap().run.commit = "4567cdef".into();
    file.save(&opts.results_path).unwrap();
    generate(&opts).unwrap();
    let md = read(opts.out_dir.join("summary.md"));
    assert!(md.contains("2 different setups"), "{md}");
    assert!(md.contains("4567cdef") && md.contains("0123abcd-dirty"));
}

/// A partial run cannot spoil the published report: `generate` writes any
/// run under the target directory only, and `publish` takes a complete
/// reference run or nothing.
mod publishing {
    use std::time::{Duration, SystemTime};

    use wsbench::report::{publish, NotReference, PublishRefused};

    use super::*;

    const TEMPLATE: &str = "axum: {{latency.axum.rtt_mean_us kind=binary}}\n";

    /// A published report (with flamegraphs) and a discussion beside it, as
    /// a clone has them, in a directory of the test's own.
    fn with_published(name: &str) -> (PathBuf, ReportOptions) {
        let dir = scratch(name);
        let opts = options(&dir);
        let published = &opts.publish_dir;
        std::fs::create_dir_all(published.join("flamegraphs")).unwrap();
        std::fs::write(published.join("summary.md"), "the reference report").unwrap();
        std::fs::write(published.join("results.json"), "{}").unwrap();
        for stack in STACKS {
            std::fs::write(
                published.join(format!("flamegraphs/{stack}.svg")),
                "<svg><!-- reference --></svg>",
            )
            .unwrap();
            std::fs::write(
                published.join(format!("flamegraphs/latency__{stack}__binary_32B.svg")),
                "<svg><!-- reference --></svg>",
            )
            .unwrap();
        }
        std::fs::write(dir.join("discussion.template.md"), TEMPLATE).unwrap();
        std::fs::write(dir.join("discussion.md"), "the reference discussion").unwrap();
        (dir, opts)
    }

    /// The full synthetic run at one clean commit, with catalogue metrics
    /// only (a results file with others does not load).
    fn reference_results() -> ResultsFile {
        let mut file = full_results();
        for group in file.groups.values_mut() {
            group.run.commit = "0123abcd".into();
            group.measurements.retain(|m| m.definition().is_some());
        }
        file
    }

    /// A flamegraph for every latency benchmark of the synthetic run.
    fn profile_latency(opts: &ReportOptions) {
        for stack in STACKS {
            fake_criterion_bench(
                &opts.criterion_dir,
                &format!("latency/{stack}/binary_32B"),
                &format!("latency/{stack}/binary/32B"),
                20_000.0,
                true,
            );
        }
    }

    fn refused(opts: &ReportOptions) -> PublishRefused {
        let err = publish(opts).expect_err("publishing should be refused");
        err.downcast_ref::<PublishRefused>()
            .unwrap_or_else(|| panic!("not a refusal: {err:#}"))
            .clone()
    }

    /// The published report and the discussion, to check they did not change.
    fn published_state(dir: &Path, opts: &ReportOptions) -> (BTreeMap<PathBuf, Vec<u8>>, String) {
        (snapshot(&opts.publish_dir), read(dir.join("discussion.md")))
    }

    fn quick_results() -> ResultsFile {
        let mut file = reference_results();
        for group in file.groups.values_mut() {
            group.run.quick = true;
        }
        file
    }

    fn one_group_results() -> ResultsFile {
        let mut file = results_with(&[("latency", latency())]);
        file.groups.get_mut("latency").unwrap().run.commit = "0123abcd".into();
        file
    }

    #[test]
    fn quick_and_one_group_runs_write_only_under_the_target_directory() {
        for (name, results) in [
            ("quick", quick_results()),
            ("one-group", one_group_results()),
        ] {
            let (dir, opts) = with_published(&format!("generate-{name}"));
            profile_latency(&opts);
            results.save(&opts.results_path).unwrap();
            let before = published_state(&dir, &opts);
            let summary = generate(&opts).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(summary.out_dir, opts.out_dir, "{name}");
            assert!(opts.out_dir.join("summary.md").is_file(), "{name}");
            assert!(
                opts.out_dir.join("flamegraphs/axum.svg").is_file(),
                "{name}: the run's own flamegraphs go into its report"
            );
            assert_eq!(
                published_state(&dir, &opts),
                before,
                "{name}: the published report or discussion changed"
            );
            assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn publishing_a_quick_or_one_group_run_is_refused_and_writes_nothing() {
        let (dir, opts) = with_published("refuse-partial");
        profile_latency(&opts);
        let before = published_state(&dir, &opts);

        quick_results().save(&opts.results_path).unwrap();
        let refusal = refused(&opts);
        assert_eq!(
            refusal.reasons,
            [NotReference::Quick {
                groups: EXPECTED.iter().map(|g| g.to_string()).collect()
            }]
        );
        assert!(refusal.to_string().contains("WSBENCH_QUICK"), "{refusal}");

        one_group_results().save(&opts.results_path).unwrap();
        let refusal = refused(&opts);
        assert_eq!(
            refusal.reasons,
            [NotReference::GroupsMissing {
                groups: EXPECTED[1..].iter().map(|g| g.to_string()).collect()
            }]
        );
        assert!(
            refusal.to_string().contains("throughput, scaling"),
            "{refusal}"
        );

        assert_eq!(published_state(&dir, &opts), before);
        assert!(!opts.out_dir.exists(), "publish wrote the target report");
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    const EXPECTED: [&str; 12] = [
        "latency",
        "throughput",
        "scaling",
        "cores",
        "load",
        "headroom",
        "broadcast",
        "secure",
        "memory",
        "placement",
        "conformance",
        "leak",
    ];

    #[test]
    fn dirty_mixed_and_unknown_commits_are_refused_by_name() {
        let (dir, opts) = with_published("refuse-commits");
        profile_latency(&opts);
        let before = published_state(&dir, &opts);

        let mut file = reference_results();
        file.groups.get_mut("leak").unwrap().run.commit = "4567cdef-dirty".into();
        file.groups.get_mut("memory").unwrap().run.commit = "unknown".into();
        file.save(&opts.results_path).unwrap();
        let reasons = refused(&opts).reasons;
        assert!(
            reasons.contains(&NotReference::DirtyCommit {
                commit: "4567cdef-dirty".into(),
                groups: vec!["leak".into()],
            }),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&NotReference::NoCommit {
                groups: vec!["memory".into()],
            }),
            "{reasons:?}"
        );
        let mixed = reasons
            .iter()
            .find_map(|r| match r {
                NotReference::MixedCommits { commits } => Some(commits.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{reasons:?}"));
        assert_eq!(
            mixed.keys().collect::<Vec<_>>(),
            ["0123abcd", "4567cdef-dirty", "unknown"]
        );
        assert_eq!(published_state(&dir, &opts), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_complete_run_without_its_flamegraphs_is_refused() {
        let (dir, opts) = with_published("refuse-flamegraphs");
        reference_results().save(&opts.results_path).unwrap();
        let before = published_state(&dir, &opts);

        // No --profile-time run: every latency benchmark is named, and the
        // published flamegraphs would be dropped.
        let reasons = refused(&opts).reasons;
        let all: Vec<String> = STACKS
            .iter()
            .map(|s| format!("latency/{s}/binary/32B"))
            .collect();
        assert_eq!(
            reasons[0],
            NotReference::FlamegraphsMissing {
                benches: {
                    let mut sorted = all.clone();
                    sorted.sort();
                    sorted
                }
            }
        );
        assert!(
            matches!(&reasons[1], NotReference::FlamegraphsDropped { files } if files.len() == 2 * STACKS.len()),
            "{reasons:?}"
        );

        // Flamegraphs from before the latency group was measured are another run's.
        profile_latency(&opts);
        let axum = opts
            .criterion_dir
            .join("latency/axum/binary_32B/profile/flamegraph.svg");
        std::fs::File::options()
            .write(true)
            .open(&axum)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
        assert_eq!(
            refused(&opts).reasons,
            [NotReference::FlamegraphsStale {
                benches: vec!["latency/axum/binary/32B".into()]
            }]
        );

        // A published flamegraph this run has no replacement for stays.
        profile_latency(&opts);
        std::fs::write(
            opts.publish_dir
                .join("flamegraphs/throughput__axum__binary_1MiB.svg"),
            "<svg/>",
        )
        .unwrap();
        let before = (snapshot(&opts.publish_dir), before.1);
        assert_eq!(
            refused(&opts).reasons,
            [NotReference::FlamegraphsDropped {
                files: vec!["flamegraphs/throughput__axum__binary_1MiB.svg".into()]
            }]
        );
        assert_eq!(published_state(&dir, &opts), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_complete_reference_run_is_published_with_its_discussion() {
        let (dir, opts) = with_published("publish");
        reference_results().save(&opts.results_path).unwrap();
        profile_latency(&opts);
        let summary = publish(&opts).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(summary.out_dir, opts.publish_dir);
        let published = &opts.publish_dir;
        assert_ne!(read(published.join("summary.md")), "the reference report");
        for stack in STACKS {
            for flame in [
                format!("flamegraphs/{stack}.svg"),
                format!("flamegraphs/latency__{stack}__binary_32B.svg"),
            ] {
                assert!(
                    read(published.join(&flame)).contains(&format!("latency/{stack}/binary/32B")),
                    "{flame} was not replaced from this run"
                );
            }
        }
        let json = |path: &Path| -> Value { serde_json::from_str(&read(path)).unwrap() };
        assert!(
            json(&published.join("results.json")) == json(&opts.results_path),
            "the published results are not the run's"
        );
        assert!(read(dir.join("discussion.md")).starts_with("axum: "));
        assert!(!opts.out_dir.exists(), "publish wrote the target report");
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Latency p50 of each stack measured in 12 rounds of one block: round i
/// of every stack shares the drift `drift(i)`; `noise` moves tokio-tungstenite
/// alone in alternate rounds.
fn rounds_results(gap_axum: f64, noise: f64) -> ResultsFile {
    let drift = |i: usize| 1.0 + 0.8 * ((i * 5 % 12) as f64 / 11.0);
    let mut out = Vec::new();
    for stack in ["raw-tcp", "tokio-tungstenite", "axum", "python-aiohttp"] {
        let base = match stack {
            "raw-tcp" => 10.0,
            "tokio-tungstenite" => 12.0,
            "axum" => 12.0 * gap_axum,
            _ => 60.0,
        };
        let values: Vec<f64> = (0..12)
            .map(|i| {
                let own = if stack == "tokio-tungstenite" && i % 2 == 1 {
                    1.0 + noise
                } else {
                    1.0
                };
                base * drift(i) * own
            })
            .collect();
        let r = wsbench::rounds::Rounds::new("latency", values);
        let mut x = m(
            "latency",
            &format!("latency/{stack}/binary/32B"),
            stack,
            json!({"size_bytes": 32, "kind": "binary"}),
            "rtt_p50_us",
            r.median(),
            "us",
            "histogram",
        );
        x.rounds = Some(r);
        out.push(x);
    }
    results_with(&[("latency", out)])
}

/// With a second run of the same commit attached, a claim is one both runs
/// make; a run of another commit, or one lacking a figure, is refused.
#[test]
fn a_pair_claims_only_what_both_runs_make() {
    use wsbench::report::claims::{claims, render};
    use wsbench::results::attach_pair;
    let threshold = wsbench::rounds::CLAIM_THRESHOLD;
    let run = rounds_results(1.3, 0.05);
    let mut pair = rounds_results(1.05, 0.0);
    pair.groups.get_mut("latency").unwrap().run.date = "2026-01-02T00:00:00Z".into();
    let names = |f: &ResultsFile| -> Vec<(String, String)> {
        claims(f, threshold)
            .into_iter()
            .map(|c| (c.better, c.worse))
            .collect()
    };
    let axum: (String, String) = ("tokio-tungstenite".into(), "axum".into());
    assert!(names(&run).contains(&axum));

    let mut paired = run.clone();
    attach_pair(&mut paired, &pair).unwrap();
    // Only 5% in the pair: the claim goes. 56% and 26% against the floor
    // in the two runs: that one stays.
    let both = names(&paired);
    assert!(!both.contains(&axum), "{both:?}");
    assert!(
        both.contains(&("raw-tcp".into(), "axum".into())),
        "{both:?}"
    );
    assert_eq!(both.len(), names(&run).len() - 1);
    let text = render(&paired, &claims(&paired, threshold), None, threshold);
    assert!(text.contains("in both runs of the pair"), "{text}");
    assert!(text.contains("and 2026-01-02T00:00:00Z"), "{text}");

    // The pair's rounds travel with the file; a file without them has none.
    let json = serde_json::to_string(&paired).unwrap();
    assert!(json.contains("\"pair\""));
    let back = ResultsFile::from_json(json.as_bytes(), Path::new("x.json")).unwrap();
    assert_eq!(names(&back), both);
    assert!(!serde_json::to_string(&run).unwrap().contains("pair"));

    // The run itself, another commit, or a figure the pair lacks: refused,
    // nothing set.
    let mut refused = run.clone();
    let err = attach_pair(&mut refused, &run).unwrap_err();
    assert!(format!("{err}").contains("the same run"), "{err}");
    let mut other_commit = pair.clone();
    other_commit.groups.get_mut("latency").unwrap().run.commit = "0123456".into();
    let err = attach_pair(&mut refused, &other_commit).unwrap_err();
    assert!(format!("{err}").contains("commit 0123456"), "{err}");
    let mut lacking = pair.clone();
    lacking
        .groups
        .get_mut("latency")
        .unwrap()
        .measurements
        .retain(|m| m.stack != "axum");
    let err = attach_pair(&mut refused, &lacking).unwrap_err();
    assert!(format!("{err}").contains("axum rtt_p50_us"), "{err}");
    assert_eq!(names(&refused), names(&run));
    assert!(refused.groups["latency"].pair_run.is_none());
}

/// A ratio is a claim only when its paired interval clears the threshold;
/// another run confirms, calls within noise or reverses each claim.
#[test]
fn claims_need_a_clear_interval_and_another_run_checks_them() {
    use wsbench::report::claims::{claims, confirm, render, Outcome};
    let threshold = wsbench::rounds::CLAIM_THRESHOLD;
    // axum 30% slower than tokio-tungstenite, whose own noise is 5%.
    let run = rounds_results(1.3, 0.05);
    let list = claims(&run, threshold);
    let pairs: Vec<(String, String)> = list
        .iter()
        .map(|c| (c.better.clone(), c.worse.clone()))
        .collect();
    // Against the best (tokio-tungstenite) and against the floor:
    // tokio-tungstenite is 1.2 times the floor, and its own 5% noise
    // leaves that interval clear of the threshold.
    assert!(
        pairs.contains(&("tokio-tungstenite".into(), "axum".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("raw-tcp".into(), "axum".into())),
        "{pairs:?}"
    );
    assert!(pairs.contains(&("tokio-tungstenite".into(), "python-aiohttp".into())));
    assert!(pairs.contains(&("raw-tcp".into(), "tokio-tungstenite".into())));
    // Every claim's whole interval clears the threshold.
    assert!(list.iter().all(|c| c.lo > 1.0 + threshold), "{list:?}");
    // The figures' own intervals hold the shared drift (80%): it is the
    // pairing by round that leaves the gap clear of it.
    let own = |stack: &str| {
        let g = &run.groups["latency"];
        g.measurements
            .iter()
            .find(|m| m.stack == stack)
            .unwrap()
            .rounds
            .clone()
            .unwrap()
            .interval
            .unwrap()
    };
    assert!(own("tokio-tungstenite").hi > own("axum").lo);

    // The same run confirms all of its claims, each beyond the threshold.
    assert!(list.iter().all(|c| {
        let (outcome, there) = confirm(c, &run);
        outcome == Outcome::Confirmed && there.unwrap().worse(threshold) == Some(true)
    }));
    let axum = list
        .iter()
        .find(|c| c.better == "tokio-tungstenite" && c.worse == "axum")
        .unwrap();
    // A run where axum is 5% slower in every round: the same order beyond
    // that run's noise confirms the claim, though not beyond the threshold.
    let order = rounds_results(1.05, 0.0);
    let (outcome, there) = confirm(axum, &order);
    assert_eq!(outcome, Outcome::Confirmed);
    assert_eq!(there.unwrap().worse(threshold), None);
    let text = render(&run, &list, Some(&order), threshold);
    assert!(
        text.contains(&format!(
            "{n} of {n} confirmed ({m} of them beyond the 10% threshold again)",
            n = list.len(),
            m = list.len() - 1
        )),
        "{text}"
    );
    // 5% slower in half the rounds only: the interval holds 1, no order.
    let close = rounds_results(1.05, 0.05);
    assert_eq!(confirm(axum, &close).0, Outcome::WithinNoise);
    // And one where axum is faster: reversed.
    let reversed = rounds_results(0.7, 0.05);
    assert_eq!(confirm(axum, &reversed).0, Outcome::Reversed);
    let text = render(&run, &list, Some(&close), threshold);
    assert!(text.contains("within noise"), "{text}");
    assert!(
        text.contains(&format!(" of {} confirmed", list.len())),
        "{text}"
    );

    // Both runs' machines are named, and different CPUs are called out.
    assert!(text.contains("The other: "), "{text}");
    assert!(!text.contains("different CPUs"), "{text}");
    let mut elsewhere = close.clone();
    for g in elsewhere.groups.values_mut() {
        g.run.cpu = "Another CPU".into();
    }
    let text = render(&run, &list, Some(&elsewhere), threshold);
    assert!(text.contains("different CPUs"), "{text}");

    // A 6% gap is within noise in the run that measured it: no claim.
    let small = rounds_results(1.06, 0.0);
    assert!(!claims(&small, threshold)
        .iter()
        .any(|c| c.worse == "axum" && c.better == "tokio-tungstenite"));
}
