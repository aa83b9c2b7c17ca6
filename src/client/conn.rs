//! One client connection: sends prepared messages, reads and checks every
//! echo, and times each round trip.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

use super::payload::{self, Template};
use super::watchdog::{self, Watch};
use super::wire::{self, FrameHeader};
use super::{
    Budget, ClientError, MessageSpec, PayloadKind, Target, CONNECT_TIMEOUT, STALL_TIMEOUT,
};
use crate::stacks::Protocol;

/// Messages up to this size go through the simple write-then-read loop
/// when one is in flight: they fit the socket buffers, so the write can
/// never wait for the server to be read. Larger ones use the concurrent
/// loop, which reads while it writes.
const SEQUENTIAL_MAX_FRAME_BYTES: usize = 64 << 10;

/// The most bytes of small frames the windowed loop writes at once.
const BATCH_MAX_BYTES: usize = 64 << 10;

/// The most bytes the windowed loops hand to one `send`: as much as the
/// raw-TCP echo writes at once, so the client's sends are no larger than a
/// server's, and little enough that a large message's pieces come from a
/// block that stays in cache (see [`Frames`]). Batches of up to 256 KiB
/// measured worse for the client, not better.
const SEND_MAX_BYTES: usize = 64 << 10;

// The sequential loop writes each message as one piece.
const _: () = assert!(SEQUENTIAL_MAX_FRAME_BYTES <= SEND_MAX_BYTES);

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
const RECV_SOCKET_BUFFER_BYTES: libc::c_int = 32 << 20;

/// Sets [`RECV_SOCKET_BUFFER_BYTES`] with `SO_RCVBUFFORCE`, which may
/// exceed `net.core.rmem_max` (4 MiB here) but needs CAP_NET_ADMIN;
/// without it, as much as `SO_RCVBUF` allows.
fn set_recv_socket_buffer(socket: &TcpSocket) -> io::Result<()> {
    let bytes = RECV_SOCKET_BUFFER_BYTES;
    // SAFETY: an int option of the right size on a valid socket.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced == 0 {
        return Ok(());
    }
    socket.set_recv_buffer_size(bytes as u32)
}

/// Bytes of the raw-TCP length prefix.
const RAW_HEADER_BYTES: usize = 8;

/// Initial size of the receive buffer; it grows as below, or to the
/// largest whole message received, and stays there, so steady state does
/// not allocate.
const INITIAL_RECV_BUFFER_BYTES: usize = 16 << 10;

/// The receive buffer grows to hold every message in flight, up to this
/// size, so that one `read` takes in every echo that has arrived, as the
/// servers' own reads do (the raw-TCP echo reads 64 KiB at a time): a
/// buffer of one message would cost the client a system call per message
/// where the server pays one per several. Echoes larger than this are
/// checked as they arrive and never held whole (see `streamed`).
const RECV_BUFFER_BYTES: usize = 64 << 10;

/// The messages of one spec, prepared for sending.
struct Prepared {
    spec: MessageSpec,
    template: Template,
    frames: Frames,
    /// Send time of each message in flight, by sequence number modulo the
    /// window.
    sent_at: Vec<Cell<Instant>>,
}

/// The framed (and, for WebSocket, masked) messages of one spec as the
/// windowed loops write them, made once per spec.
///
/// Small messages: as many copies back to back as go out in one write, so
/// a batch goes out without being copied together and only each copy's
/// sequence-number bytes change per message. (Copying frames into a batch
/// buffer cost the client a pass over every byte sent, which the servers
/// do not pay.)
///
/// A message larger than [`SEND_MAX_BYTES`]: its first `SEND_MAX_BYTES`
/// (header and sequence number included), and then pieces of a block of
/// the repeating body, which stays in cache, where sending from a whole
/// frame of up to 16 MiB read it from memory on every send.
struct Frames {
    /// Small messages: `copies` whole frames; a large one: its start.
    bytes: Vec<u8>,
    copies: u64,
    frame_len: usize,
    payload_offset: usize,
    /// A large message's body as sent from payload byte 0 on, one
    /// `SEND_MAX_BYTES` and a period long; empty for small messages.
    body: Vec<u8>,
}

impl Frames {
    fn new(frame: Vec<u8>, payload_offset: usize, copies: usize, mask: Option<[u8; 4]>) -> Frames {
        if frame.len() <= SEND_MAX_BYTES {
            return Frames {
                bytes: frame.repeat(copies.max(1)),
                copies: copies.max(1) as u64,
                frame_len: frame.len(),
                payload_offset,
                body: Vec::new(),
            };
        }
        let mut body = payload::pattern(SEND_MAX_BYTES + payload::BODY_PERIOD_BYTES);
        if let Some(mask) = mask {
            wire::apply_mask(&mut body, mask, 0);
        }
        Frames {
            bytes: frame[..SEND_MAX_BYTES].to_vec(),
            copies: 1,
            frame_len: frame.len(),
            payload_offset,
            body,
        }
    }

