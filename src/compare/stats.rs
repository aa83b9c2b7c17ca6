//! The statistics of a comparison: pure functions, no I/O, no clocks, so
//! that `tests/compare.rs` can check them on synthetic data.
//!
//! Timings and rates are compared by a bootstrap confidence interval of the
//! head/base ratio; deterministic figures (allocations, bytes) exactly, up
//! to a stated tolerance.

use serde::{Deserialize, Serialize};

/// A small xorshift64* generator: reproducible resampling without a crate.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A zero seed would stay zero forever, so it is replaced.
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64 {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform index below `n` (`n` > 0). The modulo bias is below
    /// n / 2^64, far under anything a bootstrap of a few rounds can see.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The median; the mean of the two middle values for an even count.
/// `None` for an empty slice or one holding NaN.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A closed interval of ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// How the bootstrap is run.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub resamples: usize,
    /// 0.95 for a 95% interval.
    pub confidence: f64,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 2000,
            confidence: 0.95,
            seed: 0x5EED_5EED_5EED_5EED,
        }
    }
}

impl Bootstrap {
    /// The percentile interval of `stat` over resamples drawn by `draw`.
    fn interval(&self, mut draw: impl FnMut(&mut XorShift64) -> Option<f64>) -> Option<Interval> {
        let mut rng = XorShift64::new(self.seed);
        let mut stats = Vec::with_capacity(self.resamples);
        for _ in 0..self.resamples {
            stats.push(draw(&mut rng)?);
        }
        if stats.is_empty() {
            return None;
        }
        stats.sort_by(f64::total_cmp);
        let tail = (1.0 - self.confidence) / 2.0;
        let n = stats.len();
        let lo = ((tail * n as f64).floor() as usize).min(n - 1);
        let hi = (((1.0 - tail) * n as f64).ceil() as usize)
            .saturating_sub(1)
            .min(n - 1);
        Some(Interval {
            lo: stats[lo],
            hi: stats[hi],
        })
    }

    /// Interval of median(head) / median(base), resampling each side's
    /// rounds independently. `None` when a side is empty or a base median
    /// is zero.
    pub fn ratio_of_medians(&self, base: &[f64], head: &[f64]) -> Option<Interval> {
        if base.is_empty() || head.is_empty() {
            return None;
        }
        let mut b = vec![0.0; base.len()];
        let mut h = vec![0.0; head.len()];
        self.interval(|rng| {
            for x in b.iter_mut() {
                *x = base[rng.below(base.len())];
            }
            for x in h.iter_mut() {
                *x = head[rng.below(head.len())];
            }
            ratio(median(&b)?, median(&h)?)
        })
    }

    /// Interval of the median of `values`, resampled.
    pub fn median(&self, values: &[f64]) -> Option<Interval> {
        if values.is_empty() {
            return None;
        }
        let mut r = vec![0.0; values.len()];
        self.interval(|rng| {
            for x in r.iter_mut() {
                *x = values[rng.below(values.len())];
            }
            median(&r)
        })
    }

    /// Interval of the median of the per-pair ratios head_k / base_k,
    /// resampling pairs. Pair k holds the two builds measured back to back,
    /// so load that lasts longer than one pair cancels out of its ratio.
    pub fn median_of_paired_ratios(&self, pairs: &[(f64, f64)]) -> Option<Interval> {
        self.median(&paired_ratios(pairs)?)
    }
}

/// head / base, or `None` when base is zero or either is not finite.
pub fn ratio(base: f64, head: f64) -> Option<f64> {
    let r = head / base;
    (base != 0.0 && r.is_finite()).then_some(r)
}

/// head_k / base_k for each pair; `None` when empty or a ratio is undefined.
pub fn paired_ratios(pairs: &[(f64, f64)]) -> Option<Vec<f64>> {
    if pairs.is_empty() {
        return None;
    }
    pairs.iter().map(|&(b, h)| ratio(b, h)).collect()
}

pub use crate::metrics::Better;

/// The outcome for one metric of one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Worse beyond the threshold with the stated confidence (for exact
    /// metrics: worse beyond the tolerance).
    Regression,
    Improvement,
    /// Within the threshold with the stated confidence (the whole interval
    /// lies inside it), or exactly equal up to the tolerance.
    NoChange,
    /// The interval reaches past the threshold without lying beyond it:
    /// the rounds were too noisy to tell. Not a regression.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::NoChange => "no change",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The verdict of a timing or rate from the interval of head/base.
///
/// `threshold` is symmetric in cost: 0.05 means 1.05 times the time, or
/// 1/1.05 times the rate, is the smallest change called a regression (and
/// 1/1.05 the time, or 1.05 the rate, the smallest improvement).
pub fn timing_verdict(interval: Interval, better: Better, threshold: f64) -> Verdict {
    // Turn the interval into one of cost ratios (higher = worse).
    let (lo, hi) = match better {
        Better::Lower => (interval.lo, interval.hi),
        Better::Higher => (1.0 / interval.hi, 1.0 / interval.lo),
        // Neither worse nor better: nothing to judge.
        Better::Neither => return Verdict::Inconclusive,
    };
    let worse = 1.0 + threshold;
    let better_bound = 1.0 / worse;
    if lo > worse {
        Verdict::Regression
    } else if hi < better_bound {
        Verdict::Improvement
    } else if lo >= better_bound && hi <= worse {
        Verdict::NoChange
    } else {
        Verdict::Inconclusive
    }
}

/// The verdict of a deterministic figure from the medians: any change
/// counts, except one smaller than `tolerance` (in the metric's unit; 0 =
/// exact).
pub fn exact_verdict(base: f64, head: f64, better: Better, tolerance: f64) -> Verdict {
    let diff = head - base;
    if diff == 0.0 || diff.abs() < tolerance {
        return Verdict::NoChange;
    }
    let worse = match better {
        Better::Lower => diff > 0.0,
        Better::Higher => diff < 0.0,
        Better::Neither => return Verdict::Inconclusive,
    };
    if worse {
        Verdict::Regression
    } else {
        Verdict::Improvement
    }
}
