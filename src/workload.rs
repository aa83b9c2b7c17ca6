//! The workloads, measured the one way every caller uses: the benches,
//! `wsbench run` and `wsbench measure`/`compare` all call these, so a
//! figure means the same wherever it was made.
//!
//! - [`round_trips`]: verified round trips on open connections, with the
//!   server's and the client's CPU and allocations over exactly that
//!   stretch ([`Sample`]); the latency, throughput and scaling figures;
//! - [`idle_heap`]: what an idle connection costs the server;
//! - [`allocs_per_round_trip`]: heap allocations per round trip;
//! - [`busy_peak`]: a server's peak memory with many connections at work;
//! - [`handshakes`]: new connections per second;
//! - [`secure_round_trips`], [`secure_handshakes`], [`secure_idle_heap`]:
//!   the same over TLS, permessage-deflate or both ([`client::secure`]);
//! - [`offered_load`]: an open-loop run at a fixed rate ([`LoadSample`]),
//!   with the CPU over exactly its measured part;
//! - [`broadcast`]: a broadcast room's step of a room-size sweep, and the
//!   slow consumer;
//! - the leak check's cycles are in [`crate::measure::leak`].
//!
//! A [`Sample`] or [`LoadSample`] knows which catalogue metrics it yields
//! ([`Figures::figure`]); recording them is [`crate::results::Recorder`]'s.

pub mod broadcast;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::payload::{Bodies, Content};
use crate::client::secure::{Counted, Layers, SecureConnection};
use crate::client::{
    self, Budget, ClientError, Connection, Driver, MessageSpec, OpenLoop, OpenLoopRun, PayloadKind,
    Target,
};
use crate::measure::alloc::AllocSample;
use crate::measure::{self, Cpu};
use crate::metrics::{self, Metric, Source};
use crate::stacks::{Protocol, ServerHandle};

/// What a measurement yields: the value and source of a catalogue metric,
/// or `None` for a metric it does not measure.
pub trait Figures {
    fn figure(&self, metric: &Metric) -> Option<(f64, Source)>;
}

/// One measured stretch of round trips, or several added together.
#[derive(Debug, Clone)]
pub struct Sample {
    pub spec: MessageSpec,
    /// Connections the round trips ran on.
    pub conns: usize,
    /// Round trips completed and verified.
    pub round_trips: u64,
    pub elapsed: Duration,
    /// Every round trip's time, in nanoseconds.
    pub hist: Histogram<u64>,
    pub cpu: Cpu,
    pub alloc: AllocSample,
}

impl Sample {
    /// Nothing yet, for round trips of `spec` on `conns` connections to a
    /// server whose CPU comes from `server_source`.
    pub fn empty(spec: MessageSpec, conns: usize, server_source: Source) -> Sample {
        Sample {
            spec,
            conns,
            round_trips: 0,
            elapsed: Duration::ZERO,
            hist: client::new_histogram(),
            cpu: Cpu::zero(server_source),
            alloc: AllocSample::default(),
        }
    }

    /// Adds another stretch of the same workload.
    pub fn add(&mut self, other: &Sample) {
        self.round_trips += other.round_trips;
        self.elapsed += other.elapsed;
        self.hist
            .add(&other.hist)
            .expect("histograms of one client have the same bounds");
        self.cpu.add(other.cpu);
        self.alloc.server_allocs += other.alloc.server_allocs;
        self.alloc.server_bytes += other.alloc.server_bytes;
        self.alloc.client_allocs += other.alloc.client_allocs;
        self.alloc.client_bytes += other.alloc.client_bytes;
    }

    /// `total` divided by the round trips.
    pub fn per_msg(&self, total: u64) -> f64 {
        total as f64 / self.round_trips.max(1) as f64
    }

    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn msgs_per_s(&self) -> f64 {
        self.round_trips as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }

    /// CPU time `total_ns` over the wall time: cores' worth used.
    pub fn core_share(&self, total_ns: u64) -> f64 {
        crate::measure::core_share(total_ns, self.elapsed)
    }

    /// Wall-clock time per round trip. With one connection and one message
    /// in flight this is the mean round trip; otherwise it is the inverse
    /// of the rate.
    pub fn rtt_mean_us(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.round_trips.max(1) as f64
    }
}

