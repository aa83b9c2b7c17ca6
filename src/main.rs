//! The `wsbench` command: list the stacks, serve one, drive one, merge the
//! shares of several clients, probe one, write the report, compare two
//! commits.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Parser;
use wsbench::client::payload::{Bodies, Content};
use wsbench::client::secure::{self, Counted, Layers, SecureConnection};
use wsbench::client::{self, Budget, MessageSpec, OpenLoop, Target};
use wsbench::metrics::{self, Metric};
use wsbench::results::{self, GroupResults, Measurement, Subject};
use wsbench::settings::{Compression, ServerSettings, Transport};
use wsbench::stacks::child::Environment;
use wsbench::stacks::{self, cache, Host, StackInfo};
use wsbench::workload::{self, Figures, LoadSample, Sample};

mod cli;

use cli::{Cli, Command, RunArgs};

// Counts allocations so that `wsbench measure` can report them per round
// trip; the cost is a few relaxed atomic additions per allocation.
#[global_allocator]
static ALLOC: wsbench::measure::alloc::CountingAlloc = wsbench::measure::alloc::CountingAlloc;

fn main() {
    wsbench::measure::alloc::CountingAlloc::mark_installed();
    wsbench::machine::fix_malloc();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("wsbench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::List => list(),
        Command::Setup => setup(),
        Command::Serve {
            stack,
            addr,
            service,
            server,
        } => serve(
            stack,
            ServerSettings {
                service,
                ..server.settings(addr)?
            },
        ),
        Command::Run(args) => run_stack(&args),
        Command::Report { publish, pair } => {
            let opts = wsbench::report::ReportOptions {
                pair_path: pair,
                ..wsbench::report::ReportOptions::defaults()
            };
            if publish {
                print!("{}", wsbench::report::publish(&opts)?);
            } else {
                print!("{}", wsbench::report::generate(&opts)?);
                println!(
                    "{} is unchanged; `wsbench report --publish` writes it from a complete run",
                    opts.publish_dir.display()
                );
            }
            Ok(())
        }
        Command::Claims {
            results,
            against,
            pair,
            discussion,
            threshold,
        } => {
            use wsbench::report::claims;
            use wsbench::results::ResultsFile;
            use wsbench::rounds::CLAIM_THRESHOLD;
            if !(threshold > 0.0 && threshold.is_finite()) {
                anyhow::bail!("--threshold {threshold}: expected a positive fraction such as 0.10");
            }
            let mut file = ResultsFile::load(&results)?;
            if let Some(pair) = &pair {
                wsbench::results::attach_pair_file(&mut file, &results, pair)?;
            }
            let other = against.as_deref().map(ResultsFile::load).transpose()?;
            let mut made = Vec::new();
            if let Some(template) = &discussion {
                if threshold != CLAIM_THRESHOLD {
                    anyhow::bail!(
                        "--discussion: the discussion makes its claims at {CLAIM_THRESHOLD}, not --threshold {threshold}"
                    );
                }
                let text = std::fs::read_to_string(template)
                    .with_context(|| format!("reading {}", template.display()))?;
                (_, made) = wsbench::report::discussion::expand_with_claims(
                    &text,
                    &file,
                    template.parent(),
                )
                .with_context(|| {
                    format!("{} does not fit {}", template.display(), results.display())
                })?;
            }
            let list = claims::with_discussion(&file, threshold, &made);
            print!(
                "{}",
                claims::render(&file, &list, other.as_ref(), threshold)
            );
            if let Some(other) = &other {
                let all_confirmed = list
                    .iter()
                    .all(|c| claims::confirm(c, other).0 == claims::Outcome::Confirmed);
                if !all_confirmed {
                    std::process::exit(1);
                }
            }
            Ok(())
        }
        Command::Merge { files, json } => merge(&files, json),
        Command::Compare(args) => std::process::exit(wsbench::compare::run(&args)),
        Command::Measure(args) => wsbench::compare::measure(&args),
        Command::Worker(args) => wsbench::workers::serve(&args),
        Command::Probe { stack, server } => {
            let settings = server.settings(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let table = wsbench::probe::probe_stack(stack, &settings)?;
            print!("{}", wsbench::probe::format_table(&table));
            Ok(())
        }
    }
}

/// Reads, never writes: a child runtime's environment shows as it is, and
/// a version as installed where it is, else as pinned at build time.
fn list() -> anyhow::Result<()> {
    println!("{:<20} {:<28} {:<10} where", "stack", "package", "protocol");
    // Looked at once per runtime, not once per stack: for the venv, that
    // runs its interpreter.
    let mut environments: Vec<(stacks::Runtime, Option<Environment>)> = Vec::new();
    for s in stacks::STACKS {
        let environment = match environments.iter().find(|(r, _)| *r == s.runtime) {
            Some((_, e)) => e.clone(),
            None => {
                let e = s.environment();
                environments.push((s.runtime, e.clone()));
                e
            }
        };
        let (version, host) = match environment {
            None => (s.package_version(), "in process".to_string()),
            Some(Environment::Ready(versions)) => match versions.get(s.package) {
                Some(v) => (format!("{} {v}", s.package), "child process".to_string()),
                None => (s.package_version(), "child process".to_string()),
            },
            Some(Environment::NotInstalled(why)) => (
                s.package_version(),
                format!("child process, not installed yet ({why})"),
            ),
            Some(Environment::Unavailable(why)) => {
                (s.package_version(), format!("unavailable: {why}"))
            }
        };
        let protocol = match s.protocol {
            stacks::Protocol::WebSocket => "websocket",
            stacks::Protocol::RawTcp => "raw tcp",
        };
        println!("{:<20} {:<28} {:<10} {host}", s.name, version, protocol);
    }
    // After an empty line, so that a reader of the table (`compare`) stops
    // before it.
    let place = cache::place()?;
    println!();
    println!(
        "Environments of the child-process stacks: {} ({}); `wsbench setup` makes them now, or their first use does.",
        place.dir.display(),
        place.why
    );
    Ok(())
}

/// Makes every child runtime's environment, saying what it holds.
fn setup() -> anyhow::Result<()> {
    let place = cache::place()?;
    println!(
        "wsbench: environments in {} ({})",
        place.dir.display(),
        place.why
    );
    let mut failed = Vec::new();
    for s in stacks::STACKS
        .iter()
        .filter(|s| s.host() == Host::ChildProcess)
    {
        match s.availability() {
            Ok(()) => {
                let version = s
                    .installed_version()
                    .unwrap_or_else(|| s.version.to_string());
                println!("{:<20} {} {version}: ready", s.name, s.package);
            }
            Err(why) => {
                println!("{:<20} unavailable: {why}", s.name);
                failed.push(s.name);
            }
        }
    }
    anyhow::ensure!(failed.is_empty(), "could not set up {}", failed.join(", "));
    Ok(())
}

fn serve(stack: &'static StackInfo, settings: ServerSettings) -> anyhow::Result<()> {
    let server = stack.start(&settings)?;
    let url = server.url();
    let scheme = url.split("://").next().unwrap_or("ws");
    println!(
        "wsbench: serving {} {} ({}) at {url} with {} thread(s), placement {}, profile {}, echo {}, compression {}; Ctrl-C stops",
        stack.name,
        settings.service.as_str(),
        stack.package_version(),
        settings.threads,
        settings.placement,
        settings.profile.as_str(),
        settings.echo,
        settings.compression.as_str(),
    );
    if settings.transport == Transport::Tls {
        let certs = wsbench::tls::certs()?;
        println!(
            "wsbench: TLS with a certificate for localhost and this host's addresses, signed by the CA in {} (pass it to a client: `wsbench run --url {url} --ca {}`, or curl's --cacert); it is made anew each start",
            certs.ca_pem.display(),
            certs.ca_pem.display()
        );
    }
    if server.addr.ip().is_unspecified() {
        let host = if_addrs::get_if_addrs()
            .map(|ifs| ifs.iter().map(|i| i.ip()).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        println!("{}", every_address_note(scheme, server.addr, host));
    }
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

/// What a client of a server on 0.0.0.0 or [::] can use: its URL at each
/// address of this host of the families it accepts (Linux's [::] takes
/// IPv4 too), or why they could not be read.
fn every_address_note(
    scheme: &str,
    addr: SocketAddr,
    host: Result<Vec<std::net::IpAddr>, String>,
) -> String {
    let ips = match host {
        Ok(ips) => ips,
        Err(e) => {
            return format!(
                "wsbench: it listens on every address of this host (which could not be read: {e})"
            )
        }
    };
    let mut urls: Vec<String> = ips
        .into_iter()
        .filter(|ip| addr.is_ipv6() || ip.is_ipv4())
        // A link-local IPv6 address needs its interface in the URL.
        .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .map(|ip| format!("{scheme}://{}/", SocketAddr::new(ip, addr.port())))
        .collect();
    urls.sort();
    urls.dedup();
    format!(
        "wsbench: it listens on every address of this host: {}",
        urls.join(", ")
    )
}

fn run_stack(args: &RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.conns >= 1, "--conns must be at least 1");
    anyhow::ensure!(
        args.window.is_none_or(|w| w >= 1),
        "--window must be at least 1"
    );
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0,
        "--duration must be a positive number of seconds"
    );
    anyhow::ensure!(
        args.size <= wsbench::settings::MAX_MESSAGE_BYTES,
        "--size must be at most {} bytes (the suite's message limit)",
        wsbench::settings::MAX_MESSAGE_BYTES
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of messages per second"
        );
    }
    let load = Load::of(args)?;
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
    let outcome = drive(&name, args, load, &settings)?;
    if let Some(path) = &args.histogram_out {
        wsbench::merge::write(path, &share(args, &name, &settings, &outcome)?)?;
        eprintln!(
            "wsbench: this client's share of the run is in {}, for `wsbench merge`",
            path.display()
        );
    }
    if args.json {
        let records = run_records(args, &name, &settings, &outcome);
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print_summary(&name, &settings, &outcome);
    }
    Ok(())
}

