//! The one catalogue of metrics: every quantity wsbench records is defined
//! here once, with its name, unit, which way is better, a title for reports
//! and the sources it may come from. Benches, `wsbench measure`/`compare`,
//! the report and the discussion expander all read these definitions; a
//! [`Measurement`](crate::results::Measurement) can only be built from one
//! of them, so no figure is recorded under a name this table lacks.
//!
//! Parameters (message size, connection count, placement, profile, probe
//! case) stay parameters of a measurement; they are never part of a name.

use serde::{Deserialize, Serialize};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    Lower,
    Higher,
    /// An outcome or a count that is neither better nor worse (a probe
    /// verdict, the number of echoes verified, a tolerance).
    Neither,
}

/// The unit of a metric's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Milliseconds,
    Microseconds,
    Nanoseconds,
    MsgsPerS,
    MibPerS,
    ConnsPerS,
    Bytes,
    Allocs,
    Msgs,
    Conns,
    BytesPerS,
    Ratio,
    Bool,
}

impl Unit {
    /// As written in results.json ("us", "msgs/s", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Milliseconds => "ms",
            Unit::Microseconds => "us",
            Unit::Nanoseconds => "ns",
            Unit::MsgsPerS => "msgs/s",
            Unit::MibPerS => "MiB/s",
            Unit::ConnsPerS => "conns/s",
            Unit::Bytes => "bytes",
            Unit::Allocs => "allocs",
            Unit::Msgs => "msgs",
            Unit::Conns => "conns",
            Unit::BytesPerS => "bytes/s",
            Unit::Ratio => "ratio",
            Unit::Bool => "bool",
        }
    }

    pub fn parse(s: &str) -> Option<Unit> {
        UNITS.iter().copied().find(|u| u.as_str() == s)
    }
}

const UNITS: &[Unit] = &[
    Unit::Milliseconds,
    Unit::Microseconds,
    Unit::Nanoseconds,
    Unit::MsgsPerS,
    Unit::MibPerS,
    Unit::ConnsPerS,
    Unit::Bytes,
    Unit::Allocs,
    Unit::Msgs,
    Unit::Conns,
    Unit::BytesPerS,
    Unit::Ratio,
    Unit::Bool,
];

/// Where a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Wall-clock time over the whole measurement.
    Wallclock,
    /// The client's HDR histogram of every round trip it timed.
    Histogram,
    /// Per-thread CPU clocks (`/proc/.../schedstat`) of this process.
    Schedstat,
    /// CPU time of a server process from `/proc/<pid>/stat`.
    Proc,
    /// The counting allocator of this process.
    Allocator,
    /// Resident set size of a process (a server's, or the bench's own), from `/proc`.
    Rss,
    /// The live heap a garbage-collected server reports right after a full
    /// collection (Node: V8's `heapUsed + external`).
    GcHeap,
    /// The client's own count of verified echoes.
    Client,
    /// A protocol probe's outcome.
    Probe,
    /// The harness itself (a point it skipped, a tolerance it set, a rate
    /// it offered).
    Harness,
    /// Read off the steps of a rate sweep (the load group's knees).
    Sweep,
}

