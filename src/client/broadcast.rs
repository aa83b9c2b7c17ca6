//! The broadcast driver: a room of connections to a server's broadcast
//! service ([`crate::settings::Service::Broadcast`]), the first few of
//! which send on a fixed schedule (open loop, as [`super::open_loop`])
//! while every connection checks that it gets every broadcast exactly
//! once, in each sender's order, intact.
//!
//! A broadcast's sequence number says who sent it: sender `s`'s `n`-th
//! message carries `s << 32 | n` (see [`super::payload`]), so a receiver
//! knows which message of which sender is due next, and a missing,
//! repeated, reordered or corrupted delivery fails the run, naming the
//! stack. Each delivery is timed from the broadcast's intended send time
//! to the read that brought it in.
//!
//! Joining a room is not instant for the server: a connection whose
//! handshake is done may join its room a moment later. So a room is
//! synchronised ([`RoomClient::sync`]) before it is measured: probes go
//! out on a lane of its own, one at a time, until every connection has
//! had one, and from its first probe on each connection must get every
//! later message.
//!
//! Like the open-loop driver, this one waits in the calling thread, on
//! an io_uring ring or an epoll instance of its own ([`Broadcast::driver`]):
//! call it outside the runtime. A room synchronises on epoll; only the
//! measured runs need the ring.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustix::event::epoll;

use super::codec::RecvBuf;
use super::conn::Connection;
use super::error::{ClientError, ErrorKind};
use super::open_loop::{wait, TimerSlack};
use super::payload::{Template, SEQ_BYTES};
use super::uring::{self, Ring, CANCEL, RECV, SEND};
use super::{new_histogram, wire, Driver, PayloadKind, STALL_TIMEOUT};
use crate::measure::threads::current_thread_cpu;
use crate::stacks::Protocol;

/// The lane of the synchronising probes, above any sender's.
const PROBE_LANE: u32 = u32::MAX;

/// How often, at most, a probe goes out while a room synchronises.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// How long a room may take to synchronise: every connection must have
/// joined by then.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The first message is meant to go out this long after the run starts.
const START_DELAY: Duration = Duration::from_millis(1);

/// Bytes of the raw-TCP length prefix.
const RAW_HEADER_BYTES: usize = 8;

/// One connection stops reading for a while: the slow consumer.
#[derive(Debug, Clone, Copy)]
pub struct Pause {
    /// Which connection (never a sender).
    pub conn: usize,
    /// From how long after the run's start.
    pub after: Duration,
    pub length: Duration,
}

/// A broadcast run: `rate_per_s` broadcasts per second, from the room's
/// senders in turn, for `duration`.
#[derive(Debug, Clone, Copy)]
pub struct Broadcast {
    pub rate_per_s: f64,
    pub size_bytes: usize,
    pub kind: PayloadKind,
    pub duration: Duration,
    /// How long the room may go without any delivery, while some are
    /// owed, before the server is called stalled; also how long the last
    /// deliveries may take once the schedule has ended.
    pub stall_timeout: Duration,
    pub pause: Option<Pause>,
    /// How the client waits on the room's connections.
    pub driver: Driver,
}

impl Broadcast {
    /// `rate_per_s` broadcasts of 32-byte binary messages for `duration`,
    /// on `driver`.
    pub fn constant(rate_per_s: f64, duration: Duration, driver: Driver) -> Broadcast {
        Broadcast {
            rate_per_s,
            size_bytes: 32,
            kind: PayloadKind::Binary,
            duration,
            stall_timeout: STALL_TIMEOUT,
            pause: None,
            driver,
        }
    }
}

/// What became of the slow consumer.
#[derive(Debug, Clone, Default)]
pub struct SlowOutcome {
    /// Broadcasts it got, every one verified.
    pub delivered: u64,
    /// Broadcasts it never got while later ones came: the server dropped
    /// them for it.
    pub dropped: u64,
    /// Why its connection ended, if the server ended it.
    pub disconnected: Option<String>,
    /// From the end of its pause to the delivery of the last broadcast
    /// meant before it.
    pub caught_up_after: Option<Duration>,
}

/// What a broadcast run measured; histograms in nanoseconds.
#[derive(Debug, Clone)]
pub struct BroadcastRun {
    pub spec: Broadcast,
    /// Connections in the room, the senders included.
    pub room: usize,
    pub senders: usize,
    pub broadcasts: u64,
    /// Deliveries verified (in a room that dropped none, `broadcasts`
    /// times `room`).
    pub deliveries: u64,
    /// From the first broadcast's intended send time to the last delivery.
    pub elapsed: Duration,
    /// Every delivery's latency but the slow consumer's.
    pub latency: Histogram<u64>,
    /// The others' deliveries of broadcasts meant to go out during the
    /// pause (empty without one).
    pub latency_in_pause: Histogram<u64>,
    /// The others' deliveries of broadcasts meant to go out before it.
    pub latency_before_pause: Histogram<u64>,
    /// How late the client came to each send.
    pub lateness: Histogram<u64>,
    /// Deliveries the server dropped for the connections that kept
    /// reading (only a run with a pause tolerates any).
    pub dropped_others: u64,
    /// Connections besides the slow one that the server ended.
    pub disconnected_others: usize,
    pub slow: Option<SlowOutcome>,
    /// The client thread's CPU time setting the driver up for the run and
    /// taking it down (on io_uring, queueing every member's receive and
    /// cancelling it), which grows with the room and not the deliveries:
    /// the workloads leave it out of the client's CPU, as they do for the
    /// open loop (`super::OpenLoopRun::harness_cpu`).
    pub harness_cpu: Duration,
}