impl Figures for Sample {
    fn figure(&self, metric: &Metric) -> Option<(f64, Source)> {
        let m = metric.name;
        let histogram = |q: f64| Some((self.quantile_us(q), Source::Histogram));
        if m == metrics::RTT_MEAN_US.name {
            Some((self.rtt_mean_us(), Source::Wallclock))
        } else if m == metrics::RTT_P50_US.name {
            histogram(0.5)
        } else if m == metrics::RTT_P90_US.name {
            histogram(0.9)
        } else if m == metrics::RTT_P99_US.name {
            histogram(0.99)
        } else if m == metrics::RTT_P999_US.name {
            histogram(0.999)
        } else if m == metrics::ROUND_TRIPS_PER_S.name || m == metrics::MSGS_PER_S.name {
            Some((self.msgs_per_s(), Source::Wallclock))
        } else if m == metrics::MIB_PER_S.name {
            let mib = self.msgs_per_s() * self.spec.size_bytes as f64 / (1u64 << 20) as f64;
            Some((mib, Source::Wallclock))
        } else if m == metrics::SERVER_CPU_NS_PER_MSG.name {
            Some((self.per_msg(self.cpu.server_ns), self.cpu.server_source))
        } else if m == metrics::CLIENT_CPU_NS_PER_MSG.name {
            Some((self.per_msg(self.cpu.client_ns), Source::Schedstat))
        } else if m == metrics::CLIENT_CORE_SHARE.name {
            Some((self.core_share(self.cpu.client_ns), Source::Schedstat))
        } else if m == metrics::SERVER_CORE_SHARE.name {
            Some((self.core_share(self.cpu.server_ns), self.cpu.server_source))
        } else if m == metrics::CLIENT_CPU_PER_SERVER_CPU.name {
            // No ratio where the server's CPU was not seen (it ran
            // elsewhere).
            (self.cpu.server_ns > 0).then(|| {
                let ratio = self.cpu.client_ns as f64 / self.cpu.server_ns as f64;
                (ratio, self.cpu.server_source)
            })
        } else if m == metrics::ROUND_TRIPS_VERIFIED.name {
            Some((self.round_trips as f64, Source::Client))
        } else {
            None
        }
    }
}

/// Runs verified round trips of `spec` on `conns` for `budget`, and reads
/// the server's and the client's CPU and allocations around exactly that.
/// `server_pid` is the server's process when it runs in a child, `None`
/// when its threads are in this process (or when it runs elsewhere: then
/// no server CPU is seen). Many connections wait on `driver`.
pub fn round_trips(
    rt: &tokio::runtime::Runtime,
    conns: &mut [Connection],
    spec: MessageSpec,
    budget: Budget,
    server_pid: Option<u32>,
    driver: Driver,
) -> Result<Sample, ClientError> {
    let mut hist = client::new_histogram();
    let cpu_before = Cpu::now(server_pid);
    let alloc_before = AllocSample::now();
    let stats = rt.block_on(client::drive_on(conns, spec, budget, &mut hist, driver))?;
    let cpu = Cpu::now(server_pid)
        .since(cpu_before)
        .less_client(stats.harness_cpu);
    let alloc = AllocSample::now().since(alloc_before);
    Ok(Sample {
        spec,
        conns: conns.len(),
        round_trips: stats.round_trips,
        elapsed: stats.elapsed,
        hist,
        cpu,
        alloc,
    })
}

/// One open-loop run and the CPU spent over it.
#[derive(Debug, Clone)]
pub struct LoadSample {
    pub run: OpenLoopRun,
    pub cpu: Cpu,
}

impl LoadSample {
    fn per_msg(&self, total_ns: u64) -> f64 {
        total_ns as f64 / self.run.sent.max(1) as f64
    }

    fn core_share(&self, total_ns: u64) -> f64 {
        crate::measure::core_share(total_ns, self.run.elapsed)
    }
}

