//! What every bench binary shares: the run mode (bench, test, profile,
//! quick), the criterion configuration with the flamegraph profiler, the
//! servers under test, and the recorder that writes results.json.
//!
//! Each bench file answers one question; this module only sets the stage.

#![allow(dead_code)] // Not every bench binary uses every helper.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use criterion::profiler::Profiler;
use criterion::Criterion;
use wsbench::client::{self, Driver, Target};
use wsbench::measure::threads;
use wsbench::placement::Placement;
use wsbench::results::{self, GroupResults, Params};
use wsbench::rounds::{self, RoundPlan};
use wsbench::settings::{EchoPolicy, Profile, ServerSettings};
use wsbench::stacks::{self, ServerHandle, StackInfo};
use wsbench::workers::Workers;
use wsbench::workload;

/// How the binary was invoked.
pub struct Mode {
    /// `cargo bench`: measure and record.
    pub bench: bool,
    /// `--profile-time`: run under the profiler only; record nothing.
    pub profile: bool,
    /// `WSBENCH_QUICK=1`: short sweeps and measuring times.
    pub quick: bool,
    pub placement: Placement,
    pub server_threads: usize,
    /// The servers' echo write policy where a group does not sweep it
    /// (`WSBENCH_ECHO`, default flush-each).
    pub echo: EchoPolicy,
    /// `WSBENCH_CRITERION=all`: criterion times every case of every group,
    /// not only the latency group's and one point of the others.
    pub criterion_all: bool,
    /// How the open-loop client waits on its connections
    /// (`WSBENCH_DRIVER`, default io_uring where the kernel offers it).
    pub driver: Driver,
}

impl Mode {
    /// Reads the arguments and environment. criterion runs a bench binary
    /// in test mode (each benchmark once) unless cargo passed `--bench`.
    pub fn from_env() -> Mode {
        Mode::from_env_placing(Placement::default())
    }

    /// As [`Mode::from_env`], for a group whose placement, unless
    /// `WSBENCH_PLACEMENT` says otherwise, is `placement`.
    pub fn from_env_placing(placement: Placement) -> Mode {
        let args: Vec<String> = std::env::args().collect();
        let profile = args.iter().any(|a| a == "--profile-time");
        let bench = args.iter().any(|a| a == "--bench") && !profile;
        let quick = std::env::var("WSBENCH_QUICK").is_ok_and(|v| v == "1");
        let placement =
            Placement::from_env_or(placement).unwrap_or_else(|e| fail(&format!("{e:#}")));
        let server_threads = match std::env::var("WSBENCH_SERVER_THREADS") {
            Ok(v) => v
                .parse()
                .ok()
                .filter(|&n: &usize| n >= 1)
                .unwrap_or_else(|| {
                    fail(&format!(
                        "WSBENCH_SERVER_THREADS={v:?}: expected a whole number >= 1"
                    ))
                }),
            Err(_) => 1,
        };
        let echo = EchoPolicy::from_env().unwrap_or_else(|e| fail(&format!("{e:#}")));
        let criterion_all = match std::env::var("WSBENCH_CRITERION") {
            Ok(v) if v == "all" => true,
            Ok(v) => fail(&format!(
                "WSBENCH_CRITERION={v:?}: expected `all` (or unset)"
            )),
            Err(_) => false,
        };
        let driver = Driver::choose(None).unwrap_or_else(|e| fail(&format!("{e:#}")));
        raise_fd_limit();
        wsbench::machine::fix_malloc();
        Mode {
            driver,
            echo,
            criterion_all,
            bench,
            profile,
            quick,
            placement,
            server_threads,
        }
    }

    /// Whether figures from this run go into results.json.
    pub fn records(&self) -> bool {
        self.bench
    }

    /// Pick the full or the quick variant of a setting.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// Server settings of this mode, with the run's echo policy.
    pub fn settings(&self, profile: Profile) -> ServerSettings {
        self.settings_echoing(profile, self.echo)
    }

    /// Server settings of this mode, with the echo policy `echo` (for the
    /// groups that sweep it).
    pub fn settings_echoing(&self, profile: Profile, echo: EchoPolicy) -> ServerSettings {
        ServerSettings {
            addr: ServerSettings::default().addr,
            threads: self.server_threads,
            placement: self.placement,
            profile,
            echo,
            service: wsbench::settings::Service::Echo,
            ..ServerSettings::default()
        }
    }

    /// criterion's warm-up time in this mode for a bench that asks for
    /// `warm_up`.
    pub fn warm_up(&self, warm_up: Duration) -> Duration {
        if self.quick {
            warm_up.min(Duration::from_millis(200))
        } else {
            warm_up
        }
    }

