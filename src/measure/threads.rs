//! Thread roles and per-role CPU time.
//!
//! Every server thread calls [`register`] with [`Role::Server`] when it
//! starts, every client thread with [`Role::Client`]. The role lives in a
//! thread-local (read by the counting allocator) and the thread id goes into
//! a registry, so that CPU time can be summed per role from
//! `/proc/self/task/<tid>/schedstat`, which counts nanoseconds on CPU.

use std::cell::Cell;
use std::sync::Mutex;

/// What a thread does in a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Anything not registered: criterion's main thread, helpers.
    Other = 0,
    Server = 1,
    Client = 2,
}

impl Role {
    pub const COUNT: usize = 3;

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Other => "other",
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

thread_local! {
    // A const-initialised Cell has no destructor and never allocates, so the
    // global allocator may read it at any time, even during thread exit.
    static ROLE: Cell<u8> = const { Cell::new(Role::Other as u8) };
}

struct Registered {
    tid: libc::pid_t,
    role: Role,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// The role of the calling thread.
pub fn current_role() -> Role {
    match ROLE.try_with(|r| r.get()).unwrap_or(0) {
        1 => Role::Server,
        2 => Role::Client,
        _ => Role::Other,
    }
}

/// Marks the calling thread as playing `role`, names it in the kernel (so
/// profilers and `top` show it) and records its id for CPU accounting.
pub fn register(role: Role, name: &str) {
    ROLE.with(|r| r.set(role as u8));
    set_kernel_thread_name(name);
    let tid = current_tid();
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|r| r.tid != tid);
    reg.push(Registered { tid, role });
}

/// The kernel's id for the calling thread.
pub fn current_tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Sets the name the kernel shows for this thread (15 bytes at most).
/// actix names its own worker threads; this lets us rename them.
pub fn set_kernel_thread_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: buf is NUL-terminated and lives across the call.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Nanoseconds on CPU of one thread of this process, or `None` once it has
/// exited.
pub fn thread_cpu_ns(tid: libc::pid_t) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The calling thread's CPU time: the count [`thread_cpu_ns`] reads, from
/// `CLOCK_THREAD_CPUTIME_ID` instead of a file, for a driver that reads
/// it around each run.
pub fn current_thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time per role, in nanoseconds, summed over the registered threads
/// that are still alive. Take one before and one after a measurement and
/// subtract ([`CpuSample::since`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    pub server_ns: u64,
    pub client_ns: u64,
}

impl CpuSample {
    pub fn now() -> CpuSample {
        let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let mut sample = CpuSample::default();
        let mut add = |role: Role, ns: u64| match role {
            Role::Server => sample.server_ns += ns,
            Role::Client => sample.client_ns += ns,
            Role::Other => {}
        };
        for r in reg.iter() {
            add(r.role, thread_cpu_ns(r.tid).unwrap_or(0));
        }
        // The kernel's io_uring threads (a worker for requests that cannot
        // run without blocking, a poller) run for the thread that made the
        // ring and bear its id in their names: their CPU is that thread's
        // role's.
        for (tid, owner) in io_uring_threads() {
            if let Some(r) = reg.iter().find(|r| r.tid == owner) {
                add(r.role, thread_cpu_ns(tid).unwrap_or(0));
            }
        }
        sample
    }

    /// CPU spent since `earlier`. A thread that exited in between drops out
    /// of the later sample, so the difference saturates at zero rather than
    /// going negative.
    pub fn since(self, earlier: CpuSample) -> CpuSample {
        CpuSample {
            server_ns: self.server_ns.saturating_sub(earlier.server_ns),
            client_ns: self.client_ns.saturating_sub(earlier.client_ns),
        }
    }
}

/// This process's io_uring kernel threads (`iou-wrk-OWNER`,
/// `iou-sqp-OWNER`) and the thread each works for.
fn io_uring_threads() -> Vec<(libc::pid_t, libc::pid_t)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let tid: libc::pid_t = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
        let owner = comm
            .trim_end()
            .strip_prefix("iou-wrk-")
            .or_else(|| comm.trim_end().strip_prefix("iou-sqp-"))?;
        Some((tid, owner.parse().ok()?))
    })
    .collect()
}

/// Forgets threads that have exited, so the registry stays small across the
/// many servers a bench run starts.
pub fn prune_exited() {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|r| thread_cpu_ns(r.tid).is_some());
}
