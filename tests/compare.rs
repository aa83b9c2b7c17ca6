//! `wsbench compare`: the statistics on synthetic data (pure functions, no
//! timing), the report, and `wsbench measure` run once, in both its forms.
//!
//! Comparing two real builds takes minutes (two release builds and the
//! rounds); that procedure and its measured results are in the README
//! section "Regression checks".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use wsbench::compare::child::Worker;
use wsbench::compare::measure::RoundFile;
use wsbench::compare::metrics::{self, Kind};
use wsbench::compare::report::{self, Judging, Method, Samples};
use wsbench::compare::stats::{
    self, exact_verdict, timing_verdict, Better, Bootstrap, Interval, Verdict, XorShift64,
};

/// `n` values around `center` with a relative spread of ±`spread`, from a
/// fixed seed: reproducible noise.
fn noisy(seed: u64, n: usize, center: f64, spread: f64) -> Vec<f64> {
    let mut rng = XorShift64::new(seed);
    (0..n)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            center * (1.0 + spread * (2.0 * u - 1.0))
        })
        .collect()
}

fn timing_samples(base: Vec<f64>, head: Vec<f64>) -> Samples {
    Samples {
        base,
        head,
        ..Samples::default()
    }
}

fn judging(method: Method) -> Judging {
    Judging {
        method,
        threshold: 0.05,
        bootstrap: Bootstrap::default(),
    }
}

/// A judged figure by its key, "phase:metric".
fn metric(key: &str) -> &'static metrics::MetricDef {
    metrics::find(key).unwrap_or_else(|| panic!("metric {key} in the table"))
}

// ---- the random numbers and the median ----