impl Source {
    /// As written in results.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Wallclock => "wallclock",
            Source::Histogram => "histogram",
            Source::Schedstat => "schedstat",
            Source::Proc => "proc",
            Source::Allocator => "allocator",
            Source::Rss => "rss",
            Source::GcHeap => "gc-heap",
            Source::Client => "client",
            Source::Probe => "probe",
            Source::Harness => "harness",
            Source::Sweep => "sweep",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        SOURCES.iter().copied().find(|x| x.as_str() == s)
    }

    /// What the source is, for the report's notes on marked figures.
    pub fn meaning(self) -> &'static str {
        match self {
            Source::Allocator => "the counting allocator in the bench process: exact bytes and allocations of in-process (Rust) servers",
            Source::Rss => "resident set size of the server process from /proc: the whole process (interpreter included), in pages, not comparable one-to-one with allocator counts",
            Source::GcHeap => "the live heap a garbage-collected server process reports right after a full collection (Node: V8's heapUsed + external): what its objects hold, not the pages its heap keeps",
            Source::Proc => "CPU time of the whole server process from /proc (clock-tick resolution)",
            Source::Schedstat => "per-thread CPU time from the kernel's schedstat",
            Source::Histogram => "an HDR histogram of every round trip the client timed",
            Source::Probe => "a protocol probe's outcome",
            Source::Wallclock => "wall-clock time over the whole measurement",
            Source::Client => "the client's count of echoes it verified",
            Source::Harness => "set or decided by the harness, not measured",
            Source::Sweep => "read off the steps of the rate sweep: the highest offered rate that met the limit",
        }
    }
}

const SOURCES: &[Source] = &[
    Source::GcHeap,
    Source::Wallclock,
    Source::Histogram,
    Source::Schedstat,
    Source::Proc,
    Source::Allocator,
    Source::Rss,
    Source::Client,
    Source::Probe,
    Source::Harness,
    Source::Sweep,
];

/// One metric's definition.
#[derive(Debug, PartialEq)]
pub struct Metric {
    /// As written in results.json; carries its unit where it helps.
    pub name: &'static str,
    pub unit: Unit,
    pub better: Better,
    /// A few words for table headings and plot titles.
    pub title: &'static str,
    /// The sources a figure of this metric may come from; the first is
    /// the one for in-process stacks.
    pub sources: &'static [Source],
}

impl Metric {
    /// Whether `source` is one this metric may come from.
    pub fn allows(&self, source: Source) -> bool {
        self.sources.contains(&source)
    }
}

const CPU: &[Source] = &[Source::Schedstat, Source::Proc];
const MEMORY: &[Source] = &[Source::Allocator, Source::Rss];
/// The leak check reads a Node server's live heap (see `measure::leak`).
const LEAK_MEMORY: &[Source] = &[Source::Allocator, Source::Rss, Source::GcHeap];

