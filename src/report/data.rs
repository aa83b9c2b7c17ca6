//! What every output of the report shares: the order of groups, stacks and
//! parameter values, how numbers and parameters are written, and the pivot
//! of one metric into a stacks-by-parameters table.
//!
//! Orders come from the code (the stacks table, the known groups), never from
//! the order figures happen to sit in the file, so that two reports of two
//! runs list things the same way and can be compared side by side.

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::results::Measurement;
use crate::settings::Profile;
use crate::stacks::STACKS;

/// The stack every other is compared against: TCP echo with no WebSocket.
pub const FLOOR_STACK: &str = "raw-tcp";

/// The groups a full `cargo bench` run measures, in the order reports show
/// them. A results file without one of them is a partial run.
pub const EXPECTED_GROUPS: &[&str] = &[
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

/// Position in [`STACKS`]; stacks the table does not know sort after it.
pub fn stack_rank(name: &str) -> usize {
    STACKS
        .iter()
        .position(|s| s.name == name)
        .unwrap_or(STACKS.len())
}

pub fn cmp_stacks(a: &str, b: &str) -> Ordering {
    stack_rank(a).cmp(&stack_rank(b)).then_with(|| a.cmp(b))
}

/// The distinct names, in report order.
pub fn ordered_stacks<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = names.into_iter().collect();
    let mut out: Vec<String> = set.into_iter().map(str::to_string).collect();
    out.sort_by(|a, b| cmp_stacks(a, b));
    out
}

pub fn group_rank(name: &str) -> usize {
    EXPECTED_GROUPS
        .iter()
        .position(|g| *g == name)
        .unwrap_or(EXPECTED_GROUPS.len())
}

pub fn cmp_groups(a: &str, b: &str) -> Ordering {
    group_rank(a).cmp(&group_rank(b)).then_with(|| a.cmp(b))
}

/// A parameter value as plain text: strings without their JSON quotes.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `k=v;k=v`, keys in name order, as results.csv writes parameters.
pub fn params_kv(params: &BTreeMap<String, Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(";")
}

/// Orders values of one parameter: numbers by size, profiles in the order
/// the settings define them, other text by name.
pub fn cmp_values(key: &str, a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => {
            let (ta, tb) = (value_text(a), value_text(b));
            if key == "profile" {
                let rank = |t: &str| {
                    Profile::ALL
                        .iter()
                        .position(|p| p.as_str() == t)
                        .unwrap_or(Profile::ALL.len())
                };
                rank(&ta).cmp(&rank(&tb)).then_with(|| ta.cmp(&tb))
            } else {
                ta.cmp(&tb)
            }
        }
    }
}

/// How a parameter reads in a table row or a plot subtitle: "32 B",
/// "100 conns", "binary".
pub fn param_label(key: &str, v: &Value) -> String {
    if v.is_null() {
        return format!("{key}=–");
    }
    let text = value_text(v);
    let number = v.as_f64();
    match (key, number) {
        ("size_bytes", Some(n)) => fmt_bytes(n),
        ("conns", Some(1.0)) => "1 conn".to_string(),
        ("conns", Some(_)) => format!("{text} conns"),
        ("window", Some(_)) => format!("window {text}"),
        ("cycles", Some(_)) => format!("{text} cycles"),
        ("rounds", Some(_)) => format!("{text} rounds"),
        ("kind" | "profile" | "placement", _) => text,
        _ => format!("{key}={text}"),
    }
}

/// Labels of several parameters, joined for reading.
pub fn params_label(params: &[(String, Value)], sep: &str) -> String {
    params
        .iter()
        .map(|(k, v)| param_label(k, v))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Trims a fixed-point number's trailing zeros: "1.50" -> "1.5", "2.00" -> "2".
fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `v` with `sig` significant digits in fixed-point notation.
pub fn fmt_sig(v: f64, sig: i32) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (sig - 1 - magnitude).max(0) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

/// An integer with thousands separators: 1234567 -> "1,234,567".
pub fn fmt_grouped(v: f64) -> String {
    let rounded = v.round();
    let digits = format!("{}", rounded.abs() as u128);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// A table cell's number: four significant digits, grouped above 1000.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "–".to_string()
    } else if v.abs() >= 1000.0 {
        fmt_grouped(v)
    } else {
        fmt_sig(v, 4)
    }
}

