//! What every Python stack shares: each is an echo script under `python/`
//! (`echo_<package>.py`) run as a child process, with its row in its own
//! file (`python_websockets.rs`, `python_aiohttp.rs`).
//!
//! The interpreter is that of a virtual environment under
//! `target/wsbench/venv`, created and filled from `python/requirements.txt`
//! on first use, so that results always name the pinned versions. Where
//! Python or the packages cannot be had, the stacks report themselves
//! unavailable ([`availability`]) and callers skip them with the reason.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Host, Protocol, ServerHandle, StackInfo, SHUTDOWN_GRACE};
use crate::settings::{Profile, ServerSettings};

/// The two stacks of the original comparison under their older names, for
/// callers that name them directly.
pub use super::python_aiohttp::STACK as AIOHTTP;
pub use super::python_websockets::STACK as WEBSOCKETS;

/// Names the interpreter that creates the venv (default `python3`).
pub const PYTHON_ENV: &str = "WSBENCH_PYTHON";

/// `1` runs the servers on uvloop instead of asyncio's own event loop.
pub const UVLOOP_ENV: &str = "WSBENCH_PYTHON_UVLOOP";

/// How long a server may take to print `LISTENING <port>`. Importing
/// aiohttp takes a fraction of a second; the margin is for a loaded machine.
pub const LISTEN_DEADLINE: Duration = Duration::from_secs(30);

/// websockets 17 needs Python 3.11 or later.
const MIN_PYTHON: (u32, u32) = (3, 11);

/// Whether the Python stacks can run here: `Err` holds why not (no
/// interpreter, too old a one, the packages could not be installed).
///
/// The first call creates the venv if needed, which takes a while and says
/// so on stderr; the answer is kept for the life of the process.
pub fn availability() -> Result<(), String> {
    venv().map(|_| ())
}

/// The version of `package` installed in the venv, as Python reports it;
/// `None` when the stacks are unavailable or the package is not installed.
/// Creates the venv if needed, like [`availability`].
pub fn installed_version(package: &str) -> Option<String> {
    venv().ok()?.versions.get(package).cloned()
}

/// The venv's interpreter, for running a Python client (the `websockets`
/// client, say) against any stack.
pub fn venv_python() -> Result<&'static Path, String> {
    venv().map(|v| v.python.as_path())
}

/// Starts a Python stack (a row of [`super::STACKS`] hosted in a child
/// process) under the placement's server CPUs. Its script is
/// `python/echo_<package>.py`: a Python stack is that script plus its row.
pub fn start(stack: &StackInfo, settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    start_pinned(stack, settings, settings.placement.server_cpus().as_deref())
}

/// The script that serves `stack`: `echo_<package>.py` under `python/`.
pub fn script_of(stack: &StackInfo) -> String {
    format!("echo_{}.py", stack.package)
}

/// Starts a Python stack with its process pinned to `cpus` rather than the
/// placement's server CPUs: the placements only ever name CPUs that exist,
/// so this is how the tests reach the pinning error.
#[doc(hidden)]
pub fn start_pinned(
    stack: &StackInfo,
    settings: &ServerSettings,
    cpus: Option<&[usize]>,
) -> anyhow::Result<ServerHandle> {
    if stack.host != Host::ChildProcess {
        anyhow::bail!("{} is not a Python stack", stack.name);
    }
    let script = script_of(stack);
    let venv = venv().map_err(|why| anyhow::anyhow!("python stacks unavailable: {why}"))?;
    spawn_server(stack.name, &script, &venv.python, settings, cpus)
}

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

fn wsbench_dir() -> anyhow::Result<PathBuf> {
    // Absolute, so that the interpreter path stays valid whatever the
    // current directory of whoever runs it.
    Ok(std::path::absolute(
        crate::results::target_dir().join("wsbench"),
    )?)
}

// ---------------------------------------------------------------------------
// The virtual environment
// ---------------------------------------------------------------------------

struct Venv {
    python: PathBuf,
    /// Package name -> installed version.
    versions: BTreeMap<String, String>,
}

