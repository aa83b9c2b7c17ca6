//! What the benches read besides wall-clock time. Nothing here reports.
//!
//! - [`threads`]: which thread plays which role (server or client), and the
//!   CPU time each role spent, from the kernel's per-thread clocks;
//! - [`alloc`]: a counting global allocator that attributes every
//!   allocation to the role of the thread making it;
//! - [`process`]: CPU time and RSS of a server in another process (the
//!   Python stacks), from `/proc`;
//! - [`leak`]: the leak check's connection cycles and memory readings.

pub mod alloc;
pub mod leak;
pub mod process;
pub mod threads;

/// CPU time so far of the server (its registered threads here, or its
/// whole process when `server_pid` is given) and of the client threads.
pub fn cpu_now(server_pid: Option<u32>) -> threads::CpuSample {
    let mut sample = threads::CpuSample::now();
    if let Some(pid) = server_pid {
        sample.server_ns = process::process_cpu_ns(pid).unwrap_or(0);
    }
    sample
}
