//! The quick measurement set, in this process: what `wsbench measure`
//! writes, and what `wsbench compare` runs in each build.
//!
//! Per stack, on one server started for it:
//! 1. live heap per idle connection (allocator; in-process stacks only);
//! 2. server allocations and allocated bytes per round trip, over a fixed
//!    count of 32 B round trips (in-process stacks only);
//! 3. latency: one 32 B binary message in flight, in timed windows: round
//!    trip mean, p50 and p99, server CPU per round trip;
//! 4. throughput: 16 KiB binary, 16 in flight, in timed windows: messages
//!    per second, server CPU per message.
//!
//! The timed phases are cut into short windows so that `compare` can
//! alternate two builds window by window ([`serve_worker`]): on a shared
//! machine the load of other work changes within a second, and only
//! measurements taken a fraction of a second apart see the same load.
//!
//! Every echo is verified by the client, as everywhere else.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::{self, Budget, Connection, MessageSpec, PayloadKind, Target};
use crate::measure::alloc::{self, AllocSample};
use crate::measure::process::process_cpu_ns;
use crate::measure::threads::{self, CpuSample};
use crate::placement::Placement;
use crate::results::{self, Measurement, RunInfo};
use crate::settings::{Profile, ServerSettings};
use crate::stacks::{self, Host, ServerHandle, StackInfo};

/// The results group name a round's figures carry.
pub const GROUP: &str = "compare";

const LATENCY_SIZE_BYTES: usize = 32;
const THROUGHPUT_SIZE_BYTES: usize = 16 << 10;
const THROUGHPUT_WINDOW: usize = 16;
/// Round trips every idle connection makes before it idles, so that buffers
/// that grow on first use are counted (as in the memory bench).
const IDLE_FIRST_MESSAGES: u64 = 1;
/// Time the server gets to finish handling the idle connections' first
/// message before its heap is read.
const IDLE_SETTLE: Duration = Duration::from_millis(150);

/// How a stack is measured.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub placement: Placement,
    /// Length of one timed window.
    pub window: Duration,
    /// Timed windows per phase in a one-shot run (`wsbench measure`); in a
    /// worker, `compare` decides.
    pub windows: usize,
    /// Warm-up before a phase's first window.
    pub warm_up: Duration,
    /// Round trips counted for allocations per round trip.
    pub alloc_round_trips: u64,
    /// Idle connections opened to read the heap each costs.
    pub idle_conns: usize,
}

/// The two timed phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Latency,
    Throughput,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Latency => "latency",
            Phase::Throughput => "throughput",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [Phase::Latency, Phase::Throughput]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    fn spec(self) -> MessageSpec {
        match self {
            Phase::Latency => MessageSpec {
                size_bytes: LATENCY_SIZE_BYTES,
                kind: PayloadKind::Binary,
                window: 1,
            },
            Phase::Throughput => MessageSpec {
                size_bytes: THROUGHPUT_SIZE_BYTES,
                kind: PayloadKind::Binary,
                window: THROUGHPUT_WINDOW,
            },
        }
    }
}

/// A round's file: the figures in the results.json group schema, plus each
/// timed window's value per stack and metric, in order. `compare` pairs
/// window k of one build with window k of the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundFile {
    pub run: RunInfo,
    pub measurements: Vec<Measurement>,
    /// stack -> metric -> one value per window.
    #[serde(default)]
    pub windows: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

/// The stacks a run measures: `names`, or every in-process stack, plus the
/// Python ones when asked and available.
pub fn select_stacks(names: &[String], python: bool) -> anyhow::Result<Vec<&'static StackInfo>> {
    if !names.is_empty() {
        return names.iter().map(|n| stacks::find(n.trim())).collect();
    }
    let mut out: Vec<&'static StackInfo> = stacks::in_process().collect();
    if python {
        match stacks::python::availability() {
            Ok(()) => out.extend(
                stacks::STACKS
                    .iter()
                    .filter(|s| s.host == Host::ChildProcess),
            ),
            Err(why) => eprintln!("wsbench: skipping the Python stacks: {why}"),
        }
    }
    Ok(out)
}

fn check_allocator() -> anyhow::Result<()> {
    anyhow::ensure!(
        alloc::is_installed(),
        "the counting allocator is not installed in this binary: allocation figures would read zero"
    );
    Ok(())
}

