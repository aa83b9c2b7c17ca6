//! The command line: every subcommand and flag, as types.
//!
//! Placements, payload kinds, profiles and echo policies are clap value
//! enums, and stacks are parsed against [`STACKS`], so `--help` lists the
//! valid values and a typo is refused with them; nothing past this module
//! parses a string.

use std::net::SocketAddr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Parser, Subcommand};
use wsbench::client::payload::Content;
use wsbench::client::{Arrivals, Driver, PayloadKind};
use wsbench::placement::Placement;
use wsbench::settings::{Compression, EchoPolicy, Profile, ServerSettings, Service, Transport};
use wsbench::stacks::{self, StackInfo, STACKS};

/// "0.1.0 (commit 2a4f922…)": the commit HEAD was at when this binary was
/// built (build.rs), "unknown" outside git.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WSBENCH_BUILD_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "wsbench",
    version = VERSION,
    about = "Benchmark WebSocket stacks with one verifying client"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print every stack with its package version, and where the
    /// child-process stacks' environments are; makes and writes nothing.
    List,
    /// Make the child-process stacks' environments now (the Python venv,
    /// the Node packages), which their first use would otherwise do, and
    /// print where they are. Exits 1 when one cannot be made.
    Setup,
    /// Serve one stack's echo server (or its broadcast room) until Ctrl-C
    /// or SIGTERM.
    Serve {
        /// Stack to serve.
        #[arg(long, value_parser = stack_parser())]
        stack: &'static StackInfo,
        /// Address to listen on (the port 0 picks a free one; 0.0.0.0 or
        /// [::] listens on every address of this host).
        #[arg(long, default_value = "127.0.0.1:9001")]
        addr: SocketAddr,
        /// What every connection gets.
        #[arg(long, value_enum, default_value_t = Service::Echo)]
        service: Service,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Drive one stack (started in this process, or at --url) and print
    /// msgs/s and round-trip percentiles.
    Run(RunArgs),
    /// Write the report of target/wsbench/results.json to
    /// target/wsbench/report/ (any run, quick or partial).
    Report {
        /// Write the committed target-reports/ and discussion.md instead;
        /// refused, writing nothing, unless the results are a complete
        /// reference run of committed code with its latency flamegraphs.
        #[arg(long)]
        publish: bool,
        /// A second full run of the same commit (its results.json): its
        /// rounds are kept beside this run's, and a ratio is a claim only
        /// where both runs' intervals clear the threshold the same way.
        #[arg(long, value_name = "RESULTS")]
        pair: Option<std::path::PathBuf>,
    },
    /// List the claims a run's report makes (one stack faster than
    /// another, the whole interval of their ratio beyond the threshold);
    /// with --against, what another run says about each. Exits 1 when
    /// another run does not confirm every claim.
    Claims {
        /// The run whose claims to list.
        #[arg(default_value = "target/wsbench/results.json")]
        results: std::path::PathBuf,
        /// Another run's results.json, to check every claim against.
        #[arg(long)]
        against: Option<std::path::PathBuf>,
        /// A second full run of the same commit as RESULTS: claims are
        /// then only those both runs make (as `report --pair`).
        #[arg(long, value_name = "RESULTS")]
        pair: Option<std::path::PathBuf>,
        /// A discussion template (discussion.template.md): its claims
        /// between stacks, as expanded against RESULTS, join the report's.
        #[arg(long)]
        discussion: Option<std::path::PathBuf>,
        /// Smallest ratio beyond 1 called a difference: 0.10 = 1.10 times.
        #[arg(long, default_value_t = wsbench::rounds::CLAIM_THRESHOLD)]
        threshold: f64,
    },
    /// Add up the shares of one run that several `wsbench run
    /// --histogram-out` clients wrote (on this host or others): counts
    /// summed, histograms added exactly. Shares of different stacks,
    /// settings or wsbench builds, or that did not run at the same time,
    /// are refused.
    Merge {
        /// The shares, one file per client.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
        /// Print the merged run as results.json records (group "merge").
        #[arg(long)]
        json: bool,
    },
    /// Compare two commits, or two versions of one library (--stack or
    /// --crate with --base and --head), on the quick measurement set,
    /// interleaved, and exit 1 on a regression (0 without, 2 when it could
    /// not build or run).
    // Boxed: its arguments would be most of every Command's size.
    Compare(Box<wsbench::compare::CompareArgs>),
    /// One round of the quick measurement set, written as JSON (what
    /// `compare` runs in each build).
    #[command(hide = true)]
    Measure(wsbench::compare::MeasureArgs),
    /// One client process of a run spread over several: opens its share of
    /// the connections, then runs the rounds its parent asks for on stdin
    /// (what the scaling and cores benches start, see `wsbench::workers`).
    #[command(hide = true)]
    Worker(wsbench::workers::WorkerArgs),
    /// Send malformed and abusive input to one stack and print what it does.
    Probe {
        /// Stack to probe.
        #[arg(long, value_parser = stack_parser())]
        stack: &'static StackInfo,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args)]
#[command(group(ArgGroup::new("driven").args(["stack", "url"]).required(true).multiple(true)))]
pub struct RunArgs {
    /// Stack to start here; with --url, the stack serving there, whose name
    /// and version the result then carries (without it, the result is named
    /// after the URL as given).
    #[arg(long, value_parser = stack_parser())]
    pub stack: Option<&'static StackInfo>,
    /// Drive a server that is already running: ws:// or wss://HOST:PORT/PATH,
    /// or tcp:// or tls://HOST:PORT (raw-TCP echo). Over TLS the client
    /// verifies the server's certificate against the CA wsbench makes at
    /// start (what `wsbench serve --tls` uses) and those in --ca.
    #[arg(long)]
    pub url: Option<String>,
    /// A PEM file of CA certificates to trust for wss:// and tls:// besides
    /// wsbench's own (e.g. the CA file `wsbench serve --tls` prints on
    /// another machine). Verification is never turned off.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// What fills the messages over TLS or with permessage-deflate:
    /// JSON-like text, or random bytes (binary). --kind does not apply
    /// there.
    #[arg(long, value_enum, default_value_t = Content::Json)]
    pub content: Content,
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Messages in flight per connection (default 1). With --rate, sends
    /// are held back while this many are unanswered (default: never).
    #[arg(long)]
    pub window: Option<usize>,
    /// Offer this many messages per second over all the connections, on a
    /// schedule fixed in advance whatever the echoes do (open loop), and
    /// time each round trip from its intended send as well as its actual
    /// one.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// How the send times of --rate are spaced.
    #[arg(long, value_enum, default_value_t = Arrivals::Constant)]
    pub arrivals: Arrivals,
    /// How the client waits on many connections (and on any under
    /// --rate): io_uring (one system call for many connections' sends and
    /// receives) or epoll (the runtime's, or the open loop's own). A lone
    /// connection in a closed loop blocks in `read` either way. Default:
    /// WSBENCH_DRIVER, else io_uring where the kernel offers it (the
    /// fallback to epoll is printed with its reason).
    #[arg(long, value_enum)]
    pub driver: Option<Driver>,
    /// Message kind.
    #[arg(long, value_enum, default_value_t = PayloadKind::Binary)]
    pub kind: PayloadKind,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Print the result as JSON, the records the benches write to
    /// results.json (one group, "run"), instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write this client's share of the run to FILE: its counts and
    /// its round trips as HDR histograms (V2 serialization), for `wsbench
    /// merge` to add up with the other clients' of the same run.
    #[arg(long, value_name = "FILE")]
    pub histogram_out: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Server worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Where client and server threads run (default: $WSBENCH_PLACEMENT or
    /// same-core).
    #[arg(long, value_enum)]
    pub placement: Option<Placement>,
    /// Server configuration.
    #[arg(long, value_enum, default_value_t = Profile::Suite)]
    pub profile: Profile,
    /// How the server writes its echoes (default: $WSBENCH_ECHO or
    /// flush-each).
    #[arg(long, value_enum)]
    pub echo: Option<EchoPolicy>,
    /// Serve wss:// (tls:// for raw-tcp) with a certificate made at start,
    /// signed by a CA made at start (`serve` prints its file).
    #[arg(long)]
    pub tls: bool,
    /// Accept permessage-deflate (only stacks that support it); for `run`,
    /// the client offers it and compresses what it sends once accepted.
    #[arg(long, value_enum, default_value_t = Compression::Off)]
    pub compression: Compression,
}

impl ServerArgs {
    pub fn placement(&self) -> anyhow::Result<Placement> {
        match self.placement {
            Some(p) => Ok(p),
            None => Placement::from_env(),
        }
    }

    pub fn settings(&self, addr: SocketAddr) -> anyhow::Result<ServerSettings> {
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        Ok(ServerSettings {
            addr,
            threads: self.threads,
            placement: self.placement()?,
            profile: self.profile,
            echo: match self.echo {
                Some(e) => e,
                None => EchoPolicy::from_env()?,
            },
            service: Service::Echo,
            transport: if self.tls {
                Transport::Tls
            } else {
                Transport::Plain
            },
            compression: self.compression,
            cpus: None,
        })
    }
}

/// Parses a stack name into its row of [`STACKS`]; the possible values are
/// the table's names, so help lists them and a typo is refused with them.
pub fn stack_parser() -> impl TypedValueParser<Value = &'static StackInfo> {
    PossibleValuesParser::new(STACKS.iter().map(|s| s.name)).map(|name| {
        // The possible values are exactly the table's names.
        stacks::find(&name).expect("a possible value is a stack in STACKS")
    })
}
