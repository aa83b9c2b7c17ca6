//! What the tests that start `wsbench serve` as a child share: reading the
//! URL off its "serving" line.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

/// The URL (`ws://…` or `tcp://…`) that `child`'s "serving" line names,
/// e.g. "wsbench: serving axum echo (axum 0.8.9) at ws://127.0.0.1:PORT/
/// with ..."; panics naming `what` when none comes within `deadline`.
/// `child` must have been spawned with a piped stdout, which a thread then
/// drains for the rest of its life.
pub fn serving_url(child: &mut Child, deadline: Duration, what: &str) -> String {
    let stdout = child
        .stdout
        .take()
        .expect("serve spawned with a piped stdout");
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
    line.split_whitespace()
        .find(|w| w.starts_with("ws://") || w.starts_with("tcp://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string()
}