impl BroadcastRun {
    pub fn deliveries_per_s(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }
}

/// One member of the room as the client sees it.
struct Member {
    conn: Connection,
    /// The next message due from each sender.
    expected: Vec<u32>,
    /// The next probe due, once one has come.
    probe_expected: Option<u32>,
    /// A fragmented message being joined: its opcode and bytes.
    fragment: Option<(u8, Vec<u8>)>,
    /// Why the server ended this connection, in a run that tolerates it.
    gone: Option<String>,
    /// Bytes of frames it has still to write (senders only).
    out: Vec<u8>,
    out_written: usize,
    /// Frames queued while `out` is in a send the kernel holds (io_uring),
    /// which must not move it.
    queued: Vec<u8>,
    wants_out: bool,
}

impl Member {
    /// After a send: forgets what went, and takes the frames queued
    /// behind it.
    fn settle_out(&mut self) {
        if self.out_written == self.out.len() {
            self.out.clear();
            self.out_written = 0;
            std::mem::swap(&mut self.out, &mut self.queued);
        } else {
            self.out.append(&mut self.queued);
        }
    }
}

/// How a room waits on its connections.
enum Poller {
    /// Readiness: a `read` or `send` per socket that is ready.
    Epoll {
        ep: OwnedFd,
        events: Vec<epoll::Event>,
    },
    /// A ring that holds a receive of every member and a send of each
    /// that has bytes to write, and hands back what completed.
    Uring(Box<RoomRing>),
}

/// What each member has queued in the ring.
struct RoomRing {
    ring: Ring,
    fds: Vec<RawFd>,
    recv_queued: Vec<bool>,
    send_queued: Vec<bool>,
    /// Members whose receive is not queued again when it completes: the
    /// slow consumer in its pause.
    paused: Vec<bool>,
}

impl RoomRing {
    /// Queues a receive into member `i`'s buffer.
    fn arm(&mut self, i: usize, m: &mut Member) -> Result<(), ErrorKind> {
        let entry = uring::recv_entry(self.fds[i], m.conn.recv.read_space(), i);
        // SAFETY: a member's receive buffer is touched only when its
        // receive has completed (`serve_ring`), and every run drains the
        // ring before the members can go.
        unsafe { self.ring.push(&entry) }.map_err(ErrorKind::read)?;
        self.recv_queued[i] = true;
        Ok(())
    }

    /// Queues a send of member `i`'s unwritten bytes.
    fn send(&mut self, i: usize, m: &mut Member) -> Result<(), ErrorKind> {
        let entry = uring::send_entry(self.fds[i], &m.out[m.out_written..], i);
        // SAFETY: `out` is neither written nor moved while its send is
        // queued: later frames go to `queued` (`RoomClient::queue_send`).
        unsafe { self.ring.push(&entry) }
            .map_err(|source| ErrorKind::Send { seq: None, source })?;
        self.send_queued[i] = true;
        Ok(())
    }

    /// Cancels member `i`'s queued requests of the kinds asked.
    fn cancel(&mut self, i: usize, recv: bool, send: bool) {
        for (what, queued) in [
            (RECV, recv && self.recv_queued[i]),
            (SEND, send && self.send_queued[i]),
        ] {
            if queued {
                // SAFETY: a cancellation points to no memory. If it cannot
                // be queued, the request completes on its own and is
                // handled as any other.
                let _ = unsafe { self.ring.push(&uring::cancel_entry(i, what)) };
            }
        }
    }
}

/// A room of connections and what each has verified so far.
pub struct RoomClient {
    stack: String,
    protocol: Protocol,
    members: Vec<Member>,
    senders: usize,
    /// The next message number of each sender.
    next_n: Vec<u32>,
    next_probe: u32,
    template: Template,
    kind: PayloadKind,
}

impl RoomClient {
    /// A room of `conns` (all open), whose first `senders` send; every
    /// broadcast is `size_bytes` of `kind`. Synchronise it before a run.
    pub fn new(
        conns: Vec<Connection>,
        senders: usize,
        size_bytes: usize,
        kind: PayloadKind,
    ) -> Result<RoomClient, ClientError> {
        let stack = conns
            .first()
            .map(|c| c.stack().to_string())
            .unwrap_or_default();
        let fail = |why: String| ClientError::of(&stack, ErrorKind::Other(why));
        if senders == 0 || senders > conns.len() {
            return Err(fail(format!(
                "a room needs 1 to {} senders, not {senders}",
                conns.len()
            )));
        }
        if !(SEQ_BYTES..=super::codec::RECV_BUFFER_BYTES).contains(&size_bytes) {
            return Err(fail(format!(
                "a broadcast carries its sender and number in its first {SEQ_BYTES} bytes and is checked whole: {size_bytes} bytes is not within {SEQ_BYTES} to {}",
                super::codec::RECV_BUFFER_BYTES
            )));
        }
        let protocol = conns[0].protocol;
        let mut room = RoomClient {
            stack,
            protocol,
            members: Vec::new(),
            senders,
            next_n: vec![0; senders],
            next_probe: 0,
            template: Template::new(size_bytes),
            kind,
        };
        room.add(conns)?;
        Ok(room)
    }

