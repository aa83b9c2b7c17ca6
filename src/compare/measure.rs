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
use serde::{Deserialize, Serialize};

use super::metrics as metrics_table;
use crate::client::{self, Budget, Connection, Driver, MessageSpec, PayloadKind, Target};
use crate::measure::alloc;
use crate::measure::threads;
use crate::metrics::{self, Metric, Source};
use crate::placement::Placement;
use crate::results::{self, Measurement, Recorder, RunInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings};
use crate::stacks::{self, Runtime, ServerHandle, StackInfo};
use crate::workload::{self, Figures, IdleOpening, Sample};

/// The results group name a round's figures carry.
pub const GROUP: &str = "compare";

const LATENCY_SIZE_BYTES: usize = 32;
const THROUGHPUT_SIZE_BYTES: usize = 16 << 10;
const THROUGHPUT_WINDOW: usize = 16;

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
        for s in stacks::STACKS
            .iter()
            .filter(|s| s.runtime == Runtime::Python)
        {
            match s.availability() {
                Ok(()) => out.push(s),
                Err(why) => eprintln!("wsbench: skipping {}: {why}", s.name),
            }
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

/// The driver of compare's many-connection phases: the runtime's epoll,
/// which any build compared has, so both sides run the same client.
const DRIVER: Driver = Driver::Epoll;

/// An empty round file with this process's run record, and the client
/// runtime, in that order: the record counts the CPUs this process may use,
/// before the runtime pins this thread.
fn begin_round(plan: &Plan) -> anyhow::Result<(RoundFile, tokio::runtime::Runtime)> {
    check_allocator()?;
    let file = RoundFile {
        run: crate::machine::run_info(plan.placement, 1, true, EchoPolicy::FlushEach, DRIVER),
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

/// One stack's server and client connection, measured phase by phase.
struct Session<'rt> {
    rt: &'rt tokio::runtime::Runtime,
    plan: Plan,
    stack: &'static StackInfo,
    server: Option<ServerHandle>,
    conns: Vec<Connection>,
    /// Figures of the untimed phases, ready to record.
    fixed: Recorder,
    latency: Vec<Sample>,
    throughput: Vec<Sample>,
}

/// What each timed phase records, whole and per window.
const LATENCY_FIGURES: &[&Metric] = &[
    &metrics::RTT_MEAN_US,
    &metrics::RTT_P50_US,
    &metrics::RTT_P99_US,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CPU_NS_PER_MSG,
];
const THROUGHPUT_FIGURES: &[&Metric] = &[
    &metrics::MSGS_PER_S,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CPU_NS_PER_MSG,
];

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
            // The quick set measures the suite's default loop, whatever
            // WSBENCH_ECHO says.
            echo: EchoPolicy::FlushEach,
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
            fixed: Recorder::new(GROUP, plan.placement.as_str()),
            latency: Vec::new(),
            throughput: Vec::new(),
        };
        if !in_process {
            // The allocator sees only this process.
            s.conns = rt.block_on(client::connect_many(&target, 1))?;
            return Ok(s);
        }

        // Idle connections first, before the measuring connection opens:
        // the heap read before them holds the server's lazily built state
        // and nothing that later phases grow.
        let idle = workload::idle_heap(
            rt,
            s.server(),
            plan.idle_conns,
            IdleOpening::OneMessage,
            false,
        )?;
        let bench = format!("{GROUP}/{}/{}", stack.name, metrics_table::IDLE);
        let idle_params = results::params(&[("conns", plan.idle_conns.into())]);
        s.fixed.add(
            &bench,
            stack,
            &idle_params,
            &metrics::LIVE_BYTES_PER_IDLE_CONN,
            idle.per_conn_bytes,
            idle.source,
        );

        s.conns = rt.block_on(client::connect_many(&target, 1))?;
        // A fixed count of round trips, after a warm-up, so the figure does
        // not depend on how fast the machine happened to be.
        let warm_up = Budget::Until(Instant::now() + plan.warm_up);
        let a = workload::allocs_per_round_trip(
            rt,
            &mut s.conns,
            Phase::Latency.spec(),
            warm_up,
            plan.alloc_round_trips,
        )?;
        let params = results::params(&[
            ("size_bytes", LATENCY_SIZE_BYTES.into()),
            ("kind", "binary".into()),
            ("round_trips", plan.alloc_round_trips.into()),
        ]);
        let bench = format!("{GROUP}/{}/{}", stack.name, metrics_table::ALLOCS);
        let allocator = Source::Allocator;
        s.fixed.add(
            &bench,
            stack,
            &params,
            &metrics::SERVER_ALLOCS_PER_RTT,
            a.server_allocs_per_rtt,
            allocator,
        );
        s.fixed.add(
            &bench,
            stack,
            &params,
            &metrics::SERVER_ALLOC_BYTES_PER_RTT,
            a.server_bytes_per_rtt,
            allocator,
        );
        Ok(s)
    }

    fn server(&self) -> &ServerHandle {
        self.server.as_ref().expect("server runs until finish")
    }

    /// Runs the phase's messages for the warm-up time, unrecorded: caches
    /// fill and buffers grow to the phase's message size.
    fn warm_up(&mut self, phase: Phase) -> anyhow::Result<()> {
        let server = self.server.as_ref().expect("server runs until finish");
        let budget = Budget::Until(Instant::now() + self.plan.warm_up);
        let pid = server.pid;
        workload::round_trips(self.rt, &mut self.conns, phase.spec(), budget, pid, DRIVER)?;
        Ok(())
    }

    /// One timed window of the phase.
    fn window(&mut self, phase: Phase) -> anyhow::Result<()> {
        let server = self.server.as_ref().expect("server runs until finish");
        let budget = Budget::Until(Instant::now() + self.plan.window);
        let pid = server.pid;
        let w = workload::round_trips(self.rt, &mut self.conns, phase.spec(), budget, pid, DRIVER)?;
        match phase {
            Phase::Latency => self.latency.push(w),
            Phase::Throughput => self.throughput.push(w),
        }
        Ok(())
    }

    /// Closes the connection, stops the server and records every figure:
    /// the whole phase's figure as a measurement, each window's in
    /// `file.windows`, keyed by phase and metric.
    fn finish(mut self, file: &mut RoundFile) -> anyhow::Result<()> {
        let closed = self
            .rt
            .block_on(client::close_all(std::mem::take(&mut self.conns)));
        let stopped = self.server.take().map(|s| s.shutdown()).unwrap_or(Ok(()));
        threads::prune_exited();
        closed?;
        stopped?;

        let stack = self.stack;
        let mut rec = std::mem::replace(&mut self.fixed, Recorder::new(GROUP, ""));
        let windows = file.windows.entry(stack.name.to_string()).or_default();
        let phases = [
            (
                Phase::Latency,
                metrics_table::LATENCY,
                &self.latency,
                LATENCY_FIGURES,
            ),
            (
                Phase::Throughput,
                metrics_table::THROUGHPUT,
                &self.throughput,
                THROUGHPUT_FIGURES,
            ),
        ];
        for (phase, name, samples, figures) in phases {
            let Some(first) = samples.first() else {
                continue;
            };
            let mut all = Sample::empty(first.spec, first.conns, first.cpu.server_source);
            for w in samples.iter() {
                all.add(w);
            }
            let spec = phase.spec();
            let params = results::params(&[
                ("size_bytes", spec.size_bytes.into()),
                ("kind", spec.kind.as_str().into()),
                ("conns", 1.into()),
                ("window", spec.window.into()),
            ]);
            let bench = format!("{GROUP}/{}/{name}", stack.name);
            rec.add_sample(&bench, stack, &params, &all, figures);
            for &metric in figures {
                let per_window = samples
                    .iter()
                    .map(|w| w.figure(metric).expect("round trips measure it").0)
                    .collect();
                windows.insert(metrics_table::key(name, metric.name), per_window);
            }
        }
        file.measurements.extend(rec.into_measurements());
        Ok(())
    }
}
