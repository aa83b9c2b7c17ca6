//! The open-loop driver: messages go out on a schedule fixed in advance,
//! whatever the echoes do (wrk2's constant-rate schedule, for WebSocket),
//! and every echo is still verified.
//!
//! Each round trip is timed twice: from the time the schedule meant the
//! message to be sent (corrected: what a user whose messages arrive on
//! that schedule waits) and from the time the client wrote it
//! (uncorrected: what a closed-loop tool reports). The two agree while the
//! client never waits to send; they part when sends are held back (a
//! window per connection, a full socket buffer), and the difference is
//! coordinated omission. The client's own lateness, written minus
//! intended, is a third histogram: where it grows, the client and not the
//! server kept messages back, and the run says so ([`OpenLoopRun::behind`]).
//!
//! A round trip here is 20 µs, far below the runtime's millisecond timer,
//! so this driver does not go through the runtime: it runs a loop of its
//! own in the calling thread, with the thread's timer slack at its
//! minimum, on one of two [`Driver`]s: an epoll instance with a
//! nanosecond timeout (`epoll_pwait2`, Linux 5.11) on the connections'
//! non-blocking sockets, here, or io_uring (`super::uring`). The schedule,
//! the lanes' queues and the echo checks ([`Lane`]'s methods without
//! I/O) are the same for both. The sockets stay registered with the
//! runtime, which finds its readiness out with its next read.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand_distr::Distribution;
use rustix::event::epoll;

use super::codec::{EchoCheck, Frames, RecvBuf, Step};
use super::conn::Connection;
use super::error::{ClientError, ErrorKind};
use super::payload::Template;
use super::{
    new_histogram, uring, Budget, Driver, MessageSpec, PayloadKind, RunStats, STALL_TIMEOUT,
};
use crate::measure::threads::current_thread_cpu;
use crate::stacks::Protocol;

/// How the send times of a schedule are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Evenly, one every 1/rate.
    Constant,
    /// As a Poisson process of that rate: exponential gaps, from a fixed
    /// seed, so two runs send at the same times.
    Poisson,
}

impl Arrivals {
    pub fn as_str(self) -> &'static str {
        match self {
            Arrivals::Constant => "constant",
            Arrivals::Poisson => "poisson",
        }
    }
}

/// An open-loop run: `rate_per_s` messages per second over all the
/// connections, in turn, for `duration`. A warm-up is a run of its own
/// before it, so that the CPU read between the two is the measured run's.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    pub rate_per_s: f64,
    pub arrivals: Arrivals,
    pub size_bytes: usize,
    pub kind: PayloadKind,
    /// Sends held back while this many of a connection's messages are
    /// unanswered; `None` never holds one back (the open loop). `Some(1)`
    /// is a closed loop paced by the schedule, as most load tools run.
    pub window: Option<u64>,
    pub duration: Duration,
    /// How long the client waits for any echo, while some are awaited,
    /// before it calls the server stalled; it is also how long the last
    /// echoes may take once the schedule has ended.
    pub stall_timeout: Duration,
    pub seed: u64,
    /// CPU the client burns after each message it writes: zero in every
    /// measurement; tests set it to make a client that cannot keep up.
    pub busy_per_send: Duration,
    /// How the client waits on its connections; see [`Driver::choose`].
    pub driver: Driver,
}

impl OpenLoop {
    /// A constant rate of 32-byte binary messages with nothing held back,
    /// the defaults of the `load` group, on `driver`.
    pub fn constant(rate_per_s: f64, duration: Duration, driver: Driver) -> OpenLoop {
        OpenLoop {
            rate_per_s,
            arrivals: Arrivals::Constant,
            size_bytes: 32,
            kind: PayloadKind::Binary,
            window: None,
            duration,
            stall_timeout: STALL_TIMEOUT,
            seed: 1,
            busy_per_send: Duration::ZERO,
            driver,
        }
    }
}

