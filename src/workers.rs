//! The client in processes of its own, for more connections than one
//! process can hold or more cores than one client thread can use.
//!
//! A process here may open 20,000 files; a connection with both ends in
//! the bench's process takes two, so in-process runs stop near 9,000
//! connections. [`Workers`] runs the same verifying client as `wsbench
//! worker` children instead: each opens its share of the connections,
//! pinned where the parent says, and then runs round after round when
//! asked, over a line of JSON on its stdin, answering with its count, its
//! CPU and its round trips as an HDR histogram (the V2 serialization that
//! `wsbench merge` reads). The parent adds the histograms up bucket by
//! bucket, so a merged percentile is the one a single client would have
//! recorded, and reads the server's CPU itself.
//!
//! Every wait on a worker has a deadline; a worker that fails says why on
//! its stdout, and one that dies is named with its exit status.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::client::{
    self, Budget, ClientError, Connection, Driver, MessageSpec, PayloadKind, Target, STALL_TIMEOUT,
};
use crate::measure::threads::{self, Role};
use crate::measure::Cpu;
use crate::placement::pin_current_thread;
use crate::workload::{self, Sample};

/// How long a worker may take to open its connections.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long a worker may take beyond a stretch's end to answer (a stalled
/// server ends its stretch on the client's own stall watchdog first).
const ANSWER_GRACE: Duration = Duration::from_secs(10);
/// How long a worker may take to close its connections.
const CLOSE_WITHIN: Duration = Duration::from_secs(60);

/// The hidden `wsbench worker`: one client process of [`Workers`].
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The server, as `wsbench run --url` takes it.
    #[arg(long)]
    pub url: String,
    /// The stack serving there, for error messages.
    #[arg(long)]
    pub stack: String,
    #[arg(long)]
    pub conns: usize,
    #[arg(long)]
    pub size: usize,
    #[arg(long, value_enum)]
    pub kind: PayloadKind,
    #[arg(long)]
    pub window: usize,
    #[arg(long, value_enum)]
    pub driver: Driver,
    /// CPUs to run on, comma-separated; none given: unpinned.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
}

/// What the parent asks of a worker, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    /// Round trips on every connection until the budget is spent.
    Round(Stretch),
    /// The close handshake on every connection, then exit.
    Close,
}

/// A [`Budget`] across processes: a deadline on the monotonic clock, which
/// every process of the host shares, or a count per connection.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stretch {
    UntilMonotonicNs(u64),
    Count(u64),
}

/// What a worker answers, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ready { conns: usize },
    Round(RoundReply),
    Closed,
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct RoundReply {
    round_trips: u64,
    /// From the first send to the last verified echo.
    elapsed_ns: u64,
    /// The monotonic clock when the last echo was verified.
    ended_monotonic_ns: u64,
    /// The worker's client CPU over the stretch, as in-process runs count
    /// it (its registered thread and the io_uring threads working for it).
    client_cpu_ns: u64,
    /// Round trips in nanoseconds, [`crate::merge::encode`]d.
    histogram: String,
}

/// The monotonic clock, in nanoseconds (what [`Instant`] reads, as a
/// number another process can compare).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `wsbench worker`: opens the connections, answers `ready`, then serves
/// the parent's requests until `close` or the end of its stdin (the parent
/// gone). A failure is answered as `failed` and the worker exits 1; only
/// when that answer cannot be written is the error returned (and printed).
pub fn serve(args: &WorkerArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut answer = |reply: &Reply| -> anyhow::Result<()> {
        writeln!(out, "{}", serde_json::to_string(reply)?)?;
        Ok(out.flush()?)
    };
    let result = run_worker(args, &mut answer);
    if let Err(e) = &result {
        // The parent reports it, naming the stack and the worker: printed
        // here as well, each failure would show twice.
        if answer(&Reply::Failed(format!("{e:#}"))).is_ok() {
            std::process::exit(1);
        }
    }
    result
}

