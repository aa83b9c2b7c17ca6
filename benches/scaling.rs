//! What happens as connections pile up? 1 to 19,000 concurrent
//! connections, all active with one 32-byte message in flight each:
//! aggregate msgs/s and latency percentiles under load; then how fast each
//! stack completes handshakes. One echo write policy, the run's
//! (`WSBENCH_ECHO`, default flush-each): with one message in flight per
//! connection nothing is ever buffered behind an echo, so the policies
//! could differ only in code path, never in how many echoes share a
//! write. criterion times the cases at [`CRITERION_CONNS`] for its report
//! (every point and the handshakes with `WSBENCH_CRITERION=all`). (The
//! server's peak heap at the largest point is the memory bench's: this one
//! runs without the counting allocator.)
//!
//! The client runs in this process while both ends of every connection fit
//! in its descriptors; past that (the [`CEILING_CONNS`] point) it runs as
//! `wsbench worker` processes, as few as hold the connections, pinned as
//! the placement says, and the server alone holds one descriptor per
//! connection. `WSBENCH_CLIENT_PROCS=K` runs every point's client as K
//! workers instead. Points measured through workers carry `client_procs`.

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

/// The point criterion times in a full run.
const CRITERION_CONNS: usize = 100;

/// The child-process servers (Python's, Node's) stop here: at the largest
/// point each stack's rounds run alone, back to back, and these would take
/// a full run past its time budget.
const CHILD_MAX_CONNS: usize = 1000;

/// The point near the descriptor ceiling: about as many connections as one
/// server process may hold open (20,000 files per process here), their
/// client in worker processes.
const CEILING_CONNS: usize = 19_000;

/// How many worker processes run a point's client; `None`: this process.
/// `forced` is `WSBENCH_CLIENT_PROCS`; otherwise workers only where both
/// ends of every connection do not fit beside the `idle_fds` this process
/// holds with no connection open, as few workers as hold them. (Not the
/// descriptors open at the moment: those of a block just closed may not
/// all be gone yet, and a point must run the same way in every run.)
fn client_procs(
    stack: &StackInfo,
    conns: usize,
    forced: Option<usize>,
    idle_fds: u64,
) -> Option<usize> {
    if let Some(k) = forced {
        return Some(k.min(conns));
    }
    if fds_for(stack, conns) + idle_fds + FD_RESERVE <= fd_limit() {
        return None;
    }
    // A worker inherits this process's limit and needs little else.
    let per_worker = fd_limit().saturating_sub(FD_RESERVE).max(1) as usize;
    Some(conns.div_ceil(per_worker))
}

/// Descriptors a point's connections take in this process.
fn fds_here(stack: &StackInfo, conns: usize, procs: Option<usize>) -> u64 {
    match (procs, stack.host()) {
        (None, _) => fds_for(stack, conns),
        (Some(_), Host::InProcess) => conns as u64,
        (Some(_), Host::ChildProcess) => 0,
    }
}

/// Why a point cannot be measured, if it cannot.
fn skip_reason(
    stack: &StackInfo,
    conns: usize,
    procs: Option<usize>,
    idle_fds: u64,
) -> Option<String> {
    let needed = fds_here(stack, conns, procs) + idle_fds + FD_RESERVE;
    if needed > fd_limit() {
        let whose = match procs {
            Some(_) => "the server's process (its client in worker processes)",
            None => "this process (both ends)",
        };
        return Some(format!(
            "{conns} connections need about {needed} descriptors in {whose}; the limit here is {}",
            fd_limit()
        ));
    }
    if stack.host() == Host::ChildProcess && conns > CHILD_MAX_CONNS {
        return Some(format!("child-process stacks are measured up to {CHILD_MAX_CONNS} connections to stay within the time budget"));
    }
    None
}

/// What each point records.
const FIGURES: &[&Metric] = &[
    &metrics::MSGS_PER_S,
    &metrics::RTT_P50_US,
    &metrics::RTT_P99_US,
    &metrics::RTT_P999_US,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::ROUND_TRIPS_VERIFIED,
];

