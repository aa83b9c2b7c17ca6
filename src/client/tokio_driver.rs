//! The driver through the tokio runtime, for many connections on one
//! thread: each connection's writer and reader are futures of one task,
//! with flow control through plain counters and [`Notify`].

use std::cell::{Cell, RefCell};
use std::io;
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::codec::{EchoCheck, FrameReader, RecvBuf, Step};
use super::conn::Connection;
use super::error::ErrorKind;
use super::Budget;

impl Connection {
    /// One message in flight: write, read the echo, verify, repeat.
    pub(super) async fn run_sequential(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
    ) -> Result<(), ErrorKind> {
        let p = self.prepared.as_mut().expect("prepared");
        let mut done = 0u64;
        // One clock read per round trip, as in the blocking driver: the
        // time an echo arrives is also the send time of the next message.
        let mut sent_at = Instant::now();
        while budget.allows_at(done, sent_at) {
            let seq = self.next_send_seq;
            p.frames
                .number(seq, 1, &p.template, self.protocol, self.mask);
            // Sequential messages fit one piece.
            self.stream
                .write_all(p.frames.piece(1, 0))
                .await
                .map_err(|source| ErrorKind::Send {
                    seq: Some(seq),
                    source,
                })?;
            self.next_send_seq += 1;
            let check = EchoCheck::new(&p.template, self.protocol, p.spec.kind, seq);
            recv_echo(&mut self.recv, &mut self.stream, check).await?;
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

    /// A window of messages in flight: a writer that sends while the window
    /// has room and a reader that checks echoes, side by side.
    pub(super) async fn run_windowed(
        &mut self,
        budget: Budget,
        hist: &RefCell<Histogram<u64>>,
    ) -> Result<(), ErrorKind> {
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
                    .map_err(|source| ErrorKind::Send {
                        seq: Some(first),
                        source,
                    })?;
                }
            }
            writer_done.set(true);
            something_sent.notify_one();
            Ok::<(), ErrorKind>(())
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
                let check = EchoCheck::new(template, protocol, kind, seq);
                recv_echo(recv, &mut rd, check).await?;
                let started = sent_at[(seq % window as u64) as usize].get();
                let took = recv.last_read_at.saturating_duration_since(started);
                hist.borrow_mut().saturating_record(took.as_nanos() as u64);
                received.set(done + 1);
                watch.progress(first_seq + done + 1);
                if writer_waiting.get() {
                    freed.notify_one();
                }
            }
            Ok::<u64, ErrorKind>(received.get())
        };
        let result = tokio::try_join!(writer, reader);
        // Verified echoes count even when the run fails, so an error can say
        // how far it got.
        let verified = watch.progress_now() - first_seq;
        self.next_send_seq = first_seq + verified;
        self.next_recv_seq = first_seq + verified;
        result.map(|_| ())
    }
}

/// Reads until at least `total` bytes are unread.
#[inline]
pub(super) async fn fill_to<R: AsyncRead + Unpin + ?Sized>(
    recv: &mut RecvBuf,
    rd: &mut R,
    total: usize,
) -> Result<(), ErrorKind> {
    if recv.unread_len() >= total {
        // The common case with a window: the echo came with the last read.
        return Ok(());
    }
    recv.reserve(total);
    while recv.unread_len() < total {
        let n = rd.read(recv.read_space()).await.map_err(ErrorKind::read)?;
        recv.filled(n)?;
    }
    Ok(())
}

/// Reads the echo `check` awaits from `rd`.
#[inline]
async fn recv_echo<R: AsyncRead + Unpin + ?Sized>(
    recv: &mut RecvBuf,
    rd: &mut R,
    mut check: EchoCheck<'_>,
) -> Result<(), ErrorKind> {
    loop {
        match check.step(recv)? {
            Step::Done => return Ok(()),
            Step::Need(total) => fill_to(recv, rd, total).await?,
        }
    }
}

/// Reads the next whole message or control frame from `rd`.
pub(super) async fn recv_frame<R: AsyncRead + Unpin + ?Sized>(
    recv: &mut RecvBuf,
    rd: &mut R,
    mut reader: FrameReader,
) -> Result<(u8, Vec<u8>), ErrorKind> {
    loop {
        match reader.step(recv)? {
            Step::Done => return Ok(reader.take()),
            Step::Need(total) => fill_to(recv, rd, total).await?,
        }
    }
}
