//! The stacks under test: one file each, all listed in [`STACKS`].
//!
//! A stack is a [`StackInfo`]: its name, the package and version it
//! measures, and a `start` function that serves the suite's echo contract on
//! a fresh runtime of its own:
//!
//! - every text or binary message comes back as one message of the same
//!   kind and bytes (fragmented input reassembled);
//! - ping gets pong; a close gets the close handshake;
//! - TCP_NODELAY on, compression off, message and frame limits raised to
//!   [`crate::settings::MAX_MESSAGE_BYTES`] (under [`Profile::Suite`]);
//! - the upgrade is accepted on any request path;
//! - under either [`crate::settings::EchoPolicy`] (`settings.echo`):
//!   flush-each writes each echo before reading on; batched may let echoes
//!   of input that is already buffered share a write, but flushes before
//!   the read waits, so no echo is held back. A stack whose library has no way to do one of
//!   them runs the same loop for both, and its `notes` say so.
//!
//! Adding a stack is one file here and one line in the `stacks!` list
//! below; its version comes from Cargo.lock, python/requirements.txt or
//! node/package.json through [`versions`], and the tests, the probe and the
//! leak check make their cases from [`STACKS`]. A Python stack's script is
//! `python/echo_<package>.py` (see [`python`]), a Node stack's
//! `node/echo_<package>.cjs` (see [`node`]); build.rs embeds both in the
//! binary ([`cache`]).

use std::net::SocketAddr;
use std::time::Duration;

#[cfg(doc)]
use crate::settings::EchoPolicy;
use crate::settings::{Compression, Profile, ServerSettings, Service, Transport};

pub mod cache;
pub mod child;
pub mod demo;
pub mod node;
pub mod python;
pub mod room;
pub mod runtime;
pub mod versions;

/// Declares each stack's module (`src/stacks/<module>.rs`, which defines
/// `pub const STACK: StackInfo`) and lists the rows in [`STACKS`] in the
/// order given.
macro_rules! stacks {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every stack, in the order reports list them: the raw-TCP floor
        /// first, then the dedicated library and the framework of the
        /// original question, then the other Rust stacks, then the original
        /// Python pair and the other Python stack, then Node's.
        pub const STACKS: &[StackInfo] = &[$($module::STACK),*];
    };
}

stacks! {
    raw_tcp,
    tokio_tungstenite,
    axum,
    fastwebsockets,
    tokio_websockets,
    actix_ws,
    yawc,
    sockudo_ws,
    soketto,
    wtx,
    python_websockets,
    python_aiohttp,
    python_picows,
    node_ws,
}

/// What the client speaks to a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 6455 WebSocket after an HTTP/1.1 upgrade.
    WebSocket,
    /// Length-prefixed bytes echoed verbatim: the floor, not WebSocket.
    RawTcp,
}

impl Protocol {
    /// The URL scheme of this protocol over `transport`: `ws`, `wss`, and
    /// `tcp` or `tls` for the floor.
    pub fn scheme(self, transport: Transport) -> &'static str {
        match (self, transport) {
            (Protocol::WebSocket, t) => t.scheme(),
            (Protocol::RawTcp, Transport::Plain) => "tcp",
            (Protocol::RawTcp, Transport::Tls) => "tls",
        }
    }
}

/// What runs a stack's server, and so what the machine needs for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Rust code in this process: always there.
    Native,
    /// A script in the Python venv ([`python`]).
    Python,
    /// A script run by Node with the pinned npm packages ([`node`]).
    Node,
}

/// Where a stack's server runs, which decides how its CPU and memory are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Threads of this process: the counting allocator and per-thread
    /// clocks see it.
    InProcess,
    /// A child process: CPU and RSS come from `/proc/<pid>`.
    ChildProcess,
}

/// One row of the stack table.
#[derive(Clone, Copy)]
pub struct StackInfo {
    /// Short name used on the command line and in benchmark ids.
    pub name: &'static str,
    /// The crate, Python package or npm package measured.
    pub package: &'static str,
    /// Its version: [`versions::of_crate`], [`versions::of_python`] or
    /// [`versions::of_node`] of `package`.
    pub version: &'static str,
    pub protocol: Protocol,
    pub runtime: Runtime,
    /// How the suite's settings map onto this stack, and what it cannot honour.
    pub notes: &'static str,
    /// Whether it can serve permessage-deflate
    /// ([`crate::settings::Compression::Deflate`]); its notes say how.
    pub deflate: bool,
    /// Starts an echo server. Must return once the server accepts
    /// connections.
    pub start: fn(&ServerSettings) -> anyhow::Result<ServerHandle>,
}

impl StackInfo {
    /// In this process or a child: a Rust stack runs in this process.
    pub const fn host(&self) -> Host {
        match self.runtime {
            Runtime::Native => Host::InProcess,
            Runtime::Python | Runtime::Node => Host::ChildProcess,
        }
    }

    /// Whether this stack can run here: `Err` says why not (no Python or
    /// Node, packages that could not be installed). The first call for a
    /// child-process runtime installs its packages if needed.
    pub fn availability(&self) -> Result<(), String> {
        match self.runtime {
            Runtime::Native => Ok(()),
            Runtime::Python => python::availability(),
            Runtime::Node => node::availability(),
        }
    }

