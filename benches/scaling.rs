//! What happens as connections pile up? 1 to 8,192 concurrent connections,
//! all active with one 32-byte message in flight each: aggregate msgs/s and
//! latency percentiles under load, under both echo write policies (with
//! one message in flight per connection they can differ only in code
//! path, never in how many echoes share a write); then how fast each stack
//! completes handshakes. (The server's peak heap at the largest point is the memory
//! bench's: this one runs without the counting allocator.)

mod common;

use std::time::Duration;

use common::*;
use criterion::{BenchmarkId, Throughput};
use wsbench::client::{MessageSpec, PayloadKind};
use wsbench::metrics::{self, Metric, Source};
use wsbench::placement::Placement;
use wsbench::settings::{EchoPolicy, Profile};
use wsbench::stacks::{Host, ServerHandle, StackInfo};
use wsbench::workload;

// No counting allocator here: its few atomic additions per allocation
// would be charged to whichever stack allocates more, in the very figures
// that compare them. Allocation and heap figures come from the memory
// bench.

const SIZE_BYTES: usize = 32;

/// Descriptors kept free for the runtime, files and criterion.
const FD_RESERVE: u64 = 256;

/// The Python servers handle a few thousand round trips per second; their
/// largest point would take minutes, so they stop here.
const PYTHON_MAX_CONNS: usize = 1000;

/// Why a point cannot be measured, if it cannot.
fn skip_reason(stack: &StackInfo, conns: usize) -> Option<String> {
    // Both ends of an in-process connection hold a descriptor here.
    let fds_per_conn = if stack.host == Host::InProcess { 2 } else { 1 };
    let needed = conns as u64 * fds_per_conn + open_fds() + FD_RESERVE;
    if needed > fd_limit() {
        return Some(format!(
            "{conns} connections need about {needed} descriptors; the limit here is {}",
            fd_limit()
        ));
    }
    if stack.host == Host::ChildProcess && conns > PYTHON_MAX_CONNS {
        return Some(format!("Python stacks are measured up to {PYTHON_MAX_CONNS} connections to stay within the time budget"));
    }
    None
}

/// What each point records.
const FIGURES: &[&Metric] = &[
    &metrics::MSGS_PER_S,
    &metrics::RTT_P50_US,
    &metrics::RTT_P99_US,
    &metrics::RTT_P999_US,
    &metrics::ROUND_TRIPS_VERIFIED,
];

fn main() {
    // Many connections make the client's work as large as the server's: on
    // one shared core the group would measure the two together. The server
    // gets a core of its own (the latency group keeps same-core, its most
    // stable placement for one connection).
    let mode = Mode::from_env_placing(Placement::SplitCores);
    const WARM_UP: Duration = Duration::from_millis(500);
    let mut c = mode.criterion(Duration::from_secs(2), WARM_UP);
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("scaling", &mode);
    let conn_counts: Vec<usize> = mode.pick(vec![1, 10, 100, 1000, 8192], vec![1, 1000]);

    let mut group = c.benchmark_group("scaling");
    group.sample_size(10);
    for stack in stacks_to_measure() {
        for echo in EchoPolicy::ALL {
            let label = format!("scaling/{}/{echo}", stack.name);
            let server = start_server(stack, &mode.settings_echoing(Profile::Suite, echo), &label);
            for &conns in &conn_counts {
                let id = format!("scaling/{}/{echo}/{conns}", stack.name);
                let params = params(&[
                    ("conns", v(conns)),
                    ("size_bytes", v(SIZE_BYTES)),
                    ("window", v(1)),
                    ("echo", v(echo.as_str())),
                ]);
                if let Some(why) = skip_reason(stack, conns) {
                    eprintln!("wsbench: skipping {id}: {why}");
                    rec.add(&id, stack, &params, &metrics::SKIPPED, 0.0, Source::Harness)
                        .detail = Some(why);
                    continue;
                }
                let mut open = open_connections(&rt, &server, conns, &id);
                let spec = MessageSpec {
                    size_bytes: SIZE_BYTES,
                    kind: PayloadKind::Binary,
                    window: 1,
                };
                group.throughput(Throughput::Elements(conns as u64));
                let acc = bench_round_trips(
                    &mut group,
                    &id,
                    stack.name,
                    &format!("{echo}/{conns}"),
                    &rt,
                    &mut open,
                    spec,
                    &server,
                    mode.figures_skip(WARM_UP),
                );
                rec.add_sample(&id, stack, &params, &acc, FIGURES);
                close_connections(&rt, open, &id);
            }
            // The echo policy does not enter a handshake: measured once.
            if echo == EchoPolicy::FlushEach {
                bench_handshakes(&mut group, &mut rec, &rt, stack, &server, &mode);
            }
            stop_server(server);
        }
        rec.flush();
    }
    group.finish();
    c.final_summary();
    rec.finish();
}

/// Handshakes per second: each iteration opens one connection (TCP connect
/// plus WebSocket upgrade) and resets it at once, so neither descriptors nor
/// TIME_WAIT ports pile up across criterion's thousands of iterations. The
/// reset is one system call inside the timed part.
fn bench_handshakes(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rec: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    stack: &StackInfo,
    server: &ServerHandle,
    _mode: &Mode,
) {
    let id = format!("connect/{}", stack.name);
    let target = target(server);
    let (mut opened, mut spent) = (0u64, Duration::ZERO);
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new(stack.name, "connect"), |b| {
        b.iter_custom(|iters| {
            let elapsed = rt
                .block_on(workload::handshakes(&target, iters))
                .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
            opened += iters;
            spent += elapsed;
            elapsed
        })
    });
    let per_s = opened as f64 / spent.as_secs_f64().max(1e-12);
    rec.add(
        &id,
        stack,
        &params(&[("conns", v(1))]),
        &metrics::HANDSHAKES_PER_S,
        per_s,
        Source::Wallclock,
    );
}
