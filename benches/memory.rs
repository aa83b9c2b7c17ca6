//! What does a stack cost in memory? Per stack:
//! - live heap per idle open connection, with the stack's defaults, the
//!   suite's settings, and the suite's settings with small read buffers;
//! - whether the heap returns to where it started once they close;
//! - heap allocations and bytes per round trip on the server side (and on
//!   the client side, which should stay at zero), at each message size.
//!
//! Figures for in-process stacks come from the counting allocator, charged
//! to server threads; for the Python stacks from the server process's RSS.
//! Not timed, so not a criterion benchmark; it still runs once, small, in
//! test mode (`cargo test`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use wsbench::client::Connection;
use wsbench::client::{self, Budget, MessageSpec, PayloadKind};
use wsbench::measure::alloc::{AllocSample, CountingAlloc};
use wsbench::measure::process::process_rss_bytes;
use wsbench::settings::Profile;
use wsbench::stacks::{Host, Protocol, ServerHandle, StackInfo};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// How long the server gets to release memory after connections close.
const SETTLE_WAIT: Duration = Duration::from_secs(3);

/// The server's heap (allocator) or resident set (child process), in bytes.
fn server_bytes(server: &ServerHandle) -> (i64, &'static str) {
    match server.pid {
        Some(pid) => (process_rss_bytes(pid).unwrap_or(0) as i64, "rss"),
        None => (AllocSample::now().server_live_bytes, "allocator"),
    }
}

fn main() {
    CountingAlloc::mark_installed();
    let mode = Mode::from_env();
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("memory", &mode);
    let idle_conns: usize = if mode.records() {
        mode.pick(1000, 100)
    } else {
        20
    };
    let sizes: Vec<usize> = if mode.records() {
        mode.pick(
            vec![16, 128, KIB, 16 * KIB, 128 * KIB, MIB, 16 * MIB],
            vec![128, MIB],
        )
    } else {
        vec![128, MIB]
    };

    for stack in stacks_to_measure() {
        for profile in Profile::ALL {
            idle_connections(&mut rec, &rt, &mode, stack, profile, idle_conns);
        }
        if stack.protocol == Protocol::WebSocket {
            idle_connections_offering_deflate(&mut rec, &rt, &mode, stack, idle_conns);
        }
        if stack.host == Host::ChildProcess {
            eprintln!(
                "wsbench: {}: allocations per round trip need the allocator; RSS cannot count them",
                stack.name
            );
        } else {
            allocations_per_round_trip(&mut rec, &rt, &mode, stack, &sizes);
        }
        rec.flush();
    }
    rec.finish();
}

fn idle_connections(
    rec: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    mode: &Mode,
    stack: &StackInfo,
    profile: Profile,
    n: usize,
) {
    let id = format!("memory/{}/idle/{}", stack.name, profile.as_str());
    let server = start_server(stack, &mode.settings(profile), &id);
    // One connection first, so that lazily built per-server state (runtime
    // buffers, caches) is not charged to the idle connections.
    let mut warm = open_connections(rt, &server, 1, &id);
    let small = MessageSpec {
        size_bytes: 32,
        kind: PayloadKind::Binary,
        window: 1,
    };
    rt.block_on(client::drive(
        &mut warm,
        small,
        Budget::Count(10),
        &mut client::new_histogram(),
    ))
    .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
    std::thread::sleep(Duration::from_millis(100));
    let (before, source) = server_bytes(&server);

    // Idle, but each has spoken once: buffers that grow on first use count.
    let mut conns = open_connections(rt, &server, n, &id);
    rt.block_on(client::drive(
        &mut conns,
        small,
        Budget::Count(1),
        &mut client::new_histogram(),
    ))
    .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
    std::thread::sleep(Duration::from_millis(200));
    let (with_conns, _) = server_bytes(&server);
    let per_conn = (with_conns - before) as f64 / n as f64;

    close_connections(rt, conns, &id);
    // Give the server time to drop what the connections held.
    let deadline = Instant::now() + SETTLE_WAIT;
    let mut after = server_bytes(&server).0;
    while after > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = server_bytes(&server).0;
    }
    close_connections(rt, warm, &id);
    stop_server(server);

    let params = [("profile", v(profile.as_str())), ("conns", v(n))];
    rec.add(
        &id,
        stack,
        &params,
        "live_bytes_per_idle_conn",
        per_conn,
        "bytes",
        source,
    );
    rec.add(
        &id,
        stack,
        &params,
        "live_bytes_after_close_delta",
        (after - before) as f64,
        "bytes",
        source,
    );
}

