//! Interleaved rounds across stacks, and what they let a report claim.
//!
//! A timed group measures every case of one block (every stack, and every
//! variant the group compares directly, e.g. both echo policies) once per
//! round, in an order rotated by one each round, so the machine's drift
//! hits all of them alike. Each figure is then the median over rounds with
//! a distribution-free interval ([`crate::compare::stats::median_interval`]),
//! and two figures of one block are compared by the median of their
//! per-round ratios, round i of one against round i of the other.
//!
//! A report calls one figure lower or higher than another only when the
//! whole interval of that ratio lies beyond [`CLAIM_THRESHOLD`]; otherwise
//! the two are "within noise". A reference run published with its pair, a
//! second full run of the same commit ([`crate::results::attach_pair`]),
//! carries the pair's rounds beside its own, and then a ratio's interval
//! spans both runs' intervals: a claim is made only where each run makes
//! it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::Budget;
use crate::compare::stats::{self, Interval, CONFIDENCE};
use crate::metrics::Metric;

/// The smallest difference a report calls a difference between two
/// stacks: 10%. `wsbench compare` judges 3% between two builds, measured
/// window by window in one pair of processes; two stacks in a report are
/// also compared across runs, where each run is a new set of processes
/// (new memory layout, new placement of pages), and a claim is only worth
/// making when another run at another time makes it too.
pub const CLAIM_THRESHOLD: f64 = 0.10;

/// How many rounds, and how long each case runs in each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundPlan {
    pub rounds: usize,
    /// The measured stretch of one case in one round.
    pub stretch: Duration,
    /// Run before every measured stretch and thrown away: the case's first
    /// round trips after another case ran (cold caches, a parked server
    /// thread) are not its figure.
    pub warm_up: Duration,
}

impl RoundPlan {
    /// Rounds of `stretch`, each after a warm-up of a fifth of it.
    pub fn new(rounds: usize, stretch: Duration) -> RoundPlan {
        RoundPlan {
            rounds,
            stretch,
            warm_up: stretch / 5,
        }
    }
}

/// The order in which `round` visits `n` cases: 0..n rotated left by
/// `round`, so each case is first, second, ... in turn.
pub fn order(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n.max(1)).collect()
}

/// Runs `plan.rounds` rounds over `cases`: in each, every case in
/// [`order`], first for the warm-up (its result dropped), then for the
/// measured stretch. `stretch` runs a case until the budget's deadline.
/// Returns each case's measured results in round order (`[case][round]`);
/// the first error ends the rounds, with the index of its case.
pub fn interleave<C, S, E>(
    cases: &mut [C],
    plan: RoundPlan,
    mut stretch: impl FnMut(&mut C, Budget) -> Result<S, E>,
) -> Result<Vec<Vec<S>>, (usize, E)> {
    let mut out: Vec<Vec<S>> = (0..cases.len())
        .map(|_| Vec::with_capacity(plan.rounds))
        .collect();
    for round in 0..plan.rounds {
        for i in order(cases.len(), round) {
            let case = &mut cases[i];
            if !plan.warm_up.is_zero() {
                stretch(case, Budget::Until(Instant::now() + plan.warm_up)).map_err(|e| (i, e))?;
            }
            let measured =
                stretch(case, Budget::Until(Instant::now() + plan.stretch)).map_err(|e| (i, e))?;
            out[i].push(measured);
        }
    }
    Ok(out)
}

/// A figure's rounds, as results.json keeps them beside its value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rounds {
    /// Which rounds: figures with the same block were measured in the same
    /// rounds, round i of each close in time to round i of the others.
    pub block: String,
    /// The figure in each round, in round order.
    pub values: Vec<f64>,
    /// The median's interval: order statistics of `values` covering it
    /// with `coverage` (distribution-free); absent with too few rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// The same figure in each round of the pair's run, where one is
    /// attached; it pairs with the pair's values of the other figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<Vec<f64>>,
}

impl Rounds {
    /// The rounds of `values`, with their median's interval where the
    /// count allows one.
    pub fn new(block: &str, values: Vec<f64>) -> Rounds {
        let mi = stats::median_interval(&values, CONFIDENCE).ok();
        Rounds {
            block: block.to_string(),
            interval: mi.map(|m| m.interval),
            coverage: mi.map(|m| m.rank.coverage),
            values,
            pair: None,
        }
    }

    /// The median over rounds (the figure's value).
    pub fn median(&self) -> f64 {
        stats::median(&self.values).unwrap_or(f64::NAN)
    }
}

