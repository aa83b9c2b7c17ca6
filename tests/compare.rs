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
use wsbench::compare::dependency::Resolved;
use wsbench::compare::measure::RoundFile;
use wsbench::compare::metrics::{self, Kind};
use wsbench::compare::report::{self, Judging, Method, Samples};
use wsbench::compare::stats::{
    self, exact_verdict, timing_verdict, Better, Interval, MedianRank, NoInterval, Verdict,
    XorShift64, CONFIDENCE,
};
use wsbench::compare::{CompareReport, SideReport, SwapReport};

/// `n` values around `center` with a relative spread of ±`spread`, from a
/// fixed seed: reproducible noise.
fn noisy(seed: u64, n: usize, center: f64, spread: f64) -> Vec<f64> {
    let mut rng = XorShift64::new(seed);
    (0..n)
        .map(|_| center * (1.0 + spread * (2.0 * rng.next_f64() - 1.0)))
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
        confidence: CONFIDENCE,
    }
}

/// head_k / base_k of two noisy series: the paired ratios of `n` rounds.
fn ratios(seed: u64, n: usize, base: f64, head: f64, spread: f64) -> Vec<f64> {
    let b = noisy(seed, n, base, spread);
    let h = noisy(seed + 1000, n, head, spread);
    b.iter().zip(&h).map(|(b, h)| h / b).collect()
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

// ---- the order-statistic interval ----

#[test]
fn binomial_coverage_of_order_statistics() {
    // P(Binomial(7, 1/2) <= 1) = 8/128.
    assert!((stats::binomial_half_cdf(7, 1) - 8.0 / 128.0).abs() < 1e-12);
    assert_eq!(stats::binomial_half_cdf(7, 7), 1.0);
    // (x_(2), x_(6)) of 7, where the old bootstrap's resamples landed:
    // 87.5%, short of 95%; so 7 rounds give only (min, max), 98.4%.
    assert!((1.0 - 2.0 * stats::binomial_half_cdf(7, 1) - 0.875).abs() < 1e-12);
    let rank = |n| stats::median_rank(n, CONFIDENCE);
    let close = |r: Option<MedianRank>, k: usize, coverage: f64| {
        let r = r.expect("an interval");
        r.k == k && (r.coverage - coverage).abs() < 1e-9
    };
    assert_eq!(rank(5), None);
    assert_eq!(stats::min_values_for(CONFIDENCE), 6);
    assert!(close(rank(6), 1, 1.0 - 2.0 / 64.0));
    assert!(close(rank(7), 1, 1.0 - 2.0 / 128.0));
    assert!(close(rank(9), 2, 1.0 - 2.0 * 10.0 / 512.0));
    // The default: the 3rd and the 10th of 12, 96.1%.
    assert!(close(rank(12), 3, 1.0 - 2.0 * 79.0 / 4096.0));
    // Many values: no underflow, and k near n/2 - 1.96 sqrt(n)/2.
    let big = rank(2000).expect("an interval");
    assert!((950..=960).contains(&big.k), "{big:?}");
    assert!(big.coverage >= 0.95 && big.coverage < 0.96, "{big:?}");
}

#[test]
fn the_interval_is_two_sorted_values() {
    let v = [
        9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 10.0, 11.0, 12.0,
    ];
    let m = stats::median_interval(&v, CONFIDENCE).unwrap();
    assert_eq!(m.interval, Interval { lo: 3.0, hi: 10.0 });
    assert_eq!(m.rank.k, 3);
    assert_eq!(
        stats::median_interval(&v[..5], CONFIDENCE),
        Err(NoInterval::TooFew {
            values: 5,
            needed: 6
        })
    );
    assert_eq!(
        stats::median_interval(&[], CONFIDENCE),
        Err(NoInterval::Undefined)
    );
    assert_eq!(
        stats::median_interval(&[1.0; 7].map(|x: f64| x * f64::NAN), CONFIDENCE),
        Err(NoInterval::Undefined)
    );
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut XorShift64) -> f64 {
    let u = 1.0 - rng.next_f64(); // (0, 1]: ln(u) is finite
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Distributions of per-round ratios with a known median.
#[derive(Debug, Clone, Copy)]
enum Ratios {
    /// exp(N(ln median, sigma)).
    LogNormal { median: f64, sigma: f64 },
    /// median * (1 + 0.1 * (Exp(1) - ln 2)): skewed to the slow side.
    Skewed { median: f64 },
    /// median * (1 + 0.02 * Cauchy): tails with no mean.
    HeavyTailed { median: f64 },
}

impl Ratios {
    fn median(self) -> f64 {
        match self {
            Ratios::LogNormal { median, .. }
            | Ratios::Skewed { median }
            | Ratios::HeavyTailed { median } => median,
        }
    }

    fn draw(self, rng: &mut XorShift64) -> f64 {
        match self {
            Ratios::LogNormal { median, sigma } => (median.ln() + sigma * normal(rng)).exp(),
            Ratios::Skewed { median } => {
                let e = -(1.0 - rng.next_f64()).ln();
                median * (1.0 + 0.1 * (e - std::f64::consts::LN_2))
            }
            Ratios::HeavyTailed { median } => {
                let c = (std::f64::consts::PI * (rng.next_f64() - 0.5)).tan();
                median * (1.0 + 0.02 * c)
            }
        }
    }
}

/// How often, over `trials` simulated comparisons of `n` rounds, the
/// interval holds the true median, and how often the verdict at
/// `threshold` (a time: lower is better) is a regression or an improvement.
struct Simulated {
    covered: f64,
    regression: f64,
    improvement: f64,
}

fn simulate(
    seed: u64,
    dist: Ratios,
    n: usize,
    k: usize,
    threshold: f64,
    trials: usize,
) -> Simulated {
    let mut rng = XorShift64::new(seed);
    let (mut covered, mut regression, mut improvement) = (0, 0, 0);
    let mut v = vec![0.0; n];
    for _ in 0..trials {
        for x in v.iter_mut() {
            *x = dist.draw(&mut rng);
        }
        v.sort_by(f64::total_cmp);
        let i = Interval {
            lo: v[k - 1],
            hi: v[n - k],
        };
        if i.lo <= dist.median() && dist.median() <= i.hi {
            covered += 1;
        }
        match timing_verdict(i, Better::Lower, threshold) {
            Verdict::Regression => regression += 1,
            Verdict::Improvement => improvement += 1,
            _ => {}
        }
    }
    let f = |c: usize| c as f64 / trials as f64;
    Simulated {
        covered: f(covered),
        regression: f(regression),
        improvement: f(improvement),
    }
}

#[test]
fn simulated_coverage_is_the_stated_exact_level() {
    let dists = [
        Ratios::LogNormal {
            median: 1.03,
            sigma: 0.04,
        },
        Ratios::Skewed { median: 0.97 },
        Ratios::HeavyTailed { median: 1.0 },
    ];
    for (d, dist) in dists.into_iter().enumerate() {
        for n in [6, 7, 9, 12, 15] {
            let rank = stats::median_rank(n, CONFIDENCE).unwrap();
            let sim = simulate(1 + d as u64 * 100 + n as u64, dist, n, rank.k, 0.01, 20_000);
            assert!(
                rank.coverage >= CONFIDENCE && (sim.covered - rank.coverage).abs() < 0.02,
                "{dist:?}, {n} rounds: {:.4} covered, {:.4} stated",
                sim.covered,
                rank.coverage
            );
        }
        // What the bootstrap of 7 rounds really gave: (x_(2), x_(6)), 87.5%,
        // not the 95% it named.
        let sim = simulate(7 + d as u64, dist, 7, 2, 0.01, 20_000);
        assert!(
            (sim.covered - 0.875).abs() < 0.02,
            "{dist:?}: {}",
            sim.covered
        );
    }
}

/// The spread of per-round ratios of the quieter metrics in the A/A runs of
/// `regression-proofs/` (the standard deviation of ln(ratio) over rounds:
/// 0.019 at the 10th percentile of judged rows, 0.028 at the 25th, 0.037
/// at the median, 0.10 at the 90th).
const QUIET_SIGMA: f64 = 0.02;
const MEDIAN_SIGMA: f64 = 0.04;

#[test]
fn the_default_rounds_flag_a_three_percent_slowdown() {
    let rounds = 12;
    let threshold = 0.01;
    let rank = stats::median_rank(rounds, CONFIDENCE).unwrap();
    let slower = Ratios::LogNormal {
        median: 1.03,
        sigma: QUIET_SIGMA,
    };
    let sim = simulate(41, slower, rounds, rank.k, threshold, 20_000);
    assert!(sim.regression > 0.6, "{}", sim.regression);
    assert_eq!(sim.improvement, 0.0);
    // The old default, 7 rounds (min, max), mostly misses it.
    let old = simulate(42, slower, 7, 1, threshold, 20_000);
    assert!(old.regression < 0.4, "{}", old.regression);
    // At the median spread, 3% is mostly inconclusive, but 7% is flagged.
    let typical = |median| Ratios::LogNormal {
        median,
        sigma: MEDIAN_SIGMA,
    };
    let sim = simulate(43, typical(1.03), rounds, rank.k, threshold, 20_000);
    assert!(sim.regression < 0.5, "{}", sim.regression);
    let sim = simulate(44, typical(1.07), rounds, rank.k, threshold, 20_000);
    assert!(sim.regression > 0.8, "{}", sim.regression);
}

#[test]
fn identical_builds_rarely_give_a_false_alarm() {
    let rounds = 12;
    let rank = stats::median_rank(rounds, CONFIDENCE).unwrap();
    // Each verdict's false alarms are bounded by the interval's miss on
    // that side, (1 - coverage) / 2, whatever the threshold.
    let bound = (1.0 - rank.coverage) / 2.0;
    assert!(bound < 0.02, "{bound}");
    for (seed, dist) in [
        Ratios::LogNormal {
            median: 1.0,
            sigma: QUIET_SIGMA,
        },
        Ratios::LogNormal {
            median: 1.0,
            sigma: 0.1,
        },
        Ratios::HeavyTailed { median: 1.0 },
    ]
    .into_iter()
    .enumerate()
    {
        for threshold in [0.0, 0.01] {
            let sim = simulate(50 + seed as u64, dist, rounds, rank.k, threshold, 20_000);
            for rate in [sim.regression, sim.improvement] {
                assert!(rate < bound + 0.005, "{dist:?} at {threshold}: {rate}");
            }
        }
    }
}

#[test]
fn identical_distributions_are_no_change() {
    for seed in 1..20 {
        let r = ratios(seed, 12, 30.0, 30.0, 0.01);
        let i = stats::median_interval(&r, CONFIDENCE).unwrap().interval;
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
        let r = ratios(seed, 12, 30.0, 33.0, 0.02);
        let i = stats::median_interval(&r, CONFIDENCE).unwrap().interval;
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
    let r = ratios(3, 12, 40_000.0, 36_000.0, 0.02);
    let i = stats::median_interval(&r, CONFIDENCE).unwrap().interval;
    assert_eq!(timing_verdict(i, Better::Higher, 0.05), Verdict::Regression);
}

#[test]
fn a_shift_inside_the_noise_is_inconclusive_not_a_regression() {
    // ±20% noise hides a 10% shift in twelve rounds: the interval reaches
    // past the threshold on the bad side without lying beyond it.
    let r = ratios(5, 12, 30.0, 33.0, 0.2);
    let i = stats::median_interval(&r, CONFIDENCE).unwrap().interval;
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
    assert_eq!(stats::paired_ratios(&[]), None);
    assert_eq!(stats::paired_ratios(&[(1.0, 1.0), (0.0, 1.0)]), None);
    let zero_base = timing_samples(vec![0.0; 12], vec![1.0; 12]);
    let row = report::judge(
        "axum",
        metric("latency/32B:rtt_mean_us"),
        &zero_base,
        &judging(Method::Paired),
    );
    assert_eq!(row.verdict, Verdict::Inconclusive);
    assert_eq!((row.interval, row.coverage), (None, None));
    assert!(row.note.unwrap().contains("base value is zero"));
}

#[test]
fn too_few_rounds_are_inconclusive_and_say_why() {
    // 5 rounds, 10% slower in each: clear, but no 95% interval exists.
    let def = metric("latency/32B:rtt_mean_us");
    let few = timing_samples(vec![30.0; 5], vec![33.0; 5]);
    let row = report::judge("axum", def, &few, &judging(Method::Paired));
    assert_eq!(row.verdict, Verdict::Inconclusive);
    assert_eq!((row.interval, row.coverage), (None, None));
    let note = row.note.clone().unwrap();
    assert!(
        note.contains("5 rounds are too few for 95% (6 needed)"),
        "{note}"
    );
    assert!(report::text_table(&[row]).contains("too few"));

    let enough = timing_samples(vec![30.0; 6], vec![33.0; 6]);
    let row = report::judge("axum", def, &enough, &judging(Method::Paired));
    assert_eq!(row.verdict, Verdict::Regression);
    assert_eq!(row.coverage, Some(1.0 - 2.0 / 64.0));

    assert_eq!(
        report::interval_legend(12, CONFIDENCE),
        "interval: order statistics 3 and 10 of the 12 sorted round ratios, \
         95% requested, 96.1% exact (distribution-free)"
    );
    assert!(report::interval_legend(5, CONFIDENCE).contains("too few"));
}

// ---- the paired judgement ----

#[test]
fn pairing_sees_through_load_that_hits_both_builds() {
    // The machine's load moves both builds together: by up to ±30% from
    // round to round and ±10% from window to window. The head is 10%
    // slower in every window. Paired window by window the load cancels;
    // comparing each build's rounds on their own, it hides the shift.
    let rounds = 12;
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

    // Each build's rounds on their own overlap: the load hides the shift.
    let fastest_head = s.head.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest_base = s.base.iter().copied().fold(0.0, f64::max);
    assert!(fastest_head < slowest_base, "{:?} {:?}", s.base, s.head);
}

#[test]
fn identical_builds_paired_are_no_change() {
    let mut s = Samples::default();
    for r in 0..12u64 {
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

#[test]
fn the_markdown_header_states_the_exact_coverage_and_old_reports_still_read() {
    let side = |rev: &str| SideReport {
        rev: rev.into(),
        commit: "0123456789abcdef".into(),
        working_tree: false,
        dirty: false,
        env: Vec::new(),
        build_s: 0.0,
        run: None,
    };
    let s = timing_samples(vec![30.0; 12], vec![33.0; 12]);
    let row = report::judge(
        "axum",
        metric("latency/32B:rtt_mean_us"),
        &s,
        &judging(Method::Paired),
    );
    let r = CompareReport {
        schema: 1,
        base: side("main"),
        head: side("HEAD"),
        features: None,
        placement: "same-core".into(),
        rounds: 12,
        window_ms: 100,
        windows: 10,
        method: Method::Paired,
        threshold: 0.01,
        confidence: CONFIDENCE,
        coverage: stats::median_rank(12, CONFIDENCE).map(|r| r.coverage),
        stacks: vec!["axum".into()],
        skipped_stacks: Vec::new(),
        elapsed_s: 1.0,
        regressions: 1,
        rows: vec![row],
        swap: None,
        build_profile: "release".into(),
    };
    let md = wsbench::compare::markdown(&r);
    assert!(
        md.contains("95% requested, 96.1% exact (distribution-free); threshold 1%"),
        "{md}"
    );
    assert!(md.contains("- base: main = 0123456789"), "{md}");
    assert!(!md.contains("profile"), "{md}");

    // Two versions of one crate, in a dev build: the report names both
    // versions, what depends on the crate and the profile.
    let version = |asked: &str, source: Option<&str>, path: Option<&str>| Resolved {
        asked: asked.into(),
        version: "0.13.3".into(),
        source: source.map(String::from),
        path: path.map(PathBuf::from),
        commit: None,
    };
    let mut swapped = r.clone();
    swapped.build_profile = "dev".into();
    swapped.swap = Some(SwapReport {
        crate_name: "tokio-websockets".into(),
        stack: Some("tokio-websockets".into()),
        base: version(
            "crate:0.13.3",
            Some("registry+https://github.com/rust-lang/crates.io-index"),
            None,
        ),
        head: version("path:/src/fork", None, Some("/src/fork")),
        dependents: vec!["tokio-websockets".into()],
        differences: vec![
            "base: tokio-websockets 0.13.3 (crates.io)".into(),
            "head: tokio-websockets 0.13.3 (/src/fork)".into(),
        ],
    });
    let md = wsbench::compare::markdown(&swapped);
    for want in [
        "Two versions of the crate tokio-websockets (the library of the stack tokio-websockets), each built into wsbench 0123456789.",
        "- base: `crate:0.13.3`: tokio-websockets 0.13.3 from crates.io",
        "- head: `path:/src/fork`: tokio-websockets 0.13.3 at /src/fork",
        "- stacks depending on it: tokio-websockets",
        "- Cargo.lock differs in: base: tokio-websockets 0.13.3 (crates.io); head: tokio-websockets 0.13.3 (/src/fork)",
        "- built with cargo's `dev` profile, not release",
    ] {
        assert!(md.contains(want), "{want:?} not in\n{md}");
    }

    // A report written before the coverage was recorded: a bootstrap's
    // resamples and seed, no coverage in the report or its rows.
    let mut old = serde_json::to_value(&r).unwrap();
    let o = old.as_object_mut().unwrap();
    o.remove("coverage");
    o.remove("swap");
    o.remove("build_profile");
    o.insert("resamples".into(), 2000.into());
    o.insert("seed".into(), 1.into());
    o["rows"][0].as_object_mut().unwrap().remove("coverage");
    let back: CompareReport = serde_json::from_value(old).unwrap();
    assert_eq!(back.coverage, None);
    assert!(back.swap.is_none());
    assert_eq!(back.build_profile, "release");
    assert_eq!(back.rows[0].coverage, None);
    assert_eq!(back.rows[0].verdict, Verdict::Regression);
}