    /// Whether criterion runs the group's benchmarks (for its HTML report
    /// and the flamegraphs). Their timings are criterion's; results.json's
    /// figures come from the interleaved rounds. Quick runs, read as
    /// numbers only, leave criterion out to keep within their budget.
    pub fn criterion_phase(&self) -> bool {
        !self.quick || !self.bench
    }

    /// Whether criterion times the cases of one point of a sweep. Its
    /// timings repeat the rounds' figures, and timing every point of every
    /// stack would double a full run; so a full run times the latency
    /// group and one `representative` point of each sweep (its HTML report
    /// and flamegraphs are for reading the stacks against one another),
    /// every point with `WSBENCH_CRITERION=all`, and test mode every point
    /// once.
    pub fn criterion_at(&self, representative: bool) -> bool {
        self.criterion_phase() && (representative || self.criterion_all || !self.bench)
    }

    /// Whether the interleaved rounds run: when recording, and once with
    /// tiny stretches in test mode; never under the profiler.
    pub fn rounds_phase(&self) -> bool {
        !self.profile
    }

    /// The interleaved rounds of a timed group whose full runs measure each
    /// case in `rounds` rounds of `stretch`: 6 rounds in a quick run (an
    /// interval of 96.9%, between the extremes), 2 tiny ones in test mode
    /// (no interval; the rounds only have to work). Many short rounds beat
    /// a few long ones: the cases of one round run closer together in
    /// time, so more of the machine's drift cancels in their ratios, and
    /// the interval narrows with the square root of the rounds.
    pub fn round_plan(&self, rounds: usize, stretch: Duration) -> RoundPlan {
        if !self.bench {
            RoundPlan::new(2, Duration::from_millis(5))
        } else if self.quick {
            RoundPlan::new(6, stretch.min(Duration::from_millis(100)))
        } else {
            RoundPlan::new(rounds, stretch)
        }
    }

    /// criterion configured for this mode, with the flamegraph profiler.
    pub fn criterion(&self, measurement: Duration, warm_up: Duration) -> Criterion {
        let measurement = if self.quick {
            measurement.min(Duration::from_millis(500))
        } else {
            measurement
        };
        let warm_up = self.warm_up(warm_up);
        let c = Criterion::default()
            .measurement_time(measurement)
            .warm_up_time(warm_up)
            .sample_size(if self.quick { 10 } else { 20 })
            .with_profiler(FlamegraphProfiler::default())
            // Bootstrap resamples for the confidence intervals: a tenth of
            // criterion's default. Plotting their distributions for the
            // HTML report at the default took about ten minutes of a full
            // run; the intervals' precision needs far fewer.
            .nresamples(10_000);
        let c = if self.quick {
            // Quick runs are regression checks, read as numbers: the HTML
            // report's plots would take a fifth of their time budget.
            c.without_plots()
        } else {
            // The HTML report needs a plotting backend (criterion's
            // `plotters` feature, as gnuplot is not installed here); without
            // one criterion silently writes none, so fail loudly instead.
            c.with_plots()
        };
        c.configure_from_args()
    }
}

/// Ends the run with a message that names what failed; nothing is left
/// hanging (server threads die with the process).
pub fn fail(msg: &str) -> ! {
    eprintln!("wsbench: error: {msg}");
    std::process::exit(2);
}