    /// Connections in the room.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds open connections to the room; synchronise it again before the
    /// next run.
    pub fn add(&mut self, conns: Vec<Connection>) -> Result<(), ClientError> {
        for conn in conns {
            if conn.deflate_negotiated() {
                return Err(conn.err(ErrorKind::Compressed));
            }
            self.members.push(Member {
                conn,
                expected: self.next_n.clone(),
                probe_expected: None,
                fragment: None,
                gone: None,
                out: Vec::new(),
                out_written: 0,
                queued: Vec::new(),
                wants_out: false,
            });
        }
        Ok(())
    }

    /// The connections back, to close them.
    pub fn into_connections(self) -> Vec<Connection> {
        self.members.into_iter().map(|m| m.conn).collect()
    }

    fn err(&self, i: usize, kind: ErrorKind) -> ClientError {
        let e = ClientError::of(&self.stack, kind);
        e.context(format!(
            "connection {} of the room of {}",
            i + 1,
            self.members.len()
        ))
    }

    /// The frame of message `n` of lane `lane`, masked as a client's.
    fn frame(&self, i: usize, lane: u32, n: u32) -> Vec<u8> {
        let seq = (u64::from(lane) << 32) | u64::from(n);
        let payload = self.template.message(seq);
        match self.protocol {
            Protocol::WebSocket => {
                let opcode = match self.kind {
                    PayloadKind::Binary => wire::OP_BINARY,
                    PayloadKind::Text => wire::OP_TEXT,
                };
                wire::client_frame(true, opcode, &payload, self.members[i].conn.mask)
            }
            Protocol::RawTcp => {
                let mut out = (payload.len() as u64).to_le_bytes().to_vec();
                out.extend_from_slice(&payload);
                out
            }
        }
    }

    /// Sends probes until every connection has had one and has every
    /// probe since, within [`SYNC_TIMEOUT`]; then every connection is in
    /// the server's room.
    pub fn sync(&mut self) -> Result<(), ClientError> {
        let mut poller = self.register(Driver::Epoll)?;
        let synced = self.sync_on(&mut poller);
        self.unregister(poller);
        synced
    }

