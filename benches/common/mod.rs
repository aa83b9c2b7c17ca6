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
use wsbench::client::{self, Target};
use wsbench::measure::alloc::AllocSample;
use wsbench::measure::threads;
use wsbench::placement::Placement;
use wsbench::results::{self, GroupResults, Measurement};
use wsbench::settings::{Profile, ServerSettings};
use wsbench::stacks::{self, Host, ServerHandle, StackInfo};

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
}

impl Mode {
    /// Reads the arguments and environment. criterion runs a bench binary
    /// in test mode (each benchmark once) unless cargo passed `--bench`.
    pub fn from_env() -> Mode {
        let args: Vec<String> = std::env::args().collect();
        let profile = args.iter().any(|a| a == "--profile-time");
        let bench = args.iter().any(|a| a == "--bench") && !profile;
        let quick = std::env::var("WSBENCH_QUICK").is_ok_and(|v| v == "1");
        let placement = Placement::from_env().unwrap_or_else(|e| fail(&format!("{e:#}")));
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
        raise_fd_limit();
        Mode {
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

    pub fn settings(&self, profile: Profile) -> ServerSettings {
        ServerSettings {
            threads: self.server_threads,
            placement: self.placement,
            profile,
            ..ServerSettings::default()
        }
    }

    /// criterion configured for this mode, with the flamegraph profiler.
    pub fn criterion(&self, measurement: Duration, warm_up: Duration) -> Criterion {
        let (measurement, warm_up) = if self.quick {
            (
                measurement.min(Duration::from_millis(500)),
                warm_up.min(Duration::from_millis(200)),
            )
        } else {
            (measurement, warm_up)
        };
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

/// The stacks a bench measures: every stack of the table, except the
/// Python ones when Python cannot be had (said once, with the reason), and
/// those excluded by `WSBENCH_STACKS` (a comma-separated list of names).
pub fn stacks_to_measure() -> Vec<&'static StackInfo> {
    let only: Option<Vec<String>> = std::env::var("WSBENCH_STACKS").ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
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
        if s.host == Host::ChildProcess {
            if let Err(why) = stacks::python::availability() {
                eprintln!("wsbench: skipping {}: {why}", s.name);
                continue;
            }
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

/// CPU time of the server (its threads here, or its process) and of the
/// client threads, in nanoseconds.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub server_ns: u64,
    pub client_ns: u64,
}

impl Cpu {
    pub fn now(server: &ServerHandle) -> Cpu {
        let sample = wsbench::measure::cpu_now(server.pid);
        Cpu {
            server_ns: sample.server_ns,
            client_ns: sample.client_ns,
        }
    }

    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            server_ns: self.server_ns.saturating_sub(earlier.server_ns),
            client_ns: self.client_ns.saturating_sub(earlier.client_ns),
        }
    }
}

/// What a benchmark accumulates across criterion's batches besides time:
/// every round trip in one histogram, CPU and allocations over all batches.
pub struct Accumulated {
    pub hist: hdrhistogram::Histogram<u64>,
    pub round_trips: u64,
    pub elapsed: Duration,
    pub cpu: Cpu,
    pub alloc: AllocSample,
}

impl Default for Accumulated {
    fn default() -> Self {
        Accumulated {
            hist: client::new_histogram(),
            round_trips: 0,
            elapsed: Duration::ZERO,
            cpu: Cpu::default(),
            alloc: AllocSample::default(),
        }
    }
}

impl Accumulated {
    pub fn add(&mut self, round_trips: u64, elapsed: Duration, cpu: Cpu, alloc: AllocSample) {
        self.round_trips += round_trips;
        self.elapsed += elapsed;
        self.cpu.server_ns += cpu.server_ns;
        self.cpu.client_ns += cpu.client_ns;
        self.alloc.server_allocs += alloc.server_allocs;
        self.alloc.server_bytes += alloc.server_bytes;
        self.alloc.client_allocs += alloc.client_allocs;
        self.alloc.client_bytes += alloc.client_bytes;
    }

    pub fn per_rtt(&self, total: u64) -> f64 {
        total as f64 / self.round_trips.max(1) as f64
    }

    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Collects one group's measurements and writes them into results.json
/// after every stack, so a run that fails midway keeps what it measured.
pub struct Recorder {
    group: String,
    mode_records: bool,
    run: results::RunInfo,
    measurements: Vec<Measurement>,
}

impl Recorder {
    pub fn new(group: &str, mode: &Mode) -> Recorder {
        Recorder {
            group: group.to_string(),
            mode_records: mode.records(),
            run: wsbench::machine::run_info(mode.placement, mode.server_threads, mode.quick),
            measurements: Vec::new(),
        }
    }

    /// Adds one figure.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        bench: &str,
        stack: &StackInfo,
        params: &[(&str, serde_json::Value)],
        metric: &str,
        value: f64,
        unit: &str,
        source: &str,
    ) {
        self.add_detail(bench, stack, params, metric, value, unit, source, None);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_detail(
        &mut self,
        bench: &str,
        stack: &StackInfo,
        params: &[(&str, serde_json::Value)],
        metric: &str,
        value: f64,
        unit: &str,
        source: &str,
        detail: Option<String>,
    ) {
        self.measurements.push(Measurement {
            group: self.group.clone(),
            bench: bench.to_string(),
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
            placement: self.run.placement.clone(),
            detail,
        });
    }

    /// Adds figures made elsewhere (the probe's table).
    pub fn extend(&mut self, measurements: Vec<Measurement>) {
        self.measurements.extend(measurements);
    }

    /// Merges what was measured so far into results.json (bench mode only).
    pub fn flush(&self) {
        if !self.mode_records {
            return;
        }
        let results = GroupResults {
            run: self.run.clone(),
            measurements: self.measurements.clone(),
        };
        if let Err(e) = results::merge_group(&results::default_path(), &self.group, results) {
            fail(&format!("writing results for group {}: {e:#}", self.group));
        }
    }

    /// Final flush, then regenerates target-reports/ from all groups.
    pub fn finish(self) {
        self.flush();
        if !self.mode_records {
            return;
        }
        match wsbench::report::generate(&wsbench::report::ReportOptions::defaults()) {
            Ok(_) => eprintln!(
                "wsbench: {} results written; target-reports/ regenerated",
                self.group
            ),
            Err(e) => eprintln!("wsbench: report not regenerated: {e:#}"),
        }
    }
}

/// The source label of a stack's CPU figures.
pub fn cpu_source(stack: &StackInfo) -> &'static str {
    match stack.host {
        Host::InProcess => "schedstat",
        Host::ChildProcess => "proc",
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

/// Runs one criterion benchmark of round trips on `conns`: each iteration
/// is one round trip on every connection. Returns what accumulated besides
/// time (histogram, CPU, allocations) over all of criterion's batches.
#[allow(clippy::too_many_arguments)]
pub fn bench_round_trips(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    function: &str,
    parameter: &str,
    rt: &tokio::runtime::Runtime,
    conns: &mut [client::Connection],
    spec: client::MessageSpec,
    server: &ServerHandle,
) -> Accumulated {
    let mut acc = Accumulated::default();
    group.bench_function(criterion::BenchmarkId::new(function, parameter), |b| {
        b.iter_custom(|iters| {
            let cpu_before = Cpu::now(server);
            let alloc_before = AllocSample::now();
            let stats = rt
                .block_on(client::drive(
                    conns,
                    spec,
                    client::Budget::Count(iters),
                    &mut acc.hist,
                ))
                .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
            let cpu = Cpu::now(server).since(cpu_before);
            let alloc = AllocSample::now().since(alloc_before);
            acc.add(stats.round_trips, stats.elapsed, cpu, alloc);
            stats.elapsed
        })
    });
    acc
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

/// Closes connections with the close handshake, or ends the run.
pub fn close_connections(
    rt: &tokio::runtime::Runtime,
    conns: Vec<client::Connection>,
    bench: &str,
) {
    rt.block_on(client::close_all_handshake(conns))
        .unwrap_or_else(|e| fail(&format!("benchmark {bench}: closing: {e}")));
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
