//! The one load client that drives every stack.
//!
//! It opens N connections, keeps a window of messages in flight on each,
//! checks every echo (length, content, kind and order, through a sequence
//! number in each message; see [`payload`]) and records each round trip in
//! an HDR histogram. A short count, a wrong byte, a dropped or reordered
//! echo, a closed connection or a stalled server is an error that names the
//! stack: a stack can never win by losing messages.
//!
//! The client runs on a current-thread tokio runtime in the calling
//! thread ([`client_runtime`]), registered as the client role and pinned by
//! the placement.
//!
//! Layout, each module one concern:
//! - [`payload`] and [`wire`]: the bytes of a message and of a frame;
//! - `codec`: prepared frames, the receive buffer and the echo check, with
//!   no I/O (unit-tested on byte slices);
//! - `blocking`: the driver for a lone connection (blocking system calls);
//! - `tokio_driver`: the driver for many connections through the runtime;
//! - [`open_loop`]: the driver that sends on a schedule fixed in advance,
//!   whatever the echoes do, in a loop of its own on epoll or io_uring
//!   ([`Driver`]);
//! - `uring`: the io_uring side of those loops;
//! - [`broadcast`]: the same schedule into a broadcast room, every
//!   delivery to every connection verified, on epoll or io_uring;
//! - `conn`: a [`Connection`], its opening, and which driver runs it;
//! - `frames`: single frames for the probe and tests (`send_frame`,
//!   `recv_frame`, `ping`, `close`...);
//! - `error`: [`ClientError`] and its [`ErrorKind`];
//! - `watchdog`: stall detection off the hot path;
//! - this file: the public types and [`drive`], which runs a measurement.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::measure::threads::{self, Role};
use crate::placement::{pin_current_thread, Placement};
use crate::settings::Transport;
use crate::stacks::{Protocol, ServerHandle};

mod blocking;
pub mod broadcast;
mod codec;
mod conn;
pub mod deflate;
mod error;
mod frames;
pub mod open_loop;
pub mod payload;
pub mod secure;
mod tokio_driver;
mod uring;
mod watchdog;
pub mod wire;

pub use conn::Connection;
pub use error::{ClientError, ErrorKind};
pub use open_loop::{Arrivals, OpenLoop, OpenLoopRun};
pub use uring::available as uring_available;

/// How the client waits on many connections at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Driver {
    /// io_uring: one system call submits many connections' sends and
    /// receives and collects their completions.
    #[value(name = "uring")]
    Uring,
    /// epoll: the open loop's and the broadcast room's own epoll loops,
    /// or for a closed loop the tokio runtime's; a system call for every
    /// read, every write and every wait.
    Epoll,
}

impl Driver {
    /// The environment variable the benches read the driver from.
    pub const ENV: &'static str = "WSBENCH_DRIVER";

    /// The name results record.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }

    /// The driver to use: `requested`, else [`Driver::ENV`], else
    /// io_uring; io_uring falls back to epoll, saying why once per
    /// process, where this kernel cannot run it. An unknown name in the
    /// environment is an error.
    pub fn choose(requested: Option<Driver>) -> anyhow::Result<Driver> {
        let wanted = Driver::wanted(requested, std::env::var(Driver::ENV).ok())?;
        Ok(Driver::fall_back(wanted, uring::available()))
    }

    /// `requested`, else the environment's `env`, else io_uring.
    fn wanted(requested: Option<Driver>, env: Option<String>) -> anyhow::Result<Driver> {
        match (requested, env) {
            (Some(d), _) => Ok(d),
            (None, Some(v)) => <Driver as clap::ValueEnum>::from_str(&v, true)
                .map_err(|_| anyhow::anyhow!("{}={v:?}: expected uring or epoll", Driver::ENV)),
            (None, None) => Ok(Driver::Uring),
        }
    }

    /// `wanted`, or epoll with the reason printed where io_uring is not
    /// `available`.
    fn fall_back(wanted: Driver, available: Result<(), String>) -> Driver {
        match (wanted, available) {
            (Driver::Uring, Err(why)) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!("wsbench: the client uses epoll, not io_uring: {why}"));
                Driver::Epoll
            }
            (d, _) => d,
        }
    }
}

/// How long a connection (TCP connect plus handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the client waits without any echo before it calls the server
/// stalled.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections are opened at once: below the smallest listen
/// backlog among the stacks (asyncio's default of 100, which the Python
/// servers keep under their own defaults), so a burst of handshakes is not
/// answered with resets.
pub const CONNECT_CONCURRENCY: usize = 64;

/// Text or binary messages. Text payloads are ASCII, so servers that
/// validate UTF-8 do so on every byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum PayloadKind {
    Binary,
    Text,
}

impl PayloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Binary => "binary",
            PayloadKind::Text => "text",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<PayloadKind> {
        match s {
            "binary" => Ok(PayloadKind::Binary),
            "text" => Ok(PayloadKind::Text),
            _ => anyhow::bail!("unknown message kind {s:?}: expected binary or text"),
        }
    }
}

/// The messages of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpec {
    pub size_bytes: usize,
    pub kind: PayloadKind,
    /// Messages in flight per connection (1 for latency).
    pub window: usize,
}