/// What `wsbench run` offers the server: a window of messages in flight
/// on each connection (closed loop), or a rate (open loop, `--rate`).
#[derive(Clone, Copy)]
enum Load {
    Closed(MessageSpec, Duration, client::Driver),
    Open(OpenLoop),
}

impl Load {
    fn of(args: &RunArgs) -> anyhow::Result<Load> {
        let duration = Duration::from_secs_f64(args.duration);
        Ok(match args.rate {
            None => Load::Closed(
                MessageSpec {
                    size_bytes: args.size,
                    kind: args.kind,
                    window: args.window.unwrap_or(1),
                },
                duration,
                client::Driver::choose(args.driver)?,
            ),
            Some(rate_per_s) => Load::Open(OpenLoop {
                rate_per_s,
                arrivals: args.arrivals,
                size_bytes: args.size,
                kind: args.kind,
                window: args.window.map(|w| w as u64),
                duration,
                stall_timeout: client::STALL_TIMEOUT,
                seed: 1,
                busy_per_send: Duration::ZERO,
                driver: client::Driver::choose(args.driver)?,
            }),
        })
    }
}

/// The metrics a run reports, in this order; the server's CPU only when
/// the server ran here.
const RUN_METRICS: &[&Metric] = &[
    &metrics::MSGS_PER_S,
    &metrics::MIB_PER_S,
    &metrics::RTT_P50_US,
    &metrics::RTT_P90_US,
    &metrics::RTT_P99_US,
    &metrics::RTT_P999_US,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::ROUND_TRIPS_VERIFIED,
];

