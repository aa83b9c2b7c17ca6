//! Child processes with a deadline: every git, cargo and measuring process
//! that `compare` starts runs here, with its output in a log file, in a
//! process group of its own so that a timeout or Ctrl-C ends it together
//! with whatever it started (rustc, a Python server).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: nothing else is async-signal-safe here.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches Ctrl-C and SIGTERM, so that the child running at the time is
/// killed and the worktrees are removed before `compare` exits. The
/// children sit in their own process groups and do not see the terminal's
/// Ctrl-C themselves.
pub fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How often a running child is checked on.
const POLL: Duration = Duration::from_millis(20);

/// Lines of a failed child's log shown in the error.
const LOG_TAIL_LINES: usize = 25;

/// Runs `cmd` to completion with stdout and stderr appended to `log`,
/// killing it (and its process group) after `limit` or on Ctrl-C. Fails,
/// naming `what` and quoting the end of the log, unless it exits with 0.
pub fn run_logged(
    cmd: &mut Command,
    log: &Path,
    limit: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let status = run_with_deadline(cmd, None, log, limit, what)?;
    if !status.success() {
        anyhow::bail!(
            "{what} failed ({status}); end of {}:\n{}",
            log.display(),
            log_tail(log, LOG_TAIL_LINES)
        );
    }
    Ok(())
}

/// Runs `cmd` with stdout to `out` and stderr appended to `log`, with the
/// same deadline as [`run_logged`], and returns stdout trimmed.
pub fn run_capture(
    cmd: &mut Command,
    out: &Path,
    log: &Path,
    limit: Duration,
    what: &str,
) -> anyhow::Result<String> {
    let stdout = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let status = run_with_deadline(cmd, Some(stdout), log, limit, what)?;
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let _ = std::fs::remove_file(out);
    if !status.success() {
        anyhow::bail!(
            "{what} failed ({status}): {}",
            log_tail(log, LOG_TAIL_LINES).trim()
        );
    }
    Ok(text.trim().to_string())
}

fn run_with_deadline(
    cmd: &mut Command,
    stdout: Option<File>,
    log: &Path,
    limit: Duration,
    what: &str,
) -> anyhow::Result<ExitStatus> {
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let stdout = match stdout {
        Some(f) => f,
        None => log_file.try_clone()?,
    };
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log_file)
        .process_group(0);
    if interrupted() {
        anyhow::bail!("interrupted before {what}");
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what} ({:?})", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let why = if interrupted() {
            Some("interrupted".to_string())
        } else if started.elapsed() > limit {
            Some(format!("timed out after {} s", limit.as_secs()))
        } else {
            None
        };
        if let Some(why) = why {
            // SAFETY: kill has no memory preconditions; -pid is the group
            // this child leads (process_group(0) above).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = child.wait();
            anyhow::bail!(
                "{what} {why}; killed. End of {}:\n{}",
                log.display(),
                log_tail(log, LOG_TAIL_LINES)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The last `n` lines of a log file, indented.
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// A long-running child spoken to one line at a time (the `measure`
/// worker): commands on its stdin, answers on its stdout, stderr to a log.
/// Dropping it kills its process group if it still runs.
pub struct Worker {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    log: std::path::PathBuf,
    what: String,
}

impl Worker {
    pub fn spawn(cmd: &mut Command, log: &Path, what: &str) -> anyhow::Result<Worker> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        if interrupted() {
            anyhow::bail!("interrupted before {what}");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {what} ({:?})", cmd.get_program()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        // A thread per worker reads its answers, so that waiting for one
        // can time out.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Worker {
            stdin: child.stdin.take(),
            child,
            lines,
            log: log.to_path_buf(),
            what: what.to_string(),
        })
    }

    /// Sends `command` (when given) and waits for the answer `want`, until
    /// `deadline`; kills the worker on a timeout, Ctrl-C, a wrong answer or
    /// its exit.
    pub fn ask(
        &mut self,
        command: Option<&str>,
        want: &str,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        if let Some(c) = command {
            use std::io::Write;
            let sent = self
                .stdin
                .as_mut()
                .map(|s| writeln!(s, "{c}").and_then(|_| s.flush()));
            if !matches!(sent, Some(Ok(()))) {
                return Err(self.fail(&format!("could not be sent {c:?} (it exited?)")));
            }
        }
        loop {
            match self.lines.recv_timeout(POLL) {
                Ok(line) if line.trim() == want => return Ok(()),
                Ok(line) => {
                    return Err(self.fail(&format!("answered {line:?} where {want:?} was expected")))
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    return Err(self.fail(&format!(
                        "exited ({}) before answering {want:?}",
                        status.map(|s| s.to_string()).unwrap_or_default()
                    )));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if interrupted() {
                return Err(self.fail("interrupted"));
            }
            if Instant::now() > deadline {
                return Err(self.fail("ran past its deadline"));
            }
        }
    }

    /// Waits for the worker to exit after its last answer.
    pub fn wait(mut self, deadline: Instant) -> anyhow::Result<()> {
        self.stdin.take();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(self.fail(&format!("exited with {status}")));
            }
            if interrupted() || Instant::now() > deadline {
                return Err(self.fail("did not exit in time"));
            }
            std::thread::sleep(POLL);
        }
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: as in run_with_deadline: the group this child leads.
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }

    fn fail(&mut self, why: &str) -> anyhow::Error {
        self.kill();
        anyhow::anyhow!(
            "{} {why}; killed. End of {}:\n{}",
            self.what,
            self.log.display(),
            log_tail(&self.log, LOG_TAIL_LINES)
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