fn main() {
    // Many connections make the client's work as large as the server's: on
    // one shared core the group would measure the two together. The server
    // gets a core of its own (the latency group keeps same-core, its most
    // stable placement for one connection).
    let mode = Mode::from_env_placing(Placement::SplitCores);
    const WARM_UP: Duration = Duration::from_millis(500);
    // criterion's timings are its report's; the figures come from the rounds.
    let mut c = mode.criterion(Duration::from_secs(1), WARM_UP);
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("scaling", &mode);
    // A quick run keeps the point of many connections (one connection is
    // the latency group's, on one core); test mode runs 1 and 1,000, as
    // the larger points' connections take minutes in an unoptimized build.
    // The worker processes of the largest are the cores group's too, and
    // tests/workers.rs checks them.
    let conn_counts: Vec<usize> = if !mode.bench {
        vec![1, 1000]
    } else if mode.quick {
        vec![1000]
    } else {
        vec![1, 10, 100, 1000, 8192, CEILING_CONNS]
    };
    let forced_procs = forced_client_procs();
    let plan = mode.round_plan(20, Duration::from_millis(120));

    let mut group = c.benchmark_group("scaling");
    group.sample_size(10);
    // A server per stack, all up at once.
    let echo = mode.echo;
    let mut servers: Vec<(&'static StackInfo, EchoPolicy, ServerHandle)> = Vec::new();
    for stack in stacks_to_measure(&mode) {
        let label = format!("scaling/{}/{echo}", stack.name);
        let server = start_server(stack, &mode.settings_echoing(Profile::Suite, echo), &label);
        servers.push((stack, echo, server));
    }
    let spec = MessageSpec {
        size_bytes: SIZE_BYTES,
        kind: PayloadKind::Binary,
        window: 1,
    };
    // Every server up, no connection open.
    let idle_fds = open_fds();
    for &conns in &conn_counts {
        let procs_of = |i: usize| client_procs(servers[i].0, conns, forced_procs, idle_fds);
        let params_of = |echo: EchoPolicy, procs: Option<usize>| {
            let mut p = params(&[
                ("conns", v(conns)),
                ("size_bytes", v(SIZE_BYTES)),
                ("window", v(1)),
                ("echo", v(echo.as_str())),
            ]);
            if let Some(k) = procs {
                p.insert("client_procs".to_string(), v(k));
            }
            p
        };
        let mut measurable = Vec::new();
        for (i, (stack, echo, _)) in servers.iter().enumerate() {
            let id = format!("scaling/{}/{echo}/{conns}", stack.name);
            match skip_reason(stack, conns, procs_of(i), idle_fds) {
                Some(why) => {
                    eprintln!("wsbench: skipping {id}: {why}");
                    rec.add(
                        &id,
                        stack,
                        &params_of(*echo, procs_of(i)),
                        &metrics::SKIPPED,
                        0.0,
                        Source::Harness,
                    )
                    .detail = Some(why);
                }
                None => measurable.push(i),
            }
        }
        let packed = pack_by_fds(&measurable, |i| fds_here(servers[i].0, conns, procs_of(i)));
        for (block, members) in blocks(&servers, packed, conns) {
            let mut cases: Vec<RoundTripCase> = members
                .iter()
                .map(|&i| {
                    let (stack, echo, server) = &servers[i];
                    let id = format!("scaling/{}/{echo}/{conns}", stack.name);
                    let procs = procs_of(i);
                    let clients = match procs {
                        None => open_connections(&rt, server, conns, &id).into(),
                        Some(k) => {
                            eprintln!("wsbench: {id}: the client runs as {k} worker process(es)");
                            let cpus = vec![mode.placement.client_cpus(); k];
                            let workers =
                                start_workers(server, conns, spec, mode.driver, &cpus, &id);
                            Clients::Workers(workers)
                        }
                    };
                    RoundTripCase {
                        stack,
                        server,
                        conns: clients,
                        spec,
                        driver: mode.driver,
                        id,
                        function: stack.name.to_string(),
                        parameter: format!("{echo}/{conns}"),
                        params: params_of(*echo, procs),
                    }
                })
                .collect();
            if mode.criterion_at(conns == CRITERION_CONNS) {
                criterion_round_trips(&mut group, &rt, &mut cases, |case| {
                    Throughput::Elements(case.conns.len() as u64)
                });
            }
            if mode.rounds_phase() {
                round_trip_rounds(&rt, &mut cases, plan, &block, &mut rec, FIGURES);
            }
            for case in cases {
                close_connections(&rt, case.conns, &case.id);
            }
            // The servers close their ends once they see the close: the
            // next block is packed on the descriptors they give back.
            wait_for_fds(idle_fds);
        }
    }
    let mut connecting: Vec<(&'static StackInfo, &ServerHandle)> = servers
        .iter()
        .map(|(stack, _, server)| (*stack, server))
        .collect();
    if mode.criterion_at(false) {
        for &(stack, server) in &connecting {
            bench_handshakes(&mut group, &rt, stack, server);
        }
    }
    if mode.rounds_phase() {
        handshake_rounds(&mut rec, &rt, &mut connecting, plan);
    }
    for (_, _, server) in servers {
        stop_server(server);
    }
    group.finish();
    c.final_summary();
    rec.finish();
}

/// Names the blocks of interleaved rounds at one connection count: the
/// cases whose connections fit in this process's descriptors together,
/// in table order, packed first-fit ([`pack_by_fds`]), so that as many
/// pairs as possible share rounds (with every stack, 1,000 connections
/// make two blocks: the first nine in-process stacks, then the rest).
/// Figures of different blocks are not paired; a case alone in its block
/// has its rounds run back to back and pairs with no other.
fn blocks(
    servers: &[(&'static StackInfo, EchoPolicy, ServerHandle)],
    mut packed: Vec<Vec<usize>>,
    conns: usize,
) -> Vec<(String, Vec<usize>)> {
    if packed.len() == 1 {
        return vec![(format!("scaling/{conns}"), packed.remove(0))];
    }
    packed
        .into_iter()
        .enumerate()
        .map(|(n, members)| {
            let name = match members.as_slice() {
                &[i] => {
                    let (stack, echo, _) = &servers[i];
                    format!("scaling/{conns}/{echo}/{}", stack.name)
                }
                _ => format!("scaling/{conns}/part-{}", n + 1),
            };
            (name, members)
        })
        .collect()
}

/// `WSBENCH_CLIENT_PROCS`: run every point's client as this many worker
/// processes.
fn forced_client_procs() -> Option<usize> {
    let v = std::env::var("WSBENCH_CLIENT_PROCS").ok()?;
    match v.trim().parse::<usize>() {
        Ok(k) if k >= 1 => Some(k),
        _ => fail(&format!(
            "WSBENCH_CLIENT_PROCS={v:?}: expected a whole number of worker processes >= 1"
        )),
    }
}

/// Handshakes per second in interleaved rounds over every stack: in each
/// stretch, connections opened and reset one after another (see
/// [`workload::handshakes`]) until the stretch's deadline.
fn handshake_rounds(
    rec: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    cases: &mut [(&'static StackInfo, &ServerHandle)],
    plan: wsbench::rounds::RoundPlan,
) {
    const BATCH: u64 = 20;
    let rates = wsbench::rounds::interleave(cases, plan, |(_, server), budget| {
        let target = target(server);
        let (mut opened, mut spent) = (0u64, Duration::ZERO);
        while opened == 0 || budget.allows(opened) {
            spent += rt.block_on(workload::handshakes(&target, BATCH))?;
            opened += BATCH;
        }
        Ok::<f64, wsbench::client::ClientError>(opened as f64 / spent.as_secs_f64().max(1e-12))
    })
    .unwrap_or_else(|(i, e)| fail(&format!("benchmark connect/{}: {e}", cases[i].0.name)));
    for ((stack, _), values) in cases.iter().zip(rates) {
        rec.add_median_of_rounds(
            &format!("connect/{}", stack.name),
            stack,
            &params(&[("conns", v(1))]),
            &metrics::HANDSHAKES_PER_S,
            "scaling/connect",
            values,
            Source::Wallclock,
        );
    }
    rec.flush();
}

/// criterion's benchmark of handshakes (its report; the figures come from
/// [`handshake_rounds`]): each iteration opens one connection (TCP connect
/// plus WebSocket upgrade) and resets it at once, so neither descriptors nor
/// TIME_WAIT ports pile up across criterion's thousands of iterations. The
/// reset is one system call inside the timed part.
fn bench_handshakes(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    stack: &StackInfo,
    server: &ServerHandle,
) {
    let id = format!("connect/{}", stack.name);
    let target = target(server);
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new(stack.name, "connect"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(workload::handshakes(&target, iters))
                .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")))
        })
    });
}
