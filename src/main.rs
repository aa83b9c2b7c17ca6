//! The `wsbench` command: list the stacks, serve one, drive one, probe one,
//! write the report, compare two commits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use wsbench::client::{self, Budget, MessageSpec, PayloadKind, Target};
use wsbench::placement::Placement;
use wsbench::settings::{Profile, ServerSettings};
use wsbench::stacks::{self, Host};

#[derive(Parser)]
#[command(
    name = "wsbench",
    version,
    about = "Benchmark WebSocket stacks with one verifying client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every stack with its package version.
    List,
    /// Serve one stack's echo server until Ctrl-C or SIGTERM.
    Serve {
        #[arg(long)]
        stack: String,
        /// Address to listen on (the port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:9001")]
        addr: SocketAddr,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Drive one stack (started in this process, or at --url) and print
    /// msgs/s and round-trip percentiles.
    Run {
        /// Stack to start here; with --url, the name to report it under.
        #[arg(long)]
        stack: String,
        /// Drive a server that is already running: ws://HOST:PORT/PATH or
        /// tcp://HOST:PORT (raw-TCP echo).
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 1)]
        window: usize,
        /// binary or text.
        #[arg(long, default_value = "binary")]
        kind: String,
        /// Seconds to measure.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Regenerate target-reports/ from target/wsbench/results.json.
    Report,
    /// Compare two commits on the quick measurement set, interleaved, and
    /// exit 1 on a regression (0 without, 2 when it could not build or run).
    Compare(wsbench::compare::CompareArgs),
    /// One round of the quick measurement set, written as JSON (what
    /// `compare` runs in each build).
    #[command(hide = true)]
    Measure(wsbench::compare::MeasureArgs),
    /// Send malformed and abusive input to one stack and print what it does.
    Probe {
        #[arg(long)]
        stack: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Server worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// same-core, split-cores or unpinned (default: $WSBENCH_PLACEMENT or same-core).
    #[arg(long)]
    placement: Option<String>,
    /// suite, small-buffers or defaults.
    #[arg(long, default_value = "suite")]
    profile: String,
}

impl ServerArgs {
    fn placement(&self) -> anyhow::Result<Placement> {
        match &self.placement {
            Some(p) => Placement::parse(p),
            None => Placement::from_env(),
        }
    }

    fn settings(&self, addr: SocketAddr) -> anyhow::Result<ServerSettings> {
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        Ok(ServerSettings {
            addr,
            threads: self.threads,
            placement: self.placement()?,
            profile: Profile::parse(&self.profile)?,
        })
    }
}

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
        } => serve(&stack, server.settings(addr)?),
        Command::Run {
            stack,
            url,
            conns,
            size,
            window,
            kind,
            duration,
            server,
        } => {
            anyhow::ensure!(conns >= 1, "--conns must be at least 1");
            anyhow::ensure!(window >= 1, "--window must be at least 1");
            anyhow::ensure!(
                duration.is_finite() && duration > 0.0,
                "--duration must be a positive number of seconds"
            );
            anyhow::ensure!(
                size <= wsbench::settings::MAX_MESSAGE_BYTES,
                "--size must be at most {} bytes (the suite's message limit)",
                wsbench::settings::MAX_MESSAGE_BYTES
            );
            let spec = MessageSpec {
                size_bytes: size,
                kind: PayloadKind::parse(&kind)?,
                window,
            };
            let settings = server.settings(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            drive(
                &stack,
                url.as_deref(),
                conns,
                spec,
                Duration::from_secs_f64(duration),
                settings,
            )
        }
        Command::Report => {
            let summary = wsbench::report::generate(&wsbench::report::ReportOptions::defaults())?;
            println!("{summary}");
            Ok(())
        }
        Command::Compare(args) => std::process::exit(wsbench::compare::run(&args)),
        Command::Measure(args) => wsbench::compare::measure(&args),
        Command::Probe { stack, server } => {
            let settings = server.settings(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let table = wsbench::probe::probe_stack(stacks::find(&stack)?, &settings)?;
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

fn serve(name: &str, settings: ServerSettings) -> anyhow::Result<()> {
    let stack = stacks::find(name)?;
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

fn drive(
    name: &str,
    url: Option<&str>,
    conns: usize,
    spec: MessageSpec,
    duration: Duration,
    settings: ServerSettings,
) -> anyhow::Result<()> {
    // With --url the server is elsewhere; otherwise start the named stack.
    let (target, server) = match url {
        Some(url) => (Target::from_url(url, name)?, None),
        None => {
            let server = stacks::find(name)?.start(&settings)?;
            (Target::of(&server), Some(server))
        }
    };
    let rt = client::client_runtime(settings.placement)?;
    let mut hist = client::new_histogram();
    // A server at --url is on another host: its CPU cannot be read here.
    let server_pid = server.as_ref().and_then(|s| s.pid);
    let mut cpu = None;
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
        cpu = Some(wsbench::measure::cpu_now(server_pid).since(cpu_before));
        client::close_all(conns).await?;
        Ok::<_, client::ClientError>(stats)
    })?;
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "stack {} conns {} size {} B {} window {} placement {}: {} verified round trips in {:.2} s",
        target.stack,
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
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
    if let (Some(cpu), Some(_)) = (cpu, &server) {
        let per_msg = |ns: u64| ns as f64 / stats.round_trips.max(1) as f64;
        println!(
            "  CPU per message: server {:.0} ns, client {:.0} ns",
            per_msg(cpu.server_ns),
            per_msg(cpu.client_ns)
        );
    }
    if let Some(server) = server {
        server.shutdown()?;
    }
    Ok(())
}
