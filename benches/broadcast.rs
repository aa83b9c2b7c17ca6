//! How large a room can my server keep up with, and what does one reader
//! that stops reading do to it? Each stack serves its broadcast room
//! (`Service::Broadcast`: every message to every member, the sender
//! included; see `wsbench::stacks::room`), and the client grows the room
//! through the sizes below while five of its members send 32-byte
//! broadcasts at a fixed total rate, open loop (see
//! `wsbench::client::broadcast`). Every member checks it gets every
//! broadcast exactly once, in each sender's order, intact.
//!
//! Per room size: deliveries per second, the delivery latency from the
//! broadcast's intended send time (p50/p99/p99.9/max), server and client
//! CPU per delivery and their shares of a core, the client's lateness,
//! and the server's memory per member. From the sizes, per stack: the
//! room capacity, the largest room whose p99 stays within 100 ms at the
//! stated rate with every delivery made (websocket-shootout's question).
//! Past the first room size over the limit only the largest is run, and
//! for a shorter step, for its memory and cost per delivery: its latency is
//! then the backlog of a room the server cannot keep up with, and does not
//! count, and a larger room between would only take longer to fall
//! further behind. A room size that
//! fails (a delivery lost, the server stalled) ends that stack's sweep; the
//! failure is recorded and the run goes on. Beside the rooms, the bench
//! process's own peak resident set over each stack's sweep: the client's
//! memory, and the server's too when it runs in this process.
//!
//! First, though, the slow consumer: a room of 100, one member of which has a small
//! receive buffer and stops reading for ten seconds while 16 KiB
//! broadcasts go on. Recorded: the server's memory over the pause (peak
//! growth and slope), the others' p99 before and during it, and what
//! became of the stopped member (all delivered later, some dropped, or
//! disconnected), as a finding.
//!
//! `cargo bench --bench broadcast -- --profile-time 5` profiles each
//! in-process stack's largest room instead, its step repeated for five
//! seconds, and writes
//! `target/criterion/broadcast/<stack>/<room>/profile/flamegraph.svg`.
//!
//! The server's threads have a core of their own (split-cores): the
//! receivers' work is as large as the server's sends, and on a shared core
//! the capacity would be the two together. The counting allocator is
//! installed, for the memory figures; it costs a stack that allocates
//! more a little more CPU per delivery, as in the memory group.

mod common;

use std::time::{Duration, Instant};

use common::*;
use criterion::profiler::Profiler;
use wsbench::client::broadcast::{Broadcast, Pause, RoomClient};
use wsbench::client::{self, Connection, Driver, PayloadKind};
use wsbench::measure::alloc::CountingAlloc;
use wsbench::measure::process;
use wsbench::metrics::{self, Source};
use wsbench::placement::Placement;
use wsbench::results::Params;
use wsbench::settings::{Profile, ServerSettings, Service};
use wsbench::stacks::{Host, ServerHandle, StackInfo};
use wsbench::workload::broadcast::{self as bw, RoomSample};
use wsbench::workload::Figures;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Room sizes, grown in this order on the same server.
const ROOM_SIZES: &[usize] = &[100, 1000, 2000, 3000, 4096, 8192];
const QUICK_ROOM_SIZES: &[usize] = &[100, 1000];

/// Broadcasts per second over all senders: at 8,192 members, 409,600
/// deliveries per second.
const RATE_PER_S: f64 = 50.0;
const SENDERS: usize = 5;
const SIZE_BYTES: usize = 32;

/// The capacity's latency limit.
const P99_LIMIT_US: f64 = 100_000.0;

/// The slow consumer: room, rate, message size, pause.
const SLOW_ROOM: usize = 100;
const SLOW_RATE_PER_S: f64 = 100.0;
const SLOW_SIZE_BYTES: usize = 16 << 10;
/// The stopped member's socket receive buffer: small, so that the server
/// rather than the client's kernel holds what it cannot send.
const SLOW_RECV_BUFFER_BYTES: u32 = 4096;