/// Bytes in binary units: "32 B", "1.5 KiB", "16 MiB".
pub fn fmt_bytes(bytes: f64) -> String {
    if !bytes.is_finite() {
        return "–".to_string();
    }
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut scaled = bytes;
    let mut unit = 0;
    while scaled.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    let number = if unit == 0 && scaled.fract() == 0.0 {
        format!("{scaled}")
    } else {
        fmt_sig(scaled, 3)
    };
    format!("{number} {}", UNITS[unit])
}

/// A duration given in nanoseconds, in the unit that reads best.
pub fn fmt_duration_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "–".to_string();
    }
    let (scaled, unit) = if ns.abs() >= 1e9 {
        (ns / 1e9, "s")
    } else if ns.abs() >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns.abs() >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    format!("{} {unit}", fmt_sig(scaled, 4))
}

/// A short number for an axis tick: "500", "2.5k", "10M", "0.01".
pub fn fmt_si(v: f64) -> String {
    let abs = v.abs();
    if abs >= 1e9 {
        format!("{}G", fmt_sig(v / 1e9, 3))
    } else if abs >= 1e6 {
        format!("{}M", fmt_sig(v / 1e6, 3))
    } else if abs >= 1e4 {
        format!("{}k", fmt_sig(v / 1e3, 3))
    } else {
        fmt_sig(v, 3)
    }
}

/// A value in the unit the results file gives it.
pub fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "bytes" => fmt_bytes(v),
        _ => fmt_num(v),
    }
}

/// The unit as a reader writes it.
pub fn unit_label(unit: &str) -> &str {
    match unit {
        "us" => "µs",
        other => other,
    }
}

pub use crate::metrics::Better;

/// A figure that [`Pivot`] places in a cell.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Value(&'a Measurement),
    /// The bench did not measure this point; the measurement's detail says why.
    Skipped(&'a Measurement),
}

/// One metric laid out with parameters as rows and stacks as columns.
///
/// Rows are the parameters that vary between the figures; parameters that
/// are the same everywhere go in [`Pivot::constant`] so that a row reads
/// "1 KiB" rather than "binary · 1 KiB · window 64 · 1 conn".
#[derive(Debug)]
pub struct Pivot<'a> {
    pub varying: Vec<String>,
    pub constant: Vec<(String, Value)>,
    /// One value per varying key, in the keys' order.
    pub rows: Vec<Vec<Value>>,
    pub stacks: Vec<String>,
    pub cells: BTreeMap<(usize, usize), Cell<'a>>,
    /// Figures that landed on an already filled cell (the first one is kept).
    pub duplicates: usize,
}