    /// The version its runtime reports as installed (a child-process
    /// stack's environment may lag a changed pin until it is rebuilt);
    /// `None` for a Rust stack or an unavailable runtime.
    pub fn installed_version(&self) -> Option<String> {
        match self.runtime {
            Runtime::Native => None,
            Runtime::Python => python::installed_version(self.package),
            Runtime::Node => node::installed_version(self.package),
        }
    }

    /// Its runtime's environment as it is, made or not, without making it
    /// (for `wsbench list`); `None` for a Rust stack.
    pub fn environment(&self) -> Option<child::Environment> {
        match self.runtime {
            Runtime::Native => None,
            Runtime::Python => Some(python::environment()),
            Runtime::Node => Some(node::environment()),
        }
    }

    /// "axum 0.8.9".
    pub fn package_version(&self) -> String {
        format!("{} {}", self.package, self.version)
    }

    /// Starts the server, naming the stack in any error. A stack without
    /// permessage-deflate refuses [`Compression::Deflate`] rather than
    /// serve uncompressed.
    pub fn start(&self, settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
        if settings.compression == Compression::Deflate && !self.deflate {
            anyhow::bail!(
                "stack {} has no permessage-deflate (its library does not support it)",
                self.name
            );
        }
        if settings.service == Service::Broadcast && settings.transport == Transport::Tls {
            anyhow::bail!("the broadcast room is served over plain TCP only, not TLS");
        }
        let handle = (self.start)(settings)
            .map_err(|e| e.context(format!("starting stack {}", self.name)))?;
        Ok(handle.with_transport(settings.transport))
    }
}

impl std::fmt::Debug for StackInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackInfo")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

/// Looks a stack up by name; the error lists the valid names.
pub fn find(name: &str) -> anyhow::Result<&'static StackInfo> {
    STACKS.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = STACKS.iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown stack {name:?}; known stacks: {}", names.join(", "))
    })
}

/// The Rust WebSocket stacks and the floor: what runs in this process.
pub fn in_process() -> impl Iterator<Item = &'static StackInfo> {
    STACKS.iter().filter(|s| s.host() == Host::InProcess)
}

/// A running server. Dropping it shuts the server down and waits for it.
pub struct ServerHandle {
    pub stack: &'static str,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// The server's process id when it runs in a child process.
    pub pid: Option<u32>,
    pub profile: Profile,
    /// Plain or TLS: what [`ServerHandle::url`] and the client speak.
    pub transport: Transport,
    stop: Option<Box<dyn FnOnce() -> anyhow::Result<()> + Send>>,
    collector: Option<Collector>,
}

/// Runs a garbage-collected server's collector and returns once it is
/// done, with the live bytes its runtime counts if it counts them.
type Collector = Box<dyn Fn() -> anyhow::Result<Option<i64>> + Send + Sync>;

/// How long a server gets to stop before it is abandoned (threads) or
/// killed (processes).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl ServerHandle {
    pub fn new(
        stack: &'static str,
        addr: SocketAddr,
        protocol: Protocol,
        profile: Profile,
        pid: Option<u32>,
        stop: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    ) -> ServerHandle {
        ServerHandle {
            stack,
            addr,
            protocol,
            pid,
            profile,
            transport: Transport::Plain,
            stop: Some(Box::new(stop)),
            collector: None,
        }
    }

    /// The same server, serving over `transport`.
    pub fn with_transport(mut self, transport: Transport) -> ServerHandle {
        self.transport = transport;
        self
    }

    /// The same server, with a way to run its runtime's garbage collector
    /// (the child-process stacks: CPython's cycle collector, V8's).
    pub fn with_collector(
        mut self,
        collect: impl Fn() -> anyhow::Result<Option<i64>> + Send + Sync + 'static,
    ) -> ServerHandle {
        self.collector = Some(Box::new(collect));
        self
    }

    /// Runs the server's garbage collector, where it has one, so that a
    /// memory reading right after counts what the server still holds, not
    /// garbage it has yet to collect. Returns the live bytes the runtime
    /// itself counts after the collection, where it counts them (Node);
    /// `None` for a Rust stack, which has no collector.
    pub fn collect_garbage(&self) -> anyhow::Result<Option<i64>> {
        match &self.collector {
            Some(collect) => collect().map_err(|e| e.context(format!("stack {}", self.stack))),
            None => Ok(None),
        }
    }

    /// `ws://127.0.0.1:PORT/` or `wss://...`; `tcp://` or `tls://` for the
    /// raw-TCP floor.
    pub fn url(&self) -> String {
        format!("{}://{}/", self.protocol.scheme(self.transport), self.addr)
    }

    /// Stops the server and waits for it (at most [`SHUTDOWN_GRACE`]).
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> anyhow::Result<()> {
        match self.stop.take() {
            Some(stop) => stop().map_err(|e| e.context(format!("stopping stack {}", self.stack))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_now() {
            eprintln!("wsbench: {e:#}");
        }
    }
}