impl Figures for LoadSample {
    fn figure(&self, metric: &Metric) -> Option<(f64, Source)> {
        let m = metric.name;
        let us = |h: &Histogram<u64>, q: f64| {
            Some((h.value_at_quantile(q) as f64 / 1e3, Source::Histogram))
        };
        let run = &self.run;
        if m == metrics::OFFERED_MSGS_PER_S.name {
            Some((run.spec.rate_per_s, Source::Harness))
        } else if m == metrics::MSGS_PER_S.name {
            Some((run.achieved_per_s(), Source::Wallclock))
        } else if m == metrics::CORRECTED_P50_US.name {
            us(&run.corrected, 0.5)
        } else if m == metrics::CORRECTED_P99_US.name {
            us(&run.corrected, 0.99)
        } else if m == metrics::CORRECTED_P999_US.name {
            us(&run.corrected, 0.999)
        } else if m == metrics::CORRECTED_MAX_US.name {
            Some((run.corrected.max() as f64 / 1e3, Source::Histogram))
        } else if m == metrics::RTT_P99_US.name {
            us(&run.uncorrected, 0.99)
        } else if m == metrics::CLIENT_LATENESS_P99_US.name {
            us(&run.lateness, 0.99)
        } else if m == metrics::CLIENT_LATENESS_MAX_US.name {
            Some((run.lateness.max() as f64 / 1e3, Source::Histogram))
        } else if m == metrics::CLIENT_BEHIND.name {
            Some((f64::from(u8::from(run.behind().is_some())), Source::Client))
        } else if m == metrics::SERVER_CPU_NS_PER_MSG.name {
            Some((self.per_msg(self.cpu.server_ns), self.cpu.server_source))
        } else if m == metrics::SERVER_CPU_MS_PER_MILLION_MSGS.name {
            // ns per message × 10^6 messages = ms per million.
            Some((self.per_msg(self.cpu.server_ns), self.cpu.server_source))
        } else if m == metrics::CLIENT_CPU_NS_PER_MSG.name {
            Some((self.per_msg(self.cpu.client_ns), Source::Schedstat))
        } else if m == metrics::CLIENT_CORE_SHARE.name {
            Some((self.core_share(self.cpu.client_ns), Source::Schedstat))
        } else if m == metrics::SERVER_CORE_SHARE.name {
            Some((self.core_share(self.cpu.server_ns), self.cpu.server_source))
        } else if m == metrics::ROUND_TRIPS_VERIFIED.name {
            Some((run.sent as f64, Source::Client))
        } else {
            None
        }
    }
}

/// What an open-loop step measures, in the order reports list it: the
/// one list of `wsbench run --rate`, the load bench and the report.
pub const LOAD_FIGURES: &[&Metric] = &[
    &metrics::OFFERED_MSGS_PER_S,
    &metrics::MSGS_PER_S,
    &metrics::CORRECTED_P50_US,
    &metrics::CORRECTED_P99_US,
    &metrics::CORRECTED_P999_US,
    &metrics::CORRECTED_MAX_US,
    &metrics::RTT_P99_US,
    &metrics::CLIENT_LATENESS_P99_US,
    &metrics::CLIENT_LATENESS_MAX_US,
    &metrics::CLIENT_BEHIND,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CORE_SHARE,
    &metrics::SERVER_CORE_SHARE,
    &metrics::ROUND_TRIPS_VERIFIED,
];

/// An open-loop run of `spec` on `conns` (see [`client::open_loop`]),
/// after a warm-up run of `warm_up` at the same rate whose echoes are all
/// verified and none recorded; the server's and the client's CPU are read
/// around the measured run alone. The calling thread drives the sockets
/// itself: call it outside the runtime.
pub fn offered_load(
    conns: &mut [Connection],
    spec: OpenLoop,
    warm_up: Duration,
    server_pid: Option<u32>,
) -> Result<LoadSample, ClientError> {
    if !warm_up.is_zero() {
        client::open_loop::run(
            conns,
            OpenLoop {
                duration: warm_up,
                ..spec
            },
        )?;
    }
    let before = Cpu::now(server_pid);
    let run = client::open_loop::run(conns, spec)?;
    let cpu = Cpu::now(server_pid)
        .since(before)
        .less_client(run.harness_cpu);
    Ok(LoadSample { run, cpu })
}

/// The message every idle connection sends once, so buffers that grow on
/// first use are counted, and the one the warm connection repeats.
pub const SMALL: MessageSpec = MessageSpec {
    size_bytes: 32,
    kind: PayloadKind::Binary,
    window: 1,
};

/// Time the server gets to finish handling connections' messages (or
/// their opening) before its memory is read.
const IDLE_SETTLE: Duration = Duration::from_millis(200);
/// How long the server gets to release what closed connections held.
const CLOSE_SETTLE: Duration = Duration::from_secs(3);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What idle connections cost a server.
#[derive(Debug, Clone, Copy)]
pub struct IdleHeap {
    /// Growth of the server's memory divided by the connections.
    pub per_conn_bytes: f64,
    /// What stayed after they closed, against before they opened (only
    /// when asked to wait for it).
    pub after_close_delta_bytes: Option<f64>,
    pub source: Source,
    /// Connections on which the server accepted permessage-deflate (when
    /// it was offered).
    pub deflate_accepted: usize,
}