struct Plan {
    sizes: Vec<usize>,
    step: Duration,
    warm_up: Duration,
    /// The largest room's step and warm-up when it is run past the limit:
    /// shorter, as its latency no longer counts.
    past_limit_step: Duration,
    past_limit_warm_up: Duration,
    slow_room: usize,
    slow_before: Duration,
    slow_pause: Duration,
    slow_after: Duration,
    /// How the client waits on the room (the run's setting).
    driver: Driver,
}

impl Plan {
    fn of(mode: &Mode) -> Plan {
        if !mode.bench {
            // Test mode: every stack once through every phase, briefly.
            return Plan {
                sizes: vec![10, 20],
                step: Duration::from_millis(100),
                warm_up: Duration::from_millis(20),
                past_limit_step: Duration::from_millis(100),
                past_limit_warm_up: Duration::from_millis(20),
                driver: mode.driver,
                slow_room: 10,
                slow_before: Duration::from_millis(100),
                slow_pause: Duration::from_millis(300),
                slow_after: Duration::from_millis(100),
            };
        }
        Plan::measured(mode)
    }

    /// The plan of a measured run, full or quick. The steps are short
    /// (15 broadcasts a step at the stated rate): the group's budget is
    /// four minutes for fourteen stacks, of which the slow consumers'
    /// pauses take more than half.
    fn measured(mode: &Mode) -> Plan {
        Plan {
            sizes: allowed(mode.pick(ROOM_SIZES, QUICK_ROOM_SIZES)),
            step: mode.pick(Duration::from_millis(300), Duration::from_millis(200)),
            warm_up: mode.pick(Duration::from_millis(100), Duration::from_millis(50)),
            past_limit_step: Duration::from_millis(200),
            past_limit_warm_up: Duration::from_millis(50),
            driver: mode.driver,
            slow_room: SLOW_ROOM,
            slow_before: mode.pick(Duration::from_millis(250), Duration::from_millis(200)),
            slow_pause: mode.pick(Duration::from_secs(10), Duration::from_secs(1)),
            slow_after: mode.pick(Duration::from_millis(250), Duration::from_millis(200)),
        }
    }
}

/// The sizes of `sizes` this process's descriptors allow for an
/// in-process stack (both ends here).
fn allowed(sizes: &[usize]) -> Vec<usize> {
    let max = (fd_limit().saturating_sub(open_fds() + FD_RESERVE) / 2) as usize;
    sizes.iter().copied().filter(|&n| n <= max).collect()
}

fn main() {
    CountingAlloc::mark_installed();
    let mode = Mode::from_env_placing(Placement::SplitCores);
    let rt = client_runtime(&mode);
    let settings = ServerSettings {
        service: Service::Broadcast,
        ..mode.settings(Profile::Suite)
    };
    if mode.profile {
        profile(&rt, &mode, &settings);
        return;
    }
    let mut rec = Recorder::new("broadcast", &mode);
    let plan = Plan::of(&mode);
    let skipped: Vec<usize> = mode
        .pick(ROOM_SIZES, QUICK_ROOM_SIZES)
        .iter()
        .copied()
        .filter(|n| !plan.sizes.contains(n))
        .collect();
    if mode.bench && !skipped.is_empty() {
        eprintln!(
            "wsbench: broadcast: rooms of {skipped:?} skipped: {} open files allowed here, two per member",
            fd_limit()
        );
    }
    for stack in stacks_to_measure(&mode) {
        let server = start_server(stack, &settings, &format!("broadcast/{}", stack.name));
        // The slow consumer first, on a server that has not yet held a
        // large room: a child process's resident set keeps the pages a
        // large room grew, and would hide the growth in them.
        slow_consumer(&rt, stack, &server, &plan, &mut rec);
        rec.flush();
        let reset = process::reset_peak_rss(std::process::id());
        let steps = sweep(&rt, stack, &server, &plan, &mut rec);
        record_capacity(&mut rec, stack, &steps, &plan);
        record_bench_memory(&mut rec, stack, &steps, reset);
        for &n in &skipped {
            rec.add(
                &bench_id(stack, n),
                stack,
                &room_params(n),
                &metrics::SKIPPED,
                1.0,
                Source::Harness,
            )
            .detail = Some(format!(
                "not run here: a room of {n} needs {} open files, {} are allowed",
                2 * n,
                fd_limit()
            ));
        }
        rec.flush();
        stop_server(server);
    }
    rec.finish();
}

