//! The driver for a connection alone on its thread: plain system calls on
//! a socket in blocking mode, no runtime.
//!
//! The client sleeps in the kernel until an echo arrives instead of going
//! through the runtime, which adds a `read` that finds nothing or a second
//! `epoll_wait` per wake-up, and its own scheduling. With a server that
//! does no more than copy bytes back (the raw-TCP floor), that overhead
//! put the client's CPU per message above the server's.
//!
//! One small message in flight is written and then read back
//! ([`Connection::run_sequential_blocking`]); anything else goes through
//! [`Connection::run_windowed_blocking`]. The stall watchdog shuts the
//! socket down, which ends a blocked read, write or `poll`, so nothing
//! hangs.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::codec::{EchoCheck, Frames, RecvBuf, Step};
use super::conn::Connection;
use super::error::ErrorKind;
use super::payload::Template;
use super::Budget;
use crate::stacks::Protocol;

impl Connection {
    /// A run with the socket in blocking mode for its duration; `sequential`
    /// as [`super::codec::Prepared::sequential`] says.
    pub(super) fn run_blocking(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
        sequential: bool,
    ) -> Result<(), ErrorKind> {
        let socket = socket2::SockRef::from(&self.stream);
        socket
            .set_nonblocking(false)
            .map_err(|source| ErrorKind::Socket {
                during: "making the socket blocking",
                source,
            })?;
        let result = if sequential {
            self.run_sequential_blocking(budget, hist)
        } else {
            self.run_windowed_blocking(budget, hist)
        };
        // Back to what the runtime expects, whatever the run's outcome.
        let restored = socket2::SockRef::from(&self.stream).set_nonblocking(true);
        result?;
        restored.map_err(|source| ErrorKind::Socket {
            during: "making the socket non-blocking again",
            source,
        })
    }

    /// One message in flight: write, read the echo, verify, repeat.
    fn run_sequential_blocking(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
    ) -> Result<(), ErrorKind> {
        let socket = socket2::SockRef::from(&self.stream);
        let socket: &socket2::Socket = &socket;
        let p = self.prepared.as_mut().expect("prepared");
        let mut done = 0u64;
        // One clock read per round trip, the receive buffer's after its
        // read: the time an echo arrives is also the send time of the next
        // message, which leaves only a few tens of nanoseconds (verifying
        // 32 bytes, patching 16, recording) inside the next round trip's
        // figure, and saves the client a clock read per message.
        let mut sent_at = Instant::now();
        while budget.allows_at(done, sent_at) {
            let seq = self.next_send_seq;
            p.frames
                .number(seq, 1, &p.template, self.protocol, self.mask);
            // Sequential messages fit one piece.
            let mut writer = socket;
            writer
                .write_all(p.frames.piece(1, 0))
                .map_err(|source| ErrorKind::Send {
                    seq: Some(seq),
                    source,
                })?;
            self.next_send_seq += 1;
            let check = EchoCheck::new(&p.template, self.protocol, p.spec.kind, seq);
            recv_echo(&mut self.recv, check, |buf| read_blocking(socket, buf))?;
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

    /// The windowed loop for a lone connection. Messages are written
    /// without blocking (`MSG_DONTWAIT`) whenever the window has room, as
    /// many at once as one batch of [`Frames`] holds; echoes are then read
    /// in a blocking `read` while every queued byte has gone out, or after
    /// a `poll` for both directions while some have not (a WebSocket
    /// server echoes only whole messages, so waiting for an echo with part
    /// of its message unsent would wait forever). A cycle of small
    /// messages thus costs the client one `send` and one `read`, where the
    /// runtime added an `epoll_wait` or two.
    fn run_windowed_blocking(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
    ) -> Result<(), ErrorKind> {
        let protocol = self.protocol;
        let first_seq = self.next_send_seq;
        let p = self.prepared.as_mut().expect("prepared");
        let window = p.spec.window.max(1);
        let (kind, template, sent_at) = (p.spec.kind, &p.template, &p.sent_at);
        let received = Cell::new(0u64);
        let socket = socket2::SockRef::from(&self.stream);
        let mut sender = WindowSender {
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
        };
        let result = loop {
            let done = received.get();
            if done == sender.queued {
                sender.queue();
                if sender.queued == done {
                    break Ok(());
                }
            }
            let seq = first_seq + done;
            let check = EchoCheck::new(template, protocol, kind, seq);
            if let Err(e) = recv_echo(&mut self.recv, check, |buf| {
                sender.send_then_read(&socket, buf)
            }) {
                break Err(e);
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
}

/// Reads the echo `check` awaits, with `read` whenever more bytes are
/// needed.
#[inline]
fn recv_echo(
    recv: &mut RecvBuf,
    mut check: EchoCheck<'_>,
    mut read: impl FnMut(&mut [u8]) -> Result<usize, ErrorKind>,
) -> Result<(), ErrorKind> {
    loop {
        match check.step(recv)? {
            Step::Done => return Ok(()),
            Step::Need(total) => recv.fill_to(total, &mut read)?,
        }
    }
}

/// One blocking `read`.
#[inline]
fn read_blocking(socket: &socket2::Socket, buf: &mut [u8]) -> Result<usize, ErrorKind> {
    retry_interrupted(|| (&*socket).read(buf)).map_err(ErrorKind::read)
}

/// Retries a system call interrupted by a signal.
fn retry_interrupted<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
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
    /// most one piece of [`Frames`] per `send`.
    fn write_some(&mut self, socket: &socket2::Socket) -> Result<(), ErrorKind> {
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(source) => {
                    return Err(ErrorKind::Send {
                        seq: Some(self.first_seq + self.queued - 1),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// The reader's `read`: each time the reader needs more bytes, the
    /// window is refilled and written first, so writing happens exactly
    /// when no echo is left to verify, and several freed slots go out in
    /// one `send`.
    #[inline]
    fn send_then_read(
        &mut self,
        socket: &socket2::Socket,
        buf: &mut [u8],
    ) -> Result<usize, ErrorKind> {
        loop {
            self.queue();
            if self.writing() {
                self.write_some(socket)?;
            }
            // With every queued byte sent, the echoes awaited will come: a
            // blocking read is safe. Otherwise wait for either direction.
            if !self.writing() || readable_or_writable(socket).map_err(ErrorKind::read)? {
                return read_blocking(socket, buf);
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