    /// Bytes of `k` messages.
    fn len(&self, k: u64) -> usize {
        k as usize * self.frame_len
    }

    /// Numbers the first `k` copies as messages `first`, `first + 1`, ...
    fn number(
        &mut self,
        first: u64,
        k: u64,
        template: &Template,
        protocol: Protocol,
        mask: [u8; 4],
    ) {
        debug_assert!(k <= self.copies);
        for i in 0..k {
            let start = i as usize * self.frame_len + self.payload_offset;
            let (bytes, n) = template.seq_prefix(first + i);
            let dst = &mut self.bytes[start..start + n];
            dst.copy_from_slice(&bytes[..n]);
            if protocol == Protocol::WebSocket {
                wire::apply_mask(dst, mask, 0);
            }
        }
    }

    /// The next bytes to send of the first `k` messages, as numbered last,
    /// after the first `written`: at most [`SEND_MAX_BYTES`].
    fn piece(&self, k: u64, written: usize) -> &[u8] {
        let end = self.len(k).min(written + SEND_MAX_BYTES);
        if written < self.bytes.len() {
            return &self.bytes[written..end.min(self.bytes.len())];
        }
        let phase = (written - self.payload_offset) % payload::BODY_PERIOD_BYTES;
        &self.body[phase..phase + (end - written)]
    }
}

/// Buffered bytes read from the server: `buf[start..end]` is unread.
struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Reassembles a fragmented echo.
    message: Vec<u8>,
    /// When the last `read` returned: the arrival time of every echo it
    /// brought in. One clock read per system call rather than per echo.
    last_read_at: Instant,
}

pub struct Connection {
    stack: String,
    protocol: Protocol,
    stream: TcpStream,
    mask: [u8; 4],
    recv: RecvBuf,
    prepared: Option<Prepared>,
    next_send_seq: u64,
    next_recv_seq: u64,
    stall_timeout: Duration,
    watch: Arc<Watch>,
    /// The server accepted permessage-deflate (see `open_offering_deflate`).
    deflate: bool,
}

/// What came back for one message.
enum Incoming {
    /// A data message, verified.
    Echo,
    /// A frame the caller asked to see (tests and the probe).
    Frame { opcode: u8, payload: Vec<u8> },
}

impl Connection {
    /// Connects and, for WebSocket stacks, completes the opening handshake,
    /// within [`CONNECT_TIMEOUT`].
    pub async fn open(target: &Target) -> Result<Connection, ClientError> {
        Connection::open_with(target, false).await
    }

    /// Opens a connection that offers permessage-deflate, as browsers do,
    /// to see what a server's compression costs an idle connection. If the
    /// server accepts, the connection can only idle and close: the client
    /// does not compress, so [`Connection::run`] refuses it.
    pub async fn open_offering_deflate(target: &Target) -> Result<Connection, ClientError> {
        Connection::open_with(target, true).await
    }

    /// Whether the server accepted permessage-deflate.
    pub fn deflate_negotiated(&self) -> bool {
        self.deflate
    }

