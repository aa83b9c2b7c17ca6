//! The driver for `wss://` and permessage-deflate: one connection, TLS
//! (rustls) and compression ([`super::deflate`]) layered over a socket the
//! calling thread drives itself, every echo verified after decryption and
//! inflation.
//!
//! The lean drivers write prepared frames straight to the socket; here
//! each message is framed (and deflated) as it is sent, and the socket is
//! non-blocking under `poll`, with rustls between the two. The `secure`
//! group measures all four of its cells (plain, TLS, deflate, both)
//! through this driver, so what differs between them is the layer, not the
//! client's code. Every wait has a deadline: no progress for the stall
//! timeout ends the run as a stalled server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;

use super::conn::{set_recv_socket_buffer, RECV_SOCKET_BUFFER_BYTES};
use super::deflate::{Codec, Params};
use super::error::{ClientError, ErrorKind};
use super::payload::{Bodies, Content};
use super::wire::{self, Upgrade};
use super::{Budget, Target, CONNECT_TIMEOUT, STALL_TIMEOUT};
use crate::settings::{Compression, Transport};
use crate::stacks::Protocol;

/// How results name this driver's waiting (`RunInfo::client_driver`): its
/// own `poll` on its one socket.
pub const DRIVER_NAME: &str = "poll";

/// What a connection speaks above TCP.
#[derive(Clone)]
pub struct Layers {
    /// The client's TLS configuration for `wss://`; `None` for plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Offer permessage-deflate (and use it if the server accepts).
    pub compression: Compression,
}

impl Layers {
    /// The layers of `transport` and `compression`, trusting the CA this
    /// process made and, if given, those in `extra_ca`.
    pub fn new(
        transport: Transport,
        compression: Compression,
        extra_ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Layers> {
        let tls = match transport {
            Transport::Plain => None,
            Transport::Tls => Some(crate::tls::client_config(extra_ca)?),
        };
        Ok(Layers { tls, compression })
    }

    pub fn transport(&self) -> Transport {
        match self.tls {
            Some(_) => Transport::Tls,
            None => Transport::Plain,
        }
    }
}

/// Bytes a connection reads from its socket at once.
const READ_CHUNK_BYTES: usize = 256 << 10;

/// What the client counted on a connection's echoes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// WebSocket frame bytes of the echoes, headers included, as they
    /// arrived (compressed where compressed; TLS records excluded).
    pub frame_bytes: u64,
    /// The echoes' message bytes, after inflation.
    pub message_bytes: u64,
    /// Echoes that arrived compressed (RSV1 set).
    pub compressed_messages: u64,
    pub messages: u64,
}

impl Counted {
    fn since(self, before: Counted) -> Counted {
        Counted {
            frame_bytes: self.frame_bytes - before.frame_bytes,
            message_bytes: self.message_bytes - before.message_bytes,
            compressed_messages: self.compressed_messages - before.compressed_messages,
            messages: self.messages - before.messages,
        }
    }

    /// Frame bytes per message byte: below 1 where compression paid.
    pub fn frame_bytes_per_message_byte(&self) -> f64 {
        self.frame_bytes as f64 / self.message_bytes.max(1) as f64
    }
}

/// The outcome of [`SecureConnection::run`].
#[derive(Debug, Clone)]
pub struct SecureRun {
    pub round_trips: u64,
    pub elapsed: Duration,
    pub counted: Counted,
}

/// One connection over TLS, deflate, both or neither.
pub struct SecureConnection {
    stack: String,
    protocol: Protocol,
    sock: TcpStream,
    tls: Option<rustls::ClientConnection>,
    codec: Option<Codec>,
    extension: Option<String>,
    mask: [u8; 4],
    /// Received bytes (decrypted) from `in_start` to `in_end`, not yet
    /// parsed; the buffer past `in_end` is room, zeroed once when it grew
    /// rather than on every read.
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// When the last read that brought bytes returned: an echo's arrival,
    /// so that its round trip leaves out the client's own inflating and
    /// checking.
    last_read_at: Instant,
    /// Plain TCP only: bytes to send from `out_start` on.
    outbuf: Vec<u8>,
    out_start: usize,
    next_send_seq: u64,
    next_recv_seq: u64,
    stall_timeout: Duration,
    counted: Counted,
    /// Reused buffers: the message being sent, its deflated payload, the
    /// echo being put together from its frames, and its inflation.
    message: Vec<u8>,
    deflated: Vec<u8>,
    assembling: Vec<u8>,
    inflated: Vec<u8>,
}

