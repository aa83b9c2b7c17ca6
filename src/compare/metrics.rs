//! The figures a comparison judges, and how: one row each, naming a
//! catalogue metric and the phase of the quick set that measured it. A
//! figure that a round writes but this table does not list is kept in the
//! round files and not judged.

use crate::metrics::{self, Better, Metric};
use crate::results::Measurement;

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Varies from round to round: an interval of the ratio against the
    /// threshold.
    Timing,
    /// The same in every round of one build: medians compared exactly, up
    /// to `tolerance` in the metric's unit.
    Exact { tolerance: f64 },
}

/// The phases of the quick measurement set, as the last part of a
/// measurement's bench id (`compare/<stack>/<phase>`).
pub const IDLE: &str = "idle";
pub const ALLOCS: &str = "allocs/32B";
pub const LATENCY: &str = "latency/32B";
pub const THROUGHPUT: &str = "throughput/16KiB";

#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub metric: &'static Metric,
    /// Which phase measured it (one of the constants above).
    pub phase: &'static str,
    pub kind: Kind,
    /// What it measures, for the report's legend.
    pub what: &'static str,
}

impl MetricDef {
    pub fn name(&self) -> &'static str {
        self.metric.name
    }

    pub fn unit(&self) -> &'static str {
        self.metric.unit.as_str()
    }

    /// Lower or higher; judged metrics are never `Neither`.
    pub fn better(&self) -> Better {
        self.metric.better
    }

    /// The key of its samples: phase and metric.
    pub fn key(&self) -> String {
        key(self.phase, self.metric.name)
    }
}

/// "latency/32B:rtt_p50_us".
pub fn key(phase: &str, metric: &str) -> String {
    format!("{phase}:{metric}")
}

/// The key of a measurement of a round file: its phase (the bench id
/// without `compare/<stack>/`) and metric.
pub fn key_of(m: &Measurement) -> String {
    let prefix = format!("{}/{}/", super::measure::GROUP, m.stack);
    let phase = m.bench.strip_prefix(&prefix).unwrap_or(&m.bench);
    key(phase, &m.metric)
}

const fn timing(metric: &'static Metric, phase: &'static str, what: &'static str) -> MetricDef {
    MetricDef {
        metric,
        phase,
        kind: Kind::Timing,
        what,
    }
}

/// Every judged figure, in report order.
pub const METRICS: &[MetricDef] = &[
    timing(
        &metrics::RTT_P50_US,
        LATENCY,
        "median round trip, 1 conn, 32 B binary, 1 in flight",
    ),
    timing(
        &metrics::RTT_MEAN_US,
        LATENCY,
        "mean round trip (wall clock / round trips), same run",
    ),
    timing(
        &metrics::RTT_P99_US,
        LATENCY,
        "99th percentile round trip, same run",
    ),
    timing(
        &metrics::SERVER_CPU_NS_PER_MSG,
        LATENCY,
        "server CPU time (user + system) per round trip, same run",
    ),
    timing(
        &metrics::CLIENT_CPU_NS_PER_MSG,
        LATENCY,
        "client CPU time per round trip, same run",
    ),
    timing(
        &metrics::MSGS_PER_S,
        THROUGHPUT,
        "echoed messages per second, 1 conn, 16 KiB binary, 16 in flight",
    ),
    timing(
        &metrics::SERVER_CPU_NS_PER_MSG,
        THROUGHPUT,
        "server CPU time per 16 KiB message, same run",
    ),
    timing(
        &metrics::CLIENT_CPU_NS_PER_MSG,
        THROUGHPUT,
        "client CPU time per 16 KiB message, same run",
    ),
    MetricDef {
        metric: &metrics::SERVER_ALLOCS_PER_RTT,
        phase: ALLOCS,
        kind: Kind::Exact { tolerance: 0.0 },
        what: "server heap allocations per 32 B round trip (fixed count of round trips)",
    },
    MetricDef {
        metric: &metrics::SERVER_ALLOC_BYTES_PER_RTT,
        phase: ALLOCS,
        kind: Kind::Exact { tolerance: 0.0 },
        what: "server bytes allocated per 32 B round trip",
    },
    MetricDef {
        metric: &metrics::LIVE_BYTES_PER_IDLE_CONN,
        phase: IDLE,
        // One server-wide 512-byte block is allocated or not from process
        // to process (actix-ws, about 1 round in 15): 5.12 bytes per
        // connection at 100 connections. Anything a connection holds
        // costs at least 8 bytes (a pointer-sized field or a small
        // allocation), so 8 separates the two.
        kind: Kind::Exact { tolerance: 8.0 },
        what: "growth of the server's live heap per idle connection (100 connections)",
    },
];

/// The table row of a key (see [`MetricDef::key`]), if it is judged.
pub fn find(key: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.key() == key)
}
