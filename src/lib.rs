//! wsbench: which WebSocket stack should I use, and what does it cost?
//!
//! Its parts, each using only those listed before it:
//!
//! - [`stacks`]: one echo server per stack behind one small interface, all
//!   listed in [`stacks::STACKS`] (one file and one line per stack);
//! - [`client`]: the one load client that drives every stack and verifies
//!   every echo (length, content, order and count): a codec without I/O
//!   under thin drivers (blocking calls, the tokio runtime, and for a
//!   fixed schedule epoll or io_uring);
//! - [`measure`]: what is read besides time (per-thread CPU, allocations,
//!   RSS) and [`placement`], where threads run;
//! - [`metrics`]: the one catalogue of what is measured (name, unit, which
//!   way is better, title, sources);
//! - [`workload`]: the workloads (round trips, idle connections,
//!   allocations, handshakes), measured one way for the benches,
//!   `wsbench run` and `wsbench measure` alike;
//! - [`workers`]: the client in processes of its own (`wsbench worker`),
//!   for more connections or cores than one client process has, their
//!   rounds merged exactly;
//! - [`rounds`]: interleaved rounds across stacks, each figure's interval
//!   over them, and when two figures may be called different (on the
//!   pure statistics in [`compare::stats`], which `compare` shares);
//! - [`results`]: the JSON record of a run, built from catalogue metrics;
//! - [`report`]: the files made from results, the discussion expander
//!   included. Reports read results; they never measure;
//! - [`compare`]: two builds measured in interleaved rounds, and verdicts;
//! - [`probe`]: the RFC 6455 conformance and abuse probe.

pub mod client;
pub mod compare;
pub mod machine;
pub mod measure;
pub mod merge;
pub mod metrics;
pub mod placement;
pub mod probe;
pub mod report;
pub mod results;
pub mod rounds;
pub mod settings;
pub mod stacks;
pub mod tls;
pub mod workers;
pub mod workload;
