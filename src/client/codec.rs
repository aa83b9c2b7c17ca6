//! The client's framing and checking, without I/O: the prepared frames
//! that are sent, the receive buffer, and the decoders that take an echo
//! (or any frame) out of the bytes received. The drivers
//! ([`super::blocking`], [`super::tokio_driver`]) only move bytes between
//! the socket and these.

use std::cell::Cell;
use std::time::Instant;

use super::error::ErrorKind;
use super::payload::{self, Template};
use super::wire::{self, FrameHeader};
use super::{MessageSpec, PayloadKind};
use crate::stacks::Protocol;

/// Messages up to this size go through the simple write-then-read loop
/// when one is in flight: they fit the socket buffers, so the write can
/// never wait for the server to be read. Larger ones use the concurrent
/// loop, which reads while it writes.
pub(super) const SEQUENTIAL_MAX_FRAME_BYTES: usize = 64 << 10;

/// The most bytes of small frames the windowed loop writes at once.
const BATCH_MAX_BYTES: usize = 64 << 10;

/// The most bytes the windowed loops hand to one `send`: as much as the
/// raw-TCP echo writes at once, so the client's sends are no larger than a
/// server's, and little enough that a large message's pieces come from a
/// block that stays in cache (see [`Frames`]). Batches of up to 256 KiB
/// measured worse for the client, not better.
pub(super) const SEND_MAX_BYTES: usize = 64 << 10;

// The sequential loop writes each message as one piece.
const _: () = assert!(SEQUENTIAL_MAX_FRAME_BYTES <= SEND_MAX_BYTES);

/// Bytes of the raw-TCP length prefix.
const RAW_HEADER_BYTES: usize = 8;

/// Initial size of the receive buffer; it grows as below, or to the
/// largest whole message received, and stays there, so steady state does
/// not allocate.
pub(super) const INITIAL_RECV_BUFFER_BYTES: usize = 16 << 10;

/// The receive buffer grows to hold every message in flight, up to this
/// size, so that one `read` takes in every echo that has arrived, as the
/// servers' own reads do (the raw-TCP echo reads 64 KiB at a time): a
/// buffer of one message would cost the client a system call per message
/// where the server pays one per several. Echoes larger than this are
/// checked as they arrive and never held whole (see `streamed`).
pub(super) const RECV_BUFFER_BYTES: usize = 64 << 10;

/// The opcode a message of `kind` is sent with.
#[inline]
fn opcode_of(kind: PayloadKind) -> u8 {
    match kind {
        PayloadKind::Binary => wire::OP_BINARY,
        PayloadKind::Text => wire::OP_TEXT,
    }
}

/// The messages of one spec, prepared for sending.
pub(super) struct Prepared {
    pub(super) spec: MessageSpec,
    pub(super) template: Template,
    pub(super) frames: Frames,
    /// Send time of each message in flight, by sequence number modulo the
    /// window.
    pub(super) sent_at: Vec<Cell<Instant>>,
}

