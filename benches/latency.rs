//! How long does one round trip take? One connection, one 32-byte message
//! in flight, binary and text, per stack. criterion times the round trips;
//! the client's histogram gives the percentiles and the per-thread clocks
//! the CPU each side spent per message.

mod common;

use std::time::Duration;

use common::*;
use criterion::Throughput;
use wsbench::client::{MessageSpec, PayloadKind};
use wsbench::metrics::{self, Metric};
use wsbench::settings::Profile;

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
    const WARM_UP: Duration = Duration::from_secs(1);
    let mut c = mode.criterion(Duration::from_secs(3), WARM_UP);
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("latency", &mode);
    let mut group = c.benchmark_group("latency");
    group.throughput(Throughput::Elements(1));

    for stack in stacks_to_measure() {
        let label = format!("latency/{}", stack.name);
        let server = start_server(stack, &mode.settings(Profile::Suite), &label);
        let mut conns = open_connections(&rt, &server, 1, &label);
        for kind in [PayloadKind::Binary, PayloadKind::Text] {
            let parameter = format!("{}/{}", kind.as_str(), size_label(SIZE_BYTES));
            let id = format!("latency/{}/{parameter}", stack.name);
            let spec = MessageSpec {
                size_bytes: SIZE_BYTES,
                kind,
                window: 1,
            };
            let acc = bench_round_trips(
                &mut group,
                &id,
                stack.name,
                &parameter,
                &rt,
                &mut conns,
                spec,
                &server,
                mode.figures_skip(WARM_UP),
            );
            let params = params(&[
                ("size_bytes", v(SIZE_BYTES)),
                ("kind", v(kind.as_str())),
                ("conns", v(1)),
                ("window", v(1)),
            ]);
            rec.add_sample(&id, stack, &params, &acc, FIGURES);
        }
        close_connections(&rt, conns, &label);
        stop_server(server);
        rec.flush();
    }
    group.finish();
    c.final_summary();
    rec.finish();
}