pub const RTT_MEAN_US: Metric = Metric {
    name: "rtt_mean_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "mean round trip",
    sources: &[Source::Wallclock],
};
pub const RTT_P50_US: Metric = Metric {
    name: "rtt_p50_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "median round trip",
    sources: &[Source::Histogram],
};
pub const RTT_P90_US: Metric = Metric {
    name: "rtt_p90_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "90th percentile round trip",
    sources: &[Source::Histogram],
};
pub const RTT_P99_US: Metric = Metric {
    name: "rtt_p99_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "99th percentile round trip",
    sources: &[Source::Histogram],
};
pub const RTT_P999_US: Metric = Metric {
    name: "rtt_p999_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "99.9th percentile round trip",
    sources: &[Source::Histogram],
};
pub const ROUND_TRIPS_PER_S: Metric = Metric {
    name: "round_trips_per_s",
    unit: Unit::MsgsPerS,
    better: Better::Higher,
    title: "round trips per second",
    sources: &[Source::Wallclock],
};
pub const MSGS_PER_S: Metric = Metric {
    name: "msgs_per_s",
    unit: Unit::MsgsPerS,
    better: Better::Higher,
    title: "messages per second",
    sources: &[Source::Wallclock],
};
pub const MIB_PER_S: Metric = Metric {
    name: "mib_per_s",
    unit: Unit::MibPerS,
    better: Better::Higher,
    title: "throughput",
    sources: &[Source::Wallclock],
};
pub const HANDSHAKES_PER_S: Metric = Metric {
    name: "handshakes_per_s",
    unit: Unit::ConnsPerS,
    better: Better::Higher,
    title: "new connections per second",
    sources: &[Source::Wallclock],
};
pub const SERVER_CPU_NS_PER_MSG: Metric = Metric {
    name: "server_cpu_ns_per_msg",
    unit: Unit::Nanoseconds,
    better: Better::Lower,
    title: "server CPU per message",
    sources: CPU,
};
pub const CLIENT_CPU_NS_PER_MSG: Metric = Metric {
    name: "client_cpu_ns_per_msg",
    unit: Unit::Nanoseconds,
    better: Better::Lower,
    title: "client CPU per message",
    sources: &[Source::Schedstat],
};
/// The client's CPU over the server's for the same messages: the
/// client's headroom (below 1, the client is the lighter side and the
/// server's limit shows first).
pub const CLIENT_CPU_PER_SERVER_CPU: Metric = Metric {
    name: "client_cpu_per_server_cpu",
    unit: Unit::Ratio,
    better: Better::Lower,
    title: "client CPU per unit of server CPU",
    sources: CPU,
};
pub const ROUND_TRIPS_VERIFIED: Metric = Metric {
    name: "round_trips_verified",
    unit: Unit::Msgs,
    better: Better::Neither,
    title: "echoes verified",
    sources: &[Source::Client],
};
pub const LIVE_BYTES_PER_IDLE_CONN: Metric = Metric {
    name: "live_bytes_per_idle_conn",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "live bytes per idle connection",
    sources: MEMORY,
};
pub const LIVE_BYTES_AFTER_CLOSE_DELTA: Metric = Metric {
    name: "live_bytes_after_close_delta",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "live bytes left after closing",
    sources: MEMORY,
};
pub const SERVER_ALLOCS_PER_RTT: Metric = Metric {
    name: "server_allocs_per_rtt",
    unit: Unit::Allocs,
    better: Better::Lower,
    title: "server allocations per round trip",
    sources: &[Source::Allocator],
};
pub const SERVER_ALLOC_BYTES_PER_RTT: Metric = Metric {
    name: "server_alloc_bytes_per_rtt",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "server bytes allocated per round trip",
    sources: &[Source::Allocator],
};
pub const CLIENT_ALLOCS_PER_RTT: Metric = Metric {
    name: "client_allocs_per_rtt",
    unit: Unit::Allocs,
    better: Better::Lower,
    title: "client allocations per round trip",
    sources: &[Source::Allocator],
};
pub const PEAK_LIVE_BYTES: Metric = Metric {
    name: "peak_live_bytes",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "peak live bytes",
    sources: MEMORY,
};
pub const RTT_CV: Metric = Metric {
    name: "rtt_cv",
    unit: Unit::Ratio,
    better: Better::Lower,
    title: "round-trip variation (CV)",
    sources: &[Source::Wallclock],
};
pub const LIVE_BYTES_AFTER_CYCLES_DELTA: Metric = Metric {
    name: "live_bytes_after_cycles_delta",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "live bytes left after the cycles",
    sources: LEAK_MEMORY,
};
pub const LIVE_BYTES_PER_CYCLE: Metric = Metric {
    name: "live_bytes_per_cycle",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "live bytes left per cycle",
    sources: LEAK_MEMORY,
};
pub const LIVE_BYTES_TOLERANCE: Metric = Metric {
    name: "live_bytes_tolerance",
    unit: Unit::Bytes,
    better: Better::Neither,
    title: "leak tolerance",
    sources: &[Source::Harness],
};
/// A probe case's outcome: 1 when the stack did what RFC 6455 asks. The
/// case is the parameter `case`; what the stack did is the detail.
pub const CONFORMS: Metric = Metric {
    name: "conforms",
    unit: Unit::Bool,
    better: Better::Higher,
    title: "behaves as RFC 6455 asks",
    sources: &[Source::Probe],
};
/// A point the harness could not measure here; the reason is the detail.
pub const SKIPPED: Metric = Metric {
    name: "skipped",
    unit: Unit::Bool,
    better: Better::Neither,
    title: "skipped",
    sources: &[Source::Harness],
};