    async fn open_with(target: &Target, offer_deflate: bool) -> Result<Connection, ClientError> {
        let err = |what: String| ClientError::new(&target.stack, what);
        let connect = async {
            let socket = if target.addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|e| err(format!("creating a socket: {e}")))?;
            // Before connecting, so that the window scale offered allows it.
            set_recv_socket_buffer(&socket)
                .map_err(|e| err(format!("setting the receive buffer: {e}")))?;
            let mut stream = socket
                .connect(target.addr)
                .await
                .map_err(|e| err(format!("connecting to {}: {e}", target.addr)))?;
            stream
                .set_nodelay(true)
                .map_err(|e| err(format!("TCP_NODELAY: {e}")))?;
            let (leftover, deflate) = match target.protocol {
                Protocol::WebSocket => {
                    wire::handshake_with(&mut stream, &target.host, &target.path, offer_deflate)
                        .await
                        .map_err(|e| err(format!("handshake: {e}")))?
                }
                Protocol::RawTcp => (Vec::new(), false),
            };
            Ok::<_, ClientError>((stream, leftover, deflate))
        };
        let (stream, leftover, deflate) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
            err(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })??;
        let watch = watchdog::watch(stream.as_raw_fd(), STALL_TIMEOUT);
        let mut buf = vec![0u8; INITIAL_RECV_BUFFER_BYTES.max(leftover.len())];
        buf[..leftover.len()].copy_from_slice(&leftover);
        Ok(Connection {
            stack: target.stack.clone(),
            protocol: target.protocol,
            stream,
            mask: wire::random_mask(),
            recv: RecvBuf {
                buf,
                start: 0,
                end: leftover.len(),
                message: Vec::new(),
                last_read_at: Instant::now(),
            },
            prepared: None,
            next_send_seq: 0,
            next_recv_seq: 0,
            stall_timeout: STALL_TIMEOUT,
            watch,
            deflate,
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

    /// Round trips this connection has completed and verified.
    pub fn verified_round_trips(&self) -> u64 {
        self.next_recv_seq
    }

    fn err(&self, what: impl Into<String>) -> ClientError {
        ClientError::new(&self.stack, what.into())
    }

    fn prepare(&mut self, spec: MessageSpec) {
        if self.prepared.as_ref().is_some_and(|p| p.spec == spec) {
            return;
        }
        let template = Template::new(spec.size_bytes);
        let body = template.message(0);
        let (frame, payload_offset) = match self.protocol {
            Protocol::WebSocket => {
                let opcode = match spec.kind {
                    PayloadKind::Binary => wire::OP_BINARY,
                    PayloadKind::Text => wire::OP_TEXT,
                };
                let frame = wire::client_frame(true, opcode, &body, self.mask);
                let offset = frame.len() - body.len();
                (frame, offset)
            }
            Protocol::RawTcp => {
                let mut frame = Vec::with_capacity(RAW_HEADER_BYTES + body.len());
                frame.extend_from_slice(&(body.len() as u64).to_le_bytes());
                frame.extend_from_slice(&body);
                (frame, RAW_HEADER_BYTES)
            }
        };
        // How many messages the windowed loops write at once: the servers
        // pay about a system call per read of echoes, so the client should
        // pay no more per write of messages.
        let copies = (BATCH_MAX_BYTES / frame.len()).clamp(1, spec.window.max(1));
        let masked = self.protocol == Protocol::WebSocket;
        self.prepared = Some(Prepared {
            spec,
            template,
            frames: Frames::new(frame, payload_offset, copies, masked.then_some(self.mask)),
            sent_at: (0..spec.window.max(1))
                .map(|_| Cell::new(Instant::now()))
                .collect(),
        });
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
            return Err(self
                .err("compression was negotiated; this client only sends uncompressed messages"));
        }
        self.prepare(spec);
        let before = self.next_recv_seq;
        let frame_bytes = self.prepared.as_ref().map_or(0, |p| p.frames.frame_len);
        self.recv
            .grow_to((spec.window * frame_bytes).min(RECV_BUFFER_BYTES));
        self.watch.progress(before);
        self.watch.set_running(true);
        let sequential = spec.window <= 1 && frame_bytes <= SEQUENTIAL_MAX_FRAME_BYTES;
        let result = match waiting {
            Waiting::Runtime if sequential => self.run_sequential(budget, hist, false).await,
            Waiting::Runtime => self.run_windowed(budget, hist).await,
            Waiting::Blocking => self.run_blocking(budget, hist, sequential).await,
        };
        self.watch.set_running(false);
        if self.watch.stalled() {
            return Err(self.err(format!(
                "no echo for {:.1} s after {} verified round trips: the server stalled or died",
                self.stall_timeout.as_secs_f64(),
                self.next_recv_seq - before
            )));
        }
        result?;
        Ok(self.next_recv_seq - before)
    }

    /// A run with the socket in blocking mode for its duration, where the
    /// client sleeps in the kernel until an echo arrives instead of going
    /// through the runtime, which adds a `read` that finds nothing or a
    /// second `epoll_wait` per wake-up, and its own scheduling. With a
    /// server that does no more than copy bytes back (the raw-TCP floor),
    /// that overhead put the client's CPU per message above the server's.
    ///
    /// One small message in flight is written and then read back
    /// ([`Connection::run_sequential`]); anything else goes through
    /// [`Connection::run_windowed_blocking`]. The stall watchdog shuts the
    /// socket down, which ends a blocked read, write or `poll`, so nothing
    /// hangs.
    async fn run_blocking(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
        sequential: bool,
    ) -> Result<(), ClientError> {
        let socket = socket2::SockRef::from(&self.stream);
        socket
            .set_nonblocking(false)
            .map_err(|e| self.err(format!("making the socket blocking: {e}")))?;
        let result = if sequential {
            self.run_sequential(budget, hist, true).await
        } else {
            self.run_windowed_blocking(budget, hist).await
        };
        // Back to what the runtime expects, whatever the run's outcome.
        let restored = socket2::SockRef::from(&self.stream).set_nonblocking(true);
        result?;
        restored.map_err(|e| self.err(format!("making the socket non-blocking again: {e}")))
    }

    /// One message in flight: write, read the echo, verify, repeat. With
    /// `blocking`, the socket is in blocking mode and is read and written
    /// through [`BlockingSocket`], which never returns to the runtime.
    async fn run_sequential(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
        blocking: bool,
    ) -> Result<(), ClientError> {
        let stack = self.stack.clone();
        let mut blocking_socket;
        let io: &mut (dyn ReadWrite + '_) = if blocking {
            blocking_socket = BlockingSocket(socket2::SockRef::from(&self.stream));
            &mut blocking_socket
        } else {
            &mut self.stream
        };
        let p = self.prepared.as_mut().expect("prepared");
        let mut done = 0u64;
        // One clock read per round trip, the receive buffer's after its
        // read: the time an echo arrives is also the send time of the next
        // message, which leaves only a few tens of nanoseconds (verifying
        // 32 bytes, patching 16, recording) inside the next round trip's
        // figure, and saves the client a clock read per message on a
        // machine where one costs about 70 ns.
        let mut sent_at = Instant::now();
        while budget.allows_at(done, sent_at) {
            let seq = self.next_send_seq;
            p.frames
                .number(seq, 1, &p.template, self.protocol, self.mask);
            // Sequential messages fit one piece.
            io.write_all(p.frames.piece(1, 0))
                .await
                .map_err(|e| ClientError::new(&stack, format!("sending message {seq}: {e}")))?;
            self.next_send_seq += 1;
            match recv_one(
                &mut self.recv,
                &mut *io,
                self.protocol,
                &p.template,
                p.spec.kind,
                seq,
                false,
            )
            .await
            .map_err(|e| ClientError::new(&stack, e))?
            {
                Incoming::Echo => {}
                Incoming::Frame { .. } => unreachable!("frames are only returned on request"),
            }
            // The echo's arrival is when the read that completed it
            // returned (a clock read the buffer already made).
            let received_at = self.recv.last_read_at.max(sent_at);
            hist.borrow_mut()
                .saturating_record((received_at - sent_at).as_nanos() as u64);
            sent_at = received_at;
            self.next_recv_seq += 1;
            done += 1;
            self.watch.progress(self.next_recv_seq);
        }
        Ok(())
    }

    async fn run_windowed(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
    ) -> Result<(), ClientError> {
        let stack = self.stack.clone();
        let protocol = self.protocol;
        let mask = self.mask;
        let watch = &self.watch;
        let p = self.prepared.as_mut().expect("prepared");
        let window = p.spec.window.max(1);
        let (kind, template) = (p.spec.kind, &p.template);
        let frames = &mut p.frames;
        let sent_at = &p.sent_at;
        let (mut rd, mut wr) = self.stream.split();
        let recv = &mut self.recv;

        let first_seq = self.next_send_seq;
        // The writer and the reader below run in this one task, so their
        // flow control is plain counters: `sent` and `received` messages;
        // the writer waits on `freed` while the window is full, the reader
        // on `something_sent` while it has read all that was sent. (A
        // semaphore would take a lock per message.)
        let sent = Cell::new(0u64);
        let received = Cell::new(0u64);
        let writer_waiting = Cell::new(false);
        let writer_done = Cell::new(false);
        let something_sent = Notify::new();
        let freed = Notify::new();
        let max_batch = frames.copies;

        let writer = async {
            let mut n = 0u64;
            while budget.allows(n) {
                while n - received.get() >= window as u64 {
                    writer_waiting.set(true);
                    freed.notified().await;
                    writer_waiting.set(false);
                }
                let now = Instant::now();
                let room = window as u64 - (n - received.get());
                let mut k = 1u64;
                while k < room.min(max_batch) && budget.allows_at(n + k, now) {
                    k += 1;
                }
                let first = first_seq + n;
                frames.number(first, k, template, protocol, mask);
                for seq in first..first + k {
                    sent_at[(seq % window as u64) as usize].set(now);
                }
                // Counted as sent before the write, so the reader starts
                // reading at once: a raw-TCP echo (or any large message)
                // comes back while it is still being written, and the write
                // would never finish if nobody read.
                n += k;
                sent.set(n);
                something_sent.notify_one();
                let mut written = 0;
                while written < frames.len(k) {
                    let n = wr.write(frames.piece(k, written)).await;
                    written += match n {
                        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                        r => r,
                    }
                    .map_err(|e| {
                        ClientError::new(&stack, format!("sending message {first}: {e}"))
                    })?;
                }
            }
            writer_done.set(true);
            something_sent.notify_one();
            Ok::<(), ClientError>(())
        };
        let reader = async {
            loop {
                let done = received.get();
                if done == sent.get() {
                    if writer_done.get() {
                        break;
                    }
                    something_sent.notified().await;
                    continue;
                }
                let seq = first_seq + done;
                recv_one(recv, &mut rd, protocol, template, kind, seq, false)
                    .await
                    .map_err(|e| ClientError::new(&stack, e))?;
                let started = sent_at[(seq % window as u64) as usize].get();
                let took = recv.last_read_at.saturating_duration_since(started);
                hist.borrow_mut().saturating_record(took.as_nanos() as u64);
                received.set(done + 1);
                watch.progress(first_seq + done + 1);
                if writer_waiting.get() {
                    freed.notify_one();
                }
            }
            Ok::<u64, ClientError>(received.get())
        };
        let result = tokio::try_join!(writer, reader);
        // Verified echoes count even when the run fails, so an error can say
        // how far it got.
        let verified = watch.progress_now() - first_seq;
        self.next_send_seq = first_seq + verified;
        self.next_recv_seq = first_seq + verified;
        result.map(|_| ())
    }

    /// The windowed loop for a lone connection, on a socket in blocking
    /// mode: one thread of plain system calls, no runtime. Messages are
    /// written without blocking (`MSG_DONTWAIT`) whenever the window has
    /// room, as many at once as [`BATCH_MAX_BYTES`] allows; echoes are
    /// then read in a blocking `read` while every queued byte has gone
    /// out, or after a `poll` for both directions while some have not
    /// (a WebSocket server echoes only whole messages, so waiting for an
    /// echo with part of its message unsent would wait forever). A cycle
    /// of small messages thus costs the client one `send` and one `read`,
    /// where the runtime added an `epoll_wait` or two.
    async fn run_windowed_blocking(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
    ) -> Result<(), ClientError> {
        let stack = self.stack.clone();
        let protocol = self.protocol;
        let first_seq = self.next_send_seq;
        let p = self.prepared.as_mut().expect("prepared");
        let window = p.spec.window.max(1);
        let (kind, template, sent_at) = (p.spec.kind, &p.template, &p.sent_at);
        let received = Cell::new(0u64);
        let mut io = WindowedSocket {
            socket: socket2::SockRef::from(&self.stream),
            sender: WindowSender {
                frames: &mut p.frames,
                template,
                protocol,
                mask: self.mask,
                sent_at,
                window: window as u64,
                budget,
                first_seq,
                queued: 0,
                received: &received,
                unit_k: 0,
                unit_len: 0,
                written: 0,
            },
        };
        let result = loop {
            let done = received.get();
            if done == io.sender.queued {
                io.sender.queue();
                if io.sender.queued == done {
                    break Ok(());
                }
            }
            let seq = first_seq + done;
            if let Err(e) = recv_one(
                &mut self.recv,
                &mut io,
                protocol,
                template,
                kind,
                seq,
                false,
            )
            .await
            {
                break Err(ClientError::new(&stack, e));
            }
            let started = sent_at[(seq % window as u64) as usize].get();
            let took = self.recv.last_read_at.saturating_duration_since(started);
            hist.borrow_mut().saturating_record(took.as_nanos() as u64);
            received.set(done + 1);
            self.watch.progress(seq + 1);
        };
        self.next_send_seq = first_seq + received.get();
        self.next_recv_seq = first_seq + received.get();
        result
    }

    /// Sends one frame as given (tests and the probe use this to send
    /// fragments, pings and malformed frames). WebSocket only.
    pub async fn send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let frame = wire::client_frame(fin, opcode, payload, self.mask);
        self.send_raw(&frame).await
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let r = tokio::time::timeout(self.stall_timeout, self.stream.write_all(bytes)).await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err(format!("sending: {e}"))),
            Err(_) => Err(self.err(format!(
                "send blocked for {:.1} s",
                self.stall_timeout.as_secs_f64()
            ))),
        }
    }

    /// Reads the next whole message or control frame (fragments joined),
    /// within [`STALL_TIMEOUT`]. Returns its opcode (text or binary for a
    /// reassembled message) and payload.
    pub async fn recv_frame(&mut self) -> Result<(u8, Vec<u8>), ClientError> {
        let template = Template::new(0);
        let read = recv_one(
            &mut self.recv,
            &mut self.stream,
            self.protocol,
            &template,
            PayloadKind::Binary,
            0,
            true,
        );
        match tokio::time::timeout(self.stall_timeout, read).await {
            Ok(Ok(Incoming::Frame { opcode, payload })) => Ok((opcode, payload)),
            Ok(Ok(Incoming::Echo)) => unreachable!("raw frames were requested"),
            Ok(Err(e)) => Err(self.err(e)),
            Err(_) => Err(self.err(format!(
                "nothing received for {:.1} s",
                self.stall_timeout.as_secs_f64()
            ))),
        }
    }

    /// Sends a ping and waits for the matching pong.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.send_frame(true, wire::OP_PING, payload).await?;
        let (opcode, got) = self.recv_frame().await?;
        if opcode != wire::OP_PONG {
            return Err(self.err(format!("expected a pong, got opcode {opcode:#x}")));
        }
        if got != payload {
            return Err(self.err("pong payload differs from the ping's"));
        }
        Ok(())
    }

    /// Completes the close handshake: sends close 1000, waits for the
    /// server's close frame and then for the end of the stream. For raw TCP,
    /// shuts down writing and waits for the end of the stream.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.exchange_close_frames().await?;
        let mut rest = [0u8; 64];
        match tokio::time::timeout(self.stall_timeout, self.stream.read(&mut rest)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(_)) => Err(self.err("data after the close handshake")),
            Err(_) => {
                Err(self.err("server did not close the TCP connection after the close handshake"))
            }
        }
    }

    /// The close handshake without waiting for the server to close TCP,
    /// for benches that close thousands of connections: some servers
    /// (actix-web) keep the socket open a second longer, which the tests
    /// and the probe report, but which is no reason to end a measurement.
    pub async fn close_handshake(mut self) -> Result<(), ClientError> {
        self.exchange_close_frames().await
    }

    async fn exchange_close_frames(&mut self) -> Result<(), ClientError> {
        if self.protocol == Protocol::WebSocket {
            self.send_frame(true, wire::OP_CLOSE, &1000u16.to_be_bytes())
                .await?;
            loop {
                let (opcode, payload) = self.recv_frame().await?;
                if opcode == wire::OP_CLOSE {
                    if payload.len() >= 2 {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if code != 1000 {
                            return Err(self.err(format!("server answered close with code {code}")));
                        }
                    }
                    break;
                }
            }
        } else {
            let _ = self.stream.shutdown().await;
        }
        Ok(())
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

/// How a connection that runs alone on its thread waits for an echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// Through the runtime: other connections and tasks on the thread run
    /// meanwhile.
    Runtime,
    /// In a blocking system call, for one connection with one message in
    /// flight and nothing else to run on the thread (the server runs
    /// elsewhere); see [`Connection::run_sequential_blocking`].
    Blocking,
}

