//! What the tests that run the `wsbench` binary share: a command's output
//! for an assertion message, and a `wsbench serve` child with the URL read
//! off its "serving" line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Status, stdout and stderr of a finished command, for a failed assertion.
pub fn transcript(out: &Output) -> String {
    format!(
        "\n--- status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// From SIGTERM to the server's exit.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A `wsbench serve` child: stopped by [`Server::stop`], killed when
/// dropped still running.
pub struct Server {
    child: Child,
    /// What it printed on its "serving" line, e.g. "ws://127.0.0.1:40001/".
    pub url: String,
}

impl Server {
    /// Spawns `cmd` (a `wsbench serve ...`) and waits up to `deadline` for
    /// its "serving" line, e.g. "wsbench: serving axum echo (axum 0.8.9) at
    /// ws://127.0.0.1:PORT/ with ..."; panics naming `what` without one.
    pub fn start(mut cmd: Command, deadline: Duration, what: &str) -> Server {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        // Held by a Server first, so that a panic below still stops it.
        let mut server = Server {
            child,
            url: String::new(),
        };
        let stdout = server.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("serving") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(deadline)
            .unwrap_or_else(|e| panic!("no \"serving\" line from {what}: {e}"));
        server.url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://") || w.starts_with("tcp://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        server
    }

    /// SIGTERM, which stops a child-process stack's server too, and a
    /// clean exit within [`STOP_DEADLINE`].
    #[allow(dead_code)] // Not every test binary that has this module stops one.
    pub fn stop(&mut self) {
        // SAFETY: kill only sends a signal to our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve ended with {status} after SIGTERM");
                return;
            }
            assert!(
                started.elapsed() < STOP_DEADLINE,
                "serve still running {STOP_DEADLINE:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