/// What one `wsbench run` measured (one value per run: its size does not
/// matter).
#[allow(clippy::large_enum_variant)]
enum Measured {
    Closed(Sample),
    Open(LoadSample),
}

struct RunOutcome {
    measured: Measured,
    /// How the client waited on its connections, as results name it.
    driver: String,
    /// False when the server ran elsewhere (--url): its CPU is not known.
    server_here: bool,
    /// Over TLS or with permessage-deflate: what was agreed and counted.
    secure: Option<SecureOutcome>,
    /// When the measured stretch began, by this host's clock (for
    /// `wsbench merge`, which adds up clients that ran at the same time).
    started: SystemTime,
}

struct SecureOutcome {
    content: Content,
    tls: Option<String>,
    deflate: Option<String>,
    counted: Counted,
}

/// Drives the stack at `--url`, or starts `--stack` here and drives it.
fn drive(
    name: &str,
    args: &RunArgs,
    load: Load,
    settings: &ServerSettings,
) -> anyhow::Result<RunOutcome> {
    let (target, server) = match (args.url.as_deref(), args.stack) {
        (Some(url), _) => (Target::from_url(url, name)?, None),
        (None, Some(stack)) => {
            let server = stack.start(settings)?;
            (Target::of(&server), Some(server))
        }
        (None, None) => anyhow::bail!("run needs --stack, --url or both"),
    };
    if target.transport == Transport::Tls || settings.compression == Compression::Deflate {
        return drive_secure(args, target, server, load, settings);
    }
    let conns = args.conns;
    let rt = client::client_runtime(settings.placement)?;
    let mut conns = rt.block_on(client::connect_many(&target, conns))?;
    // A server at --url is elsewhere: only the client's CPU can be read.
    let server_pid = server.as_ref().and_then(|s| s.pid);
    let started;
    let measured = match load {
        Load::Closed(spec, duration, driver) => {
            // A short warm-up fills caches and buffers before measuring.
            let warmup_until = Instant::now() + Duration::from_millis(200).min(duration);
            rt.block_on(client::drive_on(
                &mut conns,
                spec,
                Budget::Until(warmup_until),
                &mut client::new_histogram(),
                driver,
            ))?;
            started = SystemTime::now();
            let budget = Budget::Until(Instant::now() + duration);
            Measured::Closed(workload::round_trips(
                &rt, &mut conns, spec, budget, server_pid, driver,
            )?)
        }
        Load::Open(spec) => {
            // The same warm-up, at the run's rate.
            let warm_up = Duration::from_millis(200).min(spec.duration);
            started = SystemTime::now() + warm_up;
            Measured::Open(workload::offered_load(
                &mut conns, spec, warm_up, server_pid,
            )?)
        }
    };
    rt.block_on(client::close_all(conns))?;
    let server_here = server.is_some();
    if let Some(server) = server {
        server.shutdown()?;
    }
    let driver = match load {
        Load::Closed(_, _, driver) => driver,
        Load::Open(spec) => spec.driver,
    };
    Ok(RunOutcome {
        measured,
        driver: driver.as_str().to_string(),
        server_here,
        secure: None,
        started,
    })
}

