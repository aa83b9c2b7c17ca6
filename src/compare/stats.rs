//! The statistics of a comparison: pure functions, no I/O, no clocks, so
//! that `tests/compare.rs` can check them on synthetic data.
//!
//! Timings and rates are compared by a distribution-free confidence
//! interval of the median of the per-round head/base ratios: two of the
//! sorted ratios, chosen so that the binomial law gives the coverage;
//! deterministic figures (allocations, bytes) exactly, up to a stated
//! tolerance.

use serde::{Deserialize, Serialize};

/// The confidence asked of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// A small xorshift64* generator: reproducible simulations without a crate.
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
    /// n / 2^64, far under anything a simulation of this size can see.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A uniform number in [0, 1), from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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

/// P(Binomial(n, 1/2) <= k). Summed in logarithms, so that 2^-n does not
/// underflow for large n.
pub fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    if k >= n {
        return 1.0;
    }
    let mut ln_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut sum = 0.0;
    for i in 0..=k {
        sum += ln_pmf.exp();
        // C(n, i+1) = C(n, i) * (n - i) / (i + 1)
        ln_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    sum.min(1.0)
}

/// Which two order statistics bound the median of `n` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianRank {
    /// The interval is (x_(k), x_(n+1-k)), counting from 1 in sorted order.
    pub k: usize,
    /// The exact probability that the interval holds the median of a
    /// continuous distribution: 1 - 2 P(Binomial(n, 1/2) <= k - 1).
    pub coverage: f64,
}

/// The largest `k` whose interval (x_(k), x_(n+1-k)) covers the median
/// with at least `confidence`; `None` when even (min, max) falls short
/// (fewer than 6 values for 95%).
pub fn median_rank(n: usize, confidence: f64) -> Option<MedianRank> {
    let mut best = None;
    for k in 1..=n.div_ceil(2) {
        let coverage = 1.0 - 2.0 * binomial_half_cdf(n, k - 1);
        if coverage < confidence {
            break;
        }
        best = Some(MedianRank { k, coverage });
    }
    best
}

/// The fewest values for which [`median_rank`] gives an interval.
pub fn min_values_for(confidence: f64) -> usize {
    // (min, max) covers with 1 - 2^(1-n), which reaches any confidence
    // below 1; the bound keeps a confidence of 1 from looping forever.
    (1..=64)
        .find(|&n| median_rank(n, confidence).is_some())
        .unwrap_or(usize::MAX)
}

/// The distribution-free interval of a median and its exact coverage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianInterval {
    pub interval: Interval,
    pub rank: MedianRank,
}

/// Why a median has no interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoInterval {
    /// No values, or one of them is NaN.
    Undefined,
    /// Too few values for the confidence asked.
    TooFew { values: usize, needed: usize },
}

/// The order-statistic interval of the median of `values`: independent
/// draws from one continuous distribution give an interval that holds its
/// median with exactly `rank.coverage`, whatever the distribution.
pub fn median_interval(values: &[f64], confidence: f64) -> Result<MedianInterval, NoInterval> {
    if values.is_empty() || values.iter().any(|x| x.is_nan()) {
        return Err(NoInterval::Undefined);
    }
    let n = values.len();
    let rank = median_rank(n, confidence).ok_or(NoInterval::TooFew {
        values: n,
        needed: min_values_for(confidence),
    })?;
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Ok(MedianInterval {
        interval: Interval {
            lo: v[rank.k - 1],
            hi: v[n - rank.k],
        },
        rank,
    })
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
