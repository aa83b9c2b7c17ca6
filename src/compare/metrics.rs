//! The metrics a comparison judges, and how: one row each. A metric that a
//! round writes but this table does not list is kept in the round files
//! and not judged.

use super::stats::Better;

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Varies from round to round: bootstrap interval of the ratio against
    /// the threshold.
    Timing,
    /// The same in every round of one build: medians compared exactly, up
    /// to `tolerance` in the metric's unit.
    Exact { tolerance: f64 },
}

#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub kind: Kind,
    /// What it measures, for the report's legend.
    pub what: &'static str,
}

/// Every judged metric, in report order.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "rtt_p50_us",
        unit: "us",
        better: Better::Lower,
        kind: Kind::Timing,
        what: "median round trip, 1 conn, 32 B binary, 1 in flight",
    },
    MetricDef {
        name: "rtt_mean_us",
        unit: "us",
        better: Better::Lower,
        kind: Kind::Timing,
        what: "mean round trip (wall clock / round trips), same run",
    },
    MetricDef {
        name: "rtt_p99_us",
        unit: "us",
        better: Better::Lower,
        kind: Kind::Timing,
        what: "99th percentile round trip, same run",
    },
    MetricDef {
        name: "server_cpu_ns_per_rtt",
        unit: "ns",
        better: Better::Lower,
        kind: Kind::Timing,
        what: "server CPU time (user + system) per round trip, same run",
    },
    MetricDef {
        name: "msgs_per_s",
        unit: "msgs/s",
        better: Better::Higher,
        kind: Kind::Timing,
        what: "echoed messages per second, 1 conn, 16 KiB binary, 16 in flight",
    },
    MetricDef {
        name: "server_cpu_ns_per_msg_16KiB",
        unit: "ns",
        better: Better::Lower,
        kind: Kind::Timing,
        what: "server CPU time per 16 KiB message, same run",
    },
    MetricDef {
        name: "server_allocs_per_rtt",
        unit: "allocs",
        better: Better::Lower,
        kind: Kind::Exact { tolerance: 0.0 },
        what: "server heap allocations per 32 B round trip (fixed count of round trips)",
    },
    MetricDef {
        name: "server_alloc_bytes_per_rtt",
        unit: "bytes",
        better: Better::Lower,
        kind: Kind::Exact { tolerance: 0.0 },
        what: "server bytes allocated per 32 B round trip",
    },
    MetricDef {
        name: "live_bytes_per_idle_conn",
        unit: "bytes",
        better: Better::Lower,
        // One server-wide 512-byte block is allocated or not from process
        // to process (actix-ws, about 1 round in 15): 5.12 bytes per
        // connection at 100 connections. Anything a connection holds
        // costs at least 8 bytes (a pointer-sized field or a small
        // allocation), so 8 separates the two.
        kind: Kind::Exact { tolerance: 8.0 },
        what: "growth of the server's live heap per idle connection (100 connections)",
    },
];

/// The table row of a metric, if it is judged.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}