/// The client is behind its schedule, and a step's latency is its own
/// rather than the server's, when more than 1% of its sends came later
/// than this or than a quarter of the step's p99 from the intended send,
/// whichever is longer. 100 µs is five round trips of a lone connection
/// here and a tenth of the tightest limit the `load` group reads a knee at
/// (1 ms); the quarter lets a server that is already seconds behind not
/// be blamed on a client a millisecond late. (This machine now and then
/// stops a thread for a few milliseconds; a short run that meets such a
/// stop is flagged too, and rightly: its tail is the machine's.)
pub const LATENESS_BOUND: Duration = Duration::from_micros(100);

/// What an open-loop run measured; histograms in nanoseconds.
#[derive(Debug, Clone)]
pub struct OpenLoopRun {
    pub spec: OpenLoop,
    pub conns: usize,
    /// The client thread's CPU time over the schedule, from its making to
    /// the last echo.
    pub schedule_cpu: Duration,
    /// The client thread's CPU time outside the schedule: setting the
    /// driver up (registering or arming every connection) and taking it
    /// down (cancelling what the kernel still holds). It grows with the
    /// connections, not the messages (io_uring, 1,000 connections: about
    /// 7 ms a run), so the workloads leave it out of the client's CPU per
    /// message, as they leave out connecting.
    pub harness_cpu: Duration,
    /// Messages sent, every one verified (a run that misses one fails).
    pub sent: u64,
    /// From the first message's intended send time to the last echo's
    /// arrival.
    pub elapsed: Duration,
    /// Round trips from the intended send time.
    pub corrected: Histogram<u64>,
    /// Round trips from the time the client wrote the message.
    pub uncorrected: Histogram<u64>,
    /// How late the client came to each message: the time its writer
    /// first tried to send it minus the intended send time. A message then
    /// held back (by the window or a full socket buffer) waits for the
    /// server, and that wait is not the client's lateness.
    pub lateness: Histogram<u64>,
}

impl OpenLoopRun {
    /// This run, with `total` the client thread's CPU over the whole call
    /// (setting up, the schedule, taking down).
    fn with_harness_cpu(self, total: Duration) -> OpenLoopRun {
        OpenLoopRun {
            harness_cpu: total.saturating_sub(self.schedule_cpu),
            ..self
        }
    }

    /// The rate the server answered at: echoes over
    /// [`OpenLoopRun::elapsed`]. Below the offered rate when the server
    /// falls behind (its queue grows over the run).
    pub fn achieved_per_s(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }

    /// Why the client's own figures cannot be the server's, if they cannot
    /// (see [`LATENESS_BOUND`]).
    pub fn behind(&self) -> Option<String> {
        let late_p99 = Duration::from_nanos(self.lateness.value_at_quantile(0.99));
        let p99 = Duration::from_nanos(self.corrected.value_at_quantile(0.99));
        let bound = LATENESS_BOUND.max(p99 / 4);
        (late_p99 > bound).then(|| {
            format!(
                "the client sent 1% of its messages {:.0} µs or more after their time (bound {:.0} µs, the larger of {} µs and a quarter of the p99): at {:.0} msgs/s the client, not the server, held them back",
                late_p99.as_secs_f64() * 1e6,
                bound.as_secs_f64() * 1e6,
                LATENESS_BOUND.as_micros(),
                self.spec.rate_per_s
            )
        })
    }
}

/// Most messages one connection writes at once when it catches up.
const BATCH_MAX: usize = 16;

/// The first message is meant to go out this long after the run starts,
/// so that setting up is not counted as lateness.
const START_DELAY: Duration = Duration::from_millis(1);

