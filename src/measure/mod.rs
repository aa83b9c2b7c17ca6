//! What the benches read besides wall-clock time. Nothing here reports.
//!
//! - [`threads`]: which thread plays which role (server or client), and the
//!   CPU time each role spent, from the kernel's per-thread clocks;
//! - [`alloc`]: a counting global allocator that attributes every
//!   allocation to the role of the thread making it;
//! - [`process`]: CPU time and RSS of a server in another process (the
//!   Python stacks), from `/proc`.

pub mod alloc;
pub mod process;
pub mod threads;
