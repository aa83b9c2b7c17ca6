//! One client connection: opening it, its state, and choosing the driver
//! that runs a measurement on it.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};

use super::codec::{Prepared, RecvBuf, RECV_BUFFER_BYTES};
use super::error::{ClientError, ErrorKind};
use super::watchdog::{self, Watch};
use super::wire;
use super::{Budget, MessageSpec, Target, CONNECT_TIMEOUT, STALL_TIMEOUT};
use crate::settings::Transport;
use crate::stacks::Protocol;

/// The receive buffer the client asks the kernel for on every connection
/// (the kernel doubles it for its bookkeeping): room for every echo in
/// flight at the largest point of the sweep (two 16 MiB messages). The
/// client must never hold the server back: when the client's receive
/// window closes, the server's unsent echoes wait in its socket, and the
/// window update that the client's next `read` sends transmits them in the
/// client's system call, so the client pays for the server's sending.
/// Profiles showed this at 128 KiB, 1 MiB and 16 MiB, where the client's
/// CPU per message came out at 1.2 to 1.7 times the server's with the
/// kernel's autotuned buffer, which grows only after the window has
/// closed. The size is a bound, not an allocation: idle connections cost
/// no more.
pub(super) const RECV_SOCKET_BUFFER_BYTES: libc::c_int = 32 << 20;

/// Sets [`RECV_SOCKET_BUFFER_BYTES`] with `SO_RCVBUFFORCE`, which may
/// exceed `net.core.rmem_max` but needs CAP_NET_ADMIN; without it, as much
/// as `SO_RCVBUF` allows. Before connecting, so that the window scale
/// offered allows it.
pub(super) fn set_recv_socket_buffer(socket: &impl AsFd, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: an int option of the right size on a valid socket.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced == 0 {
        return Ok(());
    }
    socket2::SockRef::from(socket).set_recv_buffer_size(bytes as usize)
}

/// One connection to a stack: its socket, the messages prepared for the
/// current spec, the received bytes not yet checked, and the sequence
/// numbers sent and verified.
pub struct Connection {
    pub(super) stack: String,
    pub(super) protocol: Protocol,
    pub(super) stream: TcpStream,
    pub(super) mask: [u8; 4],
    pub(super) recv: RecvBuf,
    pub(super) prepared: Option<Prepared>,
    pub(super) next_send_seq: u64,
    pub(super) next_recv_seq: u64,
    pub(super) stall_timeout: Duration,
    pub(super) watch: Arc<Watch>,
    /// The server accepted permessage-deflate (see `open_offering_deflate`).
    deflate: bool,
    /// Round trips made while opening (raw TCP's proof that the server
    /// accepted, see `client::connect_many`): verified, but not counted.
    opening_round_trips: u64,
}

/// How a connection waits for an echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// Through the runtime: other connections and tasks on the thread run
    /// meanwhile ([`super::tokio_driver`]).
    Runtime,
    /// In blocking system calls, for a connection alone on its thread with
    /// nothing else to run there (the server runs elsewhere); see
    /// [`super::blocking`].
    Blocking,
}

impl Connection {
    /// Connects and, for WebSocket stacks, completes the opening handshake,
    /// within [`CONNECT_TIMEOUT`].
    pub async fn open(target: &Target) -> Result<Connection, ClientError> {
        Connection::open_with(target, false, RECV_SOCKET_BUFFER_BYTES).await
    }

    /// Opens a connection whose socket receive buffer is only `bytes` (the
    /// kernel doubles it, and keeps a floor of its own): a reader that
    /// stops reading then closes its window after that much, and the
    /// server, not the kernel, has to hold what it sends next (the
    /// broadcast bench's slow consumer).
    pub async fn open_with_recv_buffer(
        target: &Target,
        bytes: u32,
    ) -> Result<Connection, ClientError> {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        Connection::open_with(target, false, bytes).await
    }

    /// Opens a connection that offers permessage-deflate, as browsers do,
    /// to see what a server's compression costs an idle connection. If the
    /// server accepts, the connection can only idle and close: the client
    /// does not compress, so [`Connection::run`] refuses it.
    pub async fn open_offering_deflate(target: &Target) -> Result<Connection, ClientError> {
        Connection::open_with(target, true, RECV_SOCKET_BUFFER_BYTES).await
    }

    /// Whether the server accepted permessage-deflate.
    pub fn deflate_negotiated(&self) -> bool {
        self.deflate
    }