/// A socket and a [`BlockingSocket`] behind one reference.
trait ReadWrite: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> ReadWrite for T {}

/// A socket in blocking mode behind tokio's I/O traits, so that the same
/// verifying code reads from it: every call blocks in the kernel until it
/// is done and never returns `Pending`.
struct BlockingSocket<'a>(socket2::SockRef<'a>);

/// Retries a system call interrupted by a signal.
fn retry_interrupted<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl AsyncRead for BlockingSocket<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket: &socket2::Socket = &self.0;
        let unfilled = buf.initialize_unfilled();
        let n = retry_interrupted(|| (&*socket).read(unfilled))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BlockingSocket<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket: &socket2::Socket = &self.0;
        Poll::Ready(retry_interrupted(|| (&*socket).write(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The writing side of [`Connection::run_windowed_blocking`]: queues
/// messages while the window has room and writes them without blocking.
struct WindowSender<'a> {
    frames: &'a mut Frames,
    template: &'a Template,
    protocol: Protocol,
    mask: [u8; 4],
    /// Send time of each message in flight, by sequence number modulo the
    /// window.
    sent_at: &'a [Cell<Instant>],
    window: u64,
    budget: Budget,
    first_seq: u64,
    /// Messages queued in this run; `received` of them are verified.
    queued: u64,
    received: &'a Cell<u64>,
    /// How many messages are being written (the first of `frames`), their
    /// bytes (0 when all are written), and how many of those have gone.
    unit_k: u64,
    unit_len: usize,
    written: usize,
}

impl WindowSender<'_> {
    fn writing(&self) -> bool {
        self.unit_len > 0
    }

    /// Queues as many messages as the window and the budget allow (at
    /// most one batch), once the previous ones have all been written.
    fn queue(&mut self) {
        if self.writing() {
            return;
        }
        let room = self.window - (self.queued - self.received.get());
        let now = Instant::now();
        let mut k = 0u64;
        while k < room.min(self.frames.copies) && self.budget.allows_at(self.queued + k, now) {
            k += 1;
        }
        if k == 0 {
            return;
        }
        let first = self.first_seq + self.queued;
        self.frames
            .number(first, k, self.template, self.protocol, self.mask);
        self.unit_k = k;
        self.unit_len = self.frames.len(k);
        for seq in first..first + k {
            self.sent_at[(seq % self.window) as usize].set(now);
        }
        self.queued += k;
        self.written = 0;
    }

    /// Writes as much of the messages queued as the socket takes now, at
    /// most [`SEND_MAX_BYTES`] per `send`.
    fn write_some(&mut self, socket: &socket2::Socket) -> io::Result<()> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        while self.writing() {
            let piece = self.frames.piece(self.unit_k, self.written);
            match retry_interrupted(|| socket.send_with_flags(piece, flags)) {
                Ok(n) => {
                    self.written += n;
                    if self.written == self.unit_len {
                        self.unit_len = 0;
                    }
                    if n < piece.len() {
                        // The send buffer is full.
                        return Ok(());
                    }
                }
                Err(e) => return self.send_failed(e),
            }
        }
        Ok(())
    }

    fn send_failed(&self, e: io::Error) -> io::Result<()> {
        match e.kind() {
            io::ErrorKind::WouldBlock => Ok(()),
            _ => {
                let seq = self.first_seq + self.queued - 1;
                Err(io::Error::new(
                    e.kind(),
                    format!("while sending up to message {seq}: {e}"),
                ))
            }
        }
    }
}