fn bench_id(stack: &StackInfo, room: usize) -> String {
    format!("broadcast/{}/{room}", stack.name)
}

fn room_params(room: usize) -> Params {
    params(&[
        ("room", v(room)),
        ("senders", v(SENDERS)),
        ("rate", v(RATE_PER_S)),
        ("size_bytes", v(SIZE_BYTES)),
    ])
}

/// What the capacity reads of one room size.
struct Step {
    room: usize,
    p99_us: f64,
    /// Why the client may be what limited it.
    client_limited: Option<String>,
}

/// Grows the room through the plan's sizes; returns the sizes measured.
/// A size that fails is recorded as skipped with the error, and ends the
/// sweep.
fn sweep(
    rt: &tokio::runtime::Runtime,
    stack: &'static StackInfo,
    server: &ServerHandle,
    plan: &Plan,
    rec: &mut Recorder,
) -> Vec<Step> {
    let target = target(server);
    let memory_before = bw::server_memory(server)
        .unwrap_or_else(|e| fail(&format!("benchmark {}: {e:#}", bench_id(stack, 0))));
    let mut room: Option<RoomClient> = None;
    let mut steps: Vec<Step> = Vec::new();
    let largest = plan.sizes.last().copied().unwrap_or(0);
    for &n in &plan.sizes {
        let over = steps.iter().any(|s| s.p99_us > P99_LIMIT_US);
        if over && n != largest {
            continue;
        }
        let id = bench_id(stack, n);
        let outcome = grow(rt, &target, &mut room, n).and_then(|room| {
            let (step, warm_up) = if over {
                (plan.past_limit_step, plan.past_limit_warm_up)
            } else {
                (plan.step, plan.warm_up)
            };
            bw::room_step(
                room,
                Broadcast::constant(RATE_PER_S, step, plan.driver),
                warm_up,
                server,
                memory_before,
            )
        });
        match outcome {
            Ok(sample) => {
                rec.add_sample(&id, stack, &room_params(n), &sample, bw::ROOM_FIGURES);
                let p99_us = sample
                    .figure(&metrics::CORRECTED_P99_US)
                    .expect("measured")
                    .0;
                steps.push(Step {
                    room: n,
                    p99_us,
                    client_limited: sample.client_limited(),
                });
                report_step(&id, &sample);
                if p99_us > P99_LIMIT_US && !over && n != largest {
                    eprintln!(
                        "wsbench: {id}: p99 {:.0} ms, over the limit: of the larger rooms only {largest} is run",
                        p99_us / 1e3
                    );
                }
            }
            Err(e) => {
                eprintln!("wsbench: benchmark {id}: {e:#}");
                rec.add(
                    &id,
                    stack,
                    &room_params(n),
                    &metrics::SKIPPED,
                    1.0,
                    Source::Harness,
                )
                .detail = Some(format!("failed: {e:#}"));
                break;
            }
        }
    }
    if let Some(room) = room {
        for c in room.into_connections() {
            c.abort();
        }
    }
    steps
}

/// Makes the room `n` strong, opening what it lacks, and synchronises it.
fn grow<'a>(
    rt: &tokio::runtime::Runtime,
    target: &client::Target,
    room: &'a mut Option<RoomClient>,
    n: usize,
) -> anyhow::Result<&'a mut RoomClient> {
    let have = room.as_ref().map_or(0, RoomClient::len);
    let conns = rt.block_on(client::connect_room(target, n - have))?;
    match room {
        Some(r) => r.add(conns)?,
        None => {
            *room = Some(RoomClient::new(
                conns,
                SENDERS,
                SIZE_BYTES,
                PayloadKind::Binary,
            )?)
        }
    }
    let r = room.as_mut().expect("just made");
    r.sync()?;
    Ok(r)
}