fn allocations_per_round_trip(
    rec: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    mode: &Mode,
    stack: &StackInfo,
    sizes: &[usize],
) {
    let label = format!("memory/{}/allocs", stack.name);
    let server = start_server(stack, &mode.settings(Profile::Suite), &label);
    let mut conns = open_connections(rt, &server, 1, &label);
    for &size in sizes {
        let id = format!("memory/{}/allocs/{}", stack.name, size_label(size));
        let spec = MessageSpec {
            size_bytes: size,
            kind: PayloadKind::Binary,
            window: 1,
        };
        // Fewer round trips for large messages; allocation counts do not
        // need many.
        let count: u64 = if !mode.records() {
            2
        } else if size >= MIB {
            10
        } else {
            200
        };
        let mut hist = client::new_histogram();
        // Warm-up: buffers grow to this size once.
        rt.block_on(client::drive(&mut conns, spec, Budget::Count(3), &mut hist))
            .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
        let before = AllocSample::now();
        rt.block_on(client::drive(
            &mut conns,
            spec,
            Budget::Count(count),
            &mut hist,
        ))
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
        let d = AllocSample::now().since(before);
        let per = |x: u64| x as f64 / count as f64;
        let params = [("size_bytes", v(size)), ("kind", v("binary"))];
        rec.add(
            &id,
            stack,
            &params,
            "server_allocs_per_rtt",
            per(d.server_allocs),
            "allocs",
            "allocator",
        );
        rec.add(
            &id,
            stack,
            &params,
            "server_alloc_bytes_per_rtt",
            per(d.server_bytes),
            "bytes",
            "allocator",
        );
        rec.add(
            &id,
            stack,
            &params,
            "client_allocs_per_rtt",
            per(d.client_allocs),
            "allocs",
            "allocator",
        );
    }
    close_connections(rt, conns, &label);
    stop_server(server);
}

/// What compression costs an idle connection, where a stack turns it on by
/// default (the Python `websockets` and aiohttp servers do): the stack's
/// defaults, and clients that offer permessage-deflate as browsers do. The
/// connections only complete the handshake (this client does not
/// compress), so the figure is the handshake-time cost of compression
/// state. Stacks without compression support simply decline.
fn idle_connections_offering_deflate(
    rec: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    mode: &Mode,
    stack: &StackInfo,
    n: usize,
) {
    let id = format!("memory/{}/idle/defaults-deflate-offered", stack.name);
    let server = start_server(stack, &mode.settings(Profile::Defaults), &id);
    let warm = open_connections(rt, &server, 1, &id);
    std::thread::sleep(Duration::from_millis(100));
    let (before, source) = server_bytes(&server);
    let target = target(&server);
    let conns: Vec<Connection> = rt.block_on(async {
        let mut conns = Vec::with_capacity(n);
        while conns.len() < n {
            let batch = client::CONNECT_CONCURRENCY.min(n - conns.len());
            let opened = futures_util::future::join_all(
                (0..batch).map(|_| Connection::open_offering_deflate(&target)),
            )
            .await;
            for c in opened {
                conns.push(c.unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}"))));
            }
        }
        conns
    });
    std::thread::sleep(Duration::from_millis(200));
    let (with_conns, _) = server_bytes(&server);
    let accepted = conns.iter().filter(|c| c.deflate_negotiated()).count();
    close_connections(rt, conns, &id);
    close_connections(rt, warm, &id);
    stop_server(server);

    let per_conn = (with_conns - before) as f64 / n as f64;
    let detail =
        format!("permessage-deflate accepted on {accepted} of {n} connections; handshake only");
    let params = [("profile", v("defaults-deflate-offered")), ("conns", v(n))];
    rec.add_detail(
        &id,
        stack,
        &params,
        "live_bytes_per_idle_conn",
        per_conn,
        "bytes",
        source,
        Some(detail),
    );
}