/// The socket of [`Connection::run_windowed_blocking`] as the reader sees
/// it: each time the reader needs more bytes, the window is refilled and
/// written first, so writing happens exactly when no echo is left to
/// verify, and several freed slots go out in one `send`.
struct WindowedSocket<'a> {
    socket: socket2::SockRef<'a>,
    sender: WindowSender<'a>,
}

impl AsyncRead for WindowedSocket<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let socket: &socket2::Socket = &this.socket;
        loop {
            this.sender.queue();
            if this.sender.writing() {
                this.sender.write_some(socket)?;
            }
            // With every queued byte sent, the echoes awaited will come: a
            // blocking read is safe. Otherwise wait for either direction.
            if !this.sender.writing() || readable_or_writable(socket)? {
                let unfilled = buf.initialize_unfilled();
                let n = retry_interrupted(|| (&*socket).read(unfilled))?;
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Waits until the socket can be read or written; true if it can be read
/// (or has failed or been shut down, which a read then reports).
fn readable_or_writable(socket: &socket2::Socket) -> io::Result<bool> {
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN | libc::POLLOUT,
        revents: 0,
    };
    retry_interrupted(|| {
        // No timeout: the stall watchdog's shutdown ends the wait.
        // SAFETY: one valid pollfd, for a socket that outlives the call.
        if unsafe { libc::poll(&mut fd, 1, -1) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    })?;
    Ok(fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
}

impl RecvBuf {
    fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Grows the buffer to at least `bytes`.
    fn grow_to(&mut self, bytes: usize) {
        if self.buf.len() < bytes {
            self.buf.resize(bytes, 0);
        }
    }

    /// Makes room for at least `total` unread bytes, moving them to the
    /// front first; grows only when one message is larger than any before.
    fn reserve(&mut self, total: usize) {
        if self.buf.len() - self.start >= total {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
    }

    /// Reads until at least `total` bytes are unread.
    async fn fill_to<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        rd: &mut R,
        total: usize,
    ) -> Result<(), String> {
        if self.end - self.start >= total {
            // The common case with a window: the echo came with the last read.
            return Ok(());
        }
        self.reserve(total);
        while self.end - self.start < total {
            if self.end == self.buf.len() {
                self.reserve(self.end - self.start + INITIAL_RECV_BUFFER_BYTES);
            }
            let n = rd
                .read(&mut self.buf[self.end..])
                .await
                .map_err(|e| format!("reading: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.last_read_at = Instant::now();
            self.end += n;
        }
        Ok(())
    }

    /// Reads the payload of message `seq`, which starts at the unread
    /// bytes, and checks it piece by piece as it arrives rather than once
    /// it is whole: the echo then passes through this buffer, which stays
    /// in cache, instead of filling a buffer of its own size.
    async fn verify_streamed<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        rd: &mut R,
        template: &Template,
        seq: u64,
    ) -> Result<(), String> {
        let size = template.size_bytes();
        let mut offset = 0;
        while offset < size {
            if self.start == self.end {
                self.fill_to(rd, 1).await?;
            }
            let n = (self.end - self.start).min(size - offset);
            template.verify_part(seq, offset, &self.buf[self.start..self.start + n])?;
            self.consume(n);
            offset += n;
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// Whether an echo of `payload_bytes` is checked as it arrives
/// ([`RecvBuf::verify_streamed`]) rather than once it is whole.
fn streamed(payload_bytes: usize) -> bool {
    payload_bytes > RECV_BUFFER_BYTES
}

/// Reads the echo of message `seq` and checks it. With `want_frames`, the
/// next message or control frame is returned unchecked instead.
async fn recv_one<R: AsyncRead + Unpin + ?Sized>(
    recv: &mut RecvBuf,
    rd: &mut R,
    protocol: Protocol,
    template: &Template,
    kind: PayloadKind,
    seq: u64,
    want_frames: bool,
) -> Result<Incoming, String> {
    if protocol == Protocol::RawTcp {
        let size = template.size_bytes();
        recv.fill_to(rd, RAW_HEADER_BYTES).await?;
        let len = u64::from_le_bytes(
            recv.unread()[..RAW_HEADER_BYTES]
                .try_into()
                .expect("8 bytes"),
        );
        if len != size as u64 && !want_frames {
            return Err(format!(
                "echo of message {seq} announces {len} bytes, sent {size}"
            ));
        }
        if !want_frames && streamed(size) {
            recv.consume(RAW_HEADER_BYTES);
            recv.verify_streamed(rd, template, seq).await?;
            return Ok(Incoming::Echo);
        }
        let total = RAW_HEADER_BYTES + len as usize;
        recv.fill_to(rd, total).await?;
        let payload = &recv.unread()[RAW_HEADER_BYTES..total];
        let result = if want_frames {
            Incoming::Frame {
                opcode: wire::OP_BINARY,
                payload: payload.to_vec(),
            }
        } else {
            template.verify(seq, payload)?;
            Incoming::Echo
        };
        recv.consume(total);
        return Ok(result);
    }

    let want_opcode = match kind {
        PayloadKind::Binary => wire::OP_BINARY,
        PayloadKind::Text => wire::OP_TEXT,
    };
    // Opcode of a fragmented message being reassembled.
    let mut fragmented: Option<u8> = None;
    loop {
        let header = loop {
            if let Some(h) = wire::parse_header(recv.unread()) {
                break h;
            }
            let have = recv.end - recv.start;
            recv.fill_to(rd, have + 1).await?;
        };
        check_server_header(&header)?;
        let whole_data_frame = header.fin && fragmented.is_none();
        if !want_frames && whole_data_frame && streamed(header.payload_len as usize) {
            if header.opcode != want_opcode {
                return Err(format!(
                    "echo of message {seq} came back as opcode {:#x}, sent {want_opcode:#x}",
                    header.opcode
                ));
            }
            if header.payload_len != template.size_bytes() as u64 {
                return Err(format!(
                    "echo of message {seq} has {} bytes, sent {}",
                    header.payload_len,
                    template.size_bytes()
                ));
            }
            recv.consume(header.header_len);
            recv.verify_streamed(rd, template, seq).await?;
            return Ok(Incoming::Echo);
        }
        let total = header.header_len + header.payload_len as usize;
        recv.fill_to(rd, total).await?;
        let payload_range = header.header_len..total;
        match header.opcode {
            wire::OP_TEXT | wire::OP_BINARY if fragmented.is_none() => {
                if header.fin {
                    let payload = &recv.unread()[payload_range];
                    let result = if want_frames {
                        Incoming::Frame {
                            opcode: header.opcode,
                            payload: payload.to_vec(),
                        }
                    } else {
                        if header.opcode != want_opcode {
                            return Err(format!("echo of message {seq} came back as opcode {:#x}, sent {want_opcode:#x}", header.opcode));
                        }
                        template.verify(seq, payload)?;
                        Incoming::Echo
                    };
                    recv.consume(total);
                    return Ok(result);
                }
                recv.message.clear();
                let (start, end) = (
                    recv.start + payload_range.start,
                    recv.start + payload_range.end,
                );
                recv.message.extend_from_slice(&recv.buf[start..end]);
                fragmented = Some(header.opcode);
                recv.consume(total);
            }
            wire::OP_CONTINUATION if fragmented.is_some() => {
                let (start, end) = (
                    recv.start + payload_range.start,
                    recv.start + payload_range.end,
                );
                recv.message.extend_from_slice(&recv.buf[start..end]);
                recv.consume(total);
                if header.fin {
                    let opcode = fragmented.expect("checked");
                    if want_frames {
                        return Ok(Incoming::Frame {
                            opcode,
                            payload: std::mem::take(&mut recv.message),
                        });
                    }
                    if opcode != want_opcode {
                        return Err(format!("echo of message {seq} came back as opcode {opcode:#x}, sent {want_opcode:#x}"));
                    }
                    template.verify(seq, &recv.message)?;
                    return Ok(Incoming::Echo);
                }
            }
            wire::OP_PING | wire::OP_PONG | wire::OP_CLOSE if want_frames => {
                let payload = recv.unread()[payload_range].to_vec();
                recv.consume(total);
                return Ok(Incoming::Frame {
                    opcode: header.opcode,
                    payload,
                });
            }
            // Our echo servers never ping on their own, except a Python
            // server left at its defaults (keepalive); a pong is owed but
            // the measured loop does not write here, and the server only
            // drops the connection after its own timeout (20 s), longer
            // than any measurement that meets this.
            wire::OP_PING | wire::OP_PONG => recv.consume(total),
            wire::OP_CLOSE => {
                let payload = &recv.unread()[payload_range];
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                return Err(format!(
                    "the server closed the connection (close code {code:?}) while message {seq} was awaited"
                ));
            }
            op => {
                return Err(format!(
                    "unexpected frame with opcode {op:#x} while message {seq} was awaited"
                ))
            }
        }
    }
}

fn check_server_header(h: &FrameHeader) -> Result<(), String> {
    if h.masked {
        return Err("the server sent a masked frame (RFC 6455 5.1 forbids it)".into());
    }
    if h.rsv != 0 {
        return Err("the server set reserved bits although no extension was agreed".into());
    }
    Ok(())
}

/// A tiny stand-in while the real histogram is lent to a `RefCell`.
pub(super) fn placeholder_histogram() -> Histogram<u64> {
    Histogram::new(1).expect("one significant figure is valid")
}
