//! raw-tcp: a plain TCP echo, not WebSocket. The floor: what the loopback,
//! the runtime and the client cost with no protocol at all.
//!
//! The client frames its messages with an 8-byte length (see
//! `client::raw`); this server neither knows nor checks that, it copies
//! bytes back as they come.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::runtime::{accept_loop, start_tokio_server};
use super::{Host, Protocol, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings};

pub const STACK: StackInfo = StackInfo {
    name: "raw-tcp",
    package: "tokio",
    version: super::versions::of_crate("tokio"),
    protocol: Protocol::RawTcp,
    host: Host::InProcess,
    notes: "Not WebSocket: bytes copied back through a 64 KiB buffer. Profiles change nothing.",
    start,
};

/// Large enough that a 64 KiB message needs one read, small enough to stay
/// in cache.
const COPY_BUFFER_BYTES: usize = 64 << 10;

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let mut handle = start_tokio_server(STACK.name, settings, |listener, profile| {
        accept_loop(STACK.name, listener, profile, echo)
    })?;
    handle.protocol = Protocol::RawTcp;
    Ok(handle)
}

async fn echo(mut stream: TcpStream, _profile: Profile) {
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Per read rather than per message: this server knows no messages.
        super::demo::per_message(STACK.name);
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