/// A message whose frames have all arrived.
struct Echo {
    opcode: u8,
    compressed: bool,
    /// Where its payload is: in `inbuf` (one frame) or in `assembling`.
    single: Option<(usize, usize)>,
}

impl SecureConnection {
    /// Connects to `target` within [`super::CONNECT_TIMEOUT`]: TCP, the TLS
    /// handshake if `layers` has TLS, then the WebSocket upgrade offering
    /// permessage-deflate if asked (raw TCP has no upgrade).
    pub fn open(target: &Target, layers: &Layers) -> Result<SecureConnection, ClientError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let err = |kind| ClientError::of(&target.stack, kind);
        let sock = connect(target.addr, deadline).map_err(err)?;
        let tls = match &layers.tls {
            None => None,
            Some(config) => {
                let name = server_name(&target.host).map_err(err)?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| err(ErrorKind::Tls(e.to_string())))?;
                Some(conn)
            }
        };
        let mut conn = SecureConnection {
            stack: target.stack.clone(),
            protocol: target.protocol,
            sock,
            tls,
            codec: None,
            extension: None,
            mask: wire::random_mask(),
            inbuf: Vec::new(),
            in_start: 0,
            in_end: 0,
            last_read_at: Instant::now(),
            outbuf: Vec::new(),
            out_start: 0,
            next_send_seq: 0,
            next_recv_seq: 0,
            stall_timeout: STALL_TIMEOUT,
            counted: Counted::default(),
            message: Vec::new(),
            deflated: Vec::new(),
            assembling: Vec::new(),
            inflated: Vec::new(),
        };
        if let Some(tls) = &mut conn.tls {
            // Whatever the application writes is buffered until the
            // handshake completes; the window decides how much that is.
            tls.set_buffer_limit(None);
        }
        conn.handshake(deadline)
            .map_err(|kind| conn.err(kind).context("opening"))?;
        if target.protocol == Protocol::WebSocket {
            let offer = layers.compression == Compression::Deflate;
            conn.upgrade(&target.host, &target.path, offer, deadline)
                .map_err(|kind| conn.err(kind).context("opening"))?;
        }
        Ok(conn)
    }

    fn err(&self, kind: ErrorKind) -> ClientError {
        ClientError::of(&self.stack, kind)
    }

    /// Changes how long the connection waits without progress before it
    /// calls the server stalled.
    pub fn set_stall_timeout(&mut self, timeout: Duration) {
        self.stall_timeout = timeout;
    }

    /// The server's `Sec-WebSocket-Extensions` answer, when it accepted
    /// permessage-deflate.
    pub fn extension(&self) -> Option<&str> {
        self.extension.as_deref()
    }

    /// The TLS version, cipher suite and key exchange agreed, e.g.
    /// "TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519"; `None` over plain TCP.
    pub fn tls_session(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let version = tls.protocol_version().map(|v| format!("{v:?}"))?;
        let suite = tls
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))?;
        let kx = tls
            .negotiated_key_exchange_group()
            .map(|g| format!(" {:?}", g.name()))
            .unwrap_or_default();
        Some(format!("{version} {suite}{kx}"))
    }

    /// What the client counted on this connection's echoes so far.
    pub fn counted(&self) -> Counted {
        self.counted
    }

    /// Completes the TLS handshake (nothing over plain TCP).
    fn handshake(&mut self, deadline: Instant) -> Result<(), ErrorKind> {
        while self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            let all_out = self.flush_some()?;
            if !self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                break;
            }
            if self.read_some()? == ReadOutcome::Nothing {
                self.wait(!all_out, deadline, WaitingFor::Connect)?;
            }
        }
        Ok(())
    }

    /// The WebSocket upgrade: the request, then the response, checked.
    fn upgrade(
        &mut self,
        host: &str,
        path: &str,
        offer_deflate: bool,
        deadline: Instant,
    ) -> Result<(), ErrorKind> {
        let upgrade = Upgrade::new(host, path, offer_deflate);
        self.queue(upgrade.request.as_bytes())?;
        loop {
            let all_out = self.flush_some()?;
            let accepted = upgrade
                .response(&self.inbuf[self.in_start..self.in_end])
                .map_err(ErrorKind::Handshake)?;
            if let Some(accepted) = accepted {
                self.in_start += accepted.header_bytes;
                if let Some(answer) = &accepted.extension {
                    let params = Params::parse(answer).map_err(ErrorKind::Handshake)?;
                    self.codec = Some(Codec::new(params));
                }
                self.extension = accepted.extension;
                return Ok(());
            }
            if self.read_some()? == ReadOutcome::Nothing {
                self.wait(!all_out, deadline, WaitingFor::Connect)?;
            }
        }
    }

    /// Sends and verifies round trips of `bodies`, `window` in flight,
    /// until `budget` is spent, recording each round trip's nanoseconds
    /// into `hist`.
    pub fn run(
        &mut self,
        bodies: &Bodies,
        window: usize,
        budget: Budget,
        hist: &mut Histogram<u64>,
    ) -> Result<SecureRun, ClientError> {
        let counted_before = self.counted;
        let started = Instant::now();
        let done = self
            .run_inner(bodies, window.max(1), budget, hist)
            .map_err(|kind| self.err(kind))?;
        Ok(SecureRun {
            round_trips: done,
            elapsed: started.elapsed(),
            counted: self.counted.since(counted_before),
        })
    }

    fn run_inner(
        &mut self,
        bodies: &Bodies,
        window: usize,
        budget: Budget,
        hist: &mut Histogram<u64>,
    ) -> Result<u64, ErrorKind> {
        let first = self.next_send_seq;
        let mut sent_at = vec![Instant::now(); window];
        let mut queued = 0u64;
        let mut received = 0u64;
        let mut last_progress = Instant::now();
        loop {
            let now = Instant::now();
            while queued - received < window as u64 && budget.allows_at(queued, now) {
                let seq = first + queued;
                self.send_message(bodies, seq)?;
                sent_at[(seq % window as u64) as usize] = now;
                queued += 1;
            }
            if received == queued {
                break;
            }
            let all_out = self.flush_some()?;
            let mut verified_any = false;
            while received < queued {
                let Some(echo) = self.next_echo(first + received)? else {
                    break;
                };
                let seq = first + received;
                self.verify_echo(bodies, seq, echo)?;
                let started = sent_at[(seq % window as u64) as usize];
                let at = self.last_read_at.max(started);
                hist.saturating_record((at - started).as_nanos() as u64);
                received += 1;
                verified_any = true;
            }
            if verified_any {
                last_progress = Instant::now();
                continue;
            }
            if self.read_some()? == ReadOutcome::Nothing {
                let deadline = last_progress + self.stall_timeout;
                self.wait(!all_out, deadline, WaitingFor::Echo { after: received })?;
            }
        }
        self.next_send_seq = first + received;
        self.next_recv_seq = first + received;
        Ok(received)
    }

    /// Frames message `seq` (deflated when agreed) and queues it.
    fn send_message(&mut self, bodies: &Bodies, seq: u64) -> Result<(), ErrorKind> {
        let mut message = std::mem::take(&mut self.message);
        bodies.message_into(seq, &mut message);
        let result = match self.protocol {
            Protocol::RawTcp => {
                let prefix = (message.len() as u64).to_le_bytes();
                self.queue(&prefix).and_then(|()| self.queue(&message))
            }
            Protocol::WebSocket => self.send_frame(bodies.content(), &message),
        };
        self.message = message;
        result
    }

    fn send_frame(&mut self, content: Content, message: &[u8]) -> Result<(), ErrorKind> {
        let opcode = match content.kind() {
            super::PayloadKind::Text => wire::OP_TEXT,
            super::PayloadKind::Binary => wire::OP_BINARY,
        };
        let mut frame = std::mem::take(&mut self.deflated);
        frame.clear();
        let mask = self.mask;
        match &mut self.codec {
            Some(codec) => {
                // Header after the payload is known: deflate into a
                // scratch buffer, then frame it.
                let mut payload = std::mem::take(&mut self.assembling);
                payload.clear();
                codec
                    .compress(message, &mut payload)
                    .map_err(ErrorKind::Deflate)?;
                wire::push_header(&mut frame, true, opcode, payload.len(), Some(mask));
                // RSV1: this message is compressed.
                frame[0] |= 0x40;
                let start = frame.len();
                frame.extend_from_slice(&payload);
                wire::apply_mask(&mut frame[start..], mask, 0);
                self.assembling = payload;
            }
            None => {
                wire::push_header(&mut frame, true, opcode, message.len(), Some(mask));
                let start = frame.len();
                frame.extend_from_slice(message);
                wire::apply_mask(&mut frame[start..], mask, 0);
            }
        }
        let result = self.queue(&frame);
        self.deflated = frame;
        result
    }

    /// The next whole echo in the receive buffer, if it is all there.
    fn next_echo(&mut self, awaited: u64) -> Result<Option<Echo>, ErrorKind> {
        if self.protocol == Protocol::RawTcp {
            let buf = &self.inbuf[self.in_start..self.in_end];
            let Some(prefix) = buf.get(..8) else {
                return Ok(None);
            };
            let len = u64::from_le_bytes(prefix.try_into().expect("8 bytes")) as usize;
            if buf.len() < 8 + len {
                return Ok(None);
            }
            let at = self.in_start + 8;
            self.in_start += 8 + len;
            self.counted.frame_bytes += 8 + len as u64;
            return Ok(Some(Echo {
                opcode: wire::OP_BINARY,
                compressed: false,
                single: Some((at, len)),
            }));
        }
        // First find where the message ends, without consuming anything
        // (its last frame may not be here yet); then take its frames.
        let mut at = self.in_start;
        let mut frames = 0;
        loop {
            let buf = &self.inbuf[at..self.in_end];
            let Some(h) = wire::parse_header(buf) else {
                return Ok(None);
            };
            let total = h.header_len + h.payload_len as usize;
            if buf.len() < total {
                return Ok(None);
            }
            if h.masked {
                return Err(ErrorKind::MaskedFrame);
            }
            let payload_at = at + h.header_len;
            match h.opcode {
                wire::OP_CLOSE => {
                    let code = (h.payload_len >= 2).then(|| {
                        u16::from_be_bytes([self.inbuf[payload_at], self.inbuf[payload_at + 1]])
                    });
                    return Err(ErrorKind::CloseFrame { code, awaited });
                }
                wire::OP_TEXT | wire::OP_BINARY if frames == 0 => {}
                wire::OP_CONTINUATION if frames > 0 => {}
                opcode => {
                    return Err(ErrorKind::UnexpectedFrame {
                        opcode,
                        awaited: Some(awaited),
                    })
                }
            }
            // RSV1 marks a compressed message, on its first frame only.
            let allowed = if frames == 0 && self.codec.is_some() {
                0x40
            } else {
                0
            };
            if h.rsv & !allowed != 0 {
                return Err(ErrorKind::ReservedBits);
            }
            at += total;
            frames += 1;
            if h.fin {
                break;
            }
        }
        let end = at;
        let first =
            wire::parse_header(&self.inbuf[self.in_start..self.in_end]).expect("parsed above");
        let (opcode, compressed) = (first.opcode, first.rsv & 0x40 != 0);
        self.counted.frame_bytes += (end - self.in_start) as u64;
        if frames == 1 {
            let payload_at = self.in_start + first.header_len;
            self.in_start = end;
            return Ok(Some(Echo {
                opcode,
                compressed,
                single: Some((payload_at, first.payload_len as usize)),
            }));
        }
        self.assembling.clear();
        while self.in_start < end {
            let h =
                wire::parse_header(&self.inbuf[self.in_start..self.in_end]).expect("parsed above");
            let payload_at = self.in_start + h.header_len;
            let payload_end = payload_at + h.payload_len as usize;
            self.assembling
                .extend_from_slice(&self.inbuf[payload_at..payload_end]);
            self.in_start = payload_end;
        }
        Ok(Some(Echo {
            opcode,
            compressed,
            single: None,
        }))
    }

    fn verify_echo(&mut self, bodies: &Bodies, seq: u64, echo: Echo) -> Result<(), ErrorKind> {
        let want_opcode = match bodies.content().kind() {
            super::PayloadKind::Text => wire::OP_TEXT,
            super::PayloadKind::Binary => wire::OP_BINARY,
        };
        if self.protocol == Protocol::WebSocket && echo.opcode != want_opcode {
            return Err(ErrorKind::WrongKind {
                seq,
                got_opcode: echo.opcode,
                sent_opcode: want_opcode,
            });
        }
        let payload: &[u8] = match echo.single {
            Some((at, len)) => &self.inbuf[at..at + len],
            None => &self.assembling,
        };
        let message: &[u8] = if echo.compressed {
            let codec = self.codec.as_mut().expect("checked when parsed");
            self.inflated.clear();
            // A little over the size sent: a longer echo is caught as a
            // wrong length, a much longer one here.
            let limit = bodies.size_bytes() + 64;
            codec
                .decompress(payload, &mut self.inflated, limit)
                .map_err(|e| ErrorKind::Deflate(format!("echo of message {seq}: {e}")))?;
            self.counted.compressed_messages += 1;
            &self.inflated
        } else {
            payload
        };
        bodies.verify(seq, message)?;
        self.counted.message_bytes += message.len() as u64;
        self.counted.messages += 1;
        Ok(())
    }

    /// Hands bytes to TLS, or to the plain send buffer.
    fn queue(&mut self, bytes: &[u8]) -> Result<(), ErrorKind> {
        match &mut self.tls {
            Some(tls) => tls
                .writer()
                .write_all(bytes)
                .map_err(|e| ErrorKind::Tls(format!("buffering a message: {e}"))),
            None => {
                if self.out_start == self.outbuf.len() {
                    self.outbuf.clear();
                    self.out_start = 0;
                }
                self.outbuf.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Writes what the socket takes now; true once everything queued is
    /// out.
    fn flush_some(&mut self) -> Result<bool, ErrorKind> {
        let send_err = |source| ErrorKind::Send { seq: None, source };
        match &mut self.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match retrying(|| tls.write_tls(&mut self.sock)) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(send_err(e)),
                    }
                }
                Ok(true)
            }
            None => {
                while self.out_start < self.outbuf.len() {
                    match retrying(|| self.sock.write(&self.outbuf[self.out_start..])) {
                        Ok(n) => self.out_start += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(send_err(e)),
                    }
                }
                Ok(true)
            }
        }
    }

    /// Reads what the socket has now into the receive buffer, decrypted.
    fn read_some(&mut self) -> Result<ReadOutcome, ErrorKind> {
        match &mut self.tls {
            None => {
                make_room(
                    &mut self.inbuf,
                    &mut self.in_start,
                    &mut self.in_end,
                    READ_CHUNK_BYTES,
                );
                match retrying(|| self.sock.read(&mut self.inbuf[self.in_end..])) {
                    Ok(0) => Err(ErrorKind::Closed),
                    Ok(n) => {
                        self.in_end += n;
                        self.last_read_at = Instant::now();
                        Ok(ReadOutcome::Some)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Nothing),
                    Err(e) => Err(ErrorKind::read(e)),
                }
            }
            Some(tls) => {
                let mut outcome = ReadOutcome::Nothing;
                loop {
                    match retrying(|| tls.read_tls(&mut self.sock)) {
                        Ok(0) => return Err(ErrorKind::Closed),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(ErrorKind::read(e)),
                    }
                    let state = tls
                        .process_new_packets()
                        .map_err(|e| ErrorKind::Tls(e.to_string()))?;
                    let plain = state.plaintext_bytes_to_read();
                    if plain > 0 {
                        make_room(&mut self.inbuf, &mut self.in_start, &mut self.in_end, plain);
                        let end = self.in_end + plain;
                        tls.reader()
                            .read_exact(&mut self.inbuf[self.in_end..end])
                            .map_err(|e| ErrorKind::Tls(format!("reading plaintext: {e}")))?;
                        self.in_end = end;
                        self.last_read_at = Instant::now();
                        outcome = ReadOutcome::Some;
                    }
                    if state.peer_has_closed() && plain == 0 {
                        return Err(ErrorKind::Closed);
                    }
                    // Handshake progress counts as progress too.
                    if tls.is_handshaking() || tls.wants_write() {
                        outcome = ReadOutcome::Some;
                        break;
                    }
                }
                Ok(outcome)
            }
        }
    }

    /// Waits until the socket is readable (or writable, when `writing`),
    /// or fails once `deadline` passes.
    fn wait(&self, writing: bool, deadline: Instant, waiting: WaitingFor) -> Result<(), ErrorKind> {
        let now = Instant::now();
        if now >= deadline {
            return Err(waiting.timed_out(self.stall_timeout));
        }
        let mut events = libc::POLLIN;
        if writing {
            events |= libc::POLLOUT;
        }
        let mut fd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events,
            revents: 0,
        };
        let timeout_ms = (deadline - now).as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for a socket that outlives the call.
        let n = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(ErrorKind::read(e));
        }
        if n == 0 {
            return Err(waiting.timed_out(self.stall_timeout));
        }
        Ok(())
    }

    /// The close handshake: a close frame (1000) out, the server's back,
    /// then TLS's close_notify; raw TCP just ends.
    pub fn close(mut self) -> Result<(), ClientError> {
        let result = self.close_inner();
        result.map_err(|kind| self.err(kind).context("closing"))
    }

    fn close_inner(&mut self) -> Result<(), ErrorKind> {
        let deadline = Instant::now() + self.stall_timeout;
        if self.protocol == Protocol::WebSocket {
            let frame = wire::client_frame(true, wire::OP_CLOSE, &1000u16.to_be_bytes(), self.mask);
            self.queue(&frame)?;
            loop {
                let all_out = self.flush_some()?;
                let buf = &self.inbuf[self.in_start..self.in_end];
                if let Some(h) = wire::parse_header(buf) {
                    let total = h.header_len + h.payload_len as usize;
                    if buf.len() >= total {
                        if h.opcode == wire::OP_CLOSE {
                            break;
                        }
                        return Err(ErrorKind::DataAfterClose);
                    }
                }
                match self.read_some() {
                    Ok(ReadOutcome::Some) => {}
                    Ok(ReadOutcome::Nothing) => self.wait(!all_out, deadline, WaitingFor::Close)?,
                    // A server may end TCP right after its close frame,
                    // which the read before may have left unparsed.
                    Err(ErrorKind::Closed) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = self.flush_some();
        }
        Ok(())
    }

    /// Drops the connection with a reset, as [`super::Connection::abort`]
    /// does, so that no TIME_WAIT holds a port.
    pub fn abort(self) {
        let _ = socket2::SockRef::from(&self.sock).set_linger(Some(Duration::ZERO));
    }
}

/// Makes room for `more` bytes after `*end` in `buf`: parsed bytes
/// before `*start` are dropped first (moving what is left to the front),
/// and the buffer grows only when that is not enough.
fn make_room(buf: &mut Vec<u8>, start: &mut usize, end: &mut usize, more: usize) {
    if *start == *end {
        *start = 0;
        *end = 0;
    }
    if buf.len() - *end >= more {
        return;
    }
    if *start > 0 {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
    }
    if buf.len() - *end < more {
        buf.resize(*end + more, 0);
    }
}

/// `op`'s result, trying again for as long as a signal interrupts it.
fn retrying<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadOutcome {
    Some,
    Nothing,
}

/// What a wait was for, so a timeout says what did not come.
#[derive(Debug, Clone, Copy)]
enum WaitingFor {
    Connect,
    Echo { after: u64 },
    Close,
}

impl WaitingFor {
    fn timed_out(self, stall: Duration) -> ErrorKind {
        match self {
            WaitingFor::Connect => ErrorKind::ConnectTimeout {
                after: CONNECT_TIMEOUT,
            },
            WaitingFor::Echo { after } => ErrorKind::Stalled {
                after,
                timeout: stall,
            },
            WaitingFor::Close => ErrorKind::NothingReceived { after: stall },
        }
    }
}

/// A non-blocking TCP connection with TCP_NODELAY and the lean drivers'
/// receive buffer (the client must not hold the server's echoes back),
/// made before `deadline`.
fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, ErrorKind> {
    let socket_err = |during| move |source| ErrorKind::Socket { during, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(socket_err("creating a socket"))?;
    set_recv_socket_buffer(&socket, RECV_SOCKET_BUFFER_BYTES)
        .map_err(socket_err("setting the receive buffer"))?;
    let timeout = deadline.saturating_duration_since(Instant::now());
    socket
        .connect_timeout(&addr.into(), timeout)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::TimedOut {
                ErrorKind::ConnectTimeout {
                    after: CONNECT_TIMEOUT,
                }
            } else {
                ErrorKind::Connect { addr, source }
            }
        })?;
    let sock = TcpStream::from(socket);
    sock.set_nodelay(true).map_err(socket_err("TCP_NODELAY"))?;
    sock.set_nonblocking(true)
        .map_err(socket_err("making the socket non-blocking"))?;
    Ok(sock)
}

/// The name the server's certificate must match: the host of the URL,
/// an IP address or a DNS name.
fn server_name(host: &str) -> Result<ServerName<'static>, ErrorKind> {
    // `host` is HOST:PORT, [V6]:PORT, or a bare host.
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => host,
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|e| ErrorKind::Tls(format!("{bare:?} is not a server name: {e}")))
}