fn report_step(id: &str, s: &RoomSample) {
    let f = |m| s.figure(m).map_or(f64::NAN, |x| x.0);
    eprintln!(
        "wsbench: {id}: {:.0} deliveries/s, p99 {:.1} ms, server {:.2} / client {:.2} of a core",
        f(&metrics::DELIVERIES_PER_S),
        f(&metrics::CORRECTED_P99_US) / 1e3,
        f(&metrics::SERVER_CORE_SHARE),
        f(&metrics::CLIENT_CORE_SHARE),
    );
}

/// The largest room measured whose p99 met the limit. Its detail says
/// when every size met it (the capacity is at least the largest), when
/// none did, and when the client may have set the limit at the size above.
fn record_capacity(rec: &mut Recorder, stack: &'static StackInfo, steps: &[Step], plan: &Plan) {
    // Sizes past the first one over the limit do not count: a room's
    // latency does not fall as it grows.
    let capacity = steps.iter().take_while(|s| s.p99_us <= P99_LIMIT_US).last();
    let p = params(&[
        ("p99_limit_us", v(P99_LIMIT_US)),
        ("rate", v(RATE_PER_S)),
        ("senders", v(SENDERS)),
        ("size_bytes", v(SIZE_BYTES)),
    ]);
    let id = format!("broadcast/{}/capacity", stack.name);
    let value = capacity.map_or(0.0, |s| s.room as f64);
    let m = rec.add(
        &id,
        stack,
        &p,
        &metrics::ROOM_CAPACITY_CONNS,
        value,
        Source::Sweep,
    );
    let largest = plan.sizes.last().copied().unwrap_or(0);
    let above = capacity.and_then(|c| steps.iter().find(|s| s.room > c.room));
    m.detail = match (capacity, above) {
        (None, _) if steps.is_empty() => Some("no room size was measured".into()),
        (None, _) => Some(format!("no room met the limit, not even {}", steps[0].room)),
        (Some(c), None) if c.room == largest => Some(format!(
            "the largest room measured ({largest}) met the limit: the capacity is at least that"
        )),
        (Some(_), None) => Some("the next room size failed (see its entry)".into()),
        (Some(_), Some(a)) => a
            .client_limited
            .as_ref()
            .map(|why| format!("at {} members {why}: the limit may be the client's", a.room)),
    };
}

/// The bench process's peak resident set over the stack's sweep, with the
/// largest room it held and what the figure includes.
fn record_bench_memory(
    rec: &mut Recorder,
    stack: &'static StackInfo,
    steps: &[Step],
    reset: std::io::Result<()>,
) {
    let Some(peak) = process::process_peak_rss_bytes(std::process::id()) else {
        return;
    };
    let largest = steps.iter().map(|s| s.room).max().unwrap_or(0);
    let holds = match stack.host() {
        Host::InProcess => "the client and the server (in this process)",
        Host::ChildProcess => "the client alone (the server runs in its own process)",
    };
    let since = match reset {
        Ok(()) => "over this stack's room sizes".to_string(),
        Err(e) => format!("since the bench started (the peak could not be reset: {e})"),
    };
    let m = rec.add(
        &format!("broadcast/{}/bench-process", stack.name),
        stack,
        &params(&[("largest_room", v(largest))]),
        &metrics::BENCH_PEAK_RSS_BYTES,
        peak as f64,
        Source::Rss,
    );
    m.detail = Some(format!("{holds}, {since}"));
}