/// How many round trips a connection makes.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Count(u64),
    Until(Instant),
}

impl Budget {
    /// Whether another round trip (or anything else counted) may start
    /// after `done`.
    pub fn allows(self, done: u64) -> bool {
        self.allows_at(done, Instant::now())
    }

    /// As [`Budget::allows`], with the time already read by the caller.
    fn allows_at(self, done: u64, now: Instant) -> bool {
        match self {
            Budget::Count(n) => done < n,
            Budget::Until(t) => now < t,
        }
    }
}

/// Where the client connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// The stack's name, for error messages and results.
    pub stack: String,
    pub addr: SocketAddr,
    /// Host header value.
    pub host: String,
    /// Request path of the upgrade.
    pub path: String,
    pub protocol: Protocol,
    /// Plain TCP, or TLS (which only [`secure`]'s driver speaks).
    pub transport: Transport,
}

impl Target {
    /// The server behind a handle.
    pub fn of(server: &ServerHandle) -> Target {
        Target {
            stack: server.stack.to_string(),
            addr: server.addr,
            host: server.addr.to_string(),
            path: "/".into(),
            protocol: server.protocol,
            transport: server.transport,
        }
    }

    /// The URL [`Target::from_url`] reads back as this target.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.protocol.scheme(self.transport),
            self.addr,
            self.path
        )
    }

    /// A server given by URL: `ws://HOST:PORT/PATH` or `wss://` for
    /// WebSocket, `tcp://HOST:PORT` or `tls://` for a raw-TCP echo. `stack`
    /// names it in results.
    pub fn from_url(url: &str, stack: &str) -> anyhow::Result<Target> {
        let schemes = [
            ("ws://", Protocol::WebSocket, Transport::Plain),
            ("wss://", Protocol::WebSocket, Transport::Tls),
            ("tcp://", Protocol::RawTcp, Transport::Plain),
            ("tls://", Protocol::RawTcp, Transport::Tls),
        ];
        let Some((protocol, transport, rest)) = schemes
            .iter()
            .find_map(|&(scheme, p, t)| url.strip_prefix(scheme).map(|rest| (p, t, rest)))
        else {
            anyhow::bail!(
                "{url}: expected ws:// or wss://HOST:PORT/PATH, or tcp:// or tls://HOST:PORT"
            );
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        use std::net::ToSocketAddrs;
        let addr = hostport
            .to_socket_addrs()
            .with_context(|| format!("{url}: cannot resolve {hostport:?} (HOST:PORT expected)"))?
            .next()
            .with_context(|| format!("{url}: {hostport:?} resolves to no address"))?;
        Ok(Target {
            stack: stack.to_string(),
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
            protocol,
            transport,
        })
    }
}

/// A current-thread runtime for the client, after registering the calling
/// thread as the client and pinning it as `placement` says.
pub fn client_runtime(placement: Placement) -> anyhow::Result<tokio::runtime::Runtime> {
    threads::register(Role::Client, "client");
    pin_current_thread(placement.client_cpus().as_deref())?;
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A histogram of round-trip times in nanoseconds, 1 ns to 100 s at three
/// significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Opens `n` connections, [`CONNECT_CONCURRENCY`] at a time.
pub async fn connect_many(target: &Target, n: usize) -> Result<Vec<Connection>, ClientError> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let first = conns.len();
        open_batch(target, n, &mut conns).await?;
        if target.protocol == Protocol::RawTcp {
            // A raw-TCP connect completes in the kernel before the server
            // accepts it; batches opened back to back could outrun the
            // server's accepts and overflow its listen queue (a dropped SYN
            // is sent again only a second later). One echo on each proves
            // the server has them.
            let one = MessageSpec {
                size_bytes: 32,
                kind: PayloadKind::Binary,
                window: 1,
            };
            drive(
                &mut conns[first..],
                one,
                Budget::Count(1),
                &mut new_histogram(),
            )
            .await?;
            conns[first..].iter_mut().for_each(Connection::opened);
        }
    }
    Ok(conns)
}

/// Opens `n` connections for a broadcast room, [`CONNECT_CONCURRENCY`] at
/// a time. Unlike [`connect_many`] it sends nothing on them (an echo would
/// be a broadcast): [`broadcast::RoomClient::sync`] proves the server has
/// them all.
pub async fn connect_room(target: &Target, n: usize) -> Result<Vec<Connection>, ClientError> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        open_batch(target, n, &mut conns).await?;
    }
    Ok(conns)
}

/// Opens the next batch of at most [`CONNECT_CONCURRENCY`] of `n`
/// connections onto `conns`.
async fn open_batch(
    target: &Target,
    n: usize,
    conns: &mut Vec<Connection>,
) -> Result<(), ClientError> {
    let batch = CONNECT_CONCURRENCY.min(n - conns.len());
    let opened = futures_util::future::join_all((0..batch).map(|_| Connection::open(target))).await;
    for c in opened {
        conns.push(c.map_err(|e| e.context(format!("connection {} of {n}", conns.len() + 1)))?);
    }
    Ok(())
}

