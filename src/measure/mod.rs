//! What the benches read besides wall-clock time. Nothing here reports.
//!
//! - [`threads`]: which thread plays which role (server or client), and the
//!   CPU time each role spent, from the kernel's per-thread clocks;
//! - [`alloc`]: a counting global allocator that attributes every
//!   allocation to the role of the thread making it;
//! - [`process`]: CPU time and RSS of a server in another process (the
//!   Python stacks), from `/proc`;
//! - [`leak`]: the leak check's connection cycles and memory readings.
//!
//! [`Cpu`] and [`server_memory`] are the one way every workload reads a
//! server's CPU and memory, wherever the server runs.

pub mod alloc;
pub mod leak;
pub mod process;
pub mod threads;

use crate::metrics::Source;

/// CPU time so far of the server (its registered threads here, or its
/// whole process) and of the client threads, in nanoseconds. Take one
/// before and one after a measurement and subtract ([`Cpu::since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    pub server_ns: u64,
    pub client_ns: u64,
    /// Where `server_ns` comes from: schedstat (threads here) or proc (a
    /// child process).
    pub server_source: Source,
}

impl Cpu {
    /// Zero, for a server read from `server_source`.
    pub fn zero(server_source: Source) -> Cpu {
        Cpu {
            server_ns: 0,
            client_ns: 0,
            server_source,
        }
    }

    /// Now, for a server in this process (`server_pid` None) or in the
    /// process `server_pid`.
    pub fn now(server_pid: Option<u32>) -> Cpu {
        let sample = threads::CpuSample::now();
        match server_pid {
            Some(pid) => Cpu {
                server_ns: process::process_cpu_ns(pid).unwrap_or(0),
                client_ns: sample.client_ns,
                server_source: Source::Proc,
            },
            None => Cpu {
                server_ns: sample.server_ns,
                client_ns: sample.client_ns,
                server_source: Source::Schedstat,
            },
        }
    }

    /// CPU spent since `earlier` (saturating: a thread that exited in
    /// between drops out of the later reading).
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            server_ns: self.server_ns.saturating_sub(earlier.server_ns),
            client_ns: self.client_ns.saturating_sub(earlier.client_ns),
            server_source: self.server_source,
        }
    }

    /// This CPU less `harness` of the client's: the client driver's
    /// setting up and taking down around a run, which grows with the
    /// connections and not the messages (`client::RunStats::harness_cpu`).
    pub fn less_client(self, harness: std::time::Duration) -> Cpu {
        Cpu {
            client_ns: self.client_ns.saturating_sub(harness.as_nanos() as u64),
            ..self
        }
    }

    /// Adds another stretch's CPU to this one.
    pub fn add(&mut self, other: Cpu) {
        self.server_ns += other.server_ns;
        self.client_ns += other.client_ns;
    }
}

/// CPU time `cpu_ns` over the wall time `elapsed`: cores' worth used.
pub fn core_share(cpu_ns: u64, elapsed: std::time::Duration) -> f64 {
    cpu_ns as f64 / 1e9 / elapsed.as_secs_f64().max(1e-9)
}

/// CPU time so far of the server and the client threads (see [`Cpu::now`]).
pub fn cpu_now(server_pid: Option<u32>) -> Cpu {
    Cpu::now(server_pid)
}

/// Where a server's memory is read: the counting allocator's server
/// threads (in process) or a child process's resident set.
pub fn memory_source(server_pid: Option<u32>) -> Source {
    match server_pid {
        Some(_) => Source::Rss,
        None => Source::Allocator,
    }
}

/// The server's live heap (allocator) or resident set (child process), in
/// bytes; `None` when its process is gone.
pub fn server_memory(server_pid: Option<u32>) -> Option<i64> {
    match server_pid {
        Some(pid) => process::process_rss_bytes(pid).map(|b| b as i64),
        None => Some(alloc::AllocSample::now().server_live_bytes),
    }
}
