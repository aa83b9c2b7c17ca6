//! At the rate my service will see, what latency do users get, and at what
//! rate does the stack fall over? Each stack is offered fixed rates of
//! 32-byte messages over 100 and 1,000 connections, open loop: the client
//! sends on a schedule fixed in advance and never waits for an echo (see
//! `wsbench::client::open_loop`), so a stall delays every message meant
//! for its duration, as it would a user's. The rates are fractions of the
//! stack's own closed-loop rate, measured first in the same run, from a
//! tenth of it to past it, dense near it.
//!
//! Per step: the rate achieved, latency from the intended send time
//! (corrected) at p50/p99/p99.9/max, the uncorrected p99 (from the actual
//! send), the client's lateness, and server and client CPU per message.
//! Each step runs three times, rotated with the other stacks, and each
//! figure is the median of its runs: this virtual machine stops a thread
//! for up to a few milliseconds now and then (a thread spinning alone on
//! an idle core saw eight gaps over 200 µs in five seconds, the longest
//! 6 ms), and one such stall in a step's run sets its p99, so a single
//! run per step put knees wherever the stalls fell.
//! From the steps, per stack: the knee (the highest offered rate whose p99
//! stays within 1 ms, and within 10 ms, with 99% of it answered). Then,
//! in interleaved rounds, every stack at one fixed rate, the same in every
//! run: the server CPU a million messages cost (equal work).
//!
//! The server's threads have a core of their own (split-cores): on one
//! shared core the client's own CPU would halve what the server can take,
//! and the knee would be the two together.

mod common;

use std::time::Duration;

use common::*;
use wsbench::client::{open_loop, Budget, Connection, Driver, MessageSpec, OpenLoop, PayloadKind};
use wsbench::compare::stats::median;
use wsbench::metrics::{self, Metric, Source};
use wsbench::placement::Placement;
use wsbench::rounds::{self, RoundPlan};
use wsbench::settings::Profile;
use wsbench::stacks::{ServerHandle, StackInfo};
use wsbench::workload::{self, Figures, LoadSample};

// No counting allocator: as in the scaling group, its cost would land on
// whichever stack allocates more.

const SIZE_BYTES: usize = 32;

/// Offered rates as fractions of the stack's closed-loop rate: from a
/// tenth to one and a half times it, dense near it. An open loop gets
/// more through than the closed one (queued messages share reads and
/// writes), so the knee at 10 ms can lie above 1; where the client cannot
/// offer a step on time, or fills its core, the knee says so.
const STEPS: &[f64] = &[0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.1, 1.25, 1.5];
const QUICK_STEPS: &[f64] = &[0.3, 0.7, 1.0, 1.5];

/// The p99 limits a knee is read at, in microseconds.
const P99_LIMITS_US: &[f64] = &[1_000.0, 10_000.0];

/// A step counts toward the knee when this share of its offered rate was
/// answered.
const ACHIEVED_SHARE: f64 = 0.99;

/// The equal-work rate, the same at every connection count and in every
/// run, so that two runs' figures pair. Derived from each run's slowest
/// stack it moved: half the lowest sustained rate, rounded, was 5,000 in
/// one run of a build and 2,000 in the next (python-websockets at 1,000
/// connections sustained 10,729 msgs/s in one and 1,370 in the other).
/// A stack whose sweep did not sustain it gets the warning beside its
/// figure.
const EQUAL_WORK_RATE_MSGS_PER_S: f64 = 2_000.0;

/// What the rounds at the common rate record beside the server's CPU per
/// million messages.
const EQUAL_WORK_FIGURES: &[&Metric] = &[
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::MSGS_PER_S,
    &metrics::CORRECTED_P99_US,
    &metrics::ROUND_TRIPS_VERIFIED,
];

