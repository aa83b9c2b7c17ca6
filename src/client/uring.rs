//! The io_uring driver: many connections' sends and receives go to the
//! kernel in one system call, which also collects their completions. It
//! runs the open loop's schedule and, for many connections, the closed
//! loop (each connection topped up to its window as echoes come), on the
//! same lanes and checks as the epoll loop (`super::open_loop`); the
//! broadcast room (`super::broadcast`) queues its receives and sends in
//! the same [`Ring`].
//!
//! With epoll, every echo costs the client a `read` and every batch a
//! `send`, each its own system call, and a wait besides; through the
//! runtime, a task's wake-up too. Here each connection keeps one receive
//! queued in the ring at all times and at most one send; one
//! `io_uring_enter` submits what the loop queued and waits (with a
//! nanosecond timeout, until the next send is due) for completions, whose
//! number grows with the load.
//!
//! The ring is set up for a single issuer that runs the kernel's
//! completion work itself (`DEFER_TASKRUN`): a receive's copy runs in
//! this thread, inside its `io_uring_enter`, and so counts in its CPU
//! time; the kernel's io_uring workers (`iou-wrk-*` threads) are counted
//! as the client's too (`measure::threads`).
//!
//! A buffer the kernel may still write to cannot be given back: every
//! run ends by cancelling what is still queued and waiting for each
//! cancellation, on success and on error alike. Arming every connection
//! at the start and cancelling at the end cost the client with the
//! connections, not the messages; the run reports that CPU apart
//! (`OpenLoopRun::harness_cpu`), and the schedule starts once the arming
//! is done.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::error::ErrorKind;
use super::open_loop::{Lane, OpenLoopRun, Recording, Schedule};

/// Whether io_uring can run this driver here, or why not: looked at once
/// per process.
pub fn available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(|| Ring::new(8).map(drop)).clone()
}

/// Low bit of a request's user data: what it was; the rest is the
/// connection's index.
pub(super) const RECV: u64 = 0;
pub(super) const SEND: u64 = 1;
/// User data of the cancellations.
pub(super) const CANCEL: u64 = u64::MAX;

/// The connection and the kind (`RECV` or `SEND`) of a request's user
/// data.
pub(super) fn decode(user_data: u64) -> (usize, u64) {
    ((user_data >> 1) as usize, user_data & 1)
}

/// A receive into `buf` for connection `i`.
pub(super) fn recv_entry(fd: RawFd, buf: &mut [u8], i: usize) -> squeue::Entry {
    let len = buf.len().min(u32::MAX as usize) as u32;
    opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), len)
        .build()
        .user_data(((i as u64) << 1) | RECV)
}

/// A send of `buf` for connection `i`.
pub(super) fn send_entry(fd: RawFd, buf: &[u8], i: usize) -> squeue::Entry {
    let len = buf.len().min(u32::MAX as usize) as u32;
    opcode::Send::new(types::Fd(fd), buf.as_ptr(), len)
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(((i as u64) << 1) | SEND)
}

/// A cancellation of connection `i`'s request of kind `what`; it answers
/// with [`CANCEL`], and the request itself with `-ECANCELED` unless it
/// had completed.
pub(super) fn cancel_entry(i: usize, what: u64) -> squeue::Entry {
    opcode::AsyncCancel::new(((i as u64) << 1) | what)
        .build()
        .user_data(CANCEL)
}

/// How long the cancellations at the end of a run may take. They answer
/// at once (a queued receive or send on a socket is waiting on the
/// socket, not running), so this is never reached unless the kernel
/// misbehaves.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A ring and the count of its requests the kernel still holds.
pub(super) struct Ring {
    ring: IoUring,
    in_flight: usize,
    /// Completions reaped and not yet handled: (user data, result).
    pub(super) reaped: Vec<(u64, i32)>,
}

