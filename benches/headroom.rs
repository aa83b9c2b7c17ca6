//! Is our client lighter than the servers it measures? For the leanest
//! servers, the client's CPU per message against the server's, on each
//! client driver (io_uring and epoll, the latter through the runtime),
//! in the cases where the client came closest to its limit: many small
//! messages, fewer mid-sized ones, many 16 KiB ones, one or sixteen in
//! flight per connection, and thousands of connections. A ratio near or
//! above 1 means a server as fast as ours would be measured at our
//! client's limit, not its own.
//!
//! The server's thread has a core of its own (split-cores), as in the
//! groups whose knees and capacities this headroom decides. Every echo is
//! verified, as everywhere.

mod common;

use std::time::Duration;

use common::*;
use wsbench::client::{Driver, MessageSpec, PayloadKind};
use wsbench::metrics::{self, Metric, Source};
use wsbench::placement::Placement;
use wsbench::settings::Profile;
use wsbench::stacks::{ServerHandle, StackInfo};

// No counting allocator: the client's CPU is what is measured, and the
// allocator's atomic additions would be part of it.

/// The leanest servers: the floor and the two WebSocket stacks that spent
/// least per message in the scaling and load groups.
const STACKS: &[&str] = &["raw-tcp", "fastwebsockets", "tokio-websockets"];

/// (connections, payload bytes, messages in flight per connection).
const CASES: &[(usize, usize, usize)] = &[
    (100, 20, 1),
    (100, 20, 16),
    (10, 1 << 10, 1),
    (10, 1 << 10, 16),
    (200, 16 << 10, 1),
    (200, 16 << 10, 16),
    // Where the runtime's many tasks cost the client more than the
    // server.
    (4096, 20, 1),
];

const FIGURES: &[&Metric] = &[
    &metrics::CLIENT_CPU_PER_SERVER_CPU,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::MSGS_PER_S,
    &metrics::ROUND_TRIPS_VERIFIED,
];

fn main() {
    let mode = Mode::from_env_placing(Placement::SplitCores);
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("headroom", &mode);
    let plan = mode.round_plan(10, Duration::from_millis(100));
    let drivers = drivers(&mut rec);
    let settings = mode.settings(Profile::Suite);
    let servers: Vec<(&'static StackInfo, ServerHandle)> = stacks_to_measure(&mode)
        .into_iter()
        .filter(|s| STACKS.contains(&s.name))
        .map(|stack| {
            let server = start_server(stack, &settings, &format!("headroom/{}", stack.name));
            (stack, server)
        })
        .collect();
    // A quick run keeps the smallest messages, within its time budget;
    // a test run all but the thousands of connections.
    let cases = match (mode.bench, mode.quick) {
        (false, _) => &CASES[..CASES.len() - 1],
        (true, true) => &CASES[..2],
        (true, false) => CASES,
    };
    // Each stack's drivers side by side, so that a block split by the
    // open-files limit still interleaves the two drivers of a stack.
    let pairs: Vec<(usize, Driver)> = (0..servers.len())
        .flat_map(|i| drivers.iter().map(move |&d| (i, d)))
        .collect();
    for &(conns, size_bytes, window) in cases {
        let blocks = pack_by_fds(&pairs, |(i, _)| fds_for(servers[i].0, conns));
        for (b, members) in blocks.iter().enumerate() {
            let block = block_name(
                &format!("headroom/{size_bytes}B/window {window}"),
                conns,
                b,
                blocks.len(),
            );
            let mut cases: Vec<RoundTripCase> = members
                .iter()
                .map(|&(i, driver)| {
                    let (stack, server) = &servers[i];
                    let parameter = format!("{}/{conns}x{size_bytes}/{window}", driver.as_str());
                    let id = format!("headroom/{}/{parameter}", stack.name);
                    RoundTripCase {
                        stack,
                        server,
                        conns: open_connections(&rt, server, conns, &id).into(),
                        spec: MessageSpec {
                            size_bytes,
                            kind: PayloadKind::Binary,
                            window,
                        },
                        driver,
                        id,
                        function: stack.name.to_string(),
                        parameter,
                        params: params(&[
                            ("conns", v(conns)),
                            ("size_bytes", v(size_bytes)),
                            ("window", v(window)),
                            ("driver", v(driver.as_str())),
                        ]),
                    }
                })
                .collect();
            if mode.rounds_phase() {
                round_trip_rounds(&rt, &mut cases, plan, &block, &mut rec, FIGURES);
            }
            for case in cases {
                close_connections(&rt, case.conns, &case.id);
            }
            rec.flush();
        }
    }
    for (_, server) in servers {
        stop_server(server);
    }
    rec.finish();
}

/// Both drivers where this kernel runs io_uring; else epoll alone, and
/// the reason is printed and recorded.
fn drivers(rec: &mut Recorder) -> Vec<Driver> {
    match wsbench::client::uring_available() {
        Ok(()) => vec![Driver::Uring, Driver::Epoll],
        Err(why) => {
            eprintln!("wsbench: headroom: no io_uring figures: {why}");
            let raw_tcp = wsbench::stacks::find("raw-tcp").expect("in the table");
            let skipped = params(&[("driver", v(Driver::Uring.as_str()))]);
            rec.add(
                "headroom/io_uring",
                raw_tcp,
                &skipped,
                &metrics::SKIPPED,
                0.0,
                Source::Harness,
            )
            .detail = Some(why);
            vec![Driver::Epoll]
        }
    }
}