fn run_worker(
    args: &WorkerArgs,
    answer: &mut impl FnMut(&Reply) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    threads::register(Role::Client, "client");
    pin_current_thread((!args.cpus.is_empty()).then_some(&args.cpus[..]))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let target = Target::from_url(&args.url, &args.stack)?;
    let spec = MessageSpec {
        size_bytes: args.size,
        kind: args.kind,
        window: args.window,
    };
    let mut conns: Vec<Connection> = rt
        .block_on(client::connect_many(&target, args.conns))
        .map_err(|e| anyhow::anyhow!(e.what()))?;
    answer(&Reply::Ready { conns: conns.len() })?;
    for line in std::io::stdin().lock().lines() {
        let request: Request = serde_json::from_str(&line?)?;
        match request {
            Request::Round(stretch) => {
                let budget = match stretch {
                    Stretch::Count(n) => Budget::Count(n),
                    Stretch::UntilMonotonicNs(t) => Budget::Until(
                        Instant::now() + Duration::from_nanos(t.saturating_sub(monotonic_ns())),
                    ),
                };
                let s = workload::round_trips(&rt, &mut conns, spec, budget, None, args.driver)
                    .map_err(|e| anyhow::anyhow!(e.what()))?;
                answer(&Reply::Round(RoundReply {
                    round_trips: s.round_trips,
                    elapsed_ns: s.elapsed.as_nanos() as u64,
                    ended_monotonic_ns: monotonic_ns(),
                    client_cpu_ns: s.cpu.client_ns,
                    histogram: crate::merge::encode(&s.hist)?,
                }))?;
            }
            Request::Close => {
                rt.block_on(client::close_all_handshake(conns))
                    .map_err(|e| anyhow::anyhow!(e.what()))?;
                return answer(&Reply::Closed);
            }
        }
    }
    // The parent is gone: nobody reads a close, so the connections just go.
    Ok(())
}

/// One worker process, seen from the parent.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    /// Its stdout's lines, read by a thread of their own so that every
    /// wait can have a deadline.
    lines: mpsc::Receiver<std::io::Result<String>>,
    conns: usize,
}

/// The client as worker processes, each holding its share of a case's
/// connections (see the module's documentation).
pub struct Workers {
    stack: String,
    spec: MessageSpec,
    server_pid: Option<u32>,
    procs: Vec<Worker>,
}

impl Workers {
    /// Starts one `program worker` (the wsbench binary) per entry of
    /// `cpus`, each pinned to its CPUs (`None`: unpinned), and returns once
    /// all of them have opened their share of `conns` connections to
    /// `target`. `server_pid` is the server's process when it is not this
    /// one, for its CPU.
    pub fn start(
        program: &Path,
        target: &Target,
        server_pid: Option<u32>,
        conns: usize,
        spec: MessageSpec,
        driver: Driver,
        cpus: &[Option<Vec<usize>>],
    ) -> Result<Workers, ClientError> {
        let stack = target.stack.clone();
        let k = cpus.len();
        if k == 0 || conns < k {
            return Err(ClientError::new(
                &stack,
                format!("{conns} connections cannot be shared by {k} client workers"),
            ));
        }
        let mut workers = Workers {
            stack: stack.clone(),
            spec,
            server_pid,
            procs: Vec::with_capacity(k),
        };
        let url = target.url();
        for (i, cpus) in cpus.iter().enumerate() {
            let share = conns / k + usize::from(i < conns % k);
            let mut cmd = Command::new(program);
            cmd.arg("worker")
                .args(["--url", &url, "--stack", &stack])
                .args(["--conns", &share.to_string()])
                .args(["--size", &spec.size_bytes.to_string()])
                .args(["--kind", &clap_name(spec.kind)])
                .args(["--window", &spec.window.to_string()])
                .args(["--driver", &clap_name(driver)]);
            if let Some(cpus) = cpus {
                let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
                cmd.args(["--cpus", &list.join(",")]);
            }
            let worker = spawn(cmd, share)
                .map_err(|e| workers.error(i, &format!("starting {}: {e}", program.display())))?;
            workers.procs.push(worker);
        }
        let deadline = Instant::now() + READY_WITHIN;
        for i in 0..k {
            match workers.answer(i, deadline)? {
                Reply::Ready { conns } if conns == workers.procs[i].conns => {}
                other => return Err(workers.error(i, &format!("answered {other:?} to opening"))),
            }
        }
        Ok(workers)
    }

    /// Connections over all workers.
    pub fn conns(&self) -> usize {
        self.procs.iter().map(|w| w.conns).sum()
    }

    /// Worker processes.
    pub fn procs(&self) -> usize {
        self.procs.len()
    }

