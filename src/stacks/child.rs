//! What every child-process stack shares, whatever runs it (Python's
//! venv interpreter, Node): a server script started with the suite's
//! arguments, pinned to the placement's server CPUs between fork and exec,
//! its port read from one `LISTENING <port>` line, its stderr kept in a log,
//! and a stop by SIGTERM with a deadline.
//!
//! Every script takes `--host --port --profile suite|defaults --echo
//! flush-each|batched --service echo|broadcast --compression off|deflate
//! --exit-on-stdin-eof`, and for `wss://` `--tls-cert CHAIN.pem --tls-key
//! KEY.pem` (the files [`crate::tls::certs`] writes)
//! (`--service` is [`ServerSettings::service`]: the echo, or one broadcast
//! room built as the library's own docs or examples build one, which each
//! stack's notes name), and on SIGUSR2 runs its
//! runtime's garbage collector and prints `COLLECTED`, followed by the live
//! bytes after it where the runtime counts them (V8 does, CPython does
//! not): the only other line it ever prints on stdout.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{cache, Protocol, Runtime, ServerHandle, StackInfo, SHUTDOWN_GRACE};
use crate::machine::{MALLOC_ENV, MALLOC_MMAP_THRESHOLD_BYTES};
use crate::settings::{Profile, ServerSettings, Transport};

/// How long a server may take to print `LISTENING <port>`. Importing
/// aiohttp takes a fraction of a second; the margin is for a loaded machine.
pub const LISTEN_DEADLINE: Duration = Duration::from_secs(30);

/// How long a collection may take: a full collection of a heap of tens of
/// MiB takes milliseconds; the margin is for a loaded machine.
const COLLECT_DEADLINE: Duration = Duration::from_secs(10);

/// What can be told of a child runtime's environment (the Python venv,
/// the Node packages) without making it: what `wsbench list` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environment {
    /// Made from the current pins: package name -> installed version.
    Ready(BTreeMap<String, String>),
    /// Not made yet, or made from other pins; `wsbench setup`, or the
    /// first server started, makes it. Why it is needed.
    NotInstalled(String),
    /// Cannot be made here: why (no interpreter, too old a one).
    Unavailable(String),
}

/// Starts a child-process stack with its process pinned to `cpus` rather
/// than the placement's server CPUs: the placements only ever name CPUs
/// that exist, so this is how the tests reach the pinning error.
#[doc(hidden)]
pub fn start_pinned(
    stack: &StackInfo,
    settings: &ServerSettings,
    cpus: Option<&[usize]>,
) -> anyhow::Result<ServerHandle> {
    let launch = launch_of(stack).map_err(anyhow::Error::msg)?;
    spawn(launch, settings, cpus)
}

/// The command that runs `stack`'s script with no arguments yet (its
/// interpreter, the script, its environment), for running it by hand.
pub fn script_command(stack: &StackInfo) -> Result<Command, String> {
    Ok(base_command(&launch_of(stack)?))
}

/// The interpreter, the script and its environment: what every start of a
/// script shares.
fn base_command(launch: &Launch) -> Command {
    let mut cmd = Command::new(launch.program);
    cmd.arg(&launch.script)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        // The interpreter's large buffers come from glibc's malloc too: the
        // same fixed threshold as the in-process servers have.
        .env(MALLOC_ENV, MALLOC_MMAP_THRESHOLD_BYTES.to_string());
    cmd
}

fn launch_of(stack: &StackInfo) -> Result<Launch<'static>, String> {
    match stack.runtime {
        Runtime::Python => super::python::launch(stack),
        Runtime::Node => super::node::launch(stack),
        Runtime::Native => Err(format!("{} runs in this process", stack.name)),
    }
}

/// How to start one server script.
pub struct Launch<'a> {
    pub stack: &'static str,
    /// The interpreter.
    pub program: &'a Path,
    pub script: PathBuf,
    /// Arguments after the suite's own.
    pub extra_args: Vec<OsString>,
    pub env: Vec<(&'static str, OsString)>,
}

/// Runs a command to completion; a failure carries the end of its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{}: {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(out)
}

/// Holds an exclusive `flock` on `path` until the file is dropped.
pub fn lock_exclusive(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
}

// ---------------------------------------------------------------------------
// A server process
// ---------------------------------------------------------------------------

