//! The original comparison's Python stacks. (stub, being written)
use super::{Host, Protocol, StackInfo};

pub const WEBSOCKETS: StackInfo = StackInfo {
    name: "python-websockets",
    package: "websockets",
    version: env!("WSBENCH_VERSION_PY_WEBSOCKETS"),
    protocol: Protocol::WebSocket,
    host: Host::ChildProcess,
    notes: "",
    start: |_| anyhow::bail!("not yet"),
};
pub const AIOHTTP: StackInfo = StackInfo {
    name: "python-aiohttp",
    package: "aiohttp",
    version: env!("WSBENCH_VERSION_PY_AIOHTTP"),
    protocol: Protocol::WebSocket,
    host: Host::ChildProcess,
    notes: "",
    start: |_| anyhow::bail!("not yet"),
};