impl Ring {
    /// A ring for `conns` connections: room in the completion queue for
    /// a receive and a send of each (the kernel keeps any overflow, as
    /// `IORING_FEAT_NODROP` promises).
    pub(super) fn new(conns: usize) -> Result<Ring, String> {
        let sq = (conns as u32).clamp(8, 4096).next_power_of_two();
        let cq = (2 * conns as u32).max(2 * sq).next_power_of_two();
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq)
            .build(sq)
            .map_err(|e| format!("io_uring_setup failed ({e}); kernel 6.1 or later is needed, with io_uring allowed (sysctl kernel.io_uring_disabled = 0)"))?;
        if !ring.params().is_feature_ext_arg() {
            return Err("this kernel's io_uring cannot wait with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11)".into());
        }
        if !ring.params().is_feature_nodrop() {
            return Err(
                "this kernel's io_uring may drop completions (no IORING_FEAT_NODROP)".into(),
            );
        }
        Ok(Ring {
            ring,
            in_flight: 0,
            reaped: Vec::with_capacity(cq as usize),
        })
    }

    /// Queues a request, submitting what is queued first when the
    /// submission queue is full.
    ///
    /// # Safety
    /// Whatever memory `entry` points to stays valid, and untouched by
    /// anything but the kernel, until its completion is reaped.
    pub(super) unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            if self.ring.submission().push(entry).is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Submits what is queued and waits up to `timeout` for at least
    /// `want` completions, then takes every completion there is into
    /// `reaped`.
    pub(super) fn wait(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reaped.clear();
        for cqe in self.ring.completion() {
            self.reaped.push((cqe.user_data(), cqe.result()));
        }
        self.in_flight -= self.reaped.len();
        Ok(())
    }

    /// Cancels every request still queued (those of connections
    /// `0..conns`) and waits until the kernel has answered for each, so
    /// that no buffer is written after the run; hands each answer but the
    /// cancellations' to `answered`. Aborts the process if it cannot,
    /// rather than hand back memory the kernel may still write to.
    pub(super) fn drain(&mut self, conns: usize, mut answered: impl FnMut(u64, i32)) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        // One cancellation per request, found by its user data in the
        // kernel's hash: one for all of them (`IORING_ASYNC_CANCEL_ANY`)
        // searches the table from the start for each request it cancels,
        // which took minutes per run at 19,000 connections. A request
        // that is not queued answers `-ENOENT`, and costs nothing else.
        for i in 0..conns {
            for what in [RECV, SEND] {
                // SAFETY: a cancellation points to no memory.
                if unsafe { self.push(&cancel_entry(i, what)) }.is_err() {
                    break;
                }
            }
        }
        // Whatever those did not reach, one cancellation of any request
        // then catches.
        let mut cancel_due = false;
        while self.in_flight > 0 {
            if cancel_due {
                let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(CANCEL);
                // SAFETY: a cancellation points to no memory.
                cancel_due = unsafe { self.push(&cancel) }.is_err();
            }
            // Every answer at once: waiting for one at a time let the
            // kernel hand them back a few dozen per call, which took 40 ms
            // for a thousand connections.
            let left = deadline.saturating_duration_since(Instant::now());
            let step = left.min(Duration::from_millis(100));
            if left.is_zero() || self.wait(self.in_flight, step).is_err() {
                eprintln!(
                    "wsbench: io_uring did not give back {} requests within {:?}; stopping, since their buffers cannot be freed safely",
                    self.in_flight, DRAIN_TIMEOUT
                );
                std::process::abort();
            }
            for &(user_data, res) in &self.reaped {
                if user_data != CANCEL {
                    answered(user_data, res);
                }
            }
            // Requests still held after a wait in which no cancellation
            // answered: one of any request is sent (again; one with
            // nothing left to cancel only answers so).
            if self.in_flight > 0 && self.reaped.iter().all(|&(ud, _)| ud != CANCEL) {
                cancel_due = true;
            }
        }
    }
}

/// A connection's send queued in the ring (its receive always is).
#[derive(Clone, Copy, Default)]
struct InFlight {
    send: bool,
    /// The submission its send went in with (see `RingLoop::run`).
    send_round: u64,
}