/// Raises the soft open-files limit to the hard one: a connection with both
/// ends in this process costs two descriptors.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The soft open-files limit now in force.
pub fn fd_limit() -> u64 {
    // SAFETY: as above.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

/// Descriptors open in this process now.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// Waits (at most 10 s) until this process holds no more than `idle`
/// descriptors (and a few for the runtime), as after servers have closed
/// their ends of connections the client just closed; says so when they
/// are still held.
pub fn wait_for_fds(idle: u64) {
    const SLACK: u64 = 64;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_fds() > idle + SLACK {
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "wsbench: {} descriptors still open 10 s after closing, against {idle} with no connection",
                open_fds()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Descriptors kept free for the runtime, files and criterion.
pub const FD_RESERVE: u64 = 256;

/// Descriptors `conns` connections to `stack` take in this process: both
/// ends of an in-process connection hold one here.
pub fn fds_for(stack: &StackInfo, conns: usize) -> u64 {
    let per_conn = if stack.host() == stacks::Host::InProcess {
        2
    } else {
        1
    };
    conns as u64 * per_conn
}

/// The rounds' block: one per connection count unless the descriptors
/// split the stacks into several (then their figures are not paired).
pub fn block_name(prefix: &str, conns: usize, b: usize, blocks: usize) -> String {
    if blocks == 1 {
        format!("{prefix}/{conns}")
    } else {
        format!("{prefix}/{conns}/part-{}", b + 1)
    }
}

/// Splits `cases` (in their order) into blocks whose connections (each
/// case's taking `fds_of` descriptors here, e.g. [`fds_for`]) fit in this
/// process's free descriptors together, packed first-fit, so that as many
/// cases as possible share interleaved rounds.
pub fn pack_by_fds<T: Copy>(cases: &[T], fds_of: impl Fn(T) -> u64) -> Vec<Vec<T>> {
    let room = fd_limit().saturating_sub(open_fds() + FD_RESERVE);
    let mut packed: Vec<Vec<T>> = Vec::new();
    let mut used = 0;
    for &case in cases {
        let needed = fds_of(case);
        match packed.last_mut() {
            Some(block) if used + needed <= room => block.push(case),
            _ => {
                packed.push(vec![case]);
                used = 0;
            }
        }
        used += needed;
    }
    packed
}

/// The stacks a bench measures: those `WSBENCH_STACKS` names (a
/// comma-separated list, or `all`), by default every stack of the table,
/// but in a quick run only the in-process ones (the Rust stacks and the
/// floor): the child-process stacks' figures move with their interpreter
/// and pins, not with this code, and measuring them would take a quick run
/// past its three minutes. A child-process stack whose runtime cannot be
/// had is skipped, with the reason.
pub fn stacks_to_measure(mode: &Mode) -> Vec<&'static StackInfo> {
    let only: Option<Vec<String>> = match std::env::var("WSBENCH_STACKS") {
        Ok(v) if v.trim() == "all" => None,
        Ok(v) => Some(
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        Err(_) if mode.quick && mode.bench => {
            let names: Vec<String> = stacks::in_process().map(|s| s.name.to_string()).collect();
            eprintln!(
                "wsbench: quick run: the in-process stacks only ({}); WSBENCH_STACKS=all or a list for others",
                names.join(", ")
            );
            Some(names)
        }
        Err(_) => None,
    };
    if let Some(only) = &only {
        for name in only {
            if let Err(e) = stacks::find(name) {
                fail(&format!("WSBENCH_STACKS: {e}"));
            }
        }
    }
    let mut out = Vec::new();
    for s in stacks::STACKS {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == s.name))
        {
            continue;
        }
        if let Err(why) = s.availability() {
            eprintln!("wsbench: skipping {}: {why}", s.name);
            continue;
        }
        out.push(s);
    }
    out
}

/// Starts a stack's server or ends the run naming the stack and benchmark.
pub fn start_server(stack: &StackInfo, settings: &ServerSettings, bench: &str) -> ServerHandle {
    stack
        .start(settings)
        .unwrap_or_else(|e| fail(&format!("benchmark {bench}: {e:#}")))
}

/// Stops a server and forgets its threads.
pub fn stop_server(server: ServerHandle) {
    let name = server.stack;
    if let Err(e) = server.shutdown() {
        eprintln!("wsbench: stopping {name}: {e:#}");
    }
    threads::prune_exited();
}

/// Collects one group's measurements (through the library's
/// [`results::Recorder`], so only catalogue metrics) and writes them into
/// results.json after every stack, so a run that fails midway keeps what
/// it measured.
pub struct Recorder {
    inner: results::Recorder,
    mode_records: bool,
    run: results::RunInfo,
}

/// Adding figures is the library recorder's (`add`, `add_sample`,
/// `extend`); this one also writes them.
impl std::ops::Deref for Recorder {
    type Target = results::Recorder;
    fn deref(&self) -> &results::Recorder {
        &self.inner
    }
}

impl std::ops::DerefMut for Recorder {
    fn deref_mut(&mut self) -> &mut results::Recorder {
        &mut self.inner
    }
}

impl Recorder {
    pub fn new(group: &str, mode: &Mode) -> Recorder {
        let run = wsbench::machine::run_info(
            mode.placement,
            mode.server_threads,
            mode.quick,
            mode.echo,
            mode.driver,
        );
        Recorder {
            inner: results::Recorder::new(group, &run.placement),
            mode_records: mode.records(),
            run,
        }
    }

    /// The same recorder, for a group whose client waits as `name` says
    /// rather than on the run's driver (the secure group's own `poll`).
    pub fn with_client_driver(mut self, name: &str) -> Recorder {
        self.run.client_driver = name.to_string();
        self
    }

    /// Merges what was measured so far into results.json (bench mode only).
    pub fn flush(&self) {
        if !self.mode_records {
            return;
        }
        let group = self.inner.group();
        let results = GroupResults {
            run: self.run.clone(),
            pair_run: None,
            measurements: self.inner.measurements().to_vec(),
        };
        if let Err(e) = results::merge_group(&results::default_path(), group, results) {
            fail(&format!("writing results for group {group}: {e:#}"));
        }
    }

    /// Final flush, then writes the report of all groups under the target
    /// directory. The committed target-reports/ is never written here: a
    /// quick or partial run must not replace it (`wsbench report --publish`
    /// does, from a complete run).
    pub fn finish(self) {
        self.flush();
        if !self.mode_records {
            return;
        }
        let opts = wsbench::report::ReportOptions::defaults();
        match wsbench::report::generate(&opts) {
            Ok(summary) => eprintln!(
                "wsbench: {} results written; report at {} ({} unchanged: `cargo run --release -- report --publish` publishes a complete run)",
                self.inner.group(),
                summary.out_dir.join("summary.md").display(),
                opts.publish_dir.display()
            ),
            Err(e) => eprintln!("wsbench: report not written: {e:#}"),
        }
    }
}

/// The target of a server, for the client.
pub fn target(server: &ServerHandle) -> Target {
    Target::of(server)
}

/// "32B", "16KiB", "1MiB".
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

/// The time `--profile-time SECONDS` asks for, for a bench that profiles
/// without criterion.
pub fn profile_seconds() -> Duration {
    let args: Vec<String> = std::env::args().collect();
    let value = args
        .iter()
        .position(|a| a == "--profile-time")
        .and_then(|i| args.get(i + 1));
    match value.map(|v| v.parse::<f64>()) {
        Some(Ok(s)) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
        _ => fail(&format!(
            "--profile-time {}: expected a number of seconds above 0",
            value.map_or("(nothing)", |v| v.as_str())
        )),
    }
}

/// criterion's profiler hook over pprof's sampling profiler: `cargo bench
/// -- --profile-time 5` writes `profile/flamegraph.svg` beside each
/// benchmark's criterion output. (pprof's own `criterion` feature targets
/// criterion 0.5.) Thread names (`srv-<stack>`, `client`) root the stacks,
/// separating server from client time.
#[derive(Default)]
pub struct FlamegraphProfiler {
    guard: Option<pprof::ProfilerGuard<'static>>,
}

/// Samples per second: prime, so sampling does not beat with periodic work.
const PROFILE_HZ: i32 = 997;

impl Profiler for FlamegraphProfiler {
    fn start_profiling(&mut self, benchmark_id: &str, _dir: &Path) {
        match pprof::ProfilerGuardBuilder::default()
            .frequency(PROFILE_HZ)
            .blocklist(&["libgcc", "vdso"])
            .build()
        {
            Ok(guard) => self.guard = Some(guard),
            Err(e) => eprintln!("wsbench: cannot profile {benchmark_id}: {e}"),
        }
    }

    fn stop_profiling(&mut self, benchmark_id: &str, dir: &Path) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let written = (|| -> anyhow::Result<()> {
            let report = guard.report().build()?;
            std::fs::create_dir_all(dir)?;
            let file = File::create(dir.join("flamegraph.svg"))?;
            report.flamegraph(file)?;
            Ok(())
        })();
        if let Err(e) = written {
            eprintln!("wsbench: flamegraph of {benchmark_id} not written: {e:#}");
        }
    }
}