/// How the idle connections open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOpening {
    /// Each sends one [`SMALL`] message, verified.
    OneMessage,
    /// Each offers permessage-deflate, as browsers do, and only completes
    /// the handshake (this client does not compress, so it sends nothing).
    OfferDeflate,
}

/// Opens `n` connections to `server` and reads what they cost it. A warm
/// connection first makes the server build its lazily made state (runtime
/// buffers, caches), which is not charged to the idle connections.
pub fn idle_heap(
    rt: &tokio::runtime::Runtime,
    server: &ServerHandle,
    n: usize,
    opening: IdleOpening,
    wait_for_close: bool,
) -> anyhow::Result<IdleHeap> {
    let target = Target::of(server);
    let open = |count: usize, warm: bool| -> anyhow::Result<Vec<Connection>> {
        let mut conns = match (opening, warm) {
            (IdleOpening::OfferDeflate, false) => {
                return Ok(rt.block_on(open_offering_deflate(&target, count))?)
            }
            _ => rt.block_on(client::connect_many(&target, count))?,
        };
        if opening == IdleOpening::OneMessage {
            let budget = Budget::Count(if warm { 10 } else { 1 });
            rt.block_on(client::drive(
                &mut conns,
                SMALL,
                budget,
                &mut client::new_histogram(),
            ))?;
        }
        Ok(conns)
    };
    let close = |conns: Vec<Connection>| -> anyhow::Result<()> {
        Ok(rt.block_on(client::close_all_handshake(conns))?)
    };
    idle_cost(
        server,
        n,
        wait_for_close,
        open,
        close,
        Connection::deflate_negotiated,
    )
}

/// As [`idle_heap`] with [`IdleOpening::OneMessage`], for connections of
/// the secure driver: over TLS, offering permessage-deflate, both or
/// neither as `layers` say. Each opens (TLS handshake included), echoes
/// one 32-byte message, verified, and idles.
pub fn secure_idle_heap(
    server: &ServerHandle,
    layers: &Layers,
    n: usize,
) -> anyhow::Result<IdleHeap> {
    let target = Target::of(server);
    let bodies = Bodies::new(Content::Random, SMALL.size_bytes).map_err(anyhow::Error::msg)?;
    let open = |count: usize, warm: bool| -> anyhow::Result<Vec<SecureConnection>> {
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let mut conn = SecureConnection::open(&target, layers)?;
            let budget = Budget::Count(if warm { 10 } else { 1 });
            conn.run(&bodies, 1, budget, &mut client::new_histogram())?;
            conns.push(conn);
        }
        Ok(conns)
    };
    let close = |conns: Vec<SecureConnection>| -> anyhow::Result<()> {
        for conn in conns {
            conn.close()?;
        }
        Ok(())
    };
    idle_cost(server, n, false, open, close, |c| c.extension().is_some())
}

/// The reading both [`idle_heap`] and [`secure_idle_heap`] make: the
/// server's memory before and with `n` connections that `open` opened
/// (after one warm connection, `open(1, true)`), and if asked, after they
/// closed.
fn idle_cost<C>(
    server: &ServerHandle,
    n: usize,
    wait_for_close: bool,
    open: impl Fn(usize, bool) -> anyhow::Result<Vec<C>>,
    close: impl Fn(Vec<C>) -> anyhow::Result<()>,
    deflated: impl Fn(&C) -> bool,
) -> anyhow::Result<IdleHeap> {
    let source = measure::memory_source(server.pid);
    // A garbage-collected server collects first: the reading is then what
    // the connections hold, not the garbage their handshakes left.
    let read = || {
        server.collect_garbage()?;
        measure::server_memory(server.pid)
            .ok_or_else(|| anyhow::anyhow!("stack {}: its process is gone", server.stack))
    };
    let warm = open(1, true)?;
    std::thread::sleep(IDLE_SETTLE);
    let before = read()?;

    let conns = open(n, false)?;
    std::thread::sleep(IDLE_SETTLE);
    let with_conns = read()?;
    let deflate_accepted = conns.iter().filter(|c| deflated(c)).count();
    close(conns)?;

    let after_close_delta_bytes = if wait_for_close {
        let deadline = Instant::now() + CLOSE_SETTLE;
        let mut after = read()?;
        while after > before && Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
            after = read()?;
        }
        Some((after - before) as f64)
    } else {
        None
    };
    close(warm)?;
    Ok(IdleHeap {
        per_conn_bytes: (with_conns - before) as f64 / n as f64,
        after_close_delta_bytes,
        source,
        deflate_accepted,
    })
}