/// A run on io_uring, open loop or closed: the same schedule, lanes and
/// checks as the epoll driver's, with the system calls batched. The
/// schedule is made once the ring is set up and every receive queued.
pub(super) fn run(
    schedule: impl FnOnce() -> Schedule,
    lanes: &mut [Lane<'_>],
) -> Result<OpenLoopRun, (usize, ErrorKind)> {
    let mut ring = Ring::new(lanes.len()).map_err(|e| {
        (
            0,
            ErrorKind::Socket {
                during: "setting up io_uring",
                source: io::Error::other(e),
            },
        )
    })?;
    let fds: Vec<RawFd> = lanes.iter().map(|l| l.socket.as_raw_fd()).collect();
    let armed = (0..lanes.len()).try_for_each(|i| arm_recv(&mut ring, &fds, lanes, i));
    if let Err(e) = armed {
        ring.drain(lanes.len(), |_, _| {});
        return Err(e);
    }
    let mut driver = RingLoop {
        schedule: schedule(),
        fds,
        flight: vec![InFlight::default(); lanes.len()],
        round: 0,
        sending: Vec::new(),
        submitted: Vec::new(),
    };
    let result = driver.run(&mut ring, lanes);
    ring.drain(lanes.len(), |user_data, res| {
        let (i, what) = decode(user_data);
        if what == RECV && res > 0 {
            // Bytes that came after the last echo (a ping, say) stay for
            // whatever reads the connection next.
            let _ = lanes[i].recv.filled(res as usize);
        }
    });
    result
}

/// The loop of one run: its schedule and what each connection has queued.
struct RingLoop {
    schedule: Schedule,
    fds: Vec<RawFd>,
    flight: Vec<InFlight>,
    /// How many submissions the loop has made.
    round: u64,
    /// Connections whose send goes in with the next submission, and
    /// those whose send went in with the last.
    sending: Vec<usize>,
    submitted: Vec<usize>,
}

impl RingLoop {
    fn run(
        &mut self,
        ring: &mut Ring,
        lanes: &mut [Lane<'_>],
    ) -> Result<OpenLoopRun, (usize, ErrorKind)> {
        let mut rec = self.schedule.new_recording();
        let mut due: Vec<usize> = Vec::new();
        let now = Instant::now();
        for i in 0..lanes.len() {
            if self.schedule.refill(&mut lanes[i], now) {
                self.send_next(ring, lanes, i, &mut rec)?;
            }
        }
        loop {
            let now = Instant::now();
            self.schedule.queue_due(now, lanes, &mut due);
            // A connection with a send queued comes to its new messages
            // when that send completes: the writer's lateness is read as
            // it takes each message into a batch (`Lane::next_unit`).
            for &i in &due {
                lanes[i].due = false;
                self.send_next(ring, lanes, i, &mut rec)?;
            }
            due.clear();
            if self.schedule.finished() {
                break;
            }
            self.schedule.stalled(now, lanes)?;
            std::mem::swap(&mut self.sending, &mut self.submitted);
            ring.wait(1, self.schedule.timeout())
                .map_err(|e| (0, ErrorKind::read(e)))?;
            self.round += 1;
            for k in 0..ring.reaped.len() {
                let (user_data, res) = ring.reaped[k];
                let (i, what) = decode(user_data);
                if what == SEND {
                    self.sent(ring, lanes, i, res, &mut rec)?;
                } else {
                    self.received(ring, lanes, i, res, &mut rec)?;
                }
            }
            // A send to a socket with room completes as it is submitted;
            // one still queued after its submission waits for room in a
            // full socket, the server's doing (as a write that would block
            // is for the epoll driver): the writer has come to every
            // message behind it.
            for &i in &self.submitted {
                let f = self.flight[i];
                if f.send && f.send_round + 1 == self.round {
                    lanes[i].note_lateness(&mut rec);
                }
            }
            self.submitted.clear();
        }
        Ok(self.schedule.result(rec))
    }

    /// Queues the next piece of the lane's batch under way, or numbers a
    /// new batch, unless a send is already queued.
    fn send_next(
        &mut self,
        ring: &mut Ring,
        lanes: &mut [Lane<'_>],
        i: usize,
        rec: &mut Recording,
    ) -> Result<(), (usize, ErrorKind)> {
        let spec = self.schedule.spec;
        let lane = &mut lanes[i];
        if self.flight[i].send || (lane.unit_len == 0 && !lane.next_unit(&spec, rec)) {
            return Ok(());
        }
        let piece = lane.frames.piece(lane.unit_k, lane.written);
        let entry = send_entry(self.fds[i], piece, i);
        // SAFETY: the lane's frames are not renumbered while a unit is
        // under way (`next_unit` only runs once it is all sent), and the
        // run drains the ring before the lanes go.
        unsafe { ring.push(&entry) }.map_err(|source| {
            (
                i,
                ErrorKind::Send {
                    seq: lane.last_sent_seq(),
                    source,
                },
            )
        })?;
        self.flight[i].send = true;
        self.flight[i].send_round = self.round;
        self.sending.push(i);
        Ok(())
    }

    /// A send completed: `res` bytes went, or the error.
    fn sent(
        &mut self,
        ring: &mut Ring,
        lanes: &mut [Lane<'_>],
        i: usize,
        res: i32,
        rec: &mut Recording,
    ) -> Result<(), (usize, ErrorKind)> {
        self.flight[i].send = false;
        let lane = &mut lanes[i];
        match sent_bytes(res) {
            Ok(n) => lane.written += n,
            Err(source) => {
                let seq = lane.last_sent_seq();
                return Err((i, ErrorKind::Send { seq, source }));
            }
        }
        if lane.written >= lane.unit_len {
            lane.unit_len = 0;
        }
        self.send_next(ring, lanes, i, rec)
    }

    /// A receive completed: take the bytes in, verify every whole echo,
    /// queue the next receive.
    fn received(
        &mut self,
        ring: &mut Ring,
        lanes: &mut [Lane<'_>],
        i: usize,
        res: i32,
        rec: &mut Recording,
    ) -> Result<(), (usize, ErrorKind)> {
        let lane = &mut lanes[i];
        match res {
            n if n >= 0 => lane.recv.filled(n as usize).map_err(|e| (i, e))?,
            n if n == -libc::EINTR || n == -libc::EAGAIN => {}
            n => return Err((i, ErrorKind::read(io::Error::from_raw_os_error(-n)))),
        }
        let verified = lane.verify(rec).map_err(|e| (i, e))?;
        let at = lane.recv.last_read_at;
        self.schedule.verified(verified, at);
        // Room in the window: for messages held back (open loop), or for
        // the next ones (closed loop).
        if verified > 0 && (self.schedule.refill(lane, at) || lane.held_back(&self.schedule.spec)) {
            self.send_next(ring, lanes, i, rec)?;
        }
        arm_recv(ring, &self.fds, lanes, i)
    }
}

/// The bytes a send's completion says went (0 for one to retry), or its
/// error.
pub(super) fn sent_bytes(res: i32) -> io::Result<usize> {
    match res {
        n if n > 0 => Ok(n as usize),
        n if n == -libc::EINTR || n == -libc::EAGAIN => Ok(0),
        0 => Err(io::ErrorKind::WriteZero.into()),
        n => Err(io::Error::from_raw_os_error(-n)),
    }
}

/// Queues a receive into lane `i`'s buffer.
fn arm_recv(
    ring: &mut Ring,
    fds: &[RawFd],
    lanes: &mut [Lane<'_>],
    i: usize,
) -> Result<(), (usize, ErrorKind)> {
    let entry = recv_entry(fds[i], lanes[i].recv.read_space(), i);
    // SAFETY: the lane's receive buffer is not touched until this receive
    // completes (`received`), and every run drains the ring before the
    // lanes go.
    unsafe { ring.push(&entry) }.map_err(|e| (i, ErrorKind::read(e)))
}