/// Runs `spec` on `conns` in the calling thread (see the module's notes):
/// call it outside the runtime. Fails, naming the stack, on any echo that
/// is wrong, and when an echo is missing once the schedule has ended.
pub fn run(conns: &mut [Connection], spec: OpenLoop) -> Result<OpenLoopRun, ClientError> {
    let stack = conns
        .first()
        .map(|c| c.stack().to_string())
        .unwrap_or_default();
    let fail = |kind| ClientError::of(&stack, kind);
    if conns.is_empty() || !(spec.rate_per_s.is_finite() && spec.rate_per_s > 0.0) {
        return Err(fail(ErrorKind::Other(format!(
            "an open-loop run needs connections and a positive rate (got {} connections at {} msgs/s)",
            conns.len(),
            spec.rate_per_s
        ))));
    }
    let _slack = TimerSlack::minimal();
    let message = MessageSpec {
        size_bytes: spec.size_bytes,
        kind: spec.kind,
        window: BATCH_MAX,
    };
    let n = conns.len();
    let schedule = || Schedule::new(spec, n);
    on_lanes(
        conns,
        message,
        |_| {},
        |lanes| match spec.driver {
            Driver::Uring => uring::run(schedule, lanes),
            Driver::Epoll => run_epoll(schedule, lanes),
        },
    )
}