impl Prepared {
    pub(super) fn new(spec: MessageSpec, protocol: Protocol, mask: [u8; 4]) -> Prepared {
        let template = Template::new(spec.size_bytes);
        let body = template.message(0);
        let (frame, payload_offset) = match protocol {
            Protocol::WebSocket => {
                let frame = wire::client_frame(true, opcode_of(spec.kind), &body, mask);
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
        let masked = protocol == Protocol::WebSocket;
        Prepared {
            spec,
            template,
            frames: Frames::new(frame, payload_offset, copies, masked.then_some(mask)),
            sent_at: (0..spec.window.max(1))
                .map(|_| Cell::new(Instant::now()))
                .collect(),
        }
    }

    /// Bytes of one framed message.
    pub(super) fn frame_bytes(&self) -> usize {
        self.frames.frame_len
    }

    /// Whether one message in flight goes through the write-then-read loop.
    pub(super) fn sequential(&self) -> bool {
        self.spec.window <= 1 && self.frame_bytes() <= SEQUENTIAL_MAX_FRAME_BYTES
    }
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
pub(super) struct Frames {
    bytes: Vec<u8>,
    /// How many messages go out in one batch at most.
    pub(super) copies: u64,
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
    pub(super) fn len(&self, k: u64) -> usize {
        k as usize * self.frame_len
    }

    /// Numbers the first `k` copies as messages `first`, `first + 1`, ...
    pub(super) fn number(
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
    pub(super) fn piece(&self, k: u64, written: usize) -> &[u8] {
        let end = self.len(k).min(written + SEND_MAX_BYTES);
        if written < self.bytes.len() {
            return &self.bytes[written..end.min(self.bytes.len())];
        }
        let phase = (written - self.payload_offset) % payload::BODY_PERIOD_BYTES;
        &self.body[phase..phase + (end - written)]
    }
}

/// Buffered bytes read from the server: `buf[start..end]` is unread. The
/// drivers read into [`RecvBuf::read_space`] and report with
/// [`RecvBuf::filled`].
pub(super) struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Reassembles a fragmented message.
    message: Vec<u8>,
    /// When the last `read` returned: the arrival time of every echo it
    /// brought in. One clock read per system call rather than per echo.
    pub(super) last_read_at: Instant,
}

impl RecvBuf {
    /// A buffer that starts with `leftover` (bytes that came with the
    /// handshake response) unread.
    pub(super) fn new(leftover: &[u8]) -> RecvBuf {
        let mut buf = vec![0u8; INITIAL_RECV_BUFFER_BYTES.max(leftover.len())];
        buf[..leftover.len()].copy_from_slice(leftover);
        RecvBuf {
            buf,
            start: 0,
            end: leftover.len(),
            message: Vec::new(),
            last_read_at: Instant::now(),
        }
    }

    #[inline]
    pub(super) fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    #[inline]
    pub(super) fn unread_len(&self) -> usize {
        self.end - self.start
    }

    /// Grows the buffer to at least `bytes`.
    pub(super) fn grow_to(&mut self, bytes: usize) {
        if self.buf.len() < bytes {
            self.buf.resize(bytes, 0);
        }
    }

    /// Makes room for at least `total` unread bytes, moving them to the
    /// front first; grows only when one message is larger than any before.
    pub(super) fn reserve(&mut self, total: usize) {
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

    /// Where the next `read` goes, after [`RecvBuf::reserve`]: never empty.
    #[inline]
    pub(super) fn read_space(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            self.reserve(self.end - self.start + INITIAL_RECV_BUFFER_BYTES);
        }
        &mut self.buf[self.end..]
    }

    /// Takes in the `n` bytes a `read` into [`RecvBuf::read_space`]
    /// returned; 0 is the end of the stream.
    #[inline]
    pub(super) fn filled(&mut self, n: usize) -> Result<(), ErrorKind> {
        if n == 0 {
            return Err(ErrorKind::Closed);
        }
        self.last_read_at = Instant::now();
        self.end += n;
        Ok(())
    }

    /// Reads with `read` until at least `total` bytes are unread.
    #[inline]
    pub(super) fn fill_to(
        &mut self,
        total: usize,
        mut read: impl FnMut(&mut [u8]) -> Result<usize, ErrorKind>,
    ) -> Result<(), ErrorKind> {
        if self.unread_len() >= total {
            // The common case with a window: the echo came with the last read.
            return Ok(());
        }
        self.reserve(total);
        while self.unread_len() < total {
            let n = read(self.read_space())?;
            self.filled(n)?;
        }
        Ok(())
    }

    #[inline]
    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bytes `range` of the unread bytes, appended to the message being
    /// reassembled.
    fn take_fragment(&mut self, range: std::ops::Range<usize>) {
        let (start, end) = (self.start + range.start, self.start + range.end);
        self.message.extend_from_slice(&self.buf[start..end]);
    }
}

/// Whether an echo of `payload_bytes` is checked as it arrives rather
/// than once it is whole.
#[inline]
fn streamed(payload_bytes: usize) -> bool {
    payload_bytes > RECV_BUFFER_BYTES
}

/// What the driver does next for a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Read until at least this many bytes are unread, then step again.
    Need(usize),
    /// The decoder is done.
    Done,
}

/// Takes the echo of message `seq` out of the receive buffer and checks it
/// (length, kind, content), skipping pings and pongs. Step it until it
/// says [`Step::Done`], reading as each [`Step::Need`] says.
pub(super) struct EchoCheck<'a> {
    template: &'a Template,
    protocol: Protocol,
    want_opcode: u8,
    seq: u64,
    /// Opcode of a fragmented echo being reassembled.
    fragmented: Option<u8>,
    /// Payload bytes of a large echo checked so far, once its header is
    /// taken: it is checked piece by piece as it arrives rather than once
    /// it is whole, so it passes through the receive buffer, which stays
    /// in cache, instead of filling a buffer of its own size.
    streaming: Option<usize>,
}

impl<'a> EchoCheck<'a> {
    #[inline]
    pub(super) fn new(
        template: &'a Template,
        protocol: Protocol,
        kind: PayloadKind,
        seq: u64,
    ) -> EchoCheck<'a> {
        EchoCheck {
            template,
            protocol,
            want_opcode: opcode_of(kind),
            seq,
            fragmented: None,
            streaming: None,
        }
    }

