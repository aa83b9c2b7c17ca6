//! Stall detection that costs nothing per message.
//!
//! A timer in the client's runtime would be polled on every wake-up, which
//! alone measured a few percent of the client's CPU per message, enough to
//! put it above the raw-TCP server's. Instead each connection publishes a
//! progress counter (one relaxed store per echo), and one watchdog thread
//! per process looks at all of them a few times a second. When a running
//! connection has made no progress for its stall timeout, the watchdog
//! marks it stalled and shuts its socket down, which wakes the client's
//! pending read or write with an error; the client then reports the stall.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How often the watchdog looks.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// One connection as the watchdog sees it.
pub struct Watch {
    fd: RawFd,
    /// Verified round trips so far, bumped by the client.
    progress: AtomicU64,
    /// True while a measured run is under way; idle connections never stall.
    running: AtomicBool,
    stall_timeout_ms: AtomicU64,
    stalled: AtomicBool,
}

impl Watch {
    pub fn progress(&self, round_trips: u64) {
        self.progress.store(round_trips, Relaxed);
    }

    /// The last progress published.
    pub fn progress_now(&self) -> u64 {
        self.progress.load(Relaxed)
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Relaxed);
    }

    pub fn set_stall_timeout(&self, timeout: Duration) {
        self.stall_timeout_ms
            .store(timeout.as_millis() as u64, Relaxed);
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms.load(Relaxed))
    }

    /// Whether the watchdog gave up on this connection.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Relaxed)
    }
}

/// What the watchdog remembers of each connection between looks.
struct Seen {
    watch: Weak<Watch>,
    progress: u64,
    since: Instant,
}

static WATCHED: OnceLock<Mutex<Vec<Seen>>> = OnceLock::new();

/// Starts watching a connection's socket; the watch ends when the returned
/// handle (and so the connection) is dropped.
pub fn watch(fd: RawFd, stall_timeout: Duration) -> Arc<Watch> {
    let watch = Arc::new(Watch {
        fd,
        progress: AtomicU64::new(0),
        running: AtomicBool::new(false),
        stall_timeout_ms: AtomicU64::new(stall_timeout.as_millis() as u64),
        stalled: AtomicBool::new(false),
    });
    let watched = WATCHED.get_or_init(|| {
        std::thread::Builder::new()
            .name("client-watchdog".into())
            .spawn(watchdog_loop)
            .expect("spawning the client watchdog thread");
        Mutex::new(Vec::new())
    });
    let mut list = watched.lock().unwrap_or_else(|e| e.into_inner());
    list.push(Seen {
        watch: Arc::downgrade(&watch),
        progress: 0,
        since: Instant::now(),
    });
    watch
}

fn watchdog_loop() {
    loop {
        std::thread::sleep(CHECK_EVERY);
        let Some(watched) = WATCHED.get() else {
            continue;
        };
        let mut list = watched.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        list.retain_mut(|seen| {
            let Some(w) = seen.watch.upgrade() else {
                return false;
            };
            let progress = w.progress.load(Relaxed);
            if progress != seen.progress || !w.running.load(Relaxed) {
                seen.progress = progress;
                seen.since = now;
            } else if now - seen.since >= w.stall_timeout() && !w.stalled() {
                w.stalled.store(true, Relaxed);
                // SAFETY: the fd belongs to a live connection (we hold a
                // strong reference, and the connection closes its socket
                // only after dropping its watch); shutdown does not close
                // it, so the number cannot be reused under us.
                unsafe {
                    libc::shutdown(w.fd, libc::SHUT_RDWR);
                }
            }
            true
        });
    }
}
