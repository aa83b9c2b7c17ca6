//! The `wsbench` command: list the stacks, serve one, drive one, probe one,
//! write the report, compare two commits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use wsbench::client::{self, Budget, MessageSpec, Target};
use wsbench::results::{GroupResults, Measurement};
use wsbench::settings::ServerSettings;
use wsbench::stacks::{self, Host, StackInfo};

mod cli;

use cli::{Cli, Command, RunArgs};

// Counts allocations so that `wsbench measure` can report them per round
// trip; the cost is a few relaxed atomic additions per allocation.
#[global_allocator]
static ALLOC: wsbench::measure::alloc::CountingAlloc = wsbench::measure::alloc::CountingAlloc;

fn main() {
    wsbench::measure::alloc::CountingAlloc::mark_installed();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("wsbench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::List => list(),
        Command::Serve {
            stack,
            addr,
            server,
        } => serve(stack, server.settings(addr)?),
        Command::Run(args) => run_stack(&args),
        Command::Report => {
            let summary = wsbench::report::generate(&wsbench::report::ReportOptions::defaults())?;
            println!("{summary}");
            Ok(())
        }
        Command::Compare(args) => std::process::exit(wsbench::compare::run(&args)),
        Command::Measure(args) => wsbench::compare::measure(&args),
        Command::Probe { stack, server } => {
            let settings = server.settings(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let table = wsbench::probe::probe_stack(stack, &settings)?;
            print!("{}", wsbench::probe::format_table(&table));
            Ok(())
        }
    }
}

fn list() -> anyhow::Result<()> {
    println!("{:<20} {:<28} {:<10} where", "stack", "package", "protocol");
    for s in stacks::STACKS {
        let (version, host) = match s.host {
            Host::InProcess => (s.package_version(), "in process".to_string()),
            Host::ChildProcess => {
                // The pinned version, or the one the venv really has.
                let version = match stacks::python::installed_version(s.package) {
                    Some(v) => format!("{} {v}", s.package),
                    None => s.package_version(),
                };
                let host = match stacks::python::availability() {
                    Ok(()) => "child process".to_string(),
                    Err(why) => format!("unavailable: {why}"),
                };
                (version, host)
            }
        };
        let protocol = match s.protocol {
            stacks::Protocol::WebSocket => "websocket",
            stacks::Protocol::RawTcp => "raw tcp",
        };
        println!("{:<20} {:<28} {:<10} {host}", s.name, version, protocol);
    }
    Ok(())
}

fn serve(stack: &'static StackInfo, settings: ServerSettings) -> anyhow::Result<()> {
    let server = stack.start(&settings)?;
    let scheme = match server.protocol {
        stacks::Protocol::WebSocket => "ws",
        stacks::Protocol::RawTcp => "tcp",
    };
    println!(
        "wsbench: serving {} ({}) at {scheme}://{}/ with {} thread(s), placement {}, profile {}; Ctrl-C stops",
        stack.name,
        stack.package_version(),
        server.addr,
        settings.threads,
        settings.placement,
        settings.profile.as_str()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Ctrl-C or SIGTERM (a supervisor's stop) both shut the server down
    // cleanly, so a Python child is never left behind.
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })
    .context("waiting for Ctrl-C or SIGTERM")?;
    println!("wsbench: stopping {}", stack.name);
    server.shutdown()
}

/// What one `wsbench run` measured.
struct RunOutcome {
    stats: client::RunStats,
    /// Round-trip times in nanoseconds.
    hist: hdrhistogram::Histogram<u64>,
    cpu: wsbench::measure::threads::CpuSample,
    /// Where the server's CPU figure comes from, or `None` when the server
    /// ran elsewhere (--url) and its CPU could not be read.
    server_cpu_source: Option<&'static str>,
}

fn run_stack(args: &RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.conns >= 1, "--conns must be at least 1");
    anyhow::ensure!(args.window >= 1, "--window must be at least 1");
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0,
        "--duration must be a positive number of seconds"
    );
    anyhow::ensure!(
        args.size <= wsbench::settings::MAX_MESSAGE_BYTES,
        "--size must be at most {} bytes (the suite's message limit)",
        wsbench::settings::MAX_MESSAGE_BYTES
    );
    let spec = MessageSpec {
        size_bytes: args.size,
        kind: args.kind,
        window: args.window,
    };
    let settings = args
        .server
        .settings(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    // Results go under the stack's name, or under the URL when only a URL
    // says what is driven.
    let name = match (args.stack, &args.url) {
        (Some(stack), _) => stack.name.to_string(),
        (None, Some(url)) => url.clone(),
        (None, None) => anyhow::bail!("run needs --stack, --url or both"),
    };
    let outcome = drive(
        &name,
        args.stack,
        args.url.as_deref(),
        args.conns,
        spec,
        Duration::from_secs_f64(args.duration),
        &settings,
    )?;
    if args.json {
        let records = run_records(args, &name, spec, &settings, &outcome);
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print_summary(&name, args.conns, spec, &settings, &outcome);
    }
    Ok(())
}