    #[inline]
    pub(super) fn step(&mut self, recv: &mut RecvBuf) -> Result<Step, ErrorKind> {
        if let Some(offset) = self.streaming {
            return self.step_streaming(recv, offset);
        }
        match self.protocol {
            Protocol::RawTcp => self.step_raw(recv),
            Protocol::WebSocket => self.step_websocket(recv),
        }
    }

    /// Checks the part of a streamed payload that has arrived.
    fn step_streaming(&mut self, recv: &mut RecvBuf, offset: usize) -> Result<Step, ErrorKind> {
        let size = self.template.size_bytes();
        let n = recv.unread_len().min(size - offset);
        if n == 0 {
            return Ok(Step::Need(1));
        }
        self.template
            .verify_part(self.seq, offset, &recv.unread()[..n])?;
        recv.consume(n);
        if offset + n == size {
            return Ok(Step::Done);
        }
        self.streaming = Some(offset + n);
        Ok(Step::Need(1))
    }

    fn start_streaming(
        &mut self,
        recv: &mut RecvBuf,
        header_len: usize,
    ) -> Result<Step, ErrorKind> {
        recv.consume(header_len);
        self.streaming = Some(0);
        self.step_streaming(recv, 0)
    }

    fn wrong_length(&self, got_bytes: u64) -> ErrorKind {
        ErrorKind::Length {
            seq: self.seq,
            got_bytes,
            sent_bytes: self.template.size_bytes() as u64,
        }
    }

    fn wrong_kind(&self, got_opcode: u8) -> ErrorKind {
        ErrorKind::WrongKind {
            seq: self.seq,
            got_opcode,
            sent_opcode: self.want_opcode,
        }
    }

    #[inline]
    fn step_raw(&mut self, recv: &mut RecvBuf) -> Result<Step, ErrorKind> {
        let size = self.template.size_bytes();
        let Some(len) = raw_header(recv.unread()) else {
            return Ok(Step::Need(RAW_HEADER_BYTES));
        };
        if len != size as u64 {
            return Err(self.wrong_length(len));
        }
        if streamed(size) {
            return self.start_streaming(recv, RAW_HEADER_BYTES);
        }
        let total = RAW_HEADER_BYTES + size;
        if recv.unread_len() < total {
            return Ok(Step::Need(total));
        }
        self.template
            .verify(self.seq, &recv.unread()[RAW_HEADER_BYTES..total])?;
        recv.consume(total);
        Ok(Step::Done)
    }

    #[inline]
    fn step_websocket(&mut self, recv: &mut RecvBuf) -> Result<Step, ErrorKind> {
        loop {
            let Some(header) = wire::parse_header(recv.unread()) else {
                return Ok(Step::Need(recv.unread_len() + 1));
            };
            check_server_header(&header)?;
            let whole_data_frame = header.fin && self.fragmented.is_none();
            if whole_data_frame && streamed(header.payload_len as usize) {
                if header.opcode != self.want_opcode {
                    return Err(self.wrong_kind(header.opcode));
                }
                if header.payload_len != self.template.size_bytes() as u64 {
                    return Err(self.wrong_length(header.payload_len));
                }
                return self.start_streaming(recv, header.header_len);
            }
            let total = header.header_len + header.payload_len as usize;
            if recv.unread_len() < total {
                return Ok(Step::Need(total));
            }
            let payload_range = header.header_len..total;
            match header.opcode {
                wire::OP_TEXT | wire::OP_BINARY if self.fragmented.is_none() => {
                    if header.fin {
                        if header.opcode != self.want_opcode {
                            return Err(self.wrong_kind(header.opcode));
                        }
                        self.template
                            .verify(self.seq, &recv.unread()[payload_range])?;
                        recv.consume(total);
                        return Ok(Step::Done);
                    }
                    recv.message.clear();
                    recv.take_fragment(payload_range);
                    self.fragmented = Some(header.opcode);
                    recv.consume(total);
                }
                wire::OP_CONTINUATION if self.fragmented.is_some() => {
                    recv.take_fragment(payload_range);
                    recv.consume(total);
                    if header.fin {
                        let opcode = self.fragmented.expect("checked");
                        if opcode != self.want_opcode {
                            return Err(self.wrong_kind(opcode));
                        }
                        self.template.verify(self.seq, &recv.message)?;
                        return Ok(Step::Done);
                    }
                }
                // Our echo servers never ping on their own, except a Python
                // server left at its defaults (keepalive); a pong is owed but
                // the measured loop does not write here, and the server only
                // drops the connection after its own timeout (20 s), longer
                // than any measurement that meets this.
                wire::OP_PING | wire::OP_PONG => recv.consume(total),
                wire::OP_CLOSE => {
                    return Err(ErrorKind::CloseFrame {
                        code: close_code(&recv.unread()[payload_range]),
                        awaited: self.seq,
                    })
                }
                opcode => {
                    return Err(ErrorKind::UnexpectedFrame {
                        opcode,
                        awaited: Some(self.seq),
                    })
                }
            }
        }
    }
}