    fn sync_on(&mut self, poller: &mut Poller) -> Result<(), ClientError> {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut next_probe_at = Instant::now();
        let mut scratch = Run::scratch(
            Broadcast::constant(1.0, Duration::ZERO, Driver::Epoll),
            self,
        );
        loop {
            let joined = self.members.iter().all(|m| m.probe_expected.is_some());
            let now = Instant::now();
            if joined
                && self
                    .members
                    .iter()
                    .all(|m| m.probe_expected == Some(self.next_probe))
            {
                return Ok(());
            }
            if now > deadline {
                let i = self
                    .members
                    .iter()
                    .position(|m| m.probe_expected != Some(self.next_probe))
                    .expect("one is behind");
                let why = if self.members[i].probe_expected.is_none() {
                    "never received a broadcast: the server did not add it to the room"
                } else {
                    "stopped receiving the room's broadcasts"
                };
                return Err(self.err(
                    i,
                    ErrorKind::Other(format!(
                        "{why} within {} s of synchronising ({} probes sent)",
                        SYNC_TIMEOUT.as_secs(),
                        self.next_probe
                    )),
                ));
            }
            // One probe in flight at a time: the next goes only once every
            // member that has joined has the last, so a large room is not
            // flooded while its last members join.
            let settled = self
                .members
                .iter()
                .all(|m| m.probe_expected.is_none_or(|p| p == self.next_probe));
            if !joined && settled && now >= next_probe_at {
                let frame = self.frame(0, PROBE_LANE, self.next_probe);
                self.next_probe += 1;
                self.queue_send(0, &frame, poller)
                    .map_err(|k| self.err(0, k))?;
                next_probe_at = now + PROBE_INTERVAL;
            }
            let timeout = next_probe_at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(100));
            self.wait_and_serve(poller, timeout, &mut scratch)?;
        }
    }

    /// Waits up to `timeout` for the room's sockets, then writes what
    /// each that is ready can take and reads and checks what it brought.
    /// In a run with a pause, a connection the server ended leaves the
    /// room; otherwise that fails the run.
    fn wait_and_serve(
        &mut self,
        poller: &mut Poller,
        timeout: Duration,
        run: &mut Run,
    ) -> Result<(), ClientError> {
        let (ep, events) = match poller {
            Poller::Uring(r) => return self.serve_ring(r, timeout, run),
            Poller::Epoll { ep, events } => (&*ep, events),
        };
        events.clear();
        wait(ep, events, timeout).map_err(|e| self.err(0, ErrorKind::read(e)))?;
        for event in events.iter() {
            let (data, flags) = (event.data, event.flags);
            let i = data.u64() as usize;
            if flags.contains(epoll::EventFlags::OUT) {
                self.write_out(i, ep).map_err(|k| self.err(i, k))?;
            }
            match self.read(i, run) {
                Ok(()) => {}
                Err(kind) if run.spec.pause.is_some() && kind.is_disconnect() => {
                    let _ = epoll::delete(ep, self.members[i].conn.stream.as_fd());
                    self.leave(i, kind, run);
                }
                Err(kind) => return Err(self.err(i, kind)),
            }
        }
        Ok(())
    }

    /// Submits what the ring has queued, waits up to `timeout` for
    /// completions, and handles each: a send's bytes counted and the rest
    /// sent, a receive's checked and the next receive queued.
    fn serve_ring(
        &mut self,
        r: &mut RoomRing,
        timeout: Duration,
        run: &mut Run,
    ) -> Result<(), ClientError> {
        r.ring
            .wait(1, timeout)
            .map_err(|e| self.err(0, ErrorKind::read(e)))?;
        for k in 0..r.ring.reaped.len() {
            let (user_data, res) = r.ring.reaped[k];
            if user_data == CANCEL {
                continue;
            }
            let (i, what) = uring::decode(user_data);
            if what == SEND {
                r.send_queued[i] = false;
                if self.members[i].gone.is_none() {
                    self.sent(r, i, res).map_err(|kind| self.err(i, kind))?;
                }
                continue;
            }
            r.recv_queued[i] = false;
            if self.members[i].gone.is_some() {
                continue;
            }
            let got = match res {
                n if n >= 0 => self.members[i]
                    .conn
                    .recv
                    .filled(n as usize)
                    .and_then(|()| self.take_deliveries(i, run)),
                // A paused member's receive, cancelled; or one to retry.
                n if n == -libc::ECANCELED || n == -libc::EINTR || n == -libc::EAGAIN => Ok(()),
                n => Err(ErrorKind::read(io::Error::from_raw_os_error(-n))),
            };
            match got {
                Ok(()) if r.paused[i] => {}
                Ok(()) => r
                    .arm(i, &mut self.members[i])
                    .map_err(|kind| self.err(i, kind))?,
                Err(kind) if run.spec.pause.is_some() && kind.is_disconnect() => {
                    r.cancel(i, false, true);
                    self.leave(i, kind, run);
                }
                Err(kind) => return Err(self.err(i, kind)),
            }
        }
        Ok(())
    }

    /// Member `i`'s send completed, `res` bytes or the error: sends what
    /// is left and what was queued behind it.
    fn sent(&mut self, r: &mut RoomRing, i: usize, res: i32) -> Result<(), ErrorKind> {
        let m = &mut self.members[i];
        m.out_written +=
            uring::sent_bytes(res).map_err(|source| ErrorKind::Send { seq: None, source })?;
        m.settle_out();
        if m.out.is_empty() {
            return Ok(());
        }
        r.send(i, m)
    }

    /// Sets `driver` up for a run: every member in the room registered
    /// with a new epoll instance, or a receive of each queued in a new
    /// ring (and a send of what one has left to write).
    fn register(&mut self, driver: Driver) -> Result<Poller, ClientError> {
        if driver == Driver::Uring {
            return self.register_ring();
        }
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| {
            self.err(
                0,
                ErrorKind::Socket {
                    during: "creating the broadcast epoll instance",
                    source: e.into(),
                },
            )
        })?;
        for i in 0..self.members.len() {
            let m = &mut self.members[i];
            if m.gone.is_some() {
                continue;
            }
            m.wants_out = !m.out.is_empty();
            let flags = if m.wants_out {
                epoll::EventFlags::IN | epoll::EventFlags::OUT
            } else {
                epoll::EventFlags::IN
            };
            let added = epoll::add(
                &ep,
                m.conn.stream.as_fd(),
                epoll::EventData::new_u64(i as u64),
                flags,
            );
            if let Err(e) = added {
                return Err(self.err(
                    i,
                    ErrorKind::Socket {
                        during: "registering with the broadcast epoll instance",
                        source: e.into(),
                    },
                ));
            }
        }
        Ok(Poller::Epoll {
            ep,
            events: Vec::with_capacity(1024),
        })
    }

    /// A new ring with a receive of every member queued.
    fn register_ring(&mut self) -> Result<Poller, ClientError> {
        let ring = Ring::new(self.members.len()).map_err(|e| {
            self.err(
                0,
                ErrorKind::Socket {
                    during: "setting up io_uring",
                    source: io::Error::other(e),
                },
            )
        })?;
        let n = self.members.len();
        let mut r = Box::new(RoomRing {
            ring,
            fds: self
                .members
                .iter()
                .map(|m| m.conn.stream.as_raw_fd())
                .collect(),
            recv_queued: vec![false; n],
            send_queued: vec![false; n],
            paused: vec![false; n],
        });
        for i in 0..n {
            let m = &mut self.members[i];
            if m.gone.is_some() {
                continue;
            }
            let mut armed = r.arm(i, m);
            if armed.is_ok() && m.out_written < m.out.len() {
                armed = r.send(i, m);
            }
            if let Err(kind) = armed {
                let e = self.err(i, kind);
                self.unregister(Poller::Uring(r));
                return Err(e);
            }
        }
        Ok(Poller::Uring(r))
    }

    /// Takes the driver down after a run: on io_uring, cancels what the
    /// kernel still holds and waits for every answer, keeping the bytes
    /// that came and counting those that went, so that no buffer is
    /// written after it returns.
    fn unregister(&mut self, poller: Poller) {
        let Poller::Uring(mut r) = poller else {
            return;
        };
        let members = &mut self.members;
        r.ring.drain(members.len(), |user_data, res| {
            let (i, what) = uring::decode(user_data);
            let m = &mut members[i];
            if what == RECV && res > 0 {
                let _ = m.conn.recv.filled(res as usize);
            } else if what == SEND {
                m.out_written += res.max(0) as usize;
                m.settle_out();
            }
        });
    }

    /// Queues a frame on connection `i`: on epoll, writes what the socket
    /// takes; on io_uring, queues a send unless one is under way, behind
    /// which the frame waits.
    fn queue_send(&mut self, i: usize, frame: &[u8], poller: &mut Poller) -> Result<(), ErrorKind> {
        let m = &mut self.members[i];
        match poller {
            Poller::Epoll { ep, .. } => {
                m.out.extend_from_slice(frame);
                self.write_out(i, &*ep)
            }
            Poller::Uring(r) if r.send_queued[i] => {
                m.queued.extend_from_slice(frame);
                Ok(())
            }
            Poller::Uring(r) => {
                m.out.extend_from_slice(frame);
                r.send(i, m)
            }
        }
    }

    /// Writes connection `i`'s queued bytes as far as the socket takes
    /// them, asking epoll for writability while some are left.
    fn write_out(&mut self, i: usize, ep: &impl AsFd) -> Result<(), ErrorKind> {
        let m = &mut self.members[i];
        let socket = socket2::SockRef::from(&m.conn.stream);
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        while m.out_written < m.out.len() {
            match socket.send_with_flags(&m.out[m.out_written..], flags) {
                Ok(n) => m.out_written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(source) => return Err(ErrorKind::Send { seq: None, source }),
            }
        }
        if m.out_written == m.out.len() {
            m.out.clear();
            m.out_written = 0;
        }
        let want = !m.out.is_empty();
        if want != m.wants_out {
            m.wants_out = want;
            let flags = if want {
                epoll::EventFlags::IN | epoll::EventFlags::OUT
            } else {
                epoll::EventFlags::IN
            };
            epoll::modify(
                ep,
                m.conn.stream.as_fd(),
                epoll::EventData::new_u64(i as u64),
                flags,
            )
            .map_err(|e| ErrorKind::Socket {
                during: "changing the broadcast epoll registration",
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Runs `spec` on the synchronised room: broadcasts go out on the
    /// schedule, from the senders in turn, and every delivery is verified.
    /// Fails, naming the stack, on a wrong delivery, and when deliveries
    /// are still owed [`Broadcast::stall_timeout`] after the last one
    /// came. With a pause, the connections may lose deliveries or be ended
    /// by the server (what the run reports) but never get a wrong one.
    pub fn run(&mut self, spec: Broadcast) -> Result<BroadcastRun, ClientError> {
        if !(spec.rate_per_s.is_finite() && spec.rate_per_s > 0.0) {
            return Err(self.err(
                0,
                ErrorKind::Other(format!(
                    "a broadcast rate must be positive, not {}",
                    spec.rate_per_s
                )),
            ));
        }
        if spec.size_bytes != self.template.size_bytes() {
            return Err(self.err(
                0,
                ErrorKind::Other(format!(
                    "the room was made for {}-byte broadcasts, not {}",
                    self.template.size_bytes(),
                    spec.size_bytes
                )),
            ));
        }
        if let Some(p) = spec.pause {
            if p.conn < self.senders || p.conn >= self.members.len() {
                return Err(self.err(
                    0,
                    ErrorKind::Other(format!(
                        "the paused connection must be a receiver only (index {} to {}), not {}",
                        self.senders,
                        self.members.len() - 1,
                        p.conn
                    )),
                ));
            }
        }
        let _slack = TimerSlack::minimal();
        let cpu_before = current_thread_cpu();
        let mut poller = self.register(spec.driver)?;
        let set_up = current_thread_cpu().saturating_sub(cpu_before);
        let result = self.run_on(&mut poller, spec);
        let cpu_before = current_thread_cpu();
        self.unregister(poller);
        let taken_down = current_thread_cpu().saturating_sub(cpu_before);
        result.map(|run| BroadcastRun {
            harness_cpu: set_up + taken_down,
            ..run
        })
    }

    /// [`Self::run`] on a driver set up for it.
    fn run_on(
        &mut self,
        poller: &mut Poller,
        spec: Broadcast,
    ) -> Result<BroadcastRun, ClientError> {
        let mut run = Run::scratch(spec, self);
        run.recording = true;
        let mut paused = false;
        let mut last_progress = Instant::now();
        loop {
            let now = Instant::now();
            while run.next_at < run.end && run.next_at <= now {
                let lane = (run.scheduled % self.senders as u64) as usize;
                let n = self.next_n[lane];
                run.intended[lane].push(run.next_at);
                let late = now.saturating_duration_since(run.next_at);
                run.lateness.saturating_record(late.as_nanos() as u64);
                let frame = self.frame(lane, lane as u32, n);
                self.next_n[lane] += 1;
                if run.owed == 0 {
                    last_progress = now;
                }
                run.owed += self.members.iter().filter(|m| m.gone.is_none()).count() as u64;
                run.scheduled += 1;
                run.next_at =
                    run.start + Duration::from_secs_f64(run.scheduled as f64 / spec.rate_per_s);
                self.queue_send(lane, &frame, poller)
                    .map_err(|k| self.err(lane, k))?;
            }
            if let Some(p) = spec.pause {
                let (from, to) = (run.start + p.after, run.start + p.after + p.length);
                let gone = self.members[p.conn].gone.is_some();
                if !paused && now >= from && now < to && !gone {
                    paused = true;
                    self.pause(p.conn, poller, true)?;
                } else if paused && now >= to {
                    paused = false;
                    run.resumed_at = Some(now);
                    if !gone {
                        self.pause(p.conn, poller, false)?;
                    }
                    // Its owed deliveries count from now for the stall clock.
                    last_progress = now;
                }
            }
            let done_sending = run.next_at >= run.end;
            if done_sending && run.owed == 0 && !paused {
                break;
            }
            if run.owed > 0 && !paused && now.duration_since(last_progress) > spec.stall_timeout {
                return Err(self.missing(&run));
            }
            let timeout = if done_sending {
                Duration::from_millis(20)
            } else {
                run.next_at.saturating_duration_since(Instant::now())
            };
            let timeout = match spec.pause {
                Some(p) if paused => {
                    timeout.min((run.start + p.after + p.length).saturating_duration_since(now))
                }
                Some(p) if !paused && run.resumed_at.is_none() => {
                    timeout.min((run.start + p.after).saturating_duration_since(now))
                }
                _ => timeout,
            };
            let owed = run.owed;
            self.wait_and_serve(poller, timeout, &mut run)?;
            if run.owed < owed {
                last_progress = now.max(run.last_delivery);
            }
        }
        let slow = spec.pause.map(|p| {
            let m = &self.members[p.conn];
            SlowOutcome {
                delivered: run.slow_delivered,
                dropped: run.slow_dropped,
                disconnected: m.gone.clone(),
                caught_up_after: run
                    .slow_caught_up
                    .zip(run.resumed_at)
                    .map(|(last, resumed)| last.saturating_duration_since(resumed)),
            }
        });
        let disconnected_others = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, m)| m.gone.is_some() && spec.pause.is_none_or(|p| p.conn != *i))
            .count();
        Ok(BroadcastRun {
            spec,
            room: self.members.len(),
            senders: self.senders,
            broadcasts: run.scheduled,
            deliveries: run.deliveries,
            elapsed: run.last_delivery.saturating_duration_since(run.start),
            latency: run.latency,
            latency_in_pause: run.in_pause,
            latency_before_pause: run.before_pause,
            lateness: run.lateness,
            dropped_others: run.dropped_others,
            disconnected_others,
            slow,
            harness_cpu: Duration::ZERO,
        })
    }

    /// Stops reading connection `i` (the slow consumer), or starts again.
    fn pause(&mut self, i: usize, poller: &mut Poller, stop: bool) -> Result<(), ClientError> {
        let m = &mut self.members[i];
        let fd = m.conn.stream.as_fd();
        let (done, during) = match poller {
            Poller::Epoll { ep, .. } if stop => {
                (epoll::delete(&*ep, fd), "pausing the slow consumer")
            }
            Poller::Epoll { ep, .. } => (
                epoll::add(
                    &*ep,
                    fd,
                    epoll::EventData::new_u64(i as u64),
                    epoll::EventFlags::IN,
                ),
                "resuming the slow consumer",
            ),
            Poller::Uring(r) => {
                r.paused[i] = stop;
                if stop {
                    // What its queued receive brings before the
                    // cancellation lands was read before the pause.
                    r.cancel(i, true, false);
                } else if !r.recv_queued[i] {
                    r.arm(i, m).map_err(|kind| self.err(i, kind))?;
                }
                return Ok(());
            }
        };
        done.map_err(|e| {
            self.err(
                i,
                ErrorKind::Socket {
                    during,
                    source: e.into(),
                },
            )
        })
    }

    /// The error for deliveries still owed when the room went quiet.
    fn missing(&self, run: &Run) -> ClientError {
        let short = self.members.iter().enumerate().find_map(|(i, m)| {
            if m.gone.is_some() {
                return None;
            }
            (0..self.senders)
                .find(|&s| m.expected[s] < self.next_n[s])
                .map(|s| (i, s, m.expected[s]))
        });
        let (i, sender, first) = short.unwrap_or((0, 0, 0));
        self.err(
            i,
            ErrorKind::MissingDeliveries {
                missing: run.owed,
                waited: run.spec.stall_timeout,
                sender,
                first,
            },
        )
    }

    /// The server ended connection `i` during a run that tolerates it
    /// (the driver has stopped waiting on it).
    fn leave(&mut self, i: usize, why: ErrorKind, run: &mut Run) {
        let m = &mut self.members[i];
        let owed: u64 = (0..self.senders)
            .map(|s| u64::from(self.next_n[s] - m.expected[s]))
            .sum();
        run.owed -= owed;
        m.gone = Some(why.to_string());
    }

    /// Reads what connection `i` has and checks every whole delivery.
    fn read(&mut self, i: usize, run: &mut Run) -> Result<(), ErrorKind> {
        loop {
            self.take_deliveries(i, run)?;
            let m = &mut self.members[i];
            if m.gone.is_some() {
                return Ok(());
            }
            let socket = socket2::SockRef::from(&m.conn.stream);
            let space = m.conn.recv.read_space();
            let room = space.len();
            match (&*socket).read(space) {
                Ok(n) => {
                    m.conn.recv.filled(n)?;
                    if n < room {
                        return self.take_deliveries(i, run);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(ErrorKind::read(e)),
            }
        }
    }

    /// Takes every whole frame out of connection `i`'s receive buffer.
    fn take_deliveries(&mut self, i: usize, run: &mut Run) -> Result<(), ErrorKind> {
        let check = Check {
            template: &self.template,
            kind: self.kind,
            protocol: self.protocol,
            next_n: &self.next_n,
            paused: run.spec.pause.is_some_and(|p| p.conn == i),
        };
        let Member {
            conn,
            expected,
            probe_expected,
            fragment,
            ..
        } = &mut self.members[i];
        let recv = &mut conn.recv;
        loop {
            let Some((opcode, fin, header_len, total)) = next_frame(self.protocol, recv)? else {
                return Ok(());
            };
            let at = recv.last_read_at;
            let payload = &recv.unread()[header_len..total];
            match (opcode, fragment.as_mut()) {
                (wire::OP_TEXT | wire::OP_BINARY, None) if fin => {
                    check.deliver(expected, probe_expected, opcode, payload, at, run)?;
                }
                (wire::OP_TEXT | wire::OP_BINARY, None) => {
                    *fragment = Some((opcode, payload.to_vec()));
                }
                (wire::OP_CONTINUATION, Some((_, bytes))) => {
                    bytes.extend_from_slice(payload);
                    if fin {
                        let (first, bytes) = fragment.take().expect("a fragment");
                        check.deliver(expected, probe_expected, first, &bytes, at, run)?;
                    }
                }
                (wire::OP_PING | wire::OP_PONG, _) => {}
                (wire::OP_CLOSE, _) => {
                    return Err(ErrorKind::CloseFrame {
                        code: super::codec::close_code(payload),
                        awaited: 0,
                    })
                }
                (opcode, _) => {
                    return Err(ErrorKind::UnexpectedFrame {
                        opcode,
                        awaited: None,
                    })
                }
            }
            recv.consume(total);
        }
    }
}

/// What checking a delivery needs to know of the room.
struct Check<'a> {
    template: &'a Template,
    kind: PayloadKind,
    protocol: Protocol,
    next_n: &'a [u32],
    /// The delivery is the slow consumer's.
    paused: bool,
}

impl Check<'_> {
    /// Checks one whole delivery to a connection that expects `expected`
    /// of each sender and `probe` of the probes next, and records it.
    fn deliver(
        &self,
        expected: &mut [u32],
        probe: &mut Option<u32>,
        opcode: u8,
        payload: &[u8],
        at: Instant,
        run: &mut Run,
    ) -> Result<(), ErrorKind> {
        let want_opcode = match self.kind {
            PayloadKind::Binary => wire::OP_BINARY,
            PayloadKind::Text => wire::OP_TEXT,
        };
        let Some(seq) = parse_seq(payload) else {
            return Err(ErrorKind::Other(format!(
                "a delivery of {} bytes does not start with a sender and number: corrupted or not a broadcast",
                payload.len()
            )));
        };
        let (lane, n) = ((seq >> 32) as u32, seq as u32);
        if self.protocol == Protocol::WebSocket && opcode != want_opcode {
            return Err(ErrorKind::WrongKind {
                seq,
                got_opcode: opcode,
                sent_opcode: want_opcode,
            });
        }
        self.template.verify(seq, payload)?;
        if lane == PROBE_LANE {
            let due = probe.unwrap_or(n);
            if n != due {
                return Err(ErrorKind::Delivery {
                    sender: "the probes".into(),
                    got: n,
                    expected: due,
                });
            }
            *probe = Some(n + 1);
            return Ok(());
        }
        let s = lane as usize;
        if s >= self.next_n.len() || n >= self.next_n[s] {
            return Err(ErrorKind::Other(format!(
                "a delivery numbered {n} of sender {lane}, which has sent no such message"
            )));
        }
        let due = expected[s];
        if n < due || (n > due && run.spec.pause.is_none()) {
            return Err(ErrorKind::Delivery {
                sender: format!("sender {s}"),
                got: n,
                expected: due,
            });
        }
        let lost = u64::from(n - due);
        if self.paused {
            run.slow_dropped += lost;
        } else {
            run.dropped_others += lost;
        }
        expected[s] = n + 1;
        run.owed = run.owed.saturating_sub(lost + 1);
        run.deliveries += 1;
        run.last_delivery = run.last_delivery.max(at);
        if !run.recording {
            return Ok(());
        }
        // Messages numbered before this run began were the previous run's.
        let Some(index) = n.checked_sub(run.base_n[s]) else {
            return Ok(());
        };
        let intended = run.intended[s][index as usize];
        let ns = at.saturating_duration_since(intended).as_nanos() as u64;
        if self.paused {
            run.slow_delivered += 1;
            // In each sender's order: the last of those meant before the
            // resume is the one that says it caught up.
            if run.resumed_at.is_none_or(|r| intended < r) {
                run.slow_caught_up = Some(at);
            }
            return Ok(());
        }
        run.latency.saturating_record(ns);
        if let Some(p) = run.spec.pause {
            let offset = intended.saturating_duration_since(run.start);
            if offset < p.after {
                run.before_pause.saturating_record(ns);
            } else if offset < p.after + p.length {
                run.in_pause.saturating_record(ns);
            }
        }
        Ok(())
    }
}

/// The sender and number in a delivery's first bytes.
fn parse_seq(payload: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(payload.get(..SEQ_BYTES)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// The next whole frame in `recv`: its opcode, fin bit, header length and
/// total length; `None` until all of it is there (room is made for it).
fn next_frame(
    protocol: Protocol,
    recv: &mut RecvBuf,
) -> Result<Option<(u8, bool, usize, usize)>, ErrorKind> {
    let (opcode, fin, header_len, total) = match protocol {
        Protocol::RawTcp => {
            let Some(prefix) = recv.unread().get(..RAW_HEADER_BYTES) else {
                return Ok(None);
            };
            let len = u64::from_le_bytes(prefix.try_into().expect("8 bytes")) as usize;
            (
                wire::OP_BINARY,
                true,
                RAW_HEADER_BYTES,
                RAW_HEADER_BYTES + len,
            )
        }
        Protocol::WebSocket => {
            let Some(h) = wire::parse_header(recv.unread()) else {
                return Ok(None);
            };
            if h.masked {
                return Err(ErrorKind::MaskedFrame);
            }
            if h.rsv != 0 {
                return Err(ErrorKind::ReservedBits);
            }
            (
                h.opcode,
                h.fin,
                h.header_len,
                h.header_len + h.payload_len as usize,
            )
        }
    };
    if total > super::codec::RECV_BUFFER_BYTES + 16 {
        return Err(ErrorKind::Other(format!(
            "a delivery of {total} bytes, larger than any broadcast sent"
        )));
    }
    if recv.unread_len() < total {
        recv.reserve(total);
        return Ok(None);
    }
    Ok(Some((opcode, fin, header_len, total)))
}

/// A run's schedule and what it has recorded.
struct Run {
    spec: Broadcast,
    start: Instant,
    end: Instant,
    next_at: Instant,
    scheduled: u64,
    /// Whether deliveries are timed (a synchronisation's are not).
    recording: bool,
    /// Each sender's first message number in this run, and the intended
    /// send times of its messages since.
    base_n: Vec<u32>,
    intended: Vec<Vec<Instant>>,
    /// Deliveries still owed to the connections in the room.
    owed: u64,
    deliveries: u64,
    last_delivery: Instant,
    latency: Histogram<u64>,
    in_pause: Histogram<u64>,
    before_pause: Histogram<u64>,
    lateness: Histogram<u64>,
    dropped_others: u64,
    slow_delivered: u64,
    slow_dropped: u64,
    /// When the slow consumer got the last broadcast meant before it
    /// resumed reading.
    slow_caught_up: Option<Instant>,
    resumed_at: Option<Instant>,
}

impl Run {
    fn scratch(spec: Broadcast, room: &RoomClient) -> Run {
        let start = Instant::now() + START_DELAY;
        Run {
            spec,
            start,
            end: start + spec.duration,
            next_at: start,
            scheduled: 0,
            recording: false,
            base_n: room.next_n.clone(),
            intended: vec![Vec::new(); room.senders],
            owed: 0,
            deliveries: 0,
            last_delivery: start,
            latency: new_histogram(),
            in_pause: new_histogram(),
            before_pause: new_histogram(),
            lateness: new_histogram(),
            dropped_others: 0,
            slow_delivered: 0,
            slow_dropped: 0,
            slow_caught_up: None,
            resumed_at: None,
        }
    }
}
