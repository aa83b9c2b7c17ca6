//! What does a stack cost in memory? Per stack:
//! - live heap per idle open connection, with the stack's defaults, the
//!   suite's settings, and the suite's settings with small read buffers;
//! - whether the heap returns to where it started once they close;
//! - heap allocations and bytes per round trip on the server side (and on
//!   the client side, which should stay at zero), at each message size;
//! - live heap per idle connection over TLS, with permessage-deflate, and
//!   both (the secure group's matrix; a full run only), each against the
//!   same driver's plain connection.
//!
//! Figures for in-process stacks come from the counting allocator, charged
//! to server threads; for the child-process stacks (Python's, Node's) from
//! the server process's RSS.
//! Not timed, so not a criterion benchmark; it still runs once, small, in
//! test mode (`cargo test`).

mod common;

use common::*;
use wsbench::client::secure::Layers;
use wsbench::client::{Budget, MessageSpec, PayloadKind};
use wsbench::measure::alloc::CountingAlloc;
use wsbench::metrics::{self, Source};
use wsbench::settings::{self, Compression, Profile, ServerSettings, Transport};
use wsbench::stacks::{Host, Protocol, StackInfo};
use wsbench::workload::{self, IdleOpening};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

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

    for stack in stacks_to_measure(&mode) {
        for profile in Profile::ALL {
            idle_connections(&mut rec, &rt, &mode, stack, profile, idle_conns);
        }
        // Quick runs leave out the offer too: with the secure group in
        // them they were at their three minutes.
        if stack.protocol == Protocol::WebSocket && !(mode.quick && mode.bench) {
            idle_connections_offering_deflate(&mut rec, &rt, &mode, stack, idle_conns);
        }
        // Quick runs leave the matrix out: a TLS handshake per connection
        // for every cell would take them past their budget.
        // Test mode reads one cell per stack, its most layered.
        if !(mode.quick && mode.bench) {
            let n = if mode.records() { 500 } else { 10 };
            let mut cells: Vec<_> = SECURE_CELLS
                .into_iter()
                .filter(|&(_, compression)| compression == Compression::Off || stack.deflate)
                .collect();
            if !mode.records() {
                cells.drain(..cells.len() - 1);
            }
            for (transport, compression) in cells {
                idle_connections_secure(&mut rec, &mode, stack, transport, compression, n);
            }
        }
        busy_peak(&mut rec, &rt, &mode, stack);
        if stack.host() == Host::ChildProcess {
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
    // Idle, but each has spoken once: buffers that grow on first use count.
    let idle = workload::idle_heap(rt, &server, n, IdleOpening::OneMessage, true)
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e:#}")));
    stop_server(server);

    let params = params(&[("profile", v(profile.as_str())), ("conns", v(n))]);
    let per_conn_m = &metrics::LIVE_BYTES_PER_IDLE_CONN;
    rec.add(
        &id,
        stack,
        &params,
        per_conn_m,
        idle.per_conn_bytes,
        idle.source,
    );
    let after = idle.after_close_delta_bytes.expect("asked for");
    let after_m = &metrics::LIVE_BYTES_AFTER_CLOSE_DELTA;
    rec.add(&id, stack, &params, after_m, after, idle.source);
}

/// Connections kept busy for the peak heap: the scaling group's largest
/// point (which, timed, runs without the counting allocator).
fn busy_conns(mode: &Mode, stack: &StackInfo) -> usize {
    let n = if mode.records() {
        mode.pick(8192, 1000)
    } else {
        20
    };
    match stack.host() {
        // The child-process servers take minutes at the largest point.
        Host::ChildProcess => n.min(1000),
        Host::InProcess => n,
    }
}

/// Descriptors kept free for the runtime, files and the rest.
const FD_RESERVE: u64 = 256;

/// The server's peak memory while many connections echo at once: each of
/// `busy_conns` connections makes ten 32-byte round trips, one in flight.
fn busy_peak(rec: &mut Recorder, rt: &tokio::runtime::Runtime, mode: &Mode, stack: &StackInfo) {
    let n = busy_conns(mode, stack);
    let id = format!("memory/{}/busy/{n}", stack.name);
    let params = params(&[("conns", v(n)), ("size_bytes", v(32)), ("window", v(1))]);
    // Both ends of an in-process connection hold a descriptor here.
    let fds_per_conn = if stack.host() == Host::InProcess {
        2
    } else {
        1
    };
    let needed = n as u64 * fds_per_conn + open_fds() + FD_RESERVE;
    if needed > fd_limit() {
        let why = format!(
            "{n} connections need about {needed} descriptors; the limit here is {}",
            fd_limit()
        );
        eprintln!("wsbench: skipping {id}: {why}");
        rec.add(&id, stack, &params, &metrics::SKIPPED, 0.0, Source::Harness)
            .detail = Some(why);
        return;
    }
    let server = start_server(stack, &mode.settings(Profile::Suite), &id);
    let peak = workload::busy_peak(rt, &server, n, Budget::Count(10))
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e:#}")));
    stop_server(server);
    rec.add(
        &id,
        stack,
        &params,
        &metrics::PEAK_LIVE_BYTES,
        peak.bytes,
        peak.source,
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
        // Warm-up: buffers grow to this size once.
        let a = workload::allocs_per_round_trip(rt, &mut conns, spec, Budget::Count(3), count)
            .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
        let params = params(&[("size_bytes", v(size)), ("kind", v("binary"))]);
        let allocator = Source::Allocator;
        rec.add(
            &id,
            stack,
            &params,
            &metrics::SERVER_ALLOCS_PER_RTT,
            a.server_allocs_per_rtt,
            allocator,
        );
        rec.add(
            &id,
            stack,
            &params,
            &metrics::SERVER_ALLOC_BYTES_PER_RTT,
            a.server_bytes_per_rtt,
            allocator,
        );
        rec.add(
            &id,
            stack,
            &params,
            &metrics::CLIENT_ALLOCS_PER_RTT,
            a.client_allocs_per_rtt,
            allocator,
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
    let idle = workload::idle_heap(rt, &server, n, IdleOpening::OfferDeflate, false)
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e:#}")));
    stop_server(server);

    let detail = format!(
        "permessage-deflate accepted on {} of {n} connections; handshake only",
        idle.deflate_accepted
    );
    let params = params(&[("profile", v("defaults-deflate-offered")), ("conns", v(n))]);
    let per_conn_m = &metrics::LIVE_BYTES_PER_IDLE_CONN;
    rec.add(
        &id,
        stack,
        &params,
        per_conn_m,
        idle.per_conn_bytes,
        idle.source,
    )
    .detail = Some(detail);
}

/// The secure group's cells, as the memory group reads them.
const SECURE_CELLS: [(Transport, Compression); 4] = [
    (Transport::Plain, Compression::Off),
    (Transport::Tls, Compression::Off),
    (Transport::Plain, Compression::Deflate),
    (Transport::Tls, Compression::Deflate),
];

/// What an idle connection costs over TLS, permessage-deflate, both or
/// neither: `n` connections of the secure driver, each having echoed one
/// 32-byte message (compressed, where agreed: a compressor and a
/// decompressor exist from then on) and idle since.
fn idle_connections_secure(
    rec: &mut Recorder,
    mode: &Mode,
    stack: &StackInfo,
    transport: Transport,
    compression: Compression,
    n: usize,
) {
    let cell = settings::layers_label(transport, compression);
    let id = format!("memory/{}/idle/secure/{cell}", stack.name);
    let settings = ServerSettings {
        transport,
        compression,
        ..mode.settings(Profile::Suite)
    };
    let server = start_server(stack, &settings, &id);
    let idle = Layers::new(transport, compression, None)
        .and_then(|layers| workload::secure_idle_heap(&server, &layers, n))
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e:#}")));
    stop_server(server);
    if compression == Compression::Deflate && idle.deflate_accepted != n {
        fail(&format!(
            "benchmark {id}: permessage-deflate accepted on {} of {n} connections",
            idle.deflate_accepted
        ));
    }
    let params = params(&[
        ("profile", v("suite")),
        ("transport", v(transport.as_str())),
        ("compression", v(compression.as_str())),
        ("cell", v(cell)),
        ("conns", v(n)),
    ]);
    rec.add(
        &id,
        stack,
        &params,
        &metrics::LIVE_BYTES_PER_IDLE_CONN,
        idle.per_conn_bytes,
        idle.source,
    );
}