/// Takes the next whole message or control frame out of the receive
/// buffer, unchecked (fragments joined), for the raw-frame API. Step it
/// until [`Step::Done`], then [`FrameReader::take`] the frame.
pub(super) struct FrameReader {
    protocol: Protocol,
    /// Opcode of a fragmented message being reassembled.
    fragmented: Option<u8>,
    frame: Option<(u8, Vec<u8>)>,
}

impl FrameReader {
    pub(super) fn new(protocol: Protocol) -> FrameReader {
        FrameReader {
            protocol,
            fragmented: None,
            frame: None,
        }
    }

    /// The frame read, once a step said [`Step::Done`].
    pub(super) fn take(&mut self) -> (u8, Vec<u8>) {
        self.frame.take().expect("a frame was read")
    }

    pub(super) fn step(&mut self, recv: &mut RecvBuf) -> Result<Step, ErrorKind> {
        if self.protocol == Protocol::RawTcp {
            let Some(len) = raw_header(recv.unread()) else {
                return Ok(Step::Need(RAW_HEADER_BYTES));
            };
            let total = RAW_HEADER_BYTES + len as usize;
            if recv.unread_len() < total {
                return Ok(Step::Need(total));
            }
            let payload = recv.unread()[RAW_HEADER_BYTES..total].to_vec();
            recv.consume(total);
            self.frame = Some((wire::OP_BINARY, payload));
            return Ok(Step::Done);
        }
        loop {
            let Some(header) = wire::parse_header(recv.unread()) else {
                return Ok(Step::Need(recv.unread_len() + 1));
            };
            check_server_header(&header)?;
            let total = header.header_len + header.payload_len as usize;
            if recv.unread_len() < total {
                return Ok(Step::Need(total));
            }
            let payload_range = header.header_len..total;
            match header.opcode {
                wire::OP_TEXT | wire::OP_BINARY if self.fragmented.is_none() => {
                    if header.fin {
                        let payload = recv.unread()[payload_range].to_vec();
                        recv.consume(total);
                        self.frame = Some((header.opcode, payload));
                        return Ok(Step::Done);
                    }
                    recv.message.clear();
                    recv.take_fragment(payload_range);
                    self.fragmented = Some(header.opcode);
                    recv.consume(total);
                }
                wire::OP_CONTINUATION if self.fragmented.is_some() => {
                    recv.take_fragment(payload_range);
                    recv.consume(total);
                    if header.fin {
                        let opcode = self.fragmented.expect("checked");
                        self.frame = Some((opcode, std::mem::take(&mut recv.message)));
                        return Ok(Step::Done);
                    }
                }
                wire::OP_PING | wire::OP_PONG | wire::OP_CLOSE => {
                    let payload = recv.unread()[payload_range].to_vec();
                    recv.consume(total);
                    self.frame = Some((header.opcode, payload));
                    return Ok(Step::Done);
                }
                opcode => {
                    return Err(ErrorKind::UnexpectedFrame {
                        opcode,
                        awaited: None,
                    })
                }
            }
        }
    }
}

/// The payload length a raw-TCP echo announces, once its prefix is here.
#[inline]
fn raw_header(unread: &[u8]) -> Option<u64> {
    let prefix = unread.get(..RAW_HEADER_BYTES)?;
    Some(u64::from_le_bytes(prefix.try_into().expect("8 bytes")))
}

/// The status code of a close frame's payload, if it has one.
pub(super) fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