/// Whether a figure measured in rounds is the median of its rounds or
/// their total (counts such as the echoes verified).
pub fn is_total(metric: &Metric) -> bool {
    metric.name == crate::metrics::ROUND_TRIPS_VERIFIED.name
}

/// Where figure A stands against figure B of the same block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// The whole interval of A/B lies below 1/(1 + threshold).
    Lower,
    /// The whole interval lies above 1 + threshold.
    Higher,
    /// The interval reaches inside the threshold: no claim either way.
    WithinNoise,
}

/// Where a ratio whose interval is `interval` stands against 1 with
/// `threshold`: the one rule every claim of a report is made by.
pub fn standing(interval: Interval, threshold: f64) -> Standing {
    if interval.hi < 1.0 / (1.0 + threshold) {
        Standing::Lower
    } else if interval.lo > 1.0 + threshold {
        Standing::Higher
    } else {
        Standing::WithinNoise
    }
}

/// A against B, round by round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Median of the per-round ratios A_i / B_i (of this run, with a pair).
    pub ratio: f64,
    /// With a pair: from the lower of the two runs' lower ends to the
    /// higher of their upper ends.
    pub interval: Interval,
    /// Each run's interval's own coverage (the lower of the two).
    pub coverage: f64,
    /// Rounds per run.
    pub rounds: usize,
    /// 1, or 2 with the pair's run.
    pub runs: usize,
}

impl Paired {
    /// A/B of two figures measured in the same rounds; `None` when they
    /// are of different blocks or round counts, a ratio is undefined, the
    /// rounds are too few for an interval, or one figure has a pair's
    /// rounds and the other has none (no claim from one run where the
    /// others need two).
    pub fn of(a: &Rounds, b: &Rounds) -> Option<Paired> {
        if a.block != b.block {
            return None;
        }
        let this = Paired::of_one_run(&a.values, &b.values)?;
        match (&a.pair, &b.pair) {
            (None, None) => Some(this),
            (Some(pa), Some(pb)) => {
                let other = Paired::of_one_run(pa, pb)?;
                Some(Paired {
                    interval: Interval {
                        lo: this.interval.lo.min(other.interval.lo),
                        hi: this.interval.hi.max(other.interval.hi),
                    },
                    coverage: this.coverage.min(other.coverage),
                    runs: 2,
                    ..this
                })
            }
            _ => None,
        }
    }

    fn of_one_run(a: &[f64], b: &[f64]) -> Option<Paired> {
        if a.len() != b.len() {
            return None;
        }
        let pairs: Vec<(f64, f64)> = b.iter().copied().zip(a.iter().copied()).collect();
        let ratios = stats::paired_ratios(&pairs)?;
        let mi = stats::median_interval(&ratios, CONFIDENCE).ok()?;
        Some(Paired {
            ratio: stats::median(&ratios)?,
            interval: mi.interval,
            coverage: mi.rank.coverage,
            rounds: ratios.len(),
            runs: 1,
        })
    }