#[test]
fn xorshift_is_reproducible_and_in_range() {
    let a: Vec<u64> = {
        let mut r = XorShift64::new(42);
        (0..100).map(|_| r.next_u64()).collect()
    };
    let b: Vec<u64> = {
        let mut r = XorShift64::new(42);
        (0..100).map(|_| r.next_u64()).collect()
    };
    assert_eq!(a, b);
    let mut r = XorShift64::new(0); // a zero seed must not stick at zero
    assert_ne!(r.next_u64(), 0);
    let mut counts = [0usize; 5];
    for _ in 0..10_000 {
        counts[r.below(5)] += 1;
    }
    // Every index drawn, roughly evenly (2000 expected each).
    assert!(
        counts.iter().all(|&c| (1700..2300).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn median_of_odd_even_and_bad_input() {
    assert_eq!(stats::median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(stats::median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(stats::median(&[]), None);
    assert_eq!(stats::median(&[1.0, f64::NAN]), None);
}

// ---- the bootstrap interval ----

#[test]
fn bootstrap_is_reproducible() {
    let base = noisy(1, 5, 100.0, 0.03);
    let head = noisy(2, 5, 100.0, 0.03);
    let b = Bootstrap::default();
    assert_eq!(
        b.ratio_of_medians(&base, &head),
        b.ratio_of_medians(&base, &head)
    );
    let other_seed = Bootstrap {
        seed: 7,
        ..Bootstrap::default()
    };
    // Another seed moves the interval at most a little; it still holds the
    // point estimate.
    let i = other_seed.ratio_of_medians(&base, &head).unwrap();
    let point = stats::median(&head).unwrap() / stats::median(&base).unwrap();
    assert!(i.lo <= point && point <= i.hi, "{i:?} vs {point}");
}

#[test]
fn identical_distributions_are_no_change() {
    for seed in 1..20 {
        let base = noisy(seed, 5, 30.0, 0.02);
        let head = noisy(seed + 1000, 5, 30.0, 0.02);
        let i = Bootstrap::default().ratio_of_medians(&base, &head).unwrap();
        assert!(i.lo <= 1.0 && 1.0 <= i.hi, "seed {seed}: {i:?}");
        assert_eq!(
            timing_verdict(i, Better::Lower, 0.05),
            Verdict::NoChange,
            "seed {seed}: {i:?}"
        );
    }
}

#[test]
fn ten_percent_slower_is_a_regression() {
    for seed in 1..20 {
        let base = noisy(seed, 5, 30.0, 0.02);
        let head = noisy(seed + 1000, 5, 33.0, 0.02);
        let i = Bootstrap::default().ratio_of_medians(&base, &head).unwrap();
        assert_eq!(
            timing_verdict(i, Better::Lower, 0.05),
            Verdict::Regression,
            "seed {seed}: {i:?}"
        );
        // The same figures read as a rate (higher is better): the head
        // got better.
        assert_eq!(
            timing_verdict(i, Better::Higher, 0.05),
            Verdict::Improvement
        );
    }
}

#[test]
fn ten_percent_lower_rate_is_a_regression() {
    let base = noisy(3, 5, 40_000.0, 0.02);
    let head = noisy(4, 5, 36_000.0, 0.02);
    let i = Bootstrap::default().ratio_of_medians(&base, &head).unwrap();
    assert_eq!(timing_verdict(i, Better::Higher, 0.05), Verdict::Regression);
}

#[test]
fn a_shift_inside_the_noise_is_inconclusive_not_a_regression() {
    // ±20% noise hides a 10% shift in five rounds: the interval reaches
    // past the threshold on the bad side without lying beyond it.
    let base = noisy(5, 5, 30.0, 0.2);
    let head = noisy(6, 5, 33.0, 0.2);
    let i = Bootstrap::default().ratio_of_medians(&base, &head).unwrap();
    assert_eq!(
        timing_verdict(i, Better::Lower, 0.05),
        Verdict::Inconclusive,
        "{i:?}"
    );
}

#[test]
fn the_threshold_is_symmetric_in_cost() {
    let t = 0.05;
    let just_worse = Interval { lo: 1.051, hi: 1.2 };
    let just_better = Interval {
        lo: 0.8,
        hi: 1.0 / 1.051,
    };
    let inside = Interval {
        lo: 1.0 / 1.049,
        hi: 1.049,
    };
    assert_eq!(
        timing_verdict(just_worse, Better::Lower, t),
        Verdict::Regression
    );
    assert_eq!(
        timing_verdict(just_better, Better::Lower, t),
        Verdict::Improvement
    );
    assert_eq!(timing_verdict(inside, Better::Lower, t), Verdict::NoChange);
    // A rate at 1/1.051 of the base is the same slowdown as a time at 1.051.
    assert_eq!(
        timing_verdict(just_better, Better::Higher, t),
        Verdict::Regression
    );
    assert_eq!(
        timing_verdict(just_worse, Better::Higher, t),
        Verdict::Improvement
    );
}

#[test]
fn undefined_ratios_give_no_interval() {
    let b = Bootstrap::default();
    assert_eq!(b.ratio_of_medians(&[], &[1.0]), None);
    assert_eq!(b.ratio_of_medians(&[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0]), None);
    assert_eq!(b.median_of_paired_ratios(&[(0.0, 1.0)]), None);
}

// ---- the paired judgement ----

#[test]
fn pairing_sees_through_load_that_hits_both_builds() {
    // The machine's load moves both builds together: by up to ±30% from
    // round to round and ±10% from window to window. The head is 10%
    // slower in every window. Paired window by window the load cancels;
    // comparing each build's rounds on their own, it hides the shift.
    let rounds = 5;
    let windows = 10;
    let round_load = noisy(99, rounds, 1.0, 0.3);
    let mut s = Samples::default();
    for (r, rl) in round_load.iter().enumerate() {
        let load = noisy(100 + r as u64, windows, *rl, 0.1);
        let bj = noisy(200 + r as u64, windows, 1.0, 0.01);
        let hj = noisy(300 + r as u64, windows, 1.0, 0.01);
        let bw: Vec<f64> = load.iter().zip(&bj).map(|(l, j)| 30.0 * l * j).collect();
        let hw: Vec<f64> = load.iter().zip(&hj).map(|(l, j)| 33.0 * l * j).collect();
        s.base.push(bw.iter().sum::<f64>() / windows as f64);
        s.head.push(hw.iter().sum::<f64>() / windows as f64);
        s.base_windows.push(bw);
        s.head_windows.push(hw);
    }
    let def = metric("latency/32B:rtt_mean_us");
    let paired = report::judge("axum", def, &s, &judging(Method::Paired));
    assert_eq!(paired.verdict, Verdict::Regression, "{paired:?}");
    let ratio = paired.ratio.unwrap();
    assert!((ratio - 1.1).abs() < 0.02, "{ratio}");
    assert_eq!(paired.round_ratios.len(), rounds);

    let unpaired = report::judge("axum", def, &s, &judging(Method::Unpaired));
    assert_eq!(unpaired.verdict, Verdict::Inconclusive, "{unpaired:?}");
}

#[test]
fn identical_builds_paired_are_no_change() {
    let mut s = Samples::default();
    for r in 0..5u64 {
        let load = noisy(10 + r, 10, 1.0, 0.3);
        let bw: Vec<f64> = load
            .iter()
            .zip(noisy(20 + r, 10, 1.0, 0.01))
            .map(|(l, j)| 30.0 * l * j)
            .collect();
        let hw: Vec<f64> = load
            .iter()
            .zip(noisy(30 + r, 10, 1.0, 0.01))
            .map(|(l, j)| 30.0 * l * j)
            .collect();
        s.base.push(stats::median(&bw).unwrap());
        s.head.push(stats::median(&hw).unwrap());
        s.base_windows.push(bw);
        s.head_windows.push(hw);
    }
    let row = report::judge(
        "axum",
        metric("latency/32B:rtt_p50_us"),
        &s,
        &judging(Method::Paired),
    );
    assert_eq!(row.verdict, Verdict::NoChange, "{row:?}");
}

// ---- deterministic metrics ----

#[test]
fn one_more_allocation_per_round_trip_is_flagged_exactly() {
    let def = metric("allocs/32B:server_allocs_per_rtt");
    assert_eq!(def.kind, Kind::Exact { tolerance: 0.0 });
    let s = timing_samples(vec![0.0; 5], vec![1.0; 5]);
    let row = report::judge("tokio-tungstenite", def, &s, &judging(Method::Paired));
    assert_eq!(row.verdict, Verdict::Regression);
    assert_eq!((row.base, row.head), (0.0, 1.0));
    assert!(row.interval.is_none());
    assert!(report::text_table(&[row]).contains("exact, +1"));

    let fewer = timing_samples(vec![3.0; 5], vec![2.0; 5]);
    let row = report::judge("actix-ws", def, &fewer, &judging(Method::Paired));
    assert_eq!(row.verdict, Verdict::Improvement);

    let same = timing_samples(vec![3.0; 5], vec![3.0; 5]);
    let row = report::judge("actix-ws", def, &same, &judging(Method::Paired));
    assert_eq!(row.verdict, Verdict::NoChange);
    assert!(row.note.is_none());
}

#[test]
fn exact_metrics_use_the_median_of_rounds() {
    // One odd round on each side does not move the median.
    let s = timing_samples(
        vec![112.0, 112.0, 120.0, 112.0, 112.0],
        vec![112.0, 104.0, 112.0, 112.0, 112.0],
    );
    let row = report::judge(
        "actix-ws",
        metric("allocs/32B:server_alloc_bytes_per_rtt"),
        &s,
        &judging(Method::Paired),
    );
    assert_eq!(row.verdict, Verdict::NoChange);
    assert!(
        row.note.as_deref().unwrap().contains("rounds varied"),
        "{row:?}"
    );
}

#[test]
fn idle_heap_jitter_is_within_tolerance_but_a_field_is_not() {
    let def = metric("idle:live_bytes_per_idle_conn");
    let Kind::Exact { tolerance } = def.kind else {
        panic!("exact metric")
    };
    // The jitter measured on actix-ws: one 512-byte block over 100
    // connections.
    assert_eq!(
        exact_verdict(21736.24, 21731.12, def.better(), tolerance),
        Verdict::NoChange
    );
    assert_eq!(
        exact_verdict(21731.12, 21736.24, def.better(), tolerance),
        Verdict::NoChange
    );
    // Eight more bytes held per connection.
    assert_eq!(
        exact_verdict(9848.0, 9856.0, def.better(), tolerance),
        Verdict::Regression
    );
    assert_eq!(
        exact_verdict(9856.0, 9848.0, def.better(), tolerance),
        Verdict::Improvement
    );
}

// ---- the report ----

#[test]
fn judge_all_follows_stacks_then_the_metric_table() {
    let mut samples = BTreeMap::new();
    for stack in ["raw-tcp", "axum"] {
        for m in [
            "allocs/32B:server_allocs_per_rtt",
            "latency/32B:rtt_p50_us",
            "latency/32B:rtt_p90_us",
        ] {
            samples.insert(
                (stack.to_string(), m.to_string()),
                timing_samples(noisy(1, 5, 10.0, 0.01), noisy(1, 5, 10.0, 0.01)),
            );
        }
    }
    let stacks = vec!["axum".to_string(), "raw-tcp".to_string()];
    let rows = report::judge_all(&stacks, &samples, &judging(Method::Paired));
    let order: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.stack.as_str(), r.metric.as_str()))
        .collect();
    // rtt_p90_us would be recorded but is not judged.
    assert_eq!(
        order,
        [
            ("axum", "rtt_p50_us"),
            ("axum", "server_allocs_per_rtt"),
            ("raw-tcp", "rtt_p50_us"),
            ("raw-tcp", "server_allocs_per_rtt"),
        ]
    );
    let table = report::text_table(&rows);
    assert!(table.starts_with("metric"));
    assert_eq!(table.lines().count(), 5);
    let md = report::markdown_table(&rows);
    assert!(md.starts_with("| metric | stack | base | head | ratio | interval | verdict |"));
    assert_eq!(report::regressions(&rows), 0);
}

// ---- `wsbench measure` itself ----

fn tmp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsbench-compare-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The timed figures, by key (phase:metric).
const TIMED: [&str; 8] = [
    "latency/32B:rtt_mean_us",
    "latency/32B:rtt_p50_us",
    "latency/32B:rtt_p99_us",
    "latency/32B:server_cpu_ns_per_msg",
    "latency/32B:client_cpu_ns_per_msg",
    "throughput/16KiB:msgs_per_s",
    "throughput/16KiB:server_cpu_ns_per_msg",
    "throughput/16KiB:client_cpu_ns_per_msg",
];

fn check_round(file: &RoundFile, stacks: &[&str], windows: usize) {
    for stack in stacks {
        let value = |key: &str| {
            file.measurements
                .iter()
                .find(|m| m.stack == *stack && metrics::key_of(m) == key)
                .unwrap_or_else(|| panic!("{stack}: no {key}"))
                .value
        };
        for m in TIMED {
            assert!(value(m) > 0.0, "{stack} {m} = {}", value(m));
            let w = &file.windows[*stack][m];
            assert_eq!(w.len(), windows, "{stack} {m} windows");
            assert!(w.iter().all(|&x| x > 0.0), "{stack} {m} {w:?}");
        }
        // Deterministic figures: whole numbers of allocations here, and a
        // heap that grew with the idle connections.
        assert!(value("allocs/32B:server_allocs_per_rtt") >= 0.0);
        assert!(value("allocs/32B:server_alloc_bytes_per_rtt") >= 0.0);
        assert!(value("idle:live_bytes_per_idle_conn") > 0.0, "{stack}");
        assert!(value("latency/32B:rtt_p99_us") >= value("latency/32B:rtt_p50_us"));
    }
    assert!(file.run.cpus >= 1);
    assert_eq!(file.run.placement, "same-core");
}

#[test]
fn measure_writes_every_metric_for_each_stack() {
    let out = tmp_path("measure.json");
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_wsbench"))
        .args(["measure", "--out"])
        .arg(&out)
        .args([
            "--stacks",
            "raw-tcp,axum",
            "--placement",
            "same-core",
            "--window-ms",
            "20",
            "--windows",
            "3",
            "--warm-up-ms",
            "20",
            "--idle-conns",
            "20",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "wsbench measure failed: {status}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let file: RoundFile = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    check_round(&file, &["raw-tcp", "axum"], 3);
    // raw-tcp echoes without allocating.
    let raw_allocs = file
        .measurements
        .iter()
        .find(|m| m.stack == "raw-tcp" && m.metric == "server_allocs_per_rtt")
        .unwrap();
    assert_eq!(raw_allocs.value, 0.0);
    let _ = std::fs::remove_file(out);
}

#[test]
fn measure_worker_answers_each_command() {
    let out = tmp_path("worker.json");
    let log = tmp_path("worker.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsbench"));
    cmd.args(["measure", "--worker", "--out"]).arg(&out).args([
        "--stacks",
        "tokio-tungstenite",
        "--placement",
        "same-core",
        "--window-ms",
        "20",
        "--warm-up-ms",
        "20",
        "--idle-conns",
        "10",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut w = Worker::spawn(&mut cmd, &log, "test worker").unwrap();
    w.ask(None, "ready", deadline).unwrap();
    for phase in ["latency", "throughput"] {
        w.ask(Some(&format!("warm-up {phase}")), "ok", deadline)
            .unwrap();
        for _ in 0..2 {
            w.ask(Some(&format!("window {phase}")), "ok", deadline)
                .unwrap();
        }
    }
    w.ask(Some("done"), "done", deadline).unwrap();
    w.wait(deadline).unwrap();
    let file: RoundFile = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    check_round(&file, &["tokio-tungstenite"], 2);
    let _ = std::fs::remove_file(out);
}

#[test]
fn a_worker_that_gets_nonsense_fails_with_its_log() {
    let out = tmp_path("bad-worker.json");
    let log = tmp_path("bad-worker.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsbench"));
    cmd.args(["measure", "--worker", "--out"]).arg(&out).args([
        "--stacks",
        "raw-tcp",
        "--idle-conns",
        "5",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut w = Worker::spawn(&mut cmd, &log, "test worker").unwrap();
    w.ask(None, "ready", deadline).unwrap();
    let err = w
        .ask(Some("window sideways"), "ok", deadline)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown worker command"), "{err}");
}

#[test]
fn compare_of_an_unknown_commit_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsbench"))
        .args(["compare", "no-such-commit-anywhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not build or run"), "{stderr}");
    assert!(stderr.contains("no-such-commit-anywhere"), "{stderr}");
}
