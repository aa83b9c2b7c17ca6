//! Which flamegraphs the report copies, and under which names.
//!
//! Every flamegraph is copied as `flamegraphs/<group>__<stack>__<rest>.svg`;
//! each stack also gets one `flamegraphs/<stack>.svg`, the profile of its
//! small-message round trip when there is one, since that is where the
//! stacks' own code (not the kernel's copying) dominates.

use std::path::PathBuf;

use super::criterion::Flamegraph;
use super::data::{cmp_groups, cmp_stacks, ordered_stacks};

/// The benchmark each stack's main flamegraph should profile, after `latency/<stack>/`.
const PREFERRED_REST: &str = "binary/32B";

/// One file to copy into the report.
#[derive(Debug, Clone, PartialEq)]
pub struct FlameCopy {
    pub source: PathBuf,
    /// Relative to the report directory, with `/` separators.
    pub dest: String,
    pub stack: String,
    /// The profiled benchmark, as `<group>/<stack>/<rest>`.
    pub bench: String,
}

#[derive(Debug, Default)]
pub struct FlamePlan {
    /// One per stack, in stack order.
    pub per_stack: Vec<FlameCopy>,
    /// Every flamegraph, in group then stack order.
    pub all: Vec<FlameCopy>,
}

/// Keeps letters, digits, '-' and '.'; anything else becomes '_', so that
/// an id turns into one flat file name.
fn safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn bench_id(f: &Flamegraph) -> String {
    [f.group.as_str(), f.stack.as_str(), f.rest.as_str()]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

/// Criterion writes '/' inside an id part as '_', so compare with both flattened.
fn same_rest(a: &str, b: &str) -> bool {
    a.replace('/', "_") == b.replace('/', "_")
}

/// The benchmarks of `group` among `benches` (stack, benchmark id
/// `<group>/<stack>/<rest>`) that no flamegraph in `found` profiles, each
/// once, sorted.
pub fn unprofiled(group: &str, benches: &[(&str, &str)], found: &[Flamegraph]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for &(stack, bench) in benches {
        let Some(rest) = bench.strip_prefix(&format!("{group}/{stack}/")) else {
            continue;
        };
        let profiled = found
            .iter()
            .any(|f| f.group == group && f.stack == stack && same_rest(&f.rest, rest));
        if !profiled && !out.iter().any(|b| b == bench) {
            out.push(bench.to_string());
        }
    }
    out.sort();
    out
}

pub fn plan(found: &[Flamegraph]) -> FlamePlan {
    let mut sorted: Vec<&Flamegraph> = found.iter().filter(|f| !f.stack.is_empty()).collect();
    sorted.sort_by(|a, b| {
        cmp_groups(&a.group, &b.group)
            .then_with(|| cmp_stacks(&a.stack, &b.stack))
            .then_with(|| a.rest.cmp(&b.rest))
    });
    let mut plan = FlamePlan::default();
    let mut taken: Vec<String> = Vec::new();
    for f in &sorted {
        let mut name = [safe(&f.group), safe(&f.stack), safe(&f.rest)]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("__");
        // Two ids can flatten to one name ("a/b" and "a_b"): number the later ones.
        let base = name.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.push(name.clone());
        plan.all.push(FlameCopy {
            source: f.path.clone(),
            dest: format!("flamegraphs/{name}.svg"),
            stack: f.stack.clone(),
            bench: bench_id(f),
        });
    }
    for stack in ordered_stacks(sorted.iter().map(|f| f.stack.as_str())) {
        let of_stack: Vec<&&Flamegraph> = sorted.iter().filter(|f| f.stack == stack).collect();
        let pick = of_stack
            .iter()
            .find(|f| f.group == "latency" && same_rest(&f.rest, PREFERRED_REST))
            .or_else(|| of_stack.iter().find(|f| f.group == "latency"))
            .or_else(|| of_stack.first());
        if let Some(f) = pick {
            plan.per_stack.push(FlameCopy {
                source: f.path.clone(),
                dest: format!("flamegraphs/{}.svg", safe(&stack)),
                stack: stack.clone(),
                bench: bench_id(f),
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flame(group: &str, stack: &str, rest: &str) -> Flamegraph {
        Flamegraph {
            path: PathBuf::from(format!("{group}/{stack}/{rest}")),
            group: group.into(),
            stack: stack.into(),
            rest: rest.into(),
        }
    }

    #[test]
    fn picks_the_small_latency_profile() {
        let found = vec![
            flame("throughput", "axum", "binary/1MiB"),
            flame("latency", "axum", "text/32B"),
            flame("latency", "axum", "binary_32B"),
            flame("scaling", "raw-tcp", "100"),
        ];
        let plan = plan(&found);
        assert_eq!(plan.all.len(), 4);
        let axum = plan.per_stack.iter().find(|c| c.stack == "axum").unwrap();
        assert_eq!(axum.bench, "latency/axum/binary_32B");
        assert_eq!(axum.dest, "flamegraphs/axum.svg");
        assert!(plan
            .all
            .iter()
            .any(|c| c.dest == "flamegraphs/throughput__axum__binary_1MiB.svg"));
        let raw = plan
            .per_stack
            .iter()
            .find(|c| c.stack == "raw-tcp")
            .unwrap();
        assert_eq!(raw.bench, "scaling/raw-tcp/100");
    }

    #[test]
    fn finds_the_benchmarks_without_a_profile() {
        let found = vec![
            flame("latency", "axum", "binary_32B"),
            flame("throughput", "axum", "text_32B"),
        ];
        let benches = [
            ("axum", "latency/axum/binary/32B"),
            ("axum", "latency/axum/binary/32B"),
            ("axum", "latency/axum/text/32B"),
            ("raw-tcp", "latency/raw-tcp/binary/32B"),
        ];
        assert_eq!(
            unprofiled("latency", &benches, &found),
            ["latency/axum/text/32B", "latency/raw-tcp/binary/32B"]
        );
    }
}