/// Starts `launch` under `settings`, pinned to `cpus`, and waits for its
/// LISTENING line.
pub fn spawn(
    launch: Launch<'_>,
    settings: &ServerSettings,
    cpus: Option<&[usize]>,
) -> anyhow::Result<ServerHandle> {
    let stack = launch.stack;
    let script = launch.script.display().to_string();
    let profile = match settings.profile {
        // No script's library has a read-buffer knob, so small-buffers is
        // the suite.
        Profile::Suite | Profile::SmallBuffers => "suite",
        Profile::Defaults => "defaults",
    };
    let log_path = new_log_path(stack)?;
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;

    let mut cmd = base_command(&launch);
    cmd.arg("--host")
        .arg(settings.addr.ip().to_string())
        .arg("--port")
        .arg(settings.addr.port().to_string())
        .args(["--profile", profile])
        // Each script says what the policy means for its library.
        .args(["--echo", settings.echo.as_str()])
        .args(["--service", settings.service.as_str()])
        // Scripts of stacks without permessage-deflate never get `deflate`
        // (StackInfo::start refuses it first).
        .args(["--compression", settings.compression.as_str()]);
    if settings.transport == Transport::Tls {
        let certs = crate::tls::certs()?;
        cmd.arg("--tls-cert")
            .arg(&certs.chain_pem)
            .arg("--tls-key")
            .arg(&certs.key_pem);
    }
    cmd
        // A server must never outlive a killed benchmark and load the next
        // one's CPU: the pipe closes when this process dies, however it dies.
        .arg("--exit-on-stdin-eof")
        .args(&launch.extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // A file, so that a crash in the middle of a benchmark can be read
        // afterwards; startup failures quote it.
        .stderr(log);
    if let Some(cpus) = cpus {
        let set = cpu_set(cpus)?;
        // Pinned between fork and exec, so that every thread the
        // interpreter ever starts inherits the set; the hook only makes a
        // system call, which is all that is safe in a forked child.
        // SAFETY: sched_setaffinity is async-signal-safe and `set` is a copy.
        unsafe {
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = fs::remove_file(&log_path);
            match cpus {
                Some(cpus) => {
                    anyhow::bail!("{stack}: cannot start {script} pinned to CPUs {cpus:?}: {e}")
                }
                None => anyhow::bail!(
                    "{stack}: cannot start {} {script}: {e}",
                    launch.program.display()
                ),
            }
        }
    };
    let pid = child.id();
    let stdin = child.stdin.take();

    let (port, lines) = match wait_for_port(stack, &mut child) {
        Ok(found) => found,
        Err(why) => {
            let (status, killed) = reap(&mut child, Duration::from_secs(1));
            let how = if killed {
                "was killed".to_string()
            } else {
                format!("exited with {status}")
            };
            // The error carries the log's content, so the file can go.
            let stderr = match fs::read(&log_path) {
                Ok(bytes) if !bytes.is_empty() => {
                    format!("; its stderr:\n{}", tail(&String::from_utf8_lossy(&bytes)))
                }
                _ => "; its stderr was empty".to_string(),
            };
            let _ = fs::remove_file(&log_path);
            anyhow::bail!("{stack} (pid {pid}) {how} before listening: {why}{stderr}");
        }
    };
    let addr = SocketAddr::new(settings.addr.ip(), port);
    Ok(ServerHandle::new(
        stack,
        addr,
        Protocol::WebSocket,
        settings.profile,
        Some(pid),
        move || stop(stack, child, stdin, &log_path),
    )
    .with_collector(collector(pid, lines)))
}

/// SIGUSR2, then the child's `COLLECTED [<live bytes>]` line, for at most
/// [`COLLECT_DEADLINE`].
fn collector(
    pid: u32,
    lines: mpsc::Receiver<String>,
) -> impl Fn() -> anyhow::Result<Option<i64>> + Send + Sync + 'static {
    let lines = Mutex::new(lines);
    move || {
        let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
        // A line a collection that timed out left behind.
        while lines.try_recv().is_ok() {}
        // SAFETY: kill has no memory effects; the handle owns the child and
        // reaps it only when it stops, so the pid still names it.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR2) };
        match lines.recv_timeout(COLLECT_DEADLINE) {
            Ok(line) => parse_collected(&line)
                .ok_or_else(|| anyhow::anyhow!("expected `COLLECTED` after SIGUSR2, got {line:?}")),
            Err(mpsc::RecvTimeoutError::Timeout) => anyhow::bail!(
                "no `COLLECTED` within {} s of SIGUSR2",
                COLLECT_DEADLINE.as_secs()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("its stdout closed before `COLLECTED` (the process is gone)")
            }
        }
    }
}

/// `COLLECTED` (the runtime counts no live bytes) or `COLLECTED <bytes>`.
fn parse_collected(line: &str) -> Option<Option<i64>> {
    match line.trim().strip_prefix("COLLECTED")? {
        "" => Some(None),
        rest => rest.strip_prefix(' ')?.parse().ok().map(Some),
    }
}