/// Runs `drive` on a lane for each of `conns`, each readied by `prepare`
/// first, and counts the client thread's CPU outside the schedule as the
/// run's harness CPU; an error names the connection's stack.
fn on_lanes(
    conns: &mut [Connection],
    message: MessageSpec,
    prepare: impl Fn(&mut Connection),
    drive: impl FnOnce(&mut [Lane<'_>]) -> Result<OpenLoopRun, (usize, ErrorKind)>,
) -> Result<OpenLoopRun, ClientError> {
    let cpu_before = current_thread_cpu();
    let mut lanes = Vec::with_capacity(conns.len());
    for (i, c) in conns.iter_mut().enumerate() {
        if c.deflate_negotiated() {
            return Err(c.err(ErrorKind::Compressed));
        }
        prepare(c);
        lanes.push(Lane::new(c, message, i));
    }
    let result = drive(&mut lanes);
    drop(lanes);
    result
        .map(|run| run.with_harness_cpu(current_thread_cpu().saturating_sub(cpu_before)))
        .map_err(|(i, kind)| conns[i].err(kind))
}

/// A closed loop on many connections through io_uring, the counterpart
/// of the runtime's (`super::drive`): each connection keeps
/// `spec.window` messages in flight while `budget` allows, every echo
/// verified, each round trip timed from its write into `hist`.
pub(super) fn run_closed(
    conns: &mut [Connection],
    spec: MessageSpec,
    budget: Budget,
    hist: &mut Histogram<u64>,
) -> Result<RunStats, ClientError> {
    let Some(first) = conns.first() else {
        return Ok(RunStats {
            round_trips: 0,
            elapsed: Duration::ZERO,
            harness_cpu: Duration::ZERO,
        });
    };
    let open = OpenLoop {
        window: Some(spec.window.max(1) as u64),
        size_bytes: spec.size_bytes,
        kind: spec.kind,
        stall_timeout: first.stall_timeout,
        ..OpenLoop::constant(0.0, Duration::ZERO, Driver::Uring)
    };
    let n = conns.len();
    let run = on_lanes(
        conns,
        spec,
        |c| c.prepare_window(spec),
        |lanes| uring::run(|| Schedule::closed(open, n, budget), lanes),
    )?;
    hist.add(&run.uncorrected).expect("histograms of one shape");
    Ok(RunStats {
        round_trips: run.sent,
        elapsed: run.elapsed,
        harness_cpu: run.harness_cpu,
    })
}

/// The epoll driver: registers every lane, then makes the schedule and
/// runs it.
fn run_epoll(
    schedule: impl FnOnce() -> Schedule,
    lanes: &mut [Lane<'_>],
) -> Result<OpenLoopRun, (usize, ErrorKind)> {
    let failed = |i: usize, during: &'static str| {
        move |e: rustix::io::Errno| {
            let source = e.into();
            (i, ErrorKind::Socket { during, source })
        }
    };
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)
        .map_err(failed(0, "creating the open-loop epoll instance"))?;
    for lane in lanes.iter() {
        epoll::add(
            &ep,
            lane.socket.as_fd(),
            epoll::EventData::new_u64(lane.index as u64),
            epoll::EventFlags::IN,
        )
        .map_err(failed(
            lane.index,
            "registering with the open-loop epoll instance",
        ))?;
    }
    schedule().run(lanes, &ep)
}

/// When messages are due. What both drivers share of a run: queueing
/// what is due, the stall clock, how long to wait, and the result.
pub(super) struct Schedule {
    pub(super) spec: OpenLoop,
    conns: usize,
    start: Instant,
    end: Instant,
    /// Index and intended time of the next message.
    next: u64,
    next_at: Instant,
    gaps: Option<(rand::rngs::StdRng, rand_distr::Exp<f64>)>,
    /// Set for a closed loop: no schedule, but each connection topped up
    /// to its window as echoes come, while this allows.
    closed: Option<Budget>,
    /// Messages queued so far.
    queued: u64,
    /// The calling thread's CPU time when the schedule was made.
    cpu_at_start: Duration,
    /// Messages queued and not yet verified.
    awaited: u64,
    /// When an echo last arrived (or the first awaited one was queued).
    last_progress: Instant,
}

impl Schedule {
    /// The open loop: message j goes on connection j mod N at the j-th
    /// time of `spec`'s schedule.
    fn new(spec: OpenLoop, conns: usize) -> Schedule {
        Schedule::starting(spec, conns, Instant::now() + START_DELAY, None)
    }

    /// The closed loop: each connection keeps `spec.window` messages in
    /// flight, the next sent as an echo comes, while `budget` allows.
    pub(super) fn closed(spec: OpenLoop, conns: usize, budget: Budget) -> Schedule {
        Schedule::starting(spec, conns, Instant::now(), Some(budget))
    }

    fn starting(spec: OpenLoop, conns: usize, start: Instant, closed: Option<Budget>) -> Schedule {
        let gaps = match spec.arrivals {
            _ if closed.is_some() => None,
            Arrivals::Constant => None,
            Arrivals::Poisson => Some((
                rand::rngs::StdRng::seed_from_u64(spec.seed),
                rand_distr::Exp::new(spec.rate_per_s).expect("a positive rate"),
            )),
        };
        Schedule {
            spec,
            conns,
            start,
            end: start + spec.duration,
            next: 0,
            next_at: start,
            gaps,
            closed,
            queued: 0,
            cpu_at_start: current_thread_cpu(),
            awaited: 0,
            last_progress: start,
        }
    }

    fn advance(&mut self) {
        self.next += 1;
        self.next_at = match &mut self.gaps {
            None => self.start + Duration::from_secs_f64(self.next as f64 / self.spec.rate_per_s),
            Some((rng, exp)) => self.next_at + Duration::from_secs_f64(exp.sample(rng)),
        };
    }

    /// Whether no more messages will be queued.
    fn exhausted(&self) -> bool {
        match self.closed {
            None => self.next_at >= self.end,
            Some(Budget::Count(n)) => self.queued >= n * self.conns as u64,
            Some(Budget::Until(t)) => Instant::now() >= t,
        }
    }

    /// Tops lane `i` up to its window, as the budget allows, in a closed
    /// loop (an open loop queues by the clock instead); true when it
    /// queued a message.
    pub(super) fn refill(&mut self, lane: &mut Lane<'_>, now: Instant) -> bool {
        let (Some(budget), Some(window)) = (self.closed, self.spec.window) else {
            return false;
        };
        let before = lane.queue.len();
        while lane.queue.len() < window as usize && budget.allows_at(lane.scheduled, now) {
            self.queue(lane, now, now);
        }
        lane.queue.len() > before
    }

    /// Queues one message meant for `intended`.
    fn queue(&mut self, lane: &mut Lane<'_>, intended: Instant, now: Instant) {
        lane.queue.push_back(Pending {
            intended,
            written: intended,
        });
        lane.scheduled += 1;
        if self.awaited == 0 {
            // The stall clock runs only while an echo is owed.
            self.last_progress = now;
        }
        self.awaited += 1;
        self.queued += 1;
    }

    /// Whether the run is over: the schedule has ended and every echo is
    /// in.
    pub(super) fn finished(&self) -> bool {
        self.exhausted() && self.awaited == 0
    }

    pub(super) fn new_recording(&self) -> Recording {
        Recording {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            lateness: new_histogram(),
            sent: 0,
            last_echo: self.start,
        }
    }

    /// Queues every message due by `now` on its connection; the indices
    /// of connections that got one go into `due`, once each.
    pub(super) fn queue_due(&mut self, now: Instant, lanes: &mut [Lane<'_>], due: &mut Vec<usize>) {
        if self.closed.is_some() {
            return;
        }
        while !self.exhausted() && self.next_at <= now {
            let i = (self.next % self.conns as u64) as usize;
            let intended = self.next_at;
            self.queue(&mut lanes[i], intended, now);
            if !lanes[i].due {
                lanes[i].due = true;
                due.push(i);
            }
            self.advance();
        }
    }

    /// Counts `verified` echoes in.
    pub(super) fn verified(&mut self, verified: u64, at: Instant) {
        if verified > 0 {
            self.awaited -= verified;
            self.last_progress = at;
        }
    }

    /// The missing echoes, once no echo has come for the stall timeout
    /// while some are owed (in a closed loop, as the other closed-loop
    /// drivers say it: the server stalled).
    pub(super) fn stalled(
        &self,
        now: Instant,
        lanes: &[Lane<'_>],
    ) -> Result<(), (usize, ErrorKind)> {
        if self.awaited == 0 || now.duration_since(self.last_progress) <= self.spec.stall_timeout {
            return Ok(());
        }
        let (i, lane) = lanes
            .iter()
            .enumerate()
            .find(|(_, l)| !l.queue.is_empty())
            .expect("an echo is awaited");
        let kind = match self.closed {
            None => ErrorKind::MissingEchoes {
                missing: self.awaited,
                waited: self.spec.stall_timeout,
                first: *lane.next_recv_seq,
            },
            Some(_) => ErrorKind::Stalled {
                after: lane.scheduled - lane.queue.len() as u64,
                timeout: self.spec.stall_timeout,
            },
        };
        Err((i, kind))
    }

    /// How long the driver may wait for an echo before it must send again.
    pub(super) fn timeout(&self) -> Duration {
        if self.closed.is_some() || self.exhausted() {
            // Only echoes are awaited: look at the stall clock now and
            // then.
            Duration::from_millis(50)
        } else {
            // Asleep until the next send. Polling for the last 100 µs
            // before it instead measured worse for the server on this
            // machine (p99 at 60,000 msgs/s up from 0.5 to 3.7 ms), and
            // waking at most every 30 or 60 µs made the client later
            // without making it cheaper.
            self.next_at.saturating_duration_since(Instant::now())
        }
    }

    pub(super) fn result(&self, rec: Recording) -> OpenLoopRun {
        OpenLoopRun {
            spec: self.spec,
            conns: self.conns,
            schedule_cpu: current_thread_cpu().saturating_sub(self.cpu_at_start),
            harness_cpu: Duration::ZERO,
            sent: rec.sent,
            elapsed: rec.last_echo.saturating_duration_since(self.start),
            corrected: rec.corrected,
            uncorrected: rec.uncorrected,
            lateness: rec.lateness,
        }
    }

    /// The epoll driver's loop: queue what is due, write, wait for the
    /// next send time or an echo, read and verify. Errors carry the
    /// connection's index.
    fn run(
        mut self,
        lanes: &mut [Lane<'_>],
        ep: &impl AsFd,
    ) -> Result<OpenLoopRun, (usize, ErrorKind)> {
        let mut rec = self.new_recording();
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        let mut due: Vec<usize> = Vec::new();
        loop {
            let now = Instant::now();
            self.queue_due(now, lanes, &mut due);
            for i in due.drain(..) {
                lanes[i].due = false;
                lanes[i]
                    .write(&self.spec, &mut rec, ep)
                    .map_err(|e| (i, e))?;
            }
            if self.finished() {
                break;
            }
            self.stalled(now, lanes)?;
            events.clear();
            wait(ep, &mut events, self.timeout()).map_err(|e| (0, ErrorKind::read(e)))?;
            for event in &events {
                // Copies: the event struct is packed.
                let (data, flags) = (event.data, event.flags);
                let i = data.u64() as usize;
                let lane = &mut lanes[i];
                if flags.contains(epoll::EventFlags::OUT) {
                    lane.write(&self.spec, &mut rec, ep).map_err(|e| (i, e))?;
                }
                let verified = lane.read(&mut rec).map_err(|e| (i, e))?;
                self.verified(verified, lane.recv.last_read_at);
                if verified > 0 && lane.held_back(&self.spec) {
                    // Room in the window for messages held back.
                    lane.write(&self.spec, &mut rec, ep).map_err(|e| (i, e))?;
                }
            }
        }
        Ok(self.result(rec))
    }
}

/// One `epoll_pwait2`, retried when a signal interrupts it.
pub(super) fn wait(
    ep: &impl AsFd,
    events: &mut Vec<epoll::Event>,
    timeout: Duration,
) -> io::Result<()> {
    let timeout = rustix::event::Timespec::try_from(timeout).expect("a timeout below centuries");
    loop {
        match epoll::wait(ep, rustix::buffer::spare_capacity(events), Some(&timeout)) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The histograms of a run, how many echoes they hold, and when the last
/// came.
pub(super) struct Recording {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    lateness: Histogram<u64>,
    sent: u64,
    last_echo: Instant,
}

/// A message scheduled and not yet verified.
struct Pending {
    intended: Instant,
    /// When its write began (its intended time until then).
    written: Instant,
}

/// One connection during an open-loop run: its socket and codec state,
/// and the messages it owes. The methods without I/O are the drivers'
/// common part; `write` and `read` are the epoll driver's.
pub(super) struct Lane<'a> {
    index: usize,
    pub(super) socket: socket2::SockRef<'a>,
    protocol: Protocol,
    kind: PayloadKind,
    mask: [u8; 4],
    template: &'a Template,
    pub(super) frames: &'a mut Frames,
    pub(super) recv: &'a mut RecvBuf,
    next_send_seq: &'a mut u64,
    next_recv_seq: &'a mut u64,
    /// Scheduled and not verified, oldest first; the first `sent` of them
    /// are written (or being written), the rest wait their turn.
    queue: VecDeque<Pending>,
    /// Messages queued on this connection in this run.
    scheduled: u64,
    sent: usize,
    /// How many of `queue`'s front the writer has seen (their lateness is
    /// recorded).
    attempted: usize,
    /// The batch being written: its messages, bytes, and bytes written.
    pub(super) unit_k: u64,
    pub(super) unit_len: usize,
    pub(super) written: usize,
    /// Registered for writability (a write was cut short).
    wants_out: bool,
    /// In the loop's list of connections to write to.
    pub(super) due: bool,
    check: Option<EchoCheck<'a>>,
}

impl<'a> Lane<'a> {
    fn new(c: &'a mut Connection, spec: MessageSpec, index: usize) -> Lane<'a> {
        c.prepare(spec);
        let Connection {
            stack: _,
            protocol,
            stream,
            mask,
            recv,
            prepared,
            next_send_seq,
            next_recv_seq,
            ..
        } = c;
        let p = prepared.as_mut().expect("prepared");
        Lane {
            index,
            socket: socket2::SockRef::from(&*stream),
            protocol: *protocol,
            kind: p.spec.kind,
            mask: *mask,
            template: &p.template,
            frames: &mut p.frames,
            recv,
            next_send_seq,
            next_recv_seq,
            queue: VecDeque::new(),
            scheduled: 0,
            sent: 0,
            attempted: 0,
            unit_k: 0,
            unit_len: 0,
            written: 0,
            wants_out: false,
            due: false,
            check: None,
        }
    }

    /// Records how late the writer came to each message queued since it
    /// last looked: the client's lateness, not how long the window or the
    /// socket then held a message back.
    pub(super) fn note_lateness(&mut self, rec: &mut Recording) {
        self.note_lateness_until(rec, self.queue.len());
    }

    /// As [`Lane::note_lateness`], for the messages before `end` only.
    fn note_lateness_until(&mut self, rec: &mut Recording, end: usize) {
        if end <= self.attempted {
            return;
        }
        let now = Instant::now();
        for p in self.queue.range(self.attempted..end) {
            let late = now.saturating_duration_since(p.intended);
            rec.lateness.saturating_record(late.as_nanos() as u64);
        }
        self.attempted = end;
    }

    /// Whether messages wait that the window held back.
    pub(super) fn held_back(&self, spec: &OpenLoop) -> bool {
        spec.window.is_some() && self.queue.len() > self.sent
    }

    /// Numbers the next batch of waiting messages, as many as the window
    /// allows, as the unit to write; false when there is none. The writer
    /// has come to the messages it takes, and to all that the window
    /// holds back.
    pub(super) fn next_unit(&mut self, spec: &OpenLoop, rec: &mut Recording) -> bool {
        debug_assert_eq!(self.unit_len, 0);
        let waiting = self.queue.len() - self.sent;
        let room = spec
            .window
            .map_or(usize::MAX, |w| (w as usize).saturating_sub(self.sent));
        if room < waiting {
            self.note_lateness(rec);
        }
        let k = waiting.min(room).min(self.frames.copies as usize);
        if k == 0 {
            return false;
        }
        self.note_lateness_until(rec, self.sent + k);
        let first = *self.next_send_seq;
        self.frames
            .number(first, k as u64, self.template, self.protocol, self.mask);
        let now = Instant::now();
        for p in self.queue.range_mut(self.sent..self.sent + k) {
            p.written = now;
        }
        if !spec.busy_per_send.is_zero() {
            let until = Instant::now() + spec.busy_per_send * k as u32;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        self.sent += k;
        *self.next_send_seq += k as u64;
        self.unit_k = k as u64;
        self.unit_len = self.frames.len(k as u64);
        self.written = 0;
        true
    }

    /// The sequence number of the last message written, for errors.
    pub(super) fn last_sent_seq(&self) -> Option<u64> {
        self.next_send_seq.checked_sub(1)
    }

    /// Verifies every whole echo in the receive buffer and returns how
    /// many; makes room for the rest of one cut short. An echo is only
    /// ever taken for a message written: anything else the server sends
    /// is held until one is.
    pub(super) fn verify(&mut self, rec: &mut Recording) -> Result<u64, ErrorKind> {
        let mut verified = 0;
        while self.sent > 0 {
            let seq = *self.next_recv_seq;
            let (template, protocol, kind) = (self.template, self.protocol, self.kind);
            let check = self
                .check
                .get_or_insert_with(|| EchoCheck::new(template, protocol, kind, seq));
            match check.step(self.recv)? {
                Step::Done => {
                    self.check = None;
                    let p = self.queue.pop_front().expect("a message was sent");
                    self.sent -= 1;
                    self.attempted -= 1;
                    *self.next_recv_seq += 1;
                    verified += 1;
                    let at = self.recv.last_read_at;
                    let since = |t: Instant| at.saturating_duration_since(t).as_nanos() as u64;
                    rec.corrected.saturating_record(since(p.intended));
                    rec.uncorrected.saturating_record(since(p.written));
                    rec.sent += 1;
                    rec.last_echo = rec.last_echo.max(at);
                }
                Step::Need(total) => {
                    if self.recv.unread_len() >= total {
                        continue;
                    }
                    self.recv.reserve(total);
                    break;
                }
            }
        }
        Ok(verified)
    }

    /// Writes what is owed: the rest of the batch under way, then batches
    /// of the messages waiting, as far as the window and the socket allow.
    fn write(
        &mut self,
        spec: &OpenLoop,
        rec: &mut Recording,
        ep: &impl AsFd,
    ) -> Result<(), ErrorKind> {
        self.note_lateness(rec);
        loop {
            if self.unit_len > 0 && !self.write_some()? {
                return self.want_out(true, ep);
            }
            if !self.next_unit(spec, rec) {
                return self.want_out(false, ep);
            }
        }
    }

    /// Writes as much of the batch under way as the socket takes; true
    /// when all of it has gone.
    fn write_some(&mut self) -> Result<bool, ErrorKind> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        while self.written < self.unit_len {
            let piece = self.frames.piece(self.unit_k, self.written);
            match self.socket.send_with_flags(piece, flags) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(source) => {
                    return Err(ErrorKind::Send {
                        seq: self.last_sent_seq(),
                        source,
                    })
                }
            }
        }
        self.unit_len = 0;
        Ok(true)
    }

    /// Asks epoll for writability while a write is cut short, and stops
    /// asking once it is not.
    fn want_out(&mut self, out: bool, ep: &impl AsFd) -> Result<(), ErrorKind> {
        if out == self.wants_out {
            return Ok(());
        }
        self.wants_out = out;
        let flags = if out {
            epoll::EventFlags::IN | epoll::EventFlags::OUT
        } else {
            epoll::EventFlags::IN
        };
        epoll::modify(
            ep,
            self.socket.as_fd(),
            epoll::EventData::new_u64(self.index as u64),
            flags,
        )
        .map_err(|e| ErrorKind::Socket {
            during: "changing the open-loop epoll registration",
            source: e.into(),
        })
    }

    /// Reads what has arrived and verifies every whole echo in it; returns
    /// how many were verified.
    fn read(&mut self, rec: &mut Recording) -> Result<u64, ErrorKind> {
        let mut verified = 0;
        let mut drained = false;
        loop {
            verified += self.verify(rec)?;
            if drained {
                return Ok(verified);
            }
            let space = self.recv.read_space();
            let room = space.len();
            match (&*self.socket).read(space) {
                Ok(n) => {
                    self.recv.filled(n)?;
                    // A read that did not fill the space took all there
                    // was: epoll (level-triggered) says when more comes,
                    // which saves a read that would only say "none".
                    drained = n < room;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(verified),
                Err(e) => return Err(ErrorKind::read(e)),
            }
        }
    }
}

/// Sets the calling thread's timer slack to 1 ns for its lifetime: the
/// kernel otherwise lets a timed wait run up to 50 µs late, which would
/// be the client's lateness.
pub(super) struct TimerSlack {
    before: Option<libc::c_ulong>,
}

impl TimerSlack {
    pub(super) fn minimal() -> TimerSlack {
        // SAFETY: PR_GET_TIMERSLACK takes no pointer; PR_SET_TIMERSLACK a value.
        unsafe {
            let before = libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0);
            if before < 0 {
                return TimerSlack { before: None };
            }
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
            TimerSlack {
                before: Some(before as libc::c_ulong),
            }
        }
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        if let Some(before) = self.before {
            // SAFETY: as above.
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, before, 0, 0, 0);
            }
        }
    }
}