/// `--profile-time SECONDS`: each in-process stack's largest room under
/// the sampling profiler, its measured step (past the limit, as the sweep
/// runs it) repeated for that long after one warm-up outside it; one long
/// run instead would grow a backlog no measured step has, and ring-queued
/// servers drop members from it. Records nothing. A child
/// process's server is out of the profiler's sight, so those stacks are
/// skipped, saying so.
fn profile(rt: &tokio::runtime::Runtime, mode: &Mode, settings: &ServerSettings) {
    let plan = Plan::measured(mode);
    let Some(&room_size) = plan.sizes.last() else {
        fail("broadcast: no room size fits this process's open-file limit");
    };
    let seconds = profile_seconds();
    for stack in stacks_to_measure(mode) {
        let id = bench_id(stack, room_size);
        if stack.host() == Host::ChildProcess {
            eprintln!("wsbench: {id}: not profiled: the server runs in its own process, out of the profiler's sight");
            continue;
        }
        let server = start_server(stack, settings, &id);
        let dir = wsbench::results::target_dir()
            .join("criterion")
            .join(&id)
            .join("profile");
        let mut room = None;
        let profiled = (|| -> anyhow::Result<()> {
            let r = grow(rt, &target(&server), &mut room, room_size)?;
            let step = Broadcast::constant(RATE_PER_S, plan.past_limit_step, plan.driver);
            r.run(Broadcast {
                duration: plan.past_limit_warm_up,
                ..step
            })?;
            let mut profiler = FlamegraphProfiler::default();
            profiler.start_profiling(&id, &dir);
            let start = Instant::now();
            let mut deliveries = 0;
            while start.elapsed() < seconds {
                // Dropped unstopped on an error, writing nothing.
                deliveries += r.run(step)?.deliveries;
            }
            profiler.stop_profiling(&id, &dir);
            eprintln!(
                "wsbench: {id}: profiled {deliveries} deliveries in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            Ok(())
        })();
        if let Err(e) = profiled {
            eprintln!("wsbench: benchmark {id}: not profiled: {e:#}");
        }
        if let Some(r) = room {
            r.into_connections().into_iter().for_each(|c| c.abort());
        }
        stop_server(server);
    }
}

/// The slow-consumer case on a fresh room.
fn slow_consumer(
    rt: &tokio::runtime::Runtime,
    stack: &'static StackInfo,
    server: &ServerHandle,
    plan: &Plan,
    rec: &mut Recorder,
) {
    let id = format!("broadcast/{}/slow-consumer", stack.name);
    let target = target(server);
    let p = params(&[
        ("room", v(plan.slow_room)),
        ("senders", v(SENDERS)),
        ("rate", v(SLOW_RATE_PER_S)),
        ("size_bytes", v(SLOW_SIZE_BYTES)),
        ("pause_ms", v(plan.slow_pause.as_millis() as u64)),
    ]);
    let outcome = (|| -> anyhow::Result<bw::SlowSample> {
        let mut conns = rt.block_on(client::connect_room(&target, plan.slow_room - 1))?;
        conns.push(rt.block_on(Connection::open_with_recv_buffer(
            &target,
            SLOW_RECV_BUFFER_BYTES,
        ))?);
        let mut room = RoomClient::new(conns, SENDERS, SLOW_SIZE_BYTES, PayloadKind::Binary)?;
        room.sync()?;
        let spec = Broadcast {
            size_bytes: SLOW_SIZE_BYTES,
            pause: Some(Pause {
                conn: plan.slow_room - 1,
                after: plan.slow_before,
                length: plan.slow_pause,
            }),
            ..Broadcast::constant(
                SLOW_RATE_PER_S,
                plan.slow_before + plan.slow_pause + plan.slow_after,
                plan.driver,
            )
        };
        let sample = bw::slow_consumer(&mut room, spec, server);
        for c in room.into_connections() {
            c.abort();
        }
        Ok(sample?)
    })();
    match outcome {
        Ok(sample) => {
            let finding = sample.finding();
            eprintln!("wsbench: {id}: {finding}");
            let (first, rest) = bw::SLOW_FIGURES.split_first().expect("figures");
            let (value, source) = sample.figure(first).expect("measured");
            rec.add(&id, stack, &p, first, value, source).detail = Some(finding);
            rec.add_sample(&id, stack, &p, &sample, rest);
        }
        Err(e) => {
            eprintln!("wsbench: benchmark {id}: {e:#}");
            rec.add(&id, stack, &p, &metrics::SKIPPED, 1.0, Source::Harness)
                .detail = Some(format!("failed: {e:#}"));
        }
    }
}