/// The rate an open-loop step offered, over all its connections.
pub const OFFERED_MSGS_PER_S: Metric = Metric {
    name: "offered_msgs_per_s",
    unit: Unit::MsgsPerS,
    better: Better::Neither,
    title: "offered rate",
    sources: &[Source::Harness],
};
/// Round trips timed from the moment the schedule meant the message to go
/// (coordinated omission corrected), not from when it went.
pub const CORRECTED_P50_US: Metric = Metric {
    name: "corrected_p50_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "median latency from the intended send",
    sources: &[Source::Histogram],
};
pub const CORRECTED_P99_US: Metric = Metric {
    name: "corrected_p99_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "99th percentile latency from the intended send",
    sources: &[Source::Histogram],
};
pub const CORRECTED_P999_US: Metric = Metric {
    name: "corrected_p999_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "99.9th percentile latency from the intended send",
    sources: &[Source::Histogram],
};
pub const CORRECTED_MAX_US: Metric = Metric {
    name: "corrected_max_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "longest latency from the intended send",
    sources: &[Source::Histogram],
};
/// How late the client itself sent: written minus intended send time.
pub const CLIENT_LATENESS_P99_US: Metric = Metric {
    name: "client_lateness_p99_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "client's send lateness, 99th percentile",
    sources: &[Source::Histogram],
};
pub const CLIENT_LATENESS_MAX_US: Metric = Metric {
    name: "client_lateness_max_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "client's longest send lateness",
    sources: &[Source::Histogram],
};
/// The client's CPU time over the measured run's wall time: near 1, the
/// client had no more to give, and what it measured may be its own limit.
pub const CLIENT_CORE_SHARE: Metric = Metric {
    name: "client_core_share",
    unit: Unit::Ratio,
    better: Better::Neither,
    title: "share of a core the client used",
    sources: &[Source::Schedstat],
};
/// The server's CPU time over the measured run's wall time.
pub const SERVER_CORE_SHARE: Metric = Metric {
    name: "server_core_share",
    unit: Unit::Ratio,
    better: Better::Neither,
    title: "share of a core the server used",
    sources: &[Source::Schedstat, Source::Proc],
};
/// 1 when the client fell behind its schedule (see
/// [`crate::client::open_loop::LATENESS_BOUND`]): that step's latency is
/// the client's, not the server's.
pub const CLIENT_BEHIND: Metric = Metric {
    name: "client_behind",
    unit: Unit::Bool,
    better: Better::Neither,
    title: "client behind its schedule",
    sources: &[Source::Client],
};
/// The highest offered rate of a sweep whose step met a latency limit
/// (the parameter `p99_limit_us`) with at least 99% of it answered.
pub const KNEE_MSGS_PER_S: Metric = Metric {
    name: "knee_msgs_per_s",
    unit: Unit::MsgsPerS,
    better: Better::Higher,
    title: "highest rate within the latency limit",
    sources: &[Source::Sweep],
};
/// Server CPU for a million messages at one rate fixed for every stack:
/// the cost of equal work.
pub const SERVER_CPU_MS_PER_MILLION_MSGS: Metric = Metric {
    name: "server_cpu_ms_per_million_msgs",
    unit: Unit::Milliseconds,
    better: Better::Lower,
    title: "server CPU per million messages",
    sources: CPU,
};