/// The outcome of driving a set of connections.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Verified round trips over all connections.
    pub round_trips: u64,
    /// Wall-clock time from the first send to the last verified echo.
    pub elapsed: Duration,
    /// The client thread's CPU time spent setting its driver up and
    /// taking it down around the round trips (io_uring: arming and
    /// cancelling every connection's receive; see
    /// [`OpenLoopRun::harness_cpu`]); zero through the runtime, whose
    /// connections stay registered.
    pub harness_cpu: Duration,
}

impl RunStats {
    pub fn round_trips_per_s(&self) -> f64 {
        self.round_trips as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }
}

/// Drives every connection concurrently on the current task until its
/// budget is spent. With [`Budget::Count`], each connection makes exactly
/// that many round trips and the total is checked.
///
/// A single connection with one small message in flight waits for each
/// echo in a blocking read rather than through the runtime (see the
/// `blocking` module): it is the cheapest way for the
/// client to wait, and the client must cost less than the servers it
/// measures. Nothing else on this thread runs meanwhile, so the server
/// must not be a task of this runtime (no stack's is), and the run ends on
/// the client's stall watchdog rather than on the caller's timers.
pub async fn drive(
    conns: &mut [Connection],
    spec: MessageSpec,
    budget: Budget,
    hist: &mut Histogram<u64>,
) -> Result<RunStats, ClientError> {
    let started = Instant::now();
    // One histogram for all connections: they run interleaved on this
    // thread, each borrowing it only to record one value.
    let shared = RefCell::new(std::mem::replace(hist, conn::placeholder_histogram()));
    let waiting = if conns.len() == 1 {
        conn::Waiting::Blocking
    } else {
        conn::Waiting::Runtime
    };
    let results = futures_util::future::join_all(
        conns
            .iter_mut()
            .map(|c| c.run_shared(spec, budget, &shared, waiting)),
    )
    .await;
    *hist = shared.into_inner();
    let mut round_trips = 0;
    for r in results {
        round_trips += r?;
    }
    counted(
        conns,
        budget,
        RunStats {
            round_trips,
            elapsed: started.elapsed(),
            harness_cpu: Duration::ZERO,
        },
    )
}

/// As [`drive`], on `driver` where there is a choice: many connections
/// on io_uring run their closed loop in [`open_loop`]'s io_uring engine,
/// in the calling thread; a lone connection keeps its blocking calls, and
/// epoll is the runtime's.
pub async fn drive_on(
    conns: &mut [Connection],
    spec: MessageSpec,
    budget: Budget,
    hist: &mut Histogram<u64>,
    driver: Driver,
) -> Result<RunStats, ClientError> {
    if driver == Driver::Uring && conns.len() > 1 {
        let stats = open_loop::run_closed(conns, spec, budget, hist)?;
        return counted(conns, budget, stats);
    }
    drive(conns, spec, budget, hist).await
}

/// `stats`, once its round trips are what a count budget asked for.
fn counted(conns: &[Connection], budget: Budget, stats: RunStats) -> Result<RunStats, ClientError> {
    if let Budget::Count(n) = budget {
        let expected = n * conns.len() as u64;
        if stats.round_trips != expected {
            let stack = conns
                .first()
                .map(|c| c.stack().to_string())
                .unwrap_or_default();
            return Err(ClientError::of(
                &stack,
                ErrorKind::RoundTrips {
                    verified: stats.round_trips,
                    expected,
                },
            ));
        }
    }
    Ok(stats)
}

/// Closes every connection with the close handshake.
pub async fn close_all(conns: Vec<Connection>) -> Result<(), ClientError> {
    for r in futures_util::future::join_all(conns.into_iter().map(Connection::close)).await {
        r?;
    }
    Ok(())
}

/// Completes the close handshake on every connection without waiting for
/// the servers to close TCP (see [`Connection::close_handshake`]).
pub async fn close_all_handshake(conns: Vec<Connection>) -> Result<(), ClientError> {
    for r in
        futures_util::future::join_all(conns.into_iter().map(Connection::close_handshake)).await
    {
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Driver;

    #[test]
    fn a_missing_io_uring_falls_back_to_epoll() {
        let missing = Err("io_uring_setup failed".to_string());
        assert_eq!(
            Driver::fall_back(Driver::Uring, missing.clone()),
            Driver::Epoll
        );
        assert_eq!(Driver::fall_back(Driver::Epoll, missing), Driver::Epoll);
        assert_eq!(Driver::fall_back(Driver::Uring, Ok(())), Driver::Uring);
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_nonsense_is_refused() {
        let env = |v: &str| Some(v.to_string());
        let err = Driver::wanted(None, env("kqueue")).unwrap_err().to_string();
        assert!(err.contains("expected uring or epoll"), "{err}");
        assert_eq!(Driver::wanted(None, env("epoll")).unwrap(), Driver::Epoll);
        let flag = Driver::wanted(Some(Driver::Uring), env("epoll")).unwrap();
        assert_eq!(flag, Driver::Uring);
        assert_eq!(Driver::wanted(None, None).unwrap(), Driver::Uring);
    }
}