/// A case's client: connections in this process, or worker processes
/// holding them (for more connections than this process's descriptors
/// allow, or more client cores than its one thread).
pub enum Clients {
    Here(Vec<client::Connection>),
    Workers(Workers),
}

impl Clients {
    /// Connections over all of them.
    pub fn len(&self) -> usize {
        match self {
            Clients::Here(conns) => conns.len(),
            Clients::Workers(w) => w.conns(),
        }
    }
}

impl Default for Clients {
    fn default() -> Clients {
        Clients::Here(Vec::new())
    }
}

impl From<Vec<client::Connection>> for Clients {
    fn from(conns: Vec<client::Connection>) -> Clients {
        Clients::Here(conns)
    }
}

/// The wsbench binary, which runs the client workers (`wsbench worker`).
pub const WSBENCH: &str = env!("CARGO_BIN_EXE_wsbench");

/// Starts `procs` client workers (`cpus` for each, `None` unpinned) with
/// `conns` connections between them, or ends the run naming the benchmark.
pub fn start_workers(
    server: &ServerHandle,
    conns: usize,
    spec: client::MessageSpec,
    driver: Driver,
    cpus: &[Option<Vec<usize>>],
    bench: &str,
) -> Workers {
    Workers::start(
        std::path::Path::new(WSBENCH),
        &target(server),
        server.pid,
        conns,
        spec,
        driver,
        cpus,
    )
    .unwrap_or_else(|e| fail(&format!("benchmark {bench}: {e}")))
}

