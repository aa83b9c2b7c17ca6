//! How long does one round trip take? One connection, one 32-byte message
//! in flight, binary and text, per stack. criterion times each case for
//! its report; the figures come from interleaved rounds over every stack
//! and kind (`wsbench::rounds`): the client's histogram gives the
//! percentiles and the per-thread clocks the CPU each side spent per
//! message, each the median over rounds with its interval.

mod common;

use std::time::Duration;

use common::*;
use criterion::Throughput;
use wsbench::client::{MessageSpec, PayloadKind};
use wsbench::metrics::{self, Metric};
use wsbench::settings::Profile;
use wsbench::stacks::ServerHandle;

// No counting allocator here: its few atomic additions per allocation
// would be charged to whichever stack allocates more, in the very figures
// that compare them. Allocation and heap figures come from the memory
// bench.

const SIZE_BYTES: usize = 32;

/// What each case records.
const FIGURES: &[&Metric] = &[
    &metrics::RTT_MEAN_US,
    &metrics::RTT_P50_US,
    &metrics::RTT_P90_US,
    &metrics::RTT_P99_US,
    &metrics::RTT_P999_US,
    &metrics::ROUND_TRIPS_PER_S,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::ROUND_TRIPS_VERIFIED,
];

fn main() {
    let mode = Mode::from_env();
    // criterion's timings are its report's and the flamegraphs' source;
    // the figures come from the rounds.
    const WARM_UP: Duration = Duration::from_millis(500);
    let mut c = mode.criterion(Duration::from_secs(2), WARM_UP);
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("latency", &mode);
    let mut group = c.benchmark_group("latency");
    group.throughput(Throughput::Elements(1));

    // Every stack's server up at once, so that each round visits them all.
    let stacks = stacks_to_measure(&mode);
    let servers: Vec<ServerHandle> = stacks
        .iter()
        .map(|s| {
            start_server(
                s,
                &mode.settings(Profile::Suite),
                &format!("latency/{}", s.name),
            )
        })
        .collect();
    let mut cases = Vec::new();
    for kind in [PayloadKind::Binary, PayloadKind::Text] {
        for (stack, server) in stacks.iter().zip(&servers) {
            let parameter = format!("{}/{}", kind.as_str(), size_label(SIZE_BYTES));
            let id = format!("latency/{}/{parameter}", stack.name);
            cases.push(RoundTripCase {
                stack,
                server,
                conns: open_connections(&rt, server, 1, &id).into(),
                spec: MessageSpec {
                    size_bytes: SIZE_BYTES,
                    kind,
                    window: 1,
                },
                function: stack.name.to_string(),
                parameter,
                driver: mode.driver,
                id,
                params: params(&[
                    ("size_bytes", v(SIZE_BYTES)),
                    ("kind", v(kind.as_str())),
                    ("conns", v(1)),
                    ("window", v(1)),
                ]),
            });
        }
    }
    if mode.criterion_phase() {
        criterion_round_trips(&mut group, &rt, &mut cases, |_| Throughput::Elements(1));
    }
    if mode.rounds_phase() {
        let plan = mode.round_plan(40, Duration::from_millis(75));
        round_trip_rounds(&rt, &mut cases, plan, "latency", &mut rec, FIGURES);
    }
    for case in cases {
        close_connections(&rt, case.conns, &case.id);
    }
    servers.into_iter().for_each(stop_server);
    group.finish();
    c.final_summary();
    rec.finish();
}