#[inline]
fn check_server_header(h: &FrameHeader) -> Result<(), ErrorKind> {
    if h.masked {
        return Err(ErrorKind::MaskedFrame);
    }
    if h.rsv != 0 {
        return Err(ErrorKind::ReservedBits);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    fn spec(size_bytes: usize, window: usize) -> MessageSpec {
        MessageSpec {
            size_bytes,
            kind: PayloadKind::Binary,
            window,
        }
    }

    /// A server's (unmasked) frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::push_header(&mut out, fin, opcode, payload.len(), None);
        out.extend_from_slice(payload);
        out
    }

    /// Steps `check` over `bytes`, handed over `chunk` bytes at a time as
    /// reads would bring them; returns the outcome and how many bytes were
    /// left unread.
    fn check_over(
        template: &Template,
        protocol: Protocol,
        seq: u64,
        bytes: &[u8],
        chunk: usize,
    ) -> (Result<(), ErrorKind>, usize) {
        let mut recv = RecvBuf::new(&[]);
        let mut check = EchoCheck::new(template, protocol, PayloadKind::Binary, seq);
        let mut fed = 0;
        let result = loop {
            match check.step(&mut recv) {
                Ok(Step::Done) => break Ok(()),
                Err(e) => break Err(e),
                Ok(Step::Need(total)) => {
                    let filled = recv.fill_to(total, |space| {
                        let n = space.len().min(chunk).min(bytes.len() - fed);
                        space[..n].copy_from_slice(&bytes[fed..fed + n]);
                        fed += n;
                        Ok(n)
                    });
                    if let Err(e) = filled {
                        break Err(e);
                    }
                }
            }
        };
        (result, bytes.len() - fed + recv.unread_len())
    }

    /// Unmasks a prepared client frame into the frame a server echoes.
    fn echo_of(prepared: &Prepared, seq: u64) -> Vec<u8> {
        let payload = prepared.template.message(seq);
        server_frame(true, wire::OP_BINARY, &payload)
    }

    #[test]
    fn prepared_frames_carry_the_numbered_masked_message() {
        for size in [0, 5, 16, 200, SEND_MAX_BYTES + 1000] {
            let mut p = Prepared::new(spec(size, 4), Protocol::WebSocket, MASK);
            let k = p.frames.copies.min(2);
            p.frames
                .number(7, k, &p.template, Protocol::WebSocket, MASK);
            let mut sent = Vec::new();
            while sent.len() < p.frames.len(k) {
                sent.extend_from_slice(p.frames.piece(k, sent.len()));
            }
            for i in 0..k {
                let frame = &sent[i as usize * p.frame_bytes()..][..p.frame_bytes()];
                let h = wire::parse_header(frame).unwrap();
                assert!(h.masked && h.fin, "size {size}");
                assert_eq!(h.payload_len, size as u64);
                let mut payload = frame[h.header_len..].to_vec();
                wire::apply_mask(&mut payload, MASK, 0);
                p.template.verify(7 + i, &payload).unwrap();
            }
        }
    }

    #[test]
    fn raw_tcp_frames_have_a_length_prefix() {
        let mut p = Prepared::new(spec(40, 1), Protocol::RawTcp, MASK);
        p.frames.number(3, 1, &p.template, Protocol::RawTcp, MASK);
        let sent = p.frames.piece(1, 0).to_vec();
        assert_eq!(raw_header(&sent), Some(40));
        p.template.verify(3, &sent[RAW_HEADER_BYTES..]).unwrap();
    }

    #[test]
    fn echoes_pass_whole_and_in_pieces() {
        for size in [0, 3, 16, 1000, RECV_BUFFER_BYTES + 5000] {
            let p = Prepared::new(spec(size, 1), Protocol::WebSocket, MASK);
            let mut bytes = server_frame(true, wire::OP_PING, b"hi");
            bytes.extend(echo_of(&p, 9));
            for chunk in [1, 7, 4096, usize::MAX] {
                let (r, left) = check_over(&p.template, Protocol::WebSocket, 9, &bytes, chunk);
                r.unwrap_or_else(|e| panic!("size {size} chunk {chunk}: {e}"));
                assert_eq!(left, 0);
            }
            let mut raw = (size as u64).to_le_bytes().to_vec();
            raw.extend(p.template.message(9));
            let (r, left) = check_over(&p.template, Protocol::RawTcp, 9, &raw, 100);
            r.unwrap();
            assert_eq!(left, 0);
        }
    }

    #[test]
    fn a_fragmented_echo_is_joined() {
        let p = Prepared::new(spec(100, 1), Protocol::WebSocket, MASK);
        let msg = p.template.message(2);
        let mut bytes = server_frame(false, wire::OP_BINARY, &msg[..30]);
        bytes.extend(server_frame(true, wire::OP_PONG, b""));
        bytes.extend(server_frame(false, wire::OP_CONTINUATION, &msg[30..60]));
        bytes.extend(server_frame(true, wire::OP_CONTINUATION, &msg[60..]));
        let (r, _) = check_over(&p.template, Protocol::WebSocket, 2, &bytes, 13);
        r.unwrap();
    }

    #[test]
    fn faults_are_told_apart() {
        let size = 100;
        let p = Prepared::new(spec(size, 1), Protocol::WebSocket, MASK);
        let check = |bytes: &[u8]| check_over(&p.template, Protocol::WebSocket, 5, bytes, 64).0;
        let msg = p.template.message(5);

        let mut corrupt = msg.clone();
        corrupt[50] ^= 1;
        assert!(matches!(
            check(&server_frame(true, wire::OP_BINARY, &corrupt)),
            Err(ErrorKind::Differs {
                seq: 5,
                at_byte: 50
            })
        ));
        assert!(matches!(
            check(&server_frame(true, wire::OP_BINARY, &msg[..size - 1])),
            Err(ErrorKind::Length {
                seq: 5,
                got_bytes: 99,
                sent_bytes: 100
            })
        ));
        assert!(matches!(
            check(&server_frame(true, wire::OP_BINARY, &p.template.message(6))),
            Err(ErrorKind::OutOfOrder { seq: 5, .. })
        ));
        assert!(matches!(
            check(&server_frame(true, wire::OP_TEXT, &msg)),
            Err(ErrorKind::WrongKind {
                seq: 5,
                got_opcode: wire::OP_TEXT,
                ..
            })
        ));
        assert!(matches!(
            check(&server_frame(true, wire::OP_CLOSE, &1001u16.to_be_bytes())),
            Err(ErrorKind::CloseFrame {
                code: Some(1001),
                awaited: 5
            })
        ));
        assert!(matches!(
            check(&server_frame(true, 0x3, b"")),
            Err(ErrorKind::UnexpectedFrame {
                opcode: 0x3,
                awaited: Some(5)
            })
        ));
        let mut masked = Vec::new();
        wire::push_header(&mut masked, true, wire::OP_BINARY, 0, Some(MASK));
        assert!(matches!(check(&masked), Err(ErrorKind::MaskedFrame)));
        let mut rsv = server_frame(true, wire::OP_BINARY, &msg);
        rsv[0] |= 0x40;
        assert!(matches!(check(&rsv), Err(ErrorKind::ReservedBits)));
        // The stream ends in the middle of the echo.
        let whole = server_frame(true, wire::OP_BINARY, &msg);
        assert!(matches!(check(&whole[..40]), Err(ErrorKind::Closed)));
        // A large echo is checked as it arrives: a wrong length is caught
        // from the header.
        let big = Template::new(RECV_BUFFER_BYTES + 1);
        let mut header = Vec::new();
        wire::push_header(
            &mut header,
            true,
            wire::OP_BINARY,
            RECV_BUFFER_BYTES + 2,
            None,
        );
        assert!(matches!(
            check_over(&big, Protocol::WebSocket, 0, &header, 64).0,
            Err(ErrorKind::Length { .. })
        ));
    }

    #[test]
    fn frames_are_read_as_sent() {
        let mut bytes = server_frame(true, wire::OP_PING, b"p");
        bytes.extend(server_frame(false, wire::OP_TEXT, b"ab"));
        bytes.extend(server_frame(true, wire::OP_CONTINUATION, b"cd"));
        let mut recv = RecvBuf::new(&bytes);
        let mut frames = Vec::new();
        for _ in 0..2 {
            let mut reader = FrameReader::new(Protocol::WebSocket);
            assert_eq!(reader.step(&mut recv).unwrap(), Step::Done);
            frames.push(reader.take());
        }
        assert_eq!(
            frames,
            [
                (wire::OP_PING, b"p".to_vec()),
                (wire::OP_TEXT, b"abcd".to_vec())
            ]
        );
        let mut reader = FrameReader::new(Protocol::WebSocket);
        assert_eq!(reader.step(&mut recv).unwrap(), Step::Need(1));
    }
}
