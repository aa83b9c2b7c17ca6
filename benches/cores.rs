//! Does a server go faster on more cores? msgs/s and p99 at [`CONNS`]
//! connections (32-byte messages, one in flight on each) with the server on
//! 1, 2, 4, ... worker threads, each thread count on as many CPUs of its
//! own.
//!
//! The client runs as `wsbench worker` processes, one per client CPU and
//! pinned to it, so that it can use every core it is given; it takes half
//! the machine's CPUs (at least one) and the server's threads the rest.
//! A thread count past the rest cannot be placed: it is skipped with the
//! reason, and on a 2-CPU machine one point (one thread) is all there is,
//! which the report says rather than draw a curve. Every point records
//! its thread count, both CPU sets and the client's processes, with the
//! share of their cores the server and the client used, so that a curve
//! that flattens can be told from a client that ran out.
//!
//! Measured: the stacks whose server takes a thread count (the in-process
//! ones). Python's and Node's servers are one event loop each.
//! `WSBENCH_PLACEMENT=unpinned` runs the same points with nothing pinned;
//! same-core does not apply (client and server on one CPU cannot show
//! cores) and measures split-cores, saying so.

mod common;

use std::time::Duration;

use common::*;
use wsbench::client::{MessageSpec, PayloadKind};
use wsbench::metrics::{self, Metric, Source};
use wsbench::placement::{cpu_list, online_cpus, CoreSplit, Placement};
use wsbench::settings::Profile;
use wsbench::stacks::{Runtime, ServerHandle, StackInfo};

const CONNS: usize = 1000;
const SIZE_BYTES: usize = 32;

/// What each point records.
const FIGURES: &[&Metric] = &[
    &metrics::MSGS_PER_S,
    &metrics::RTT_P50_US,
    &metrics::RTT_P99_US,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::SERVER_CORE_SHARE,
    &metrics::CLIENT_CORE_SHARE,
    &metrics::ROUND_TRIPS_VERIFIED,
];

fn main() {
    let mut mode = Mode::from_env_placing(Placement::SplitCores);
    if mode.placement == Placement::SameCore {
        eprintln!("wsbench: cores: same-core puts client and server on one CPU and cannot show cores; measuring split-cores");
        mode.placement = Placement::SplitCores;
    }
    let pinned = mode.placement == Placement::SplitCores;
    let layout = CoreSplit::of(online_cpus());
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("cores", &mode);
    // As the scaling group's rounds; shorter in a quick run, whose three
    // minutes this group shares with every other.
    let stretch = mode.pick(Duration::from_millis(120), Duration::from_millis(60));
    let plan = mode.round_plan(20, stretch);
    let spec = MessageSpec {
        size_bytes: SIZE_BYTES,
        kind: PayloadKind::Binary,
        window: 1,
    };
    let client_cpus = layout.client.clone();
    let params_of = |threads: usize| {
        let server_cpus = &layout.server[..threads.min(layout.server.len())];
        params(&[
            ("conns", v(CONNS)),
            ("size_bytes", v(SIZE_BYTES)),
            ("window", v(1)),
            ("echo", v(mode.echo.as_str())),
            ("server_threads", v(threads)),
            ("server_cpus", v(cpu_list(pinned.then_some(server_cpus)))),
            (
                "client_cpus",
                v(cpu_list(pinned.then_some(&client_cpus[..]))),
            ),
            ("client_procs", v(client_cpus.len())),
        ])
    };
    let skip = |rec: &mut Recorder, stack: &'static StackInfo, threads: usize, why: String| {
        let id = format!("cores/{}/{threads}", stack.name);
        eprintln!("wsbench: skipping {id}: {why}");
        rec.add(
            &id,
            stack,
            &params_of(threads),
            &metrics::SKIPPED,
            0.0,
            Source::Harness,
        )
        .detail = Some(why);
    };

    let mut stacks = Vec::new();
    for stack in stacks_to_measure(&mode) {
        if stack.runtime == Runtime::Native {
            stacks.push(stack);
        } else {
            let why = "one event loop on one thread: the server takes no thread count".to_string();
            skip(&mut rec, stack, 1, why);
        }
    }
    let (placed, unplaceable) = layout.thread_counts();
    if placed.is_empty() {
        eprintln!(
            "wsbench: cores: one CPU online, none left for the server beside the client; nothing to measure"
        );
    }
    for &threads in &placed {
        let server_cpus = layout.server[..threads].to_vec();
        let mut servers: Vec<(&'static StackInfo, ServerHandle)> = Vec::new();
        for &stack in &stacks {
            let mut settings = mode.settings(Profile::Suite);
            settings.threads = threads;
            settings.cpus = pinned.then(|| server_cpus.clone());
            let id = format!("cores/{}/{threads}", stack.name);
            servers.push((stack, start_server(stack, &settings, &id)));
        }
        // One worker per client CPU, each pinned to its own.
        let worker_cpus: Vec<Option<Vec<usize>>> = client_cpus
            .iter()
            .map(|&cpu| pinned.then(|| vec![cpu]))
            .collect();
        let mut cases: Vec<RoundTripCase> = servers
            .iter()
            .map(|(stack, server)| {
                let id = format!("cores/{}/{threads}", stack.name);
                let workers = start_workers(server, CONNS, spec, mode.driver, &worker_cpus, &id);
                RoundTripCase {
                    stack,
                    server,
                    conns: Clients::Workers(workers),
                    spec,
                    driver: mode.driver,
                    id,
                    function: stack.name.to_string(),
                    parameter: threads.to_string(),
                    params: params_of(threads),
                }
            })
            .collect();
        if mode.rounds_phase() {
            let block = format!("cores/{threads}");
            round_trip_rounds(&rt, &mut cases, plan, &block, &mut rec, FIGURES);
        }
        for case in cases {
            close_connections(&rt, case.conns, &case.id);
        }
        for (_, server) in servers {
            stop_server(server);
        }
    }
    // The first thread count this machine cannot place, so that the report
    // says why the curve ends where it does.
    for &stack in &stacks {
        skip(&mut rec, stack, unplaceable, layout.too_few(unplaceable));
    }
    rec.finish();
}