/// A run over TLS or with permessage-deflate: one connection of the
/// secure driver in a closed loop.
fn drive_secure(
    args: &RunArgs,
    target: Target,
    server: Option<stacks::ServerHandle>,
    load: Load,
    settings: &ServerSettings,
) -> anyhow::Result<RunOutcome> {
    let Load::Closed(spec, duration, _) = load else {
        anyhow::bail!("over TLS or with permessage-deflate, run drives a closed loop: drop --rate");
    };
    anyhow::ensure!(
        args.conns == 1,
        "over TLS or with permessage-deflate, run drives one connection: drop --conns"
    );
    let layers = Layers::new(target.transport, settings.compression, args.ca.as_deref())?;
    // Registers and pins this thread as the client.
    let _rt = client::client_runtime(settings.placement)?;
    let mut conn = SecureConnection::open(&target, &layers).map_err(|e| {
        let hint = if args.ca.is_none() && e.to_string().contains("certificate") {
            " (the server's certificate is not signed by a CA this client trusts: pass its CA file with --ca)"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
    })?;
    if settings.compression == Compression::Deflate && conn.extension().is_none() {
        eprintln!("wsbench: the server declined permessage-deflate; messages go uncompressed");
    }
    let bodies = Bodies::new(args.content, spec.size_bytes).map_err(anyhow::Error::msg)?;
    let warmup_until = Instant::now() + Duration::from_millis(200).min(duration);
    let mut hist = client::new_histogram();
    conn.run(&bodies, spec.window, Budget::Until(warmup_until), &mut hist)?;
    let server_pid = server.as_ref().and_then(|s| s.pid);
    let started = SystemTime::now();
    let budget = Budget::Until(Instant::now() + duration);
    let s = workload::secure_round_trips(&mut conn, &bodies, spec.window, budget, server_pid)?;
    let secure = SecureOutcome {
        content: args.content,
        tls: conn.tls_session(),
        deflate: conn.extension().map(str::to_string),
        counted: s.counted,
    };
    conn.close()?;
    let server_here = server.is_some();
    if let Some(server) = server {
        server.shutdown()?;
    }
    Ok(RunOutcome {
        measured: Measured::Closed(s.sample),
        driver: secure::DRIVER_NAME.to_string(),
        server_here,
        secure: Some(secure),
        started,
    })
}

fn print_summary(name: &str, settings: &ServerSettings, outcome: &RunOutcome) {
    let s = match &outcome.measured {
        Measured::Closed(s) => s,
        Measured::Open(load) => return print_rate_summary(name, settings, outcome, load),
    };
    println!(
        "stack {} conns {} size {} B {} window {} placement {} echo {}: {} verified round trips in {:.2} s",
        name,
        s.conns,
        s.spec.size_bytes,
        s.spec.kind.as_str(),
        s.spec.window,
        settings.placement,
        settings.echo,
        s.round_trips,
        s.elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} msgs/s, {:.1} MiB/s echoed; round trip p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        s.msgs_per_s(),
        s.msgs_per_s() * s.spec.size_bytes as f64 / (1024.0 * 1024.0),
        s.quantile_us(0.5),
        s.quantile_us(0.9),
        s.quantile_us(0.99),
        s.quantile_us(0.999),
        s.hist.max() as f64 / 1000.0
    );
    if outcome.server_here {
        println!(
            "  CPU per message: server {:.0} ns, client {:.0} ns",
            s.per_msg(s.cpu.server_ns),
            s.per_msg(s.cpu.client_ns)
        );
    }
    if let Some(secure) = &outcome.secure {
        println!(
            "  TLS: {}; permessage-deflate: {}; echo frame bytes per message byte {:.3} ({} of {} echoes compressed); content {}",
            secure.tls.as_deref().unwrap_or("no"),
            secure.deflate.as_deref().unwrap_or("no"),
            secure.counted.frame_bytes_per_message_byte(),
            secure.counted.compressed_messages,
            secure.counted.messages,
            secure.content.as_str(),
        );
    }
}

