//! wsbench: which WebSocket stack should I use, and what does it cost?
//!
//! The crate has four parts that never reach into each other's concerns:
//!
//! - [`stacks`]: one echo server per stack behind one small interface, all
//!   listed in [`stacks::STACKS`];
//! - [`client`]: the one load client that drives every stack and verifies
//!   every echo (length, content, order and count);
//! - [`measure`]: what the benches read besides time (per-thread CPU,
//!   allocations, RSS) and where threads run ([`placement`]);
//! - [`workload`]: the workloads (round trips, idle connections,
//!   allocations, handshakes), measured one way for every caller;
//! - [`metrics`]: the one catalogue of what is measured (name, unit, which
//!   way is better, title, sources);
//! - [`results`] and [`report`]: the JSON record of a run and the files made
//!   from it. Reports read results; they never measure.

pub mod client;
pub mod compare;
pub mod machine;
pub mod measure;
pub mod metrics;
pub mod placement;
pub mod probe;
pub mod report;
pub mod results;
pub mod settings;
pub mod stacks;
pub mod workload;