    /// The workers' process ids, in order.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|w| w.child.id()).collect()
    }

    /// One stretch of round trips on every worker at once, merged: counts
    /// and CPU summed, histograms added, the time from the first worker's
    /// first send to the last one's last echo, the server's CPU read here
    /// over the whole stretch.
    pub fn round_trips(&mut self, budget: Budget) -> Result<Sample, ClientError> {
        let (stretch, deadline) = match budget {
            Budget::Count(n) => (Stretch::Count(n), Instant::now() + READY_WITHIN),
            Budget::Until(t) => {
                let left = t.saturating_duration_since(Instant::now());
                (
                    Stretch::UntilMonotonicNs(monotonic_ns() + left.as_nanos() as u64),
                    t + STALL_TIMEOUT + ANSWER_GRACE,
                )
            }
        };
        let before = Cpu::now(self.server_pid);
        for i in 0..self.procs.len() {
            self.ask(i, &Request::Round(stretch))?;
        }
        let mut replies = Vec::with_capacity(self.procs.len());
        for i in 0..self.procs.len() {
            match self.answer(i, deadline)? {
                Reply::Round(r) => replies.push(r),
                other => return Err(self.error(i, &format!("answered {other:?} to a round"))),
            }
        }
        let server = Cpu::now(self.server_pid).since(before);
        let mut sample = Sample::empty(self.spec, self.conns(), server.server_source);
        sample.cpu.server_ns = server.server_ns;
        let (mut first_start, mut last_end) = (u64::MAX, 0);
        for (i, r) in replies.iter().enumerate() {
            let hist = crate::merge::decode(&r.histogram)
                .map_err(|e| self.error(i, &format!("its histogram: {e:#}")))?;
            sample
                .hist
                .add(&hist)
                .map_err(|e| self.error(i, &format!("adding its histogram: {e:?}")))?;
            sample.round_trips += r.round_trips;
            sample.cpu.client_ns += r.client_cpu_ns;
            first_start = first_start.min(r.ended_monotonic_ns.saturating_sub(r.elapsed_ns));
            last_end = last_end.max(r.ended_monotonic_ns);
        }
        sample.elapsed = Duration::from_nanos(last_end.saturating_sub(first_start));
        Ok(sample)
    }

    /// The close handshake on every connection; the workers exit.
    pub fn close(mut self) -> Result<(), ClientError> {
        for i in 0..self.procs.len() {
            self.ask(i, &Request::Close)?;
        }
        let deadline = Instant::now() + CLOSE_WITHIN;
        for i in 0..self.procs.len() {
            match self.answer(i, deadline)? {
                Reply::Closed => {}
                other => return Err(self.error(i, &format!("answered {other:?} to close"))),
            }
            let _ = self.procs[i].child.wait();
        }
        Ok(())
    }

    fn ask(&mut self, i: usize, request: &Request) -> Result<(), ClientError> {
        let line = serde_json::to_string(request).expect("requests serialize");
        let w = &mut self.procs[i];
        let written = writeln!(w.stdin, "{line}").and_then(|()| w.stdin.flush());
        written.map_err(|e| {
            let exited = match self.procs[i].child.try_wait() {
                Ok(Some(status)) => format!(" (it exited: {status})"),
                _ => String::new(),
            };
            self.error(i, &format!("writing to it: {e}{exited}"))
        })
    }

    /// The worker's next answer, by `deadline`; its failure or death as an
    /// error naming it.
    fn answer(&mut self, i: usize, deadline: Instant) -> Result<Reply, ClientError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = match self.procs[i].lines.recv_timeout(wait) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(self.error(i, &format!("reading from it: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(self.error(i, &format!("no answer within {} s", wait.as_secs())))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.procs[i].child.wait();
                let how = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(self.error(i, &format!("exited ({how}) without answering")));
            }
        };
        match serde_json::from_str(&line) {
            Ok(Reply::Failed(why)) => Err(self.error(i, &why)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.error(i, &format!("answered {line:?}: {e}"))),
        }
    }

    fn error(&self, i: usize, what: &str) -> ClientError {
        let pid = self
            .procs
            .get(i)
            .map(|w| format!(" (pid {})", w.child.id()))
            .unwrap_or_default();
        ClientError::new(
            &self.stack,
            format!(
                "client worker {} of {}{pid}: {what}",
                i + 1,
                self.procs.len().max(i + 1)
            ),
        )
    }
}

impl Drop for Workers {
    /// Workers outlive no run: whatever ended it, they are killed.
    fn drop(&mut self) {
        for w in &mut self.procs {
            if matches!(w.child.try_wait(), Ok(None)) {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
        }
    }
}

fn spawn(mut cmd: Command, conns: usize) -> std::io::Result<Worker> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::Builder::new()
        .name("worker-out".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })?;
    Ok(Worker {
        child,
        stdin,
        lines,
        conns,
    })
}

/// A value's name on the command line.
fn clap_name<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string()
}