/// Messages a broadcast room delivered per second: broadcasts times the
/// connections that got them.
pub const DELIVERIES_PER_S: Metric = Metric {
    name: "deliveries_per_s",
    unit: Unit::MsgsPerS,
    better: Better::Higher,
    title: "deliveries per second",
    sources: &[Source::Wallclock],
};
pub const SERVER_CPU_NS_PER_DELIVERY: Metric = Metric {
    name: "server_cpu_ns_per_delivery",
    unit: Unit::Nanoseconds,
    better: Better::Lower,
    title: "server CPU per delivery",
    sources: CPU,
};
pub const CLIENT_CPU_NS_PER_DELIVERY: Metric = Metric {
    name: "client_cpu_ns_per_delivery",
    unit: Unit::Nanoseconds,
    better: Better::Lower,
    title: "client CPU per delivery",
    sources: &[Source::Schedstat],
};
/// The server's memory with the room at work, over its idle memory before
/// the room opened, divided by the connections.
pub const SERVER_BYTES_PER_RECEIVER: Metric = Metric {
    name: "server_bytes_per_receiver",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "server memory per room member",
    sources: MEMORY,
};
pub const DELIVERIES_VERIFIED: Metric = Metric {
    name: "deliveries_verified",
    unit: Unit::Msgs,
    better: Better::Neither,
    title: "deliveries verified",
    sources: &[Source::Client],
};
/// The largest room of a sweep whose p99 delivery latency stayed within
/// a limit (the parameter `p99_limit_us`) at the stated broadcast rate,
/// every delivery made.
pub const ROOM_CAPACITY_CONNS: Metric = Metric {
    name: "room_capacity_conns",
    unit: Unit::Conns,
    better: Better::Higher,
    title: "largest room within the latency limit",
    sources: &[Source::Sweep],
};
/// While one member stops reading: the server's memory at its peak over
/// its memory when the pause began.
pub const SLOW_HEAP_GROWTH_BYTES: Metric = Metric {
    name: "slow_heap_growth_bytes",
    unit: Unit::Bytes,
    better: Better::Lower,
    title: "server memory growth while one member stops reading",
    sources: MEMORY,
};
/// The least-squares slope of the server's memory over the pause.
pub const SLOW_HEAP_SLOPE_BYTES_PER_S: Metric = Metric {
    name: "slow_heap_slope_bytes_per_s",
    unit: Unit::BytesPerS,
    better: Better::Lower,
    title: "server memory growth rate while one member stops reading",
    sources: MEMORY,
};
pub const SLOW_DELIVERED_MSGS: Metric = Metric {
    name: "slow_delivered_msgs",
    unit: Unit::Msgs,
    better: Better::Neither,
    title: "broadcasts the stopped member got, verified",
    sources: &[Source::Client],
};
pub const SLOW_DROPPED_MSGS: Metric = Metric {
    name: "slow_dropped_msgs",
    unit: Unit::Msgs,
    better: Better::Neither,
    title: "broadcasts the server dropped for the stopped member",
    sources: &[Source::Client],
};
/// 1 when the server ended the stopped member's connection; the detail is
/// the finding in words (buffered, dropped, disconnected, everyone stalled).
pub const SLOW_DISCONNECTED: Metric = Metric {
    name: "slow_disconnected",
    unit: Unit::Bool,
    better: Better::Neither,
    title: "server disconnected the stopped member",
    sources: &[Source::Client],
};
pub const OTHERS_P99_BEFORE_PAUSE_US: Metric = Metric {
    name: "others_p99_before_pause_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "the others' p99 delivery latency before the pause",
    sources: &[Source::Histogram],
};
pub const OTHERS_P99_IN_PAUSE_US: Metric = Metric {
    name: "others_p99_in_pause_us",
    unit: Unit::Microseconds,
    better: Better::Lower,
    title: "the others' p99 delivery latency during the pause",
    sources: &[Source::Histogram],
};

/// The bench process's own peak resident set over one stack's room sizes:
/// the client's memory, and the server's too when it runs in this process.
/// What running the group costs, not a figure of the stack alone.
pub const BENCH_PEAK_RSS_BYTES: Metric = Metric {
    name: "bench_peak_rss_bytes",
    unit: Unit::Bytes,
    better: Better::Neither,
    title: "the bench process's peak resident set",
    sources: &[Source::Rss],
};

/// permessage-deflate's effect as the client sees it: the echoes' frame
/// bytes (headers included, TLS records not) per byte of the messages
/// they carry; 1.0 and a little over where nothing was compressed.
pub const FRAME_BYTES_PER_MESSAGE_BYTE: Metric = Metric {
    name: "frame_bytes_per_message_byte",
    unit: Unit::Ratio,
    better: Better::Lower,
    title: "echo frame bytes per message byte",
    sources: &[Source::Client],
};