/// Measures every stack, each phase in `plan.windows` windows, and writes
/// the round file to `out`.
pub fn measure_to_file(
    stacks: &[&'static StackInfo],
    plan: &Plan,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let (mut file, rt) = begin_round(plan)?;
    for &stack in stacks {
        let started = Instant::now();
        let mut session = Session::start(&rt, plan, stack)?;
        for phase in [Phase::Latency, Phase::Throughput] {
            session.warm_up(phase)?;
            for _ in 0..plan.windows {
                session.window(phase)?;
            }
        }
        session.finish(&mut file)?;
        eprintln!(
            "wsbench measure: {} done in {:.1} s",
            stack.name,
            started.elapsed().as_secs_f64()
        );
    }
    write_round(&file, out)
}

/// An empty round file with this process's run record, and the client
/// runtime, in that order: the record counts the CPUs this process may use,
/// before the runtime pins this thread.
fn begin_round(plan: &Plan) -> anyhow::Result<(RoundFile, tokio::runtime::Runtime)> {
    check_allocator()?;
    let file = RoundFile {
        run: crate::machine::run_info(plan.placement, 1, true),
        measurements: Vec::new(),
        windows: BTreeMap::new(),
    };
    Ok((file, client::client_runtime(plan.placement)?))
}

fn write_round(file: &RoundFile, out: &std::path::Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(file)?;
    results::write_atomically(out, json.as_bytes())
        .with_context(|| format!("writing {}", out.display()))
}

/// The worker protocol, one line each way on stdin and stdout:
///
/// - after starting the server and measuring the untimed figures (idle
///   heap, allocations), the worker says `ready`;
/// - `warm-up PHASE` and `window PHASE` (PHASE = latency or throughput)
///   run a warm-up or one timed window and answer `ok`;
/// - `done` stops the server, writes the round file to `out` and answers
///   `done`.
///
/// Anything else, or an error, ends the worker with a message on stderr.
pub fn serve_worker(
    stack: &'static StackInfo,
    plan: &Plan,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let (mut file, rt) = begin_round(plan)?;
    let mut session = Session::start(&rt, plan, stack)?;
    let stdout = std::io::stdout();
    let say = |what: &str| -> anyhow::Result<()> {
        let mut o = stdout.lock();
        writeln!(o, "{what}")?;
        o.flush()?;
        Ok(())
    };
    say("ready")?;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading a command")?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next().and_then(Phase::parse)) {
            (Some("warm-up"), Some(phase)) => session.warm_up(phase)?,
            (Some("window"), Some(phase)) => session.window(phase)?,
            (Some("done"), None) => {
                session.finish(&mut file)?;
                write_round(&file, out)?;
                return say("done");
            }
            _ => anyhow::bail!("unknown worker command {line:?}"),
        }
        say("ok")?;
    }
    anyhow::bail!("stdin closed before `done`")
}

/// What one timed window measured.
#[derive(Debug, Clone)]
struct Window {
    round_trips: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    cpu: Cpu,
}

impl Window {
    fn per_round_trip(&self, x: u64) -> f64 {
        x as f64 / self.round_trips.max(1) as f64
    }

    fn elapsed_ns(&self) -> u64 {
        self.elapsed.as_nanos() as u64
    }
}

/// One stack's server and client connection, measured phase by phase.
struct Session<'rt> {
    rt: &'rt tokio::runtime::Runtime,
    plan: Plan,
    stack: &'static StackInfo,
    server: Option<ServerHandle>,
    conns: Vec<Connection>,
    /// Figures of the untimed phases, ready to record.
    fixed: Vec<Measurement>,
    latency: Vec<Window>,
    throughput: Vec<Window>,
}

impl<'rt> Session<'rt> {
    /// Starts the server and measures the untimed figures: idle heap per
    /// connection, allocations per round trip.
    fn start(
        rt: &'rt tokio::runtime::Runtime,
        plan: &Plan,
        stack: &'static StackInfo,
    ) -> anyhow::Result<Session<'rt>> {
        let settings = ServerSettings {
            threads: 1,
            placement: plan.placement,
            profile: Profile::Suite,
            ..ServerSettings::default()
        };
        let server = stack.start(&settings)?;
        let target = Target::of(&server);
        let in_process = server.pid.is_none();
        let mut s = Session {
            rt,
            plan: *plan,
            stack,
            server: Some(server),
            conns: Vec::new(),
            fixed: Vec::new(),
            latency: Vec::new(),
            throughput: Vec::new(),
        };
        let small = Phase::Latency.spec();
        s.conns = rt.block_on(client::connect_many(&target, 1))?;
        rt.block_on(client::drive(
            &mut s.conns,
            small,
            Budget::Count(10),
            &mut client::new_histogram(),
        ))?;
        if !in_process {
            // The allocator sees only this process.
            return Ok(s);
        }

        // Idle connections first, while the one open connection has only
        // exchanged small messages: the heap read before them holds the
        // server's lazily built state and nothing that later phases grow.
        let per_conn = idle_heap_per_conn(rt, &target, plan.idle_conns)?;
        s.add_fixed(
            "idle",
            &[("conns", plan.idle_conns.into())],
            "live_bytes_per_idle_conn",
            per_conn,
            "bytes",
        );