async fn open_offering_deflate(target: &Target, n: usize) -> Result<Vec<Connection>, ClientError> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = client::CONNECT_CONCURRENCY.min(n - conns.len());
        let opened = futures_util::future::join_all(
            (0..batch).map(|_| Connection::open_offering_deflate(target)),
        )
        .await;
        for c in opened {
            conns.push(c?);
        }
    }
    Ok(conns)
}

/// A server's peak memory.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    /// Allocator: the highest live heap of the server threads while the
    /// connections worked, less what it held before they opened. RSS: the
    /// resident set once they have worked (the kernel keeps no peak we
    /// could reset per point).
    pub bytes: f64,
    pub source: Source,
}

/// Opens `n` connections to `server`, runs `budget` round trips of
/// [`SMALL`] on each at once, and reads the server's peak memory.
pub fn busy_peak(
    rt: &tokio::runtime::Runtime,
    server: &ServerHandle,
    n: usize,
    budget: Budget,
) -> anyhow::Result<Peak> {
    let target = Target::of(server);
    let source = measure::memory_source(server.pid);
    crate::measure::alloc::reset_peak_live_bytes();
    let before = AllocSample::now().server_live_bytes;
    let mut conns = rt.block_on(client::connect_many(&target, n))?;
    rt.block_on(client::drive(
        &mut conns,
        SMALL,
        budget,
        &mut client::new_histogram(),
    ))?;
    let bytes = match source {
        Source::Allocator => (crate::measure::alloc::peak_server_live_bytes() - before) as f64,
        _ => measure::server_memory(server.pid)
            .ok_or_else(|| anyhow::anyhow!("stack {}: its process is gone", server.stack))?
            as f64,
    };
    rt.block_on(client::close_all_handshake(conns))?;
    Ok(Peak { bytes, source })
}

/// Server (and client) allocations per round trip.
#[derive(Debug, Clone, Copy)]
pub struct Allocs {
    pub round_trips: u64,
    pub server_allocs_per_rtt: f64,
    pub server_bytes_per_rtt: f64,
    pub client_allocs_per_rtt: f64,
}

/// Allocations over a fixed count of round trips, after `warm_up` (buffers
/// grow to the message size once), so the figure does not depend on how
/// fast the machine happened to be.
pub fn allocs_per_round_trip(
    rt: &tokio::runtime::Runtime,
    conns: &mut [Connection],
    spec: MessageSpec,
    warm_up: Budget,
    count: u64,
) -> Result<Allocs, ClientError> {
    let mut hist = client::new_histogram();
    rt.block_on(client::drive(conns, spec, warm_up, &mut hist))?;
    let before = AllocSample::now();
    rt.block_on(client::drive(conns, spec, Budget::Count(count), &mut hist))?;
    let d = AllocSample::now().since(before);
    let per = |x: u64| x as f64 / count.max(1) as f64;
    Ok(Allocs {
        round_trips: count,
        server_allocs_per_rtt: per(d.server_allocs),
        server_bytes_per_rtt: per(d.server_bytes),
        client_allocs_per_rtt: per(d.client_allocs),
    })
}

/// Opens `n` connections one after another and resets each at once, so
/// neither descriptors nor TIME_WAIT ports pile up; returns the time it
/// took. The reset is one system call inside it.
///
/// A WebSocket connection counts once the upgrade's response is in: the
/// server has accepted it and answered. Raw TCP has no handshake of its
/// own, and its `connect` completes in the kernel before the server has
/// accepted anything; counted there, a client sharing the server's core
/// resets connections faster than the server accepts them, the listen
/// queue overflows and dropped SYNs wait a second to be sent again. So a
/// raw-TCP connection counts once the server has echoed one small
/// message: the floor's counterpart of the upgrade's request and response.
pub async fn handshakes(target: &Target, n: u64) -> Result<Duration, ClientError> {
    let mut hist = client::new_histogram();
    let started = Instant::now();
    for _ in 0..n {
        let conn = Connection::open(target).await?;
        match target.protocol {
            Protocol::WebSocket => conn.abort(),
            Protocol::RawTcp => {
                let mut one = [conn];
                client::drive(&mut one, SMALL, Budget::Count(1), &mut hist).await?;
                let [conn] = one;
                conn.abort();
            }
        }
    }
    Ok(started.elapsed())
}

/// Round trips through the secure driver, and what the client counted
/// on their echoes.
#[derive(Debug, Clone)]
pub struct SecureSample {
    pub sample: Sample,
    pub counted: Counted,
}