/// The plan of one run mode.
struct Plan {
    conn_counts: Vec<usize>,
    steps: &'static [f64],
    /// Runs per step; each figure is the median of them.
    step_runs: usize,
    /// Each step's measured run, and the warm-up run before it.
    step: Duration,
    step_warm_up: Duration,
    closed_loop: RoundPlan,
    equal_work: RoundPlan,
    /// The rate every stack is offered for the equal-work rounds.
    equal_work_rate: f64,
    /// How the client waits on its connections.
    driver: Driver,
}

impl Plan {
    fn of(mode: &Mode) -> Plan {
        if !mode.bench {
            // Test mode: every stack once through every phase, briefly.
            return Plan {
                conn_counts: vec![10],
                steps: &[0.5, 1.1],
                step_runs: 3,
                step: Duration::from_millis(30),
                step_warm_up: Duration::from_millis(10),
                closed_loop: mode.round_plan(3, Duration::from_millis(200)),
                equal_work: mode.round_plan(6, Duration::from_millis(300)),
                equal_work_rate: EQUAL_WORK_RATE_MSGS_PER_S,
                driver: mode.driver,
            };
        }
        Plan {
            conn_counts: mode.pick(vec![100, 1000], vec![100]),
            steps: mode.pick(STEPS, QUICK_STEPS),
            // Quick mode, a regression check, keeps one run per step.
            step_runs: mode.pick(3, 1),
            // Three runs of 150 ms keep the group within its time budget;
            // overloaded steps take longer, while their backlog drains.
            step: Duration::from_millis(150),
            step_warm_up: Duration::from_millis(50),
            closed_loop: mode.round_plan(3, Duration::from_millis(200)),
            equal_work: mode.round_plan(6, Duration::from_millis(300)),
            equal_work_rate: EQUAL_WORK_RATE_MSGS_PER_S,
            driver: mode.driver,
        }
    }
}

/// What the knees read of one step: the offered rate and the medians of
/// its runs.
struct Step {
    rate: f64,
    p99_us: f64,
    achieved_per_s: f64,
    /// The client was behind its schedule in most of the runs.
    behind: bool,
    /// The share of its core the client used (median).
    client_busy: f64,
}

/// Above this share of its core the client may be what holds a step back
/// (on this machine its CPU per message is about the server's).
const CLIENT_BUSY_LIMIT: f64 = 0.75;

/// Each step a stack was offered.
type Steps = Vec<Step>;

/// One stack at one connection count.
struct Case<'a> {
    stack: &'static StackInfo,
    server: &'a ServerHandle,
    conns: Vec<Connection>,
    /// The closed-loop rate, measured first.
    closed_loop_per_s: f64,
    steps: Steps,
}