/// Reads `LISTENING <port>` from the child's stdout, for at most
/// [`LISTEN_DEADLINE`], and returns the port with the lines that follow.
/// The read happens on a helper thread because a pipe read has no timeout;
/// the thread then reads stdout until the child exits, so that the child
/// never writes into a closed pipe.
fn wait_for_port(stack: &str, child: &mut Child) -> Result<(u16, mpsc::Receiver<String>), String> {
    let stdout = child.stdout.take().ok_or("its stdout is not piped")?;
    let (tx, rx) = mpsc::channel();
    let (later_tx, later) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("{stack}-stdout"))
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|n| (n > 0).then_some(line));
            let _ = tx.send(first);
            for line in reader.lines().map_while(Result::ok) {
                let _ = later_tx.send(line);
            }
        })
        .map_err(|e| format!("cannot start a thread to read its stdout: {e}"))?;
    let line = match rx.recv_timeout(LISTEN_DEADLINE) {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => return Err("it closed stdout without printing LISTENING".into()),
        Ok(Err(e)) => return Err(format!("reading its stdout failed: {e}")),
        Err(_) => {
            return Err(format!(
                "no LISTENING line within {} s",
                LISTEN_DEADLINE.as_secs()
            ))
        }
    };
    line.trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse::<u16>().ok())
        .map(|port| (port, later))
        .ok_or_else(|| format!("expected `LISTENING <port>`, got {:?}", line.trim()))
}

/// SIGTERM, up to [`SHUTDOWN_GRACE`] for a clean exit, then SIGKILL. Any
/// exit other than a clean one after SIGTERM is an error quoting stderr.
fn stop(
    stack: &str,
    mut child: Child,
    stdin: Option<ChildStdin>,
    log_path: &Path,
) -> anyhow::Result<()> {
    let pid = child.id();
    let exited_early = child.try_wait()?;
    if exited_early.is_none() {
        // SAFETY: kill has no memory effects; the child is not reaped yet,
        // so its pid cannot name another process.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let (status, killed) = reap(&mut child, SHUTDOWN_GRACE);
    drop(stdin);
    let note = || stderr_note(log_path);
    if let Some(status) = exited_early {
        anyhow::bail!(
            "{stack} (pid {pid}) had already exited ({status}) before shutdown{}",
            note()
        );
    }
    if killed {
        anyhow::bail!(
            "{stack} (pid {pid}) did not exit within {} s of SIGTERM and was killed{}",
            SHUTDOWN_GRACE.as_secs(),
            note()
        );
    }
    if !status.success() {
        anyhow::bail!(
            "{stack} (pid {pid}) exited with {status} after SIGTERM{}",
            note()
        );
    }
    // Only logs with something in them are worth keeping.
    if fs::metadata(log_path).is_ok_and(|m| m.len() == 0) {
        let _ = fs::remove_file(log_path);
    }
    Ok(())
}

/// Waits up to `grace` for the child to exit, then kills it; returns its
/// status and whether it had to be killed. Always reaps the child.
fn reap(child: &mut Child, grace: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    let _ = child.kill();
    match child.wait() {
        Ok(status) => (status, true),
        // Only when the child was reaped elsewhere; report it as killed.
        Err(_) => (
            std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL),
            true,
        ),
    }
}

fn cpu_set(cpus: &[usize]) -> anyhow::Result<libc::cpu_set_t> {
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // CPU_SET indexes out of bounds (and panics) past the set's size.
    if let Some(cpu) = cpus.iter().find(|&&c| c >= capacity) {
        anyhow::bail!("CPU {cpu} is beyond the largest CPU set ({capacity})");
    }
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only touch the set,
    // within bounds as checked above.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        Ok(set)
    }
}

/// `logs/<stack>-<our pid>-<n>.stderr` of the [`cache`] directory: unique
/// across the servers of one process and across processes running at once.
fn new_log_path(stack: &str) -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = cache::place()?.dir.join("logs");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("{stack}-{}-{n}.stderr", std::process::id())))
}

/// "; its stderr (path): ..." with the end of the log, for error messages.
fn stderr_note(log_path: &Path) -> String {
    match fs::read(log_path) {
        Ok(bytes) if !bytes.is_empty() => format!(
            "; its stderr ({}):\n{}",
            log_path.display(),
            tail(&String::from_utf8_lossy(&bytes))
        ),
        _ => "; its stderr was empty".to_string(),
    }
}

/// The last few KiB of a process's output: where the error is.
pub fn tail(text: &str) -> &str {
    const KEEP: usize = 4096;
    let text = text.trim();
    let mut start = text.len().saturating_sub(KEEP);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