fn print_rate_summary(name: &str, settings: &ServerSettings, outcome: &RunOutcome, s: &LoadSample) {
    let r = &s.run;
    let us = |m: &Metric| s.figure(m).map_or(f64::NAN, |f| f.0);
    let held = match r.spec.window {
        None => "never held back (open loop)".to_string(),
        Some(w) => format!("held back at {w} in flight per connection"),
    };
    println!(
        "stack {} conns {} size {} B {} at {:.0} msgs/s ({}), sends {}, client driver {}, placement {} echo {}: {} verified round trips in {:.2} s",
        name,
        r.conns,
        r.spec.size_bytes,
        r.spec.kind.as_str(),
        r.spec.rate_per_s,
        r.spec.arrivals.as_str(),
        held,
        r.spec.driver.as_str(),
        settings.placement,
        settings.echo,
        r.sent,
        r.elapsed.as_secs_f64()
    );
    println!(
        "  achieved {:.0} msgs/s; from the intended send: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us; from the actual send: p99 {:.1} us",
        r.achieved_per_s(),
        us(&metrics::CORRECTED_P50_US),
        us(&metrics::CORRECTED_P99_US),
        us(&metrics::CORRECTED_P999_US),
        us(&metrics::CORRECTED_MAX_US),
        us(&metrics::RTT_P99_US),
    );
    println!(
        "  client lateness p99 {:.1} us, max {:.1} us: {}",
        us(&metrics::CLIENT_LATENESS_P99_US),
        us(&metrics::CLIENT_LATENESS_MAX_US),
        r.behind()
            .unwrap_or_else(|| "the client kept its schedule".to_string())
    );
    if outcome.server_here {
        println!(
            "  CPU per message: server {:.0} ns, client {:.0} ns; share of a core: server {:.2}, client {:.2}",
            us(&metrics::SERVER_CPU_NS_PER_MSG),
            us(&metrics::CLIENT_CPU_NS_PER_MSG),
            us(&metrics::SERVER_CORE_SHARE),
            us(&metrics::CLIENT_CORE_SHARE)
        );
    } else {
        println!(
            "  CPU per message: client {:.0} ns; share of a core: client {:.2}",
            us(&metrics::CLIENT_CPU_NS_PER_MSG),
            us(&metrics::CLIENT_CORE_SHARE)
        );
    }
}

