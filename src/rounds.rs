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
//! the two are "within noise".

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
    /// Median of the per-round ratios A_i / B_i.
    pub ratio: f64,
    pub interval: Interval,
    pub coverage: f64,
    pub rounds: usize,
}

impl Paired {
    /// A/B of two figures measured in the same rounds; `None` when they
    /// are of different blocks or round counts, a ratio is undefined, or
    /// the rounds are too few for an interval.
    pub fn of(a: &Rounds, b: &Rounds) -> Option<Paired> {
        if a.block != b.block || a.values.len() != b.values.len() {
            return None;
        }
        let pairs: Vec<(f64, f64)> = b
            .values
            .iter()
            .copied()
            .zip(a.values.iter().copied())
            .collect();
        let ratios = stats::paired_ratios(&pairs)?;
        let mi = stats::median_interval(&ratios, CONFIDENCE).ok()?;
        Some(Paired {
            ratio: stats::median(&ratios)?,
            interval: mi.interval,
            coverage: mi.rank.coverage,
            rounds: ratios.len(),
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