/// Drives the stack at `url`, or starts `stack` here and drives it.
fn drive(
    name: &str,
    stack: Option<&'static StackInfo>,
    url: Option<&str>,
    conns: usize,
    spec: MessageSpec,
    duration: Duration,
    settings: &ServerSettings,
) -> anyhow::Result<RunOutcome> {
    let (target, server) = match (url, stack) {
        (Some(url), _) => (Target::from_url(url, name)?, None),
        (None, Some(stack)) => {
            let server = stack.start(settings)?;
            (Target::of(&server), Some(server))
        }
        (None, None) => anyhow::bail!("run needs --stack, --url or both"),
    };
    let rt = client::client_runtime(settings.placement)?;
    let mut hist = client::new_histogram();
    // A server at --url is on another host: its CPU cannot be read here.
    let server_pid = server.as_ref().and_then(|s| s.pid);
    let server_cpu_source = match (&server, stack) {
        (Some(_), Some(stack)) => Some(match stack.host {
            Host::InProcess => "schedstat",
            Host::ChildProcess => "proc",
        }),
        _ => None,
    };
    let mut cpu = wsbench::measure::threads::CpuSample::default();
    let stats = rt.block_on(async {
        let mut conns = client::connect_many(&target, conns).await?;
        // A short warm-up fills caches and buffers before measuring.
        let warmup_until = Instant::now() + Duration::from_millis(200).min(duration);
        client::drive(
            &mut conns,
            spec,
            Budget::Until(warmup_until),
            &mut client::new_histogram(),
        )
        .await?;
        let cpu_before = wsbench::measure::cpu_now(server_pid);
        let stats = client::drive(
            &mut conns,
            spec,
            Budget::Until(Instant::now() + duration),
            &mut hist,
        )
        .await?;
        cpu = wsbench::measure::cpu_now(server_pid).since(cpu_before);
        client::close_all(conns).await?;
        Ok::<_, client::ClientError>(stats)
    })?;
    if let Some(server) = server {
        server.shutdown()?;
    }
    Ok(RunOutcome {
        stats,
        hist,
        cpu,
        server_cpu_source,
    })
}

/// Microseconds at quantile `q` of a histogram in nanoseconds.
fn quantile_us(hist: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64 / 1000.0
}

fn print_summary(
    name: &str,
    conns: usize,
    spec: MessageSpec,
    settings: &ServerSettings,
    outcome: &RunOutcome,
) {
    let RunOutcome {
        stats, hist, cpu, ..
    } = outcome;
    println!(
        "stack {} conns {} size {} B {} window {} placement {}: {} verified round trips in {:.2} s",
        name,
        conns,
        spec.size_bytes,
        spec.kind.as_str(),
        spec.window,
        settings.placement,
        stats.round_trips,
        stats.elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} msgs/s, {:.1} MiB/s echoed; round trip p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        stats.round_trips_per_s(),
        stats.round_trips_per_s() * spec.size_bytes as f64 / (1024.0 * 1024.0),
        quantile_us(hist, 0.5),
        quantile_us(hist, 0.9),
        quantile_us(hist, 0.99),
        quantile_us(hist, 0.999),
        hist.max() as f64 / 1000.0
    );
    if outcome.server_cpu_source.is_some() {
        let per_msg = |ns: u64| ns as f64 / stats.round_trips.max(1) as f64;
        println!(
            "  CPU per message: server {:.0} ns, client {:.0} ns",
            per_msg(cpu.server_ns),
            per_msg(cpu.client_ns)
        );
    }
}

/// The run as the records the benches write to results.json: one group,
/// "run", with the machine's [`wsbench::results::RunInfo`].
fn run_records(
    args: &RunArgs,
    name: &str,
    spec: MessageSpec,
    settings: &ServerSettings,
    outcome: &RunOutcome,
) -> GroupResults {
    let run = wsbench::machine::run_info(settings.placement, settings.threads, false);
    let mut params: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    params.insert("size_bytes".into(), spec.size_bytes.into());
    params.insert("kind".into(), spec.kind.as_str().into());
    params.insert("conns".into(), args.conns.into());
    params.insert("window".into(), spec.window.into());
    if let Some(url) = &args.url {
        params.insert("url".into(), url.as_str().into());
    }
    let measurement = |metric: &str, value: f64, unit: &str, source: &str| Measurement {
        group: "run".into(),
        bench: format!("run/{name}/{}/{}B", spec.kind.as_str(), spec.size_bytes),
        stack: name.to_string(),
        stack_version: match args.stack {
            Some(stack) => stack.package_version(),
            None => "unknown".into(),
        },
        params: params.clone(),
        metric: metric.into(),
        value,
        unit: unit.into(),
        source: source.into(),
        placement: run.placement.clone(),
        detail: None,
    };
    let RunOutcome {
        stats, hist, cpu, ..
    } = outcome;
    let per_msg = |ns: u64| ns as f64 / stats.round_trips.max(1) as f64;
    let msgs_per_s = stats.round_trips_per_s();
    let mut measurements = vec![
        measurement("msgs_per_s", msgs_per_s, "msgs/s", "wallclock"),
        measurement(
            "mib_per_s",
            msgs_per_s * spec.size_bytes as f64 / (1024.0 * 1024.0),
            "MiB/s",
            "wallclock",
        ),
        measurement("rtt_p50_us", quantile_us(hist, 0.5), "us", "histogram"),
        measurement("rtt_p90_us", quantile_us(hist, 0.9), "us", "histogram"),
        measurement("rtt_p99_us", quantile_us(hist, 0.99), "us", "histogram"),
        measurement("rtt_p999_us", quantile_us(hist, 0.999), "us", "histogram"),
        measurement(
            "client_cpu_ns_per_msg",
            per_msg(cpu.client_ns),
            "ns",
            "schedstat",
        ),
    ];
    if let Some(source) = outcome.server_cpu_source {
        measurements.push(measurement(
            "server_cpu_ns_per_msg",
            per_msg(cpu.server_ns),
            "ns",
            source,
        ));
    }
    measurements.push(measurement(
        "round_trips_verified",
        stats.round_trips as f64,
        "msgs",
        "client",
    ));
    GroupResults { run, measurements }
}