impl Figures for SecureSample {
    fn figure(&self, metric: &Metric) -> Option<(f64, Source)> {
        if metric.name == metrics::FRAME_BYTES_PER_MESSAGE_BYTE.name {
            Some((self.counted.frame_bytes_per_message_byte(), Source::Client))
        } else {
            self.sample.figure(metric)
        }
    }
}

/// As [`round_trips`], on one connection of the secure driver: `window`
/// messages of `bodies` in flight for `budget`, with the server's and the
/// client's CPU and allocations over exactly that.
pub fn secure_round_trips(
    conn: &mut SecureConnection,
    bodies: &Bodies,
    window: usize,
    budget: Budget,
    server_pid: Option<u32>,
) -> Result<SecureSample, ClientError> {
    let mut hist = client::new_histogram();
    let cpu_before = Cpu::now(server_pid);
    let alloc_before = AllocSample::now();
    let run = conn.run(bodies, window, budget, &mut hist)?;
    let cpu = Cpu::now(server_pid).since(cpu_before);
    let alloc = AllocSample::now().since(alloc_before);
    Ok(SecureSample {
        sample: Sample {
            spec: MessageSpec {
                size_bytes: bodies.size_bytes(),
                kind: bodies.content().kind(),
                window,
            },
            conns: 1,
            round_trips: run.round_trips,
            elapsed: run.elapsed,
            hist,
            cpu,
            alloc,
        },
        counted: run.counted,
    })
}

/// As [`handshakes`], through the secure driver: each connection's TCP
/// connect, TLS handshake (a full one: the client resumes no session) and
/// upgrade (offering permessage-deflate if `layers` say so), then a reset.
/// A raw-TCP connection counts once one small message is echoed, as there.
pub fn secure_handshakes(
    target: &Target,
    layers: &Layers,
    n: u64,
) -> Result<Duration, ClientError> {
    let bodies = Bodies::new(Content::Random, SMALL.size_bytes)
        .map_err(|e| ClientError::of(&target.stack, client::ErrorKind::Other(e)))?;
    let started = Instant::now();
    for _ in 0..n {
        let mut conn = SecureConnection::open(target, layers)?;
        if target.protocol == Protocol::RawTcp {
            conn.run(&bodies, 1, Budget::Count(1), &mut client::new_histogram())?;
        }
        conn.abort();
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's sample: `n` round trips of `rtt_ns` each.
    fn call(n: u64, rtt_ns: u64) -> Sample {
        let mut s = Sample::empty(SMALL, 1, Source::Schedstat);
        for _ in 0..n {
            s.hist.record(rtt_ns).unwrap();
        }
        s.round_trips = n;
        s.elapsed = Duration::from_nanos(n * rtt_ns);
        s
    }

    /// The warm-up before each round's stretch takes the slow start, so
    /// the recorded percentiles and mean are the fast round trips' alone.
    #[test]
    fn slow_warm_up_round_trips_leave_the_figures_alone() {
        use crate::metrics;
        use crate::rounds::{interleave, RoundPlan};
        let plan = RoundPlan {
            rounds: 12,
            stretch: Duration::ZERO,
            warm_up: Duration::from_nanos(1),
        };
        // Per case: calls so far. The first call is 5 ms round trips, as if
        // the stack were slow to start; the rest 20 µs.
        let mut cases = vec![0u32; 2];
        let samples = interleave(&mut cases, plan, |calls, _| -> Result<Sample, ()> {
            *calls += 1;
            Ok(if *calls == 1 {
                call(50, 5_000_000)
            } else {
                call(100, 20_000)
            })
        })
        .unwrap();
        let stack = crate::stacks::find("raw-tcp").unwrap();
        let mut rec = crate::results::Recorder::new("latency", "same-core");
        let figures = [
            &metrics::RTT_P50_US,
            &metrics::RTT_P99_US,
            &metrics::RTT_MEAN_US,
            &metrics::ROUND_TRIPS_VERIFIED,
        ];
        rec.add_rounds("b", stack, &Default::default(), "x", &samples[0], &figures);
        let m = rec.measurements();
        for f in &m[..3] {
            assert!(
                (19.9..=20.1).contains(&f.value),
                "{} = {}",
                f.metric,
                f.value
            );
            let r = f.rounds.as_ref().unwrap();
            assert_eq!(r.values.len(), 12);
            assert!(r.interval.is_some());
        }
        assert_eq!(m[3].value, 1200.0);
        assert!(m[3].rounds.is_none());
    }
}