fn main() {
    let mode = Mode::from_env_placing(Placement::SplitCores);
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("load", &mode);
    let plan = Plan::of(&mode);
    let echo = mode.echo;
    let settings = mode.settings_echoing(Profile::Suite, echo);
    let mut servers: Vec<(&'static StackInfo, ServerHandle)> = Vec::new();
    for stack in stacks_to_measure(&mode) {
        let server = start_server(stack, &settings, &format!("load/{}", stack.name));
        servers.push((stack, server));
    }
    for &conns in &plan.conn_counts {
        let indices: Vec<usize> = (0..servers.len()).collect();
        let blocks = pack_by_fds(&indices, |i| fds_for(servers[i].0, conns));
        let mut measured: Vec<(usize, f64, Steps)> = Vec::new();
        for (b, members) in blocks.iter().enumerate() {
            let block = block_name("load", conns, b, blocks.len());
            let mut cases: Vec<Case> = members
                .iter()
                .map(|&i| {
                    let (stack, server) = &servers[i];
                    Case {
                        stack,
                        server,
                        conns: open_connections(
                            &rt,
                            server,
                            conns,
                            &bench_id(stack, conns, "open"),
                        ),
                        closed_loop_per_s: 0.0,
                        steps: Vec::new(),
                    }
                })
                .collect();
            closed_loop_rates(&rt, &mut cases, &plan, &block, &mut rec);
            sweep(&mut cases, &plan, &mut rec);
            for (case, &i) in cases.into_iter().zip(members) {
                close_connections(&rt, case.conns, &bench_id(case.stack, conns, "close"));
                measured.push((i, case.closed_loop_per_s, case.steps));
            }
            rec.flush();
        }
        for (i, _, steps) in &measured {
            record_knees(&mut rec, servers[*i].0, conns, steps);
        }
        let rate = plan.equal_work_rate;
        let short: Vec<(&'static StackInfo, String)> = measured
            .iter()
            .filter_map(|(i, _, steps)| shortfall(rate, steps).map(|why| (servers[*i].0, why)))
            .collect();
        for (stack, why) in &short {
            eprintln!("wsbench: {}: {why}", bench_id(stack, conns, "equal-work"));
        }
        eprintln!("wsbench: load/{conns}: every stack at {rate} msgs/s for the equal-work rounds");
        for (b, members) in blocks.iter().enumerate() {
            let block = block_name("load/equal-work", conns, b, blocks.len());
            let mut cases: Vec<(&'static StackInfo, &ServerHandle, Vec<Connection>)> = members
                .iter()
                .map(|&i| {
                    let (stack, server) = &servers[i];
                    let conns =
                        open_connections(&rt, server, conns, &bench_id(stack, conns, "open"));
                    (*stack, server, conns)
                })
                .collect();
            equal_work(&mut cases, rate, &short, &plan, &block, &mut rec);
            for (stack, _, c) in cases {
                close_connections(&rt, c, &bench_id(stack, conns, "close"));
            }
            rec.flush();
        }
    }
    for (_, server) in servers {
        stop_server(server);
    }
    rec.finish();
}

fn bench_id(stack: &StackInfo, conns: usize, what: &str) -> String {
    format!("load/{}/{conns}/{what}", stack.name)
}

fn step_params(conns: usize, step: f64) -> wsbench::results::Params {
    params(&[
        ("conns", v(conns)),
        ("size_bytes", v(SIZE_BYTES)),
        ("step", v(step)),
        ("arrivals", v(open_loop::Arrivals::Constant.as_str())),
    ])
}

/// Each stack's closed-loop rate at this connection count (one message in
/// flight per connection), in interleaved rounds: the scale of its sweep.
fn closed_loop_rates(
    rt: &tokio::runtime::Runtime,
    cases: &mut [Case<'_>],
    plan: &Plan,
    block: &str,
    rec: &mut Recorder,
) {
    let driver = plan.driver;
    let spec = MessageSpec {
        size_bytes: SIZE_BYTES,
        kind: PayloadKind::Binary,
        window: 1,
    };
    let samples = rounds::interleave(cases, plan.closed_loop, |case, budget: Budget| {
        workload::round_trips(rt, &mut case.conns, spec, budget, case.server.pid, driver)
    })
    .unwrap_or_else(|(i, e)| {
        fail(&format!(
            "benchmark {}: {e}",
            bench_id(cases[i].stack, cases[i].conns.len(), "closed-loop")
        ))
    });
    for (case, samples) in cases.iter_mut().zip(&samples) {
        let conns = case.conns.len();
        let p = params(&[
            ("conns", v(conns)),
            ("size_bytes", v(SIZE_BYTES)),
            ("window", v(1)),
        ]);
        rec.add_rounds(
            &bench_id(case.stack, conns, "closed-loop"),
            case.stack,
            &p,
            block,
            samples,
            &[&metrics::MSGS_PER_S],
        );
        let rates: Vec<f64> = samples
            .iter()
            .map(|s| {
                s.figure(&metrics::MSGS_PER_S)
                    .expect("round trips measure it")
                    .0
            })
            .collect();
        case.closed_loop_per_s = wsbench::compare::stats::median(&rates).unwrap_or(0.0);
    }
}

/// Every step, every stack in turn within it (so drift over the sweep
/// hits all alike), each at its own fraction of its closed-loop rate; the
/// runs of a step rotate the stacks' order once more each.
fn sweep(cases: &mut [Case<'_>], plan: &Plan, rec: &mut Recorder) {
    // Every figure but `client_behind`, which carries its reason.
    let figures: Vec<&'static Metric> = workload::LOAD_FIGURES
        .iter()
        .copied()
        .filter(|m| m.name != metrics::CLIENT_BEHIND.name)
        .collect();
    for (n, &step) in plan.steps.iter().enumerate() {
        let mut runs: Vec<Vec<LoadSample>> = cases.iter().map(|_| Vec::new()).collect();
        for r in 0..plan.step_runs {
            for i in rounds::order(cases.len(), n * plan.step_runs + r) {
                let case = &mut cases[i];
                let id = bench_id(case.stack, case.conns.len(), &format!("{step}"));
                let rate = (step * case.closed_loop_per_s).max(1.0);
                let spec = OpenLoop::constant(rate, plan.step, plan.driver);
                let sample = workload::offered_load(
                    &mut case.conns,
                    spec,
                    plan.step_warm_up,
                    case.server.pid,
                )
                .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
                runs[i].push(sample);
            }
        }
        for (case, samples) in cases.iter_mut().zip(runs) {
            let conns = case.conns.len();
            let id = bench_id(case.stack, conns, &format!("{step}"));
            let rate = (step * case.closed_loop_per_s).max(1.0);
            let p = step_params(conns, step);
            // The step's own block: its runs pair with no other stack's,
            // which ran at another rate.
            rec.add_rounds(&id, case.stack, &p, &id, &samples, &figures);
            // Whether the client kept its schedule, with the reasons if not.
            let reasons: Vec<String> = samples.iter().filter_map(|s| s.run.behind()).collect();
            for why in &reasons {
                eprintln!("wsbench: {id}: {why}");
            }
            let behind = 2 * reasons.len() > samples.len();
            let (_, source) = samples[0]
                .figure(&metrics::CLIENT_BEHIND)
                .expect("measured");
            let value = if behind { 1.0 } else { 0.0 };
            rec.add(&id, case.stack, &p, &metrics::CLIENT_BEHIND, value, source)
                .detail = (!reasons.is_empty()).then(|| {
                format!(
                    "behind in {} of {} runs: {}",
                    reasons.len(),
                    samples.len(),
                    reasons[0]
                )
            });
            let median_of = |metric: &Metric| {
                let values: Vec<f64> = samples
                    .iter()
                    .map(|s| s.figure(metric).expect("measured").0)
                    .collect();
                median(&values).expect("a step has runs")
            };
            case.steps.push(Step {
                rate,
                p99_us: median_of(&metrics::CORRECTED_P99_US),
                achieved_per_s: median_of(&metrics::MSGS_PER_S),
                behind,
                client_busy: median_of(&metrics::CLIENT_CORE_SHARE),
            });
        }
    }
}

/// Whether a step met `limit_us` at p99 with [`ACHIEVED_SHARE`] of its
/// rate answered.
fn within(step: &Step, limit_us: f64) -> bool {
    step.achieved_per_s >= ACHIEVED_SHARE * step.rate && step.p99_us <= limit_us
}

/// The knees of one stack's sweep, at each limit.
fn record_knees(rec: &mut Recorder, stack: &'static StackInfo, conns: usize, steps: &[Step]) {
    for &limit in P99_LIMITS_US {
        let p = params(&[
            ("conns", v(conns)),
            ("size_bytes", v(SIZE_BYTES)),
            ("p99_limit_us", v(limit)),
        ]);
        let id = format!("load/{}/{conns}/knee-{limit}us", stack.name);
        let knee = steps
            .iter()
            .filter(|s| within(s, limit))
            .map(|s| s.rate)
            .fold(None, |best: Option<f64>, r| {
                Some(best.map_or(r, |b| b.max(r)))
            });
        let top = steps.iter().map(|s| s.rate).fold(0.0, f64::max);
        let lowest = steps.iter().map(|s| s.rate).fold(f64::INFINITY, f64::min);
        // The first step above the knee that failed: was it the client's?
        let above = steps
            .iter()
            .filter(|s| knee.is_none_or(|k| s.rate > k) && !within(s, limit))
            .min_by(|a, b| a.rate.total_cmp(&b.rate));
        let client_held = above.and_then(|s| {
            if s.behind {
                Some("the client was behind its schedule at the step above".to_string())
            } else if s.client_busy > CLIENT_BUSY_LIMIT {
                Some(format!(
                    "the client used {:.0}% of its core at the step above",
                    s.client_busy * 100.0
                ))
            } else {
                None
            }
        });
        let detail = match knee {
            None => Some(format!(
                "no step met a p99 of {limit} µs; the lowest offered {lowest:.0} msgs/s"
            )),
            Some(k) if k >= top => {
                Some("the sweep's top step met the limit: the knee lies higher".to_string())
            }
            Some(_) if client_held.is_some() => client_held
                .map(|why| format!("{why}: the knee is at least this, and may be the client's")),
            Some(_) => None,
        };
        let m = rec.add(
            &id,
            stack,
            &p,
            &metrics::KNEE_MSGS_PER_S,
            knee.unwrap_or(0.0),
            Source::Sweep,
        );
        m.detail = detail;
    }
}

/// Why `rate` is more than this stack's sweep showed it sustains (no
/// step at or above it met the looser limit), if it is.
fn shortfall(rate: f64, steps: &[Step]) -> Option<String> {
    let limit = *P99_LIMITS_US.last().expect("limits");
    let best = steps
        .iter()
        .filter(|s| within(s, limit))
        .map(|s| s.rate)
        .fold(0.0, f64::max);
    (best < rate).then(|| {
        format!(
            "the equal-work rate, {rate} msgs/s, is above the highest step this stack \
             sustained within {limit} µs ({best:.0} msgs/s): its figures there are an overload's"
        )
    })
}

/// Every stack at `rate` in interleaved rounds: CPU per million messages.
fn equal_work(
    cases: &mut [(&'static StackInfo, &ServerHandle, Vec<Connection>)],
    rate: f64,
    short: &[(&'static StackInfo, String)],
    plan: &Plan,
    block: &str,
    rec: &mut Recorder,
) {
    let stretch = plan.equal_work.stretch;
    let warm_up = plan.equal_work.warm_up;
    // The warm-up is the workload's own run before each measured one.
    let rounds_plan = RoundPlan {
        warm_up: Duration::ZERO,
        ..plan.equal_work
    };
    let samples = rounds::interleave(cases, rounds_plan, |(_, server, conns), _budget| {
        workload::offered_load(
            conns,
            OpenLoop::constant(rate, stretch, plan.driver),
            warm_up,
            server.pid,
        )
    })
    .unwrap_or_else(|(i, e)| {
        fail(&format!(
            "benchmark {}: {e}",
            bench_id(cases[i].0, cases[i].2.len(), "equal-work")
        ))
    });
    for ((stack, _, conns), samples) in cases.iter().zip(&samples) {
        let conns = conns.len();
        let p = params(&[
            ("conns", v(conns)),
            ("size_bytes", v(SIZE_BYTES)),
            ("rate", v(rate)),
        ]);
        let id = bench_id(stack, conns, "equal-work");
        let cpu = &metrics::SERVER_CPU_MS_PER_MILLION_MSGS;
        let values = samples.iter().map(|s| s.figure(cpu).expect("measured").0);
        let source = samples[0].figure(cpu).expect("measured").1;
        // The figure the table shows carries the warning, if any.
        rec.add_median_of_rounds(&id, stack, &p, cpu, block, values.collect(), source)
            .detail = short
            .iter()
            .find(|(s, _)| s.name == stack.name)
            .map(|(_, why)| why.clone());
        rec.add_rounds(&id, stack, &p, block, samples, EQUAL_WORK_FIGURES);
        for s in samples {
            if let Some(why) = s.run.behind() {
                eprintln!("wsbench: {id}: {why}");
            }
        }
    }
}