/// Every metric, in the order reports list them.
pub const ALL: &[&Metric] = &[
    &RTT_MEAN_US,
    &RTT_P50_US,
    &RTT_P90_US,
    &RTT_P99_US,
    &RTT_P999_US,
    &ROUND_TRIPS_PER_S,
    &MSGS_PER_S,
    &MIB_PER_S,
    &HANDSHAKES_PER_S,
    &FRAME_BYTES_PER_MESSAGE_BYTE,
    &SERVER_CPU_NS_PER_MSG,
    &CLIENT_CPU_NS_PER_MSG,
    &CLIENT_CPU_PER_SERVER_CPU,
    &ROUND_TRIPS_VERIFIED,
    &LIVE_BYTES_PER_IDLE_CONN,
    &LIVE_BYTES_AFTER_CLOSE_DELTA,
    &SERVER_ALLOCS_PER_RTT,
    &SERVER_ALLOC_BYTES_PER_RTT,
    &CLIENT_ALLOCS_PER_RTT,
    &PEAK_LIVE_BYTES,
    &RTT_CV,
    &LIVE_BYTES_AFTER_CYCLES_DELTA,
    &LIVE_BYTES_PER_CYCLE,
    &LIVE_BYTES_TOLERANCE,
    &CONFORMS,
    &SKIPPED,
    &OFFERED_MSGS_PER_S,
    &CORRECTED_P50_US,
    &CORRECTED_P99_US,
    &CORRECTED_P999_US,
    &CORRECTED_MAX_US,
    &CLIENT_LATENESS_P99_US,
    &CLIENT_LATENESS_MAX_US,
    &CLIENT_BEHIND,
    &CLIENT_CORE_SHARE,
    &SERVER_CORE_SHARE,
    &KNEE_MSGS_PER_S,
    &SERVER_CPU_MS_PER_MILLION_MSGS,
    &DELIVERIES_PER_S,
    &SERVER_CPU_NS_PER_DELIVERY,
    &CLIENT_CPU_NS_PER_DELIVERY,
    &SERVER_BYTES_PER_RECEIVER,
    &DELIVERIES_VERIFIED,
    &ROOM_CAPACITY_CONNS,
    &SLOW_HEAP_GROWTH_BYTES,
    &SLOW_HEAP_SLOPE_BYTES_PER_S,
    &SLOW_DELIVERED_MSGS,
    &SLOW_DROPPED_MSGS,
    &SLOW_DISCONNECTED,
    &OTHERS_P99_BEFORE_PAUSE_US,
    &OTHERS_P99_IN_PAUSE_US,
    &BENCH_PEAK_RSS_BYTES,
];

/// The definition of a metric by its name.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().copied().find(|m| m.name == name)
}

/// Names that older builds wrote, and what they are now. `wsbench compare`
/// reads round files of older builds, and `report` older results files.
pub fn legacy_name(name: &str) -> Option<&'static Metric> {
    match name {
        "server_cpu_ns_per_rtt" | "server_cpu_ns_per_msg_16KiB" => Some(&SERVER_CPU_NS_PER_MSG),
        "client_cpu_ns_per_rtt" => Some(&CLIENT_CPU_NS_PER_MSG),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in ALL.iter().enumerate() {
            assert!(
                ALL[i + 1..].iter().all(|n| n.name != m.name),
                "{} twice",
                m.name
            );
            assert_eq!(find(m.name), Some(*m));
            assert!(!m.sources.is_empty(), "{} has no source", m.name);
        }
    }

    #[test]
    fn units_and_sources_round_trip() {
        for u in UNITS {
            assert_eq!(Unit::parse(u.as_str()), Some(*u));
        }
        for s in SOURCES {
            assert_eq!(Source::parse(s.as_str()), Some(*s));
        }
    }
}