/// The venv, prepared once per process. `OnceLock` makes the other threads
/// wait while one installs; the lock file does the same for other processes
/// (several test binaries may start at once).
fn venv() -> Result<&'static Venv, String> {
    static VENV: OnceLock<Result<Venv, String>> = OnceLock::new();
    VENV.get_or_init(|| prepare_venv().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

fn prepare_venv() -> anyhow::Result<Venv> {
    let base = wsbench_dir()?;
    let dir = base.join("venv");
    let python = dir.join("bin/python");
    let requirements = python_dir().join("requirements.txt");
    let pins = fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let interpreter = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_string());
    // The marker holds everything the venv was made from; any change to it
    // means a fresh venv. It is written last, so an interrupted install is
    // redone next time.
    let marker = dir.join("wsbench-installed.txt");
    let marker_text = format!("{PYTHON_ENV}={interpreter}\n{pins}");

    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let _lock = lock_exclusive(&base.join("venv.lock"))?;

    let why = match fs::read_to_string(&marker) {
        Ok(text) if text == marker_text => match query_versions(&python) {
            Ok(versions) => return Ok(Venv { python, versions }),
            Err(e) => format!("its interpreter no longer runs: {e:#}"),
        },
        Ok(_) => format!("python/requirements.txt or {PYTHON_ENV} changed"),
        Err(_) => "first use".to_string(),
    };
    check_interpreter(&interpreter)?;
    eprintln!("wsbench: creating Python venv at {} ({why})", dir.display());
    let started = Instant::now();
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove the old {}", dir.display()))?;
    }
    run(Command::new(&interpreter).arg("-m").arg("venv").arg(&dir)).with_context(|| {
        format!(
            "`{interpreter} -m venv` failed (on Debian and Ubuntu: apt-get install python3-venv)"
        )
    })?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "-r",
        ])
        .arg(&requirements))
    .context("`pip install -r python/requirements.txt` failed (is PyPI reachable?)")?;
    let versions = query_versions(&python)?;
    fs::write(&marker, marker_text)
        .with_context(|| format!("cannot write {}", marker.display()))?;

    let listed: Vec<String> = versions.iter().map(|(p, v)| format!("{p} {v}")).collect();
    eprintln!(
        "wsbench: Python venv ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        listed.join(", ")
    );
    Ok(Venv { python, versions })
}

/// Says clearly when the interpreter is missing or too old, which pip would
/// only report as "no matching distribution".
fn check_interpreter(interpreter: &str) -> anyhow::Result<()> {
    let out =
        run(Command::new(interpreter)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]))
        .with_context(|| format!("cannot run {interpreter} (name a Python 3 with {PYTHON_ENV})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim();
    let parsed = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match parsed {
        Some(v) if v >= MIN_PYTHON => Ok(()),
        _ => anyhow::bail!(
            "{interpreter} is Python {version}; the pinned packages need {}.{} or later (name another with {PYTHON_ENV})",
            MIN_PYTHON.0,
            MIN_PYTHON.1
        ),
    }
}

/// The installed versions of every package python/requirements.txt pins.
fn query_versions(python: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let packages: Vec<&str> = super::versions::PYTHON.iter().map(|(p, _)| *p).collect();
    let script = format!(
        "import importlib.metadata as m\nfor p in {packages:?}:\n    print(p, m.version(p))"
    );
    let out = run(Command::new(python).arg("-c").arg(script))?;
    let versions: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, v)| (p.to_string(), v.trim().to_string()))
        .collect();
    anyhow::ensure!(
        versions.len() == packages.len(),
        "the venv lacks some of {packages:?}"
    );
    Ok(versions)
}

/// Runs a command to completion; a failure carries the end of its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<Output> {
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
fn lock_exclusive(path: &Path) -> anyhow::Result<File> {
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

fn spawn_server(
    stack: &'static str,
    script: &str,
    python: &Path,
    settings: &ServerSettings,
    cpus: Option<&[usize]>,
) -> anyhow::Result<ServerHandle> {
    let profile = match settings.profile {
        // Neither library has a read-buffer knob, so small-buffers is the suite.
        Profile::Suite | Profile::SmallBuffers => "suite",
        Profile::Defaults => "defaults",
    };
    let log_path = new_log_path(stack)?;
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;

    let mut cmd = Command::new(python);
    cmd.arg(python_dir().join(script))
        .arg("--host")
        .arg(settings.addr.ip().to_string())
        .arg("--port")
        .arg(settings.addr.port().to_string())
        .args(["--profile", profile])
        // Recorded so: neither script's library has a batched idiom, so
        // both policies run the same code (the scripts say why).
        .args(["--echo", settings.echo.as_str()])
        // A server must never outlive a killed benchmark and load the next
        // one's CPU: the pipe closes when this process dies, however it dies.
        .arg("--exit-on-stdin-eof")
        // Keeps __pycache__ out of the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // A file, so that a crash in the middle of a benchmark can be read
        // afterwards; startup failures quote it.
        .stderr(log);
    if std::env::var(UVLOOP_ENV).is_ok_and(|v| v == "1") {
        cmd.arg("--uvloop");
    }
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
                None => anyhow::bail!("{stack}: cannot start {} {script}: {e}", python.display()),
            }
        }
    };
    let pid = child.id();
    let stdin = child.stdin.take();

    let port = match wait_for_port(stack, &mut child) {
        Ok(port) => port,
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
    ))
}

/// Reads `LISTENING <port>` from the child's stdout, for at most
/// [`LISTEN_DEADLINE`]. The read happens on a helper thread because a pipe
/// read has no timeout; the thread then drains stdout until the child exits,
/// so that the child never writes into a closed pipe.
fn wait_for_port(stack: &str, child: &mut Child) -> Result<u16, String> {
    let stdout = child.stdout.take().ok_or("its stdout is not piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("{stack}-stdout"))
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|n| (n > 0).then_some(line));
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
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

/// `target/wsbench/logs/<stack>-<our pid>-<n>.stderr`: unique across the
/// servers of one process and across processes running at once.
fn new_log_path(stack: &str) -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = wsbench_dir()?.join("logs");
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
fn tail(text: &str) -> &str {
    const KEEP: usize = 4096;
    let text = text.trim();
    let mut start = text.len().saturating_sub(KEEP);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