/// One case of a block of interleaved rounds: a stack's server, its
/// connections and the round trips to run on them.
pub struct RoundTripCase<'a> {
    pub stack: &'static StackInfo,
    pub server: &'a ServerHandle,
    pub conns: Clients,
    pub spec: client::MessageSpec,
    /// How the client waits on the connections (when there are several).
    pub driver: Driver,
    /// The benchmark id, as criterion shows it and results.json keeps it.
    pub id: String,
    /// criterion's function and parameter for this case.
    pub function: String,
    pub parameter: String,
    pub params: Params,
}

impl RoundTripCase<'_> {
    /// Verified round trips of the case for `budget`, with its CPU.
    fn round_trips(
        &mut self,
        rt: &tokio::runtime::Runtime,
        budget: client::Budget,
    ) -> Result<workload::Sample, client::ClientError> {
        match &mut self.conns {
            Clients::Here(conns) => {
                let pid = self.server.pid;
                workload::round_trips(rt, conns, self.spec, budget, pid, self.driver)
            }
            Clients::Workers(workers) => workers.round_trips(budget),
        }
    }
}

/// criterion's benchmark of every case, one after the other (its HTML and
/// flamegraphs; its timings go to its own report only): each iteration is
/// one round trip on every connection of the case, every echo verified.
pub fn criterion_round_trips(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    cases: &mut [RoundTripCase<'_>],
    throughput: impl Fn(&RoundTripCase<'_>) -> criterion::Throughput,
) {
    for case in cases {
        group.throughput(throughput(case));
        let id = criterion::BenchmarkId::new(&case.function, &case.parameter);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                case.round_trips(rt, client::Budget::Count(iters))
                    .unwrap_or_else(|e| fail(&format!("benchmark {}: {e}", case.id)))
                    .elapsed
            })
        });
    }
}

/// Measures `cases` in interleaved rounds (`block` names them) and records
/// `figures` of each, the median over rounds with its interval.
pub fn round_trip_rounds(
    rt: &tokio::runtime::Runtime,
    cases: &mut [RoundTripCase<'_>],
    plan: RoundPlan,
    block: &str,
    rec: &mut Recorder,
    figures: &[&'static wsbench::metrics::Metric],
) {
    let samples = rounds::interleave(cases, plan, |case, budget| case.round_trips(rt, budget))
        .unwrap_or_else(|(i, e)| fail(&format!("benchmark {}: {e}", cases[i].id)));
    for (case, samples) in cases.iter().zip(&samples) {
        rec.add_rounds(&case.id, case.stack, &case.params, block, samples, figures);
    }
    rec.flush();
}

/// Opens `n` connections or ends the run naming the benchmark.
pub fn open_connections(
    rt: &tokio::runtime::Runtime,
    server: &ServerHandle,
    n: usize,
    bench: &str,
) -> Vec<client::Connection> {
    rt.block_on(client::connect_many(&target(server), n))
        .unwrap_or_else(|e| fail(&format!("benchmark {bench}: {e}")))
}

/// Closes connections with the close handshake (workers close theirs and
/// exit), or ends the run.
pub fn close_connections(rt: &tokio::runtime::Runtime, conns: impl Into<Clients>, bench: &str) {
    let closed = match conns.into() {
        Clients::Here(conns) => rt.block_on(client::close_all_handshake(conns)),
        Clients::Workers(workers) => workers.close(),
    };
    closed.unwrap_or_else(|e| fail(&format!("benchmark {bench}: closing: {e}")));
}

/// The client runtime on this thread, pinned by the placement.
pub fn client_runtime(mode: &Mode) -> tokio::runtime::Runtime {
    client::client_runtime(mode.placement)
        .unwrap_or_else(|e| fail(&format!("client runtime: {e:#}")))
}

/// `serde_json` value helper for parameters.
pub fn v<T: Into<serde_json::Value>>(x: T) -> serde_json::Value {
    x.into()
}

/// Parameters from pairs.
pub fn params(pairs: &[(&str, serde_json::Value)]) -> Params {
    results::params(pairs)
}