    /// Where A stands against B, with `threshold` (e.g. [`CLAIM_THRESHOLD`]).
    pub fn standing(&self, threshold: f64) -> Standing {
        standing(self.interval, threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_leads_a_round_in_turn() {
        assert_eq!(order(3, 0), vec![0, 1, 2]);
        assert_eq!(order(3, 1), vec![1, 2, 0]);
        assert_eq!(order(3, 5), vec![2, 0, 1]);
        assert!(order(0, 3).is_empty());
    }

    /// A case whose first calls are slow: the warm-up calls take them, so
    /// none reaches a measured round.
    #[test]
    fn warm_up_never_enters_the_rounds() {
        let plan = RoundPlan {
            rounds: 4,
            stretch: Duration::ZERO,
            warm_up: Duration::from_nanos(1),
        };
        // Per case: calls so far. The first call of each case is slow.
        let mut cases = vec![0u32, 0u32];
        let got = interleave(&mut cases, plan, |calls, _| -> Result<f64, ()> {
            *calls += 1;
            Ok(if *calls == 1 { 1000.0 } else { 10.0 })
        })
        .unwrap();
        assert_eq!(got, vec![vec![10.0; 4], vec![10.0; 4]]);
        // Warm-up and measured call per case per round.
        assert_eq!(cases, vec![8, 8]);
    }

    #[test]
    fn a_failing_case_is_named() {
        let plan = RoundPlan::new(2, Duration::ZERO);
        let mut cases = vec!["a", "b"];
        let err = interleave(&mut cases, plan, |c, _| {
            if *c == "b" {
                Err("down")
            } else {
                Ok(1)
            }
        })
        .unwrap_err();
        assert_eq!(err, (1, "down"));
    }

    fn rounds(block: &str, values: &[f64]) -> Rounds {
        Rounds::new(block, values.to_vec())
    }

    #[test]
    fn pairs_only_within_a_block() {
        let a = rounds("x", &[1.0; 12]);
        let b = rounds("y", &[2.0; 12]);
        assert!(Paired::of(&a, &b).is_none());
        let b = rounds("x", &[2.0; 11]);
        assert!(Paired::of(&a, &b).is_none());
    }

    /// Drift that moves both stacks alike cancels in the paired ratio.
    #[test]
    fn drift_shared_by_a_round_cancels() {
        let drift: Vec<f64> = (0..12)
            .map(|i| 1.0 + 0.6 * ((i * 7 % 12) as f64 / 11.0))
            .collect();
        let a: Vec<f64> = drift.iter().map(|d| 10.0 * d).collect();
        let b: Vec<f64> = drift.iter().map(|d| 12.0 * d).collect();
        let p = Paired::of(&rounds("x", &a), &rounds("x", &b)).unwrap();
        assert!((p.ratio - 10.0 / 12.0).abs() < 1e-9);
        assert_eq!(p.standing(CLAIM_THRESHOLD), Standing::Lower);
        // The figures' own intervals overlap: drift is in each of them.
        let (ia, ib) = (
            rounds("x", &a).interval.unwrap(),
            rounds("x", &b).interval.unwrap(),
        );
        assert!(ia.hi > ib.lo);
    }

    fn with_pair(r: Rounds, pair: &[f64]) -> Rounds {
        Rounds {
            pair: Some(pair.to_vec()),
            ..r
        }
    }

    /// With a pair, a ratio is a claim only where both runs make it, and
    /// its interval spans both runs' intervals.
    #[test]
    fn a_pair_claims_only_what_both_runs_claim() {
        let b = [10.0; 12];
        let fast = [8.0, 8.1, 7.9, 8.0, 8.2, 7.8, 8.0, 8.1, 7.9, 8.0, 8.0, 8.1];
        let even = [
            10.0, 9.9, 10.1, 10.0, 10.2, 9.8, 10.0, 9.9, 10.1, 10.0, 10.0, 9.9,
        ];
        let faster = [7.0; 12];
        let one = Paired::of(&rounds("x", &fast), &rounds("x", &b)).unwrap();
        assert_eq!(
            (one.standing(CLAIM_THRESHOLD), one.runs),
            (Standing::Lower, 1)
        );

        // The pair's run saw no difference: no claim.
        let a = with_pair(rounds("x", &fast), &even);
        let p = Paired::of(&a, &with_pair(rounds("x", &b), &b)).unwrap();
        assert_eq!(
            (p.standing(CLAIM_THRESHOLD), p.runs),
            (Standing::WithinNoise, 2)
        );
        assert_eq!(p.ratio, one.ratio);
        assert!(p.interval.hi >= 0.99);

        // Both runs claim it: still a claim, over the span of both.
        let a = with_pair(rounds("x", &fast), &faster);
        let p = Paired::of(&a, &with_pair(rounds("x", &b), &b)).unwrap();
        assert_eq!(p.standing(CLAIM_THRESHOLD), Standing::Lower);
        assert_eq!(p.interval.lo, 0.7);
        assert_eq!(p.interval.hi, one.interval.hi);

        // Only one figure has the pair's rounds: no ratio at all.
        assert!(Paired::of(&a, &rounds("x", &b)).is_none());
        assert!(Paired::of(&rounds("x", &fast), &with_pair(rounds("x", &b), &b)).is_none());
    }

    #[test]
    fn a_small_gap_is_within_noise() {
        let a = [
            1.0, 1.02, 0.99, 1.01, 1.0, 1.03, 0.98, 1.0, 1.01, 1.02, 0.99, 1.0,
        ];
        let b = [1.0; 12];
        let p = Paired::of(&rounds("x", &a), &rounds("x", &b)).unwrap();
        assert_eq!(p.standing(CLAIM_THRESHOLD), Standing::WithinNoise);
        assert!((p.coverage - 0.961).abs() < 0.001);
    }
}