impl<'a> Pivot<'a> {
    /// Lays out `values`; `skipped` are points the bench did not measure,
    /// shown in the cells no value fills.
    pub fn new(values: &[&'a Measurement], skipped: &[&'a Measurement]) -> Pivot<'a> {
        let all: Vec<&Measurement> = values.iter().chain(skipped).copied().collect();
        let keys: BTreeSet<&String> = all.iter().flat_map(|m| m.params.keys()).collect();
        let mut varying = Vec::new();
        let mut constant = Vec::new();
        for key in keys {
            let first = all[0].params.get(key).cloned().unwrap_or(Value::Null);
            if all
                .iter()
                .all(|m| m.params.get(key).unwrap_or(&Value::Null) == &first)
            {
                constant.push((key.clone(), first));
            } else {
                varying.push(key.clone());
            }
        }
        let row_of = |m: &Measurement| -> Vec<Value> {
            varying
                .iter()
                .map(|k| m.params.get(k).cloned().unwrap_or(Value::Null))
                .collect()
        };
        let mut rows: Vec<Vec<Value>> = Vec::new();
        for m in &all {
            let row = row_of(m);
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
        rows.sort_by(|a, b| {
            varying
                .iter()
                .zip(a.iter().zip(b))
                .map(|(k, (x, y))| cmp_values(k, x, y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
        let stacks = ordered_stacks(all.iter().map(|m| m.stack.as_str()));
        let mut cells = BTreeMap::new();
        let mut duplicates = 0;
        for m in values {
            let key = Self::position(&rows, &stacks, &row_of(m), &m.stack);
            match cells.entry(key) {
                Entry::Occupied(_) => duplicates += 1,
                Entry::Vacant(slot) => {
                    slot.insert(Cell::Value(m));
                }
            }
        }
        for m in skipped {
            let key = Self::position(&rows, &stacks, &row_of(m), &m.stack);
            cells.entry(key).or_insert(Cell::Skipped(m));
        }
        Pivot {
            varying,
            constant,
            rows,
            stacks,
            cells,
            duplicates,
        }
    }

    fn position(
        rows: &[Vec<Value>],
        stacks: &[String],
        row: &[Value],
        stack: &str,
    ) -> (usize, usize) {
        // Both were built from the same measurements, so both are found.
        let r = rows.iter().position(|x| x.as_slice() == row).unwrap_or(0);
        let s = stacks.iter().position(|x| x == stack).unwrap_or(0);
        (r, s)
    }

    pub fn row_label(&self, row: usize) -> String {
        if self.varying.is_empty() {
            return "all".to_string();
        }
        let pairs: Vec<(String, Value)> = self
            .varying
            .iter()
            .cloned()
            .zip(self.rows[row].iter().cloned())
            .collect();
        params_label(&pairs, " · ")
    }

    /// The measured value in a cell, if any.
    pub fn value(&self, row: usize, stack: usize) -> Option<&'a Measurement> {
        match self.cells.get(&(row, stack)) {
            Some(Cell::Value(m)) => Some(*m),
            _ => None,
        }
    }

    /// The source most cells come from; cells from another source get marked.
    pub fn main_source(&self) -> Option<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for cell in self.cells.values() {
            if let Cell::Value(m) = cell {
                *counts.entry(m.source.as_str()).or_default() += 1;
            }
        }
        let most = counts.values().copied().max()?;
        counts
            .into_iter()
            .find(|(_, n)| *n == most)
            .map(|(s, _)| s.to_string())
    }

    /// The unit most cells carry.
    pub fn main_unit(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for cell in self.cells.values() {
            if let Cell::Value(m) = cell {
                *counts.entry(m.unit.as_str()).or_default() += 1;
            }
        }
        let most = counts.values().copied().max().unwrap_or(0);
        counts
            .into_iter()
            .find(|(_, n)| *n == most)
            .map(|(u, _)| u.to_string())
            .unwrap_or_default()
    }
}

/// How a figure compares with the best WebSocket stack of its row and with
/// the floor: how many times slower or costlier (1.0 = the same).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    pub to_best: Option<f64>,
    pub to_floor: Option<f64>,
}

/// "Times worse than" `reference`; `None` when either side is zero or not a
/// number, since a ratio to nothing says nothing.
pub fn times_worse(value: f64, reference: f64, better: Better) -> Option<f64> {
    let ratio = match better {
        Better::Lower => value / reference,
        Better::Higher => reference / value,
        Better::Neither => return None,
    };
    (value > 0.0 && reference > 0.0 && ratio.is_finite()).then_some(ratio)
}

/// Ratios for every stack of one row. The best excludes the floor: it is
/// not WebSocket, so including it would make both ratios the same.
pub fn row_ratios(pivot: &Pivot, row: usize, better: Better) -> BTreeMap<usize, Ratios> {
    let values: Vec<(usize, f64)> = (0..pivot.stacks.len())
        .filter_map(|s| pivot.value(row, s).map(|m| (s, m.value)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let floor = values
        .iter()
        .find(|(s, _)| pivot.stacks[*s] == FLOOR_STACK)
        .map(|(_, v)| *v);
    let contenders = values
        .iter()
        .filter(|(s, v)| pivot.stacks[*s] != FLOOR_STACK && *v > 0.0);
    let best = match better {
        Better::Lower => contenders.map(|(_, v)| *v).min_by(f64::total_cmp),
        Better::Higher => contenders.map(|(_, v)| *v).max_by(f64::total_cmp),
        Better::Neither => None,
    };
    values
        .iter()
        .map(|(s, v)| {
            let to_best = best.and_then(|b| times_worse(*v, b, better));
            let to_floor = floor.and_then(|f| times_worse(*v, f, better));
            (*s, Ratios { to_best, to_floor })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_bytes(32.0), "32 B");
        assert_eq!(fmt_bytes(1536.0), "1.5 KiB");
        assert_eq!(fmt_bytes(16.0 * 1024.0 * 1024.0), "16 MiB");
        assert_eq!(fmt_grouped(1234567.0), "1,234,567");
        assert_eq!(fmt_grouped(-1234.0), "-1,234");
        assert_eq!(fmt_num(12.3456), "12.35");
        assert_eq!(fmt_num(0.012345), "0.01235");
        assert_eq!(fmt_si(25_000.0), "25k");
        assert_eq!(fmt_duration_ns(1500.0), "1.5 µs");
    }

    #[test]
    fn ratios_are_times_worse() {
        assert_eq!(times_worse(20.0, 10.0, Better::Lower), Some(2.0));
        assert_eq!(times_worse(50.0, 100.0, Better::Higher), Some(2.0));
        assert_eq!(times_worse(0.0, 100.0, Better::Higher), None);
    }
}
