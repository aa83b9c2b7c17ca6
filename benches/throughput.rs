//! How many bytes per second can a stack echo, and how does that change
//! with message size? One connection, several messages in flight, binary
//! from 16 B to 16 MiB, text at 1 KiB and 1 MiB (UTF-8 validation cost),
//! under both echo write policies (flush each echo, or batch while input
//! is buffered: `settings::EchoPolicy`). Each size is one block of
//! interleaved rounds over every stack under both policies
//! (`wsbench::rounds`); criterion times the cases of [`CRITERION_POINT`]
//! for its report (every size with `WSBENCH_CRITERION=all`).

mod common;

use std::time::Duration;

use common::*;
use criterion::Throughput;
use wsbench::client::{MessageSpec, PayloadKind};
use wsbench::metrics::{self, Metric};
use wsbench::settings::{EchoPolicy, Profile};
use wsbench::stacks::{ServerHandle, StackInfo};

// No counting allocator here: its few atomic additions per allocation
// would be charged to whichever stack allocates more, in the very figures
// that compare them. Allocation and heap figures come from the memory
// bench.

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// What each case records.
const FIGURES: &[&Metric] = &[
    &metrics::MSGS_PER_S,
    &metrics::MIB_PER_S,
    &metrics::RTT_P50_US,
    &metrics::RTT_P99_US,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::ROUND_TRIPS_VERIFIED,
];

/// The point criterion times in a full run: large enough for the stacks'
/// framing and copying to show, small enough for the write policy to
/// matter.
const CRITERION_POINT: (PayloadKind, usize) = (PayloadKind::Binary, 16 * KIB);

/// Messages in flight: enough to keep both sides busy, fewer for large
/// messages, whose memory in flight would otherwise be the figure.
fn window_for(size_bytes: usize) -> usize {
    match size_bytes {
        s if s <= 128 * KIB => 16,
        s if s <= MIB => 4,
        _ => 2,
    }
}

fn main() {
    let mode = Mode::from_env();
    const WARM_UP: Duration = Duration::from_millis(500);
    // criterion's timings are its report's; the figures come from the
    // rounds, so a second per case is enough for criterion.
    let mut c = mode.criterion(Duration::from_secs(1), WARM_UP);
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("throughput", &mode);
    let mut group = c.benchmark_group("throughput");
    // Large messages take tens of milliseconds each; ten samples keep the
    // sweep within its time budget.
    group.sample_size(10);

    let binary_sizes: Vec<usize> = mode.pick(
        vec![16, 128, KIB, 16 * KIB, 128 * KIB, MIB, 16 * MIB],
        vec![128, 16 * KIB, MIB],
    );
    let text_sizes: Vec<usize> = mode.pick(vec![KIB, MIB], vec![KIB]);
    let points: Vec<(PayloadKind, usize)> = binary_sizes
        .iter()
        .map(|&s| (PayloadKind::Binary, s))
        .chain(text_sizes.iter().map(|&s| (PayloadKind::Text, s)))
        .collect();

    // A server per stack and echo policy, all up at once, so that each
    // round visits every stack under both policies: the policies' effect
    // is then measured in the same rounds as the stacks' differences.
    let mut slots: Vec<(&'static StackInfo, EchoPolicy, ServerHandle)> = Vec::new();
    let mut conns: Vec<Clients> = Vec::new();
    for stack in stacks_to_measure(&mode) {
        for echo in EchoPolicy::ALL {
            let label = format!("throughput/{}/{echo}", stack.name);
            let server = start_server(stack, &mode.settings_echoing(Profile::Suite, echo), &label);
            conns.push(open_connections(&rt, &server, 1, &label).into());
            slots.push((stack, echo, server));
        }
    }
    for &(kind, size) in &points {
        let window = window_for(size);
        let spec = MessageSpec {
            size_bytes: size,
            kind,
            window,
        };
        let mut cases: Vec<RoundTripCase> = slots
            .iter()
            .zip(&mut conns)
            .map(|((stack, echo, server), conns)| {
                let parameter = format!("{echo}/{}/{}", kind.as_str(), size_label(size));
                RoundTripCase {
                    stack,
                    server,
                    conns: std::mem::take(conns),
                    spec,
                    driver: mode.driver,
                    id: format!("throughput/{}/{parameter}", stack.name),
                    function: stack.name.to_string(),
                    parameter,
                    params: params(&[
                        ("size_bytes", v(size)),
                        ("kind", v(kind.as_str())),
                        ("conns", v(1)),
                        ("window", v(window)),
                        ("echo", v(echo.as_str())),
                    ]),
                }
            })
            .collect();
        if mode.criterion_at((kind, size) == CRITERION_POINT) {
            criterion_round_trips(&mut group, &rt, &mut cases, |_| {
                Throughput::Bytes(size as u64)
            });
        }
        if mode.rounds_phase() {
            let block = format!("throughput/{}/{}", kind.as_str(), size_label(size));
            let plan = mode.round_plan(30, Duration::from_millis(50));
            round_trip_rounds(&rt, &mut cases, plan, &block, &mut rec, FIGURES);
        }
        // The connections go back to their servers for the next size.
        conns = cases.into_iter().map(|c| c.conns).collect();
    }
    for ((_, _, server), conns) in slots.into_iter().zip(conns) {
        close_connections(&rt, conns, &format!("throughput/{}", server.stack));
        stop_server(server);
    }
    group.finish();
    c.final_summary();
    rec.finish();
}