/// This client's share of the run, for `wsbench merge`: the run's record
/// (its machine and parameters) with its counts and histograms.
fn share(
    args: &RunArgs,
    name: &str,
    settings: &ServerSettings,
    outcome: &RunOutcome,
) -> anyhow::Result<wsbench::merge::Part> {
    use wsbench::merge::{encode, CORRECTED, LATENESS, RTT};
    let record = run_records(args, name, settings, outcome);
    let first = record
        .measurements
        .first()
        .context("the run recorded no figure")?;
    let mut params = first.params.clone();
    params.remove("url");
    let (conns, round_trips, offered_per_s, elapsed, client_cpu_ns, histograms) =
        match &outcome.measured {
            Measured::Closed(s) => (
                s.conns,
                s.round_trips,
                None,
                s.elapsed,
                s.cpu.client_ns,
                vec![(RTT, &s.hist)],
            ),
            Measured::Open(l) => (
                l.run.conns,
                l.run.sent,
                Some(l.run.spec.rate_per_s),
                l.run.elapsed,
                l.cpu.client_ns,
                vec![
                    (CORRECTED, &l.run.corrected),
                    (RTT, &l.run.uncorrected),
                    (LATENESS, &l.run.lateness),
                ],
            ),
        };
    let started_unix_ms = outcome
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("this host's clock is before 1970")?
        .as_millis() as u64;
    Ok(wsbench::merge::Part {
        schema: wsbench::merge::PART_SCHEMA,
        run: record.run,
        stack: first.stack.clone(),
        stack_version: first.stack_version.clone(),
        params,
        url: args.url.clone(),
        conns,
        round_trips,
        offered_per_s,
        started_unix_ms,
        elapsed_ns: elapsed.as_nanos() as u64,
        client_cpu_ns,
        histograms: histograms
            .into_iter()
            .map(|(key, h)| Ok((key.to_string(), encode(h)?)))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// `wsbench merge`: the shares' sum, as text or as results records.
fn merge(files: &[std::path::PathBuf], json: bool) -> anyhow::Result<()> {
    let parts = files
        .iter()
        .map(|path| Ok((path.clone(), wsbench::merge::read(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = wsbench::merge::merge(&parts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&merged.records())?);
    } else {
        print!("{}", merged.summary());
    }
    Ok(())
}

/// The run as the records the benches write to results.json: one group,
/// "run", with the machine's [`wsbench::results::RunInfo`].
fn run_records(
    args: &RunArgs,
    name: &str,
    settings: &ServerSettings,
    outcome: &RunOutcome,
) -> GroupResults {
    let mut run = wsbench::machine::run_info(
        settings.placement,
        settings.threads,
        false,
        settings.echo,
        client::Driver::Epoll,
    );
    run.client_driver = outcome.driver.clone();
    let (figures, metrics_list, mut params, detail): (&dyn Figures, &[&Metric], _, _) =
        match &outcome.measured {
            Measured::Closed(s) => (
                s,
                RUN_METRICS,
                results::params(&[
                    ("size_bytes", s.spec.size_bytes.into()),
                    ("kind", s.spec.kind.as_str().into()),
                    ("conns", s.conns.into()),
                    ("window", s.spec.window.into()),
                ]),
                None,
            ),
            Measured::Open(l) => {
                let mut p = results::params(&[
                    ("size_bytes", l.run.spec.size_bytes.into()),
                    ("kind", l.run.spec.kind.as_str().into()),
                    ("conns", l.run.conns.into()),
                    ("arrivals", l.run.spec.arrivals.as_str().into()),
                ]);
                if let Some(w) = l.run.spec.window {
                    p.insert("window".into(), w.into());
                }
                (l as &dyn Figures, workload::LOAD_FIGURES, p, l.run.behind())
            }
        };
    if let Some(url) = &args.url {
        params.insert("url".into(), url.as_str().into());
    }
    if let Some(secure) = &outcome.secure {
        params.insert("transport".into(), settings.transport.as_str().into());
        if let Some(tls) = &secure.tls {
            params.insert("transport".into(), "tls".into());
            params.insert("tls".into(), tls.as_str().into());
        }
        params.insert("compression".into(), settings.compression.as_str().into());
        if let Some(answer) = &secure.deflate {
            params.insert("deflate_answer".into(), answer.as_str().into());
        }
        params.insert("content".into(), args.content.as_str().into());
    }
    let bench = format!("run/{name}/{}/{}B", args.kind.as_str(), args.size);
    let version = match args.stack {
        Some(stack) => stack.package_version(),
        None => "unknown".to_string(),
    };
    let measurements = metrics_list
        .iter()
        .filter(|m| outcome.server_here || m.name != metrics::SERVER_CPU_NS_PER_MSG.name)
        .map(|&metric| {
            let (value, source) = figures
                .figure(metric)
                .expect("the run measures every metric of its list");
            let subject = Subject {
                group: "run",
                bench: &bench,
                stack: name,
                stack_version: &version,
                params: &params,
                placement: &run.placement,
            };
            let mut m = Measurement::new(&subject, metric, value, source);
            if metric.name == metrics::CLIENT_BEHIND.name {
                m.detail = detail.clone();
            }
            m
        })
        .collect();
    GroupResults {
        run,
        pair_run: None,
        measurements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_every_address_names_a_url_for_each() {
        let ips = vec![
            "127.0.0.1".parse().unwrap(),
            "10.1.2.3".parse().unwrap(),
            "::1".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        ];
        let v4 = every_address_note("ws", "0.0.0.0:9001".parse().unwrap(), Ok(ips.clone()));
        assert_eq!(
            v4,
            "wsbench: it listens on every address of this host: ws://10.1.2.3:9001/, ws://127.0.0.1:9001/"
        );
        let v6 = every_address_note("ws", "[::]:9001".parse().unwrap(), Ok(ips));
        assert_eq!(
            v6,
            "wsbench: it listens on every address of this host: ws://10.1.2.3:9001/, ws://127.0.0.1:9001/, ws://[::1]:9001/"
        );
        let none = every_address_note("tcp", "0.0.0.0:1".parse().unwrap(), Err("denied".into()));
        assert!(none.contains("could not be read: denied"), "{none}");
    }
}