        // A fixed count of round trips, after a warm-up, so the figure does
        // not depend on how fast the machine happened to be.
        s.warm_up(Phase::Latency)?;
        let before = AllocSample::now();
        rt.block_on(client::drive(
            &mut s.conns,
            small,
            Budget::Count(plan.alloc_round_trips),
            &mut client::new_histogram(),
        ))?;
        let d = AllocSample::now().since(before);
        let per_rtt = |x: u64| x as f64 / plan.alloc_round_trips as f64;
        let params = [
            ("size_bytes", LATENCY_SIZE_BYTES.into()),
            ("kind", "binary".into()),
            ("round_trips", plan.alloc_round_trips.into()),
        ];
        let bench = format!("allocs/{LATENCY_SIZE_BYTES}B");
        s.add_fixed(
            &bench,
            &params,
            "server_allocs_per_rtt",
            per_rtt(d.server_allocs),
            "allocs",
        );
        s.add_fixed(
            &bench,
            &params,
            "server_alloc_bytes_per_rtt",
            per_rtt(d.server_bytes),
            "bytes",
        );
        Ok(s)
    }

    fn add_fixed(
        &mut self,
        bench: &str,
        params: &[(&str, serde_json::Value)],
        metric: &str,
        value: f64,
        unit: &str,
    ) {
        let m = measurement(
            self.stack,
            self.plan.placement,
            bench,
            params,
            metric,
            value,
            unit,
            "allocator",
        );
        self.fixed.push(m);
    }

    fn server(&self) -> &ServerHandle {
        self.server.as_ref().expect("server runs until finish")
    }

    /// Runs the phase's messages for the warm-up time, unrecorded: caches
    /// fill and buffers grow to the phase's message size.
    fn warm_up(&mut self, phase: Phase) -> anyhow::Result<()> {
        self.rt.block_on(client::drive(
            &mut self.conns,
            phase.spec(),
            Budget::Until(Instant::now() + self.plan.warm_up),
            &mut client::new_histogram(),
        ))?;
        Ok(())
    }

    /// One timed window of the phase.
    fn window(&mut self, phase: Phase) -> anyhow::Result<()> {
        let mut hist = client::new_histogram();
        let cpu_before = Cpu::now(self.server());
        let stats = self.rt.block_on(client::drive(
            &mut self.conns,
            phase.spec(),
            Budget::Until(Instant::now() + self.plan.window),
            &mut hist,
        ))?;
        let cpu = Cpu::now(self.server()).since(cpu_before);
        let w = Window {
            round_trips: stats.round_trips,
            elapsed: stats.elapsed,
            hist,
            cpu,
        };
        match phase {
            Phase::Latency => self.latency.push(w),
            Phase::Throughput => self.throughput.push(w),
        }
        Ok(())
    }

    /// Closes the connection, stops the server and records every figure:
    /// the whole phase's figure as a measurement, each window's in
    /// `file.windows`.
    fn finish(mut self, file: &mut RoundFile) -> anyhow::Result<()> {
        let closed = self
            .rt
            .block_on(client::close_all(std::mem::take(&mut self.conns)));
        let stopped = self.server.take().map(|s| s.shutdown()).unwrap_or(Ok(()));
        threads::prune_exited();
        closed?;
        stopped?;

        let stack = self.stack;
        let placement = self.plan.placement;
        file.measurements.append(&mut self.fixed);
        let windows = file.windows.entry(stack.name.to_string()).or_default();
        let mut record = |bench: &str,
                          params: &[(&str, serde_json::Value)],
                          metric: &str,
                          unit: &str,
                          source: &str,
                          whole: f64,
                          per_window: Vec<f64>| {
            file.measurements.push(measurement(
                stack, placement, bench, params, metric, whole, unit, source,
            ));
            windows.insert(metric.to_string(), per_window);
        };

        if !self.latency.is_empty() {
            let all = merge(&self.latency);
            let bench = format!("latency/{LATENCY_SIZE_BYTES}B");
            let params = [
                ("size_bytes", LATENCY_SIZE_BYTES.into()),
                ("kind", "binary".into()),
                ("conns", 1.into()),
                ("window", 1.into()),
            ];
            let each = |f: &dyn Fn(&Window) -> f64| self.latency.iter().map(f).collect::<Vec<_>>();
            let mean_us = |w: &Window| w.per_round_trip(w.elapsed_ns()) / 1000.0;
            let p50_us = |w: &Window| w.hist.value_at_quantile(0.5) as f64 / 1000.0;
            let p99_us = |w: &Window| w.hist.value_at_quantile(0.99) as f64 / 1000.0;
            let server_cpu = |w: &Window| w.per_round_trip(w.cpu.server_ns);
            let client_cpu = |w: &Window| w.per_round_trip(w.cpu.client_ns);
            let cpu_source = all.cpu.server_source;
            record(
                &bench,
                &params,
                "rtt_mean_us",
                "us",
                "wallclock",
                mean_us(&all),
                each(&mean_us),
            );
            record(
                &bench,
                &params,
                "rtt_p50_us",
                "us",
                "histogram",
                p50_us(&all),
                each(&p50_us),
            );
            record(
                &bench,
                &params,
                "rtt_p99_us",
                "us",
                "histogram",
                p99_us(&all),
                each(&p99_us),
            );
            record(
                &bench,
                &params,
                "server_cpu_ns_per_rtt",
                "ns",
                cpu_source,
                server_cpu(&all),
                each(&server_cpu),
            );
            record(
                &bench,
                &params,
                "client_cpu_ns_per_rtt",
                "ns",
                "schedstat",
                client_cpu(&all),
                each(&client_cpu),
            );
        }
        if !self.throughput.is_empty() {
            let all = merge(&self.throughput);
            let bench = "throughput/16KiB";
            let params = [
                ("size_bytes", THROUGHPUT_SIZE_BYTES.into()),
                ("kind", "binary".into()),
                ("conns", 1.into()),
                ("window", THROUGHPUT_WINDOW.into()),
            ];
            let each =
                |f: &dyn Fn(&Window) -> f64| self.throughput.iter().map(f).collect::<Vec<_>>();
            let rate = |w: &Window| w.round_trips as f64 / w.elapsed.as_secs_f64().max(1e-9);
            let server_cpu = |w: &Window| w.per_round_trip(w.cpu.server_ns);
            let cpu_source = all.cpu.server_source;
            record(
                bench,
                &params,
                "msgs_per_s",
                "msgs/s",
                "wallclock",
                rate(&all),
                each(&rate),
            );
            record(
                bench,
                &params,
                "server_cpu_ns_per_msg_16KiB",
                "ns",
                cpu_source,
                server_cpu(&all),
                each(&server_cpu),
            );
        }
        Ok(())
    }
}