    async fn open_with(
        target: &Target,
        offer_deflate: bool,
        recv_buffer_bytes: libc::c_int,
    ) -> Result<Connection, ClientError> {
        if target.transport == Transport::Tls {
            let why = "this driver speaks plain TCP; a TLS target goes through client::secure";
            return Err(ClientError::of(&target.stack, ErrorKind::Tls(why.into())));
        }
        let socket_err = |during| move |source| ErrorKind::Socket { during, source };
        let connect = async {
            let socket = if target.addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(socket_err("creating a socket"))?;
            // Before connecting, so that the window scale offered allows it.
            set_recv_socket_buffer(&socket, recv_buffer_bytes)
                .map_err(socket_err("setting the receive buffer"))?;
            let mut stream =
                socket
                    .connect(target.addr)
                    .await
                    .map_err(|source| ErrorKind::Connect {
                        addr: target.addr,
                        source,
                    })?;
            stream
                .set_nodelay(true)
                .map_err(socket_err("TCP_NODELAY"))?;
            let (leftover, deflate) = match target.protocol {
                Protocol::WebSocket => {
                    wire::handshake_with(&mut stream, &target.host, &target.path, offer_deflate)
                        .await
                        .map_err(ErrorKind::Handshake)?
                }
                Protocol::RawTcp => (Vec::new(), false),
            };
            Ok::<_, ErrorKind>((stream, leftover, deflate))
        };
        let (stream, leftover, deflate) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| ErrorKind::ConnectTimeout {
                after: CONNECT_TIMEOUT,
            })
            .and_then(|r| r)
            .map_err(|kind| ClientError::of(&target.stack, kind))?;
        let watch = watchdog::watch(stream.as_raw_fd(), STALL_TIMEOUT);
        Ok(Connection {
            stack: target.stack.clone(),
            protocol: target.protocol,
            stream,
            mask: wire::random_mask(),
            recv: RecvBuf::new(&leftover),
            prepared: None,
            next_send_seq: 0,
            next_recv_seq: 0,
            stall_timeout: STALL_TIMEOUT,
            watch,
            deflate,
            opening_round_trips: 0,
        })
    }

    /// Changes how long this connection waits for an echo before it calls
    /// the server stalled (tests use a short one).
    pub fn set_stall_timeout(&mut self, timeout: Duration) {
        self.stall_timeout = timeout;
        self.watch.set_stall_timeout(timeout);
    }

    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// The client's port of this connection (tests find the server's end
    /// of it by this).
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().map_or(0, |a| a.port())
    }

    /// Round trips this connection has completed and verified, not
    /// counting those made while it opened.
    pub fn verified_round_trips(&self) -> u64 {
        self.next_recv_seq - self.opening_round_trips
    }

    /// Counts the round trips made so far as part of opening.
    pub(super) fn opened(&mut self) {
        self.opening_round_trips = self.next_recv_seq;
    }

    pub(super) fn err(&self, kind: ErrorKind) -> ClientError {
        ClientError::of(&self.stack, kind)
    }

    pub(super) fn prepare(&mut self, spec: MessageSpec) {
        if self.prepared.as_ref().is_some_and(|p| p.spec == spec) {
            return;
        }
        self.prepared = Some(Prepared::new(spec, self.protocol, self.mask));
    }

    /// Prepares `spec`'s frames, and a receive buffer with room for its
    /// window's echoes.
    pub(super) fn prepare_window(&mut self, spec: MessageSpec) {
        self.prepare(spec);
        let frame_bytes = self.prepared.as_ref().expect("prepared").frame_bytes();
        self.recv
            .grow_to((spec.window * frame_bytes).min(RECV_BUFFER_BYTES));
    }

    /// Sends and verifies round trips until `budget` is spent, recording
    /// each round trip's time in nanoseconds into `hist`. Returns the number
    /// of round trips, all verified.
    pub async fn run(
        &mut self,
        spec: MessageSpec,
        budget: Budget,
        hist: &mut Histogram<u64>,
    ) -> Result<u64, ClientError> {
        let shared = RefCell::new(std::mem::replace(hist, placeholder_histogram()));
        let result = self
            .run_shared(spec, budget, &shared, Waiting::Runtime)
            .await;
        *hist = shared.into_inner();
        result
    }

    /// As [`Connection::run`], recording into a histogram that many
    /// connections on this thread share (one histogram per connection would
    /// cost 8,192 large allocations per batch at the largest scaling point).
    pub(super) async fn run_shared(
        &mut self,
        spec: MessageSpec,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
        waiting: Waiting,
    ) -> Result<u64, ClientError> {
        if self.deflate {
            return Err(self.err(ErrorKind::Compressed));
        }
        self.prepare_window(spec);
        let before = self.next_recv_seq;
        let sequential = self.prepared.as_ref().expect("prepared").sequential();
        self.watch.progress(before);
        self.watch.set_running(true);
        let result = match waiting {
            Waiting::Runtime if sequential => self.run_sequential(budget, hist).await,
            Waiting::Runtime => self.run_windowed(budget, hist).await,
            Waiting::Blocking => self.run_blocking(budget, hist, sequential),
        };
        self.watch.set_running(false);
        if self.watch.stalled() {
            return Err(self.err(ErrorKind::Stalled {
                after: self.next_recv_seq - before,
                timeout: self.stall_timeout,
            }));
        }
        result.map_err(|kind| self.err(kind))?;
        Ok(self.next_recv_seq - before)
    }

    /// Drops the connection without a close handshake, with a TCP reset
    /// rather than a FIN, so that no TIME_WAIT holds a port: benches that
    /// open thousands of connections would otherwise run out of ephemeral
    /// ports.
    pub fn abort(self) {
        // A zero linger never blocks, which is what tokio's deprecation
        // warns about.
        #[allow(deprecated)]
        let _ = self.stream.set_linger(Some(Duration::ZERO));
    }
}

/// A tiny stand-in while the real histogram is lent to a `RefCell`.
pub(super) fn placeholder_histogram() -> Histogram<u64> {
    Histogram::new(1).expect("one significant figure is valid")
}