/// All windows of a phase as one.
fn merge(windows: &[Window]) -> Window {
    let mut all = Window {
        round_trips: 0,
        elapsed: Duration::ZERO,
        hist: client::new_histogram(),
        cpu: Cpu {
            server_ns: 0,
            client_ns: 0,
            server_source: windows[0].cpu.server_source,
        },
    };
    for w in windows {
        all.round_trips += w.round_trips;
        all.elapsed += w.elapsed;
        all.hist.add(&w.hist).expect("same bounds");
        all.cpu.server_ns += w.cpu.server_ns;
        all.cpu.client_ns += w.cpu.client_ns;
    }
    all
}

#[allow(clippy::too_many_arguments)]
fn measurement(
    stack: &StackInfo,
    placement: Placement,
    bench: &str,
    params: &[(&str, serde_json::Value)],
    metric: &str,
    value: f64,
    unit: &str,
    source: &str,
) -> Measurement {
    Measurement {
        group: GROUP.to_string(),
        bench: format!("{GROUP}/{}/{bench}", stack.name),
        stack: stack.name.to_string(),
        stack_version: stack.package_version(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        metric: metric.to_string(),
        value,
        unit: unit.to_string(),
        source: source.to_string(),
        placement: placement.to_string(),
        detail: None,
    }
}

/// Opens `n` connections, lets each exchange one message, and returns the
/// growth of the server's live heap divided by `n`.
fn idle_heap_per_conn(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    n: usize,
) -> anyhow::Result<f64> {
    std::thread::sleep(IDLE_SETTLE);
    let before = AllocSample::now();
    let mut idle: Vec<Connection> = rt.block_on(client::connect_many(target, n))?;
    rt.block_on(client::drive(
        &mut idle,
        Phase::Latency.spec(),
        Budget::Count(IDLE_FIRST_MESSAGES),
        &mut client::new_histogram(),
    ))?;
    std::thread::sleep(IDLE_SETTLE);
    let grown = AllocSample::now().since(before);
    rt.block_on(client::close_all(idle))?;
    Ok(grown.server_live_bytes as f64 / n as f64)
}

/// CPU time of the server (its threads here, or its process) and of the
/// client thread, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    server_ns: u64,
    client_ns: u64,
    server_source: &'static str,
}

impl Cpu {
    fn now(server: &ServerHandle) -> Cpu {
        let sample = CpuSample::now();
        match server.pid {
            Some(pid) => Cpu {
                server_ns: process_cpu_ns(pid).unwrap_or(0),
                client_ns: sample.client_ns,
                server_source: "proc",
            },
            None => Cpu {
                server_ns: sample.server_ns,
                client_ns: sample.client_ns,
                server_source: "schedstat",
            },
        }
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            server_ns: self.server_ns.saturating_sub(earlier.server_ns),
            client_ns: self.client_ns.saturating_sub(earlier.client_ns),
            server_source: self.server_source,
        }
    }
}
