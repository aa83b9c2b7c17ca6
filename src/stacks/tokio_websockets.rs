//! tokio-websockets: a WebSocket library built on tokio-util's codec, with
//! SIMD masking and UTF-8 validation.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_websockets::{Config, Limits, ServerBuilder};

use super::runtime::{accept_loop, start_tokio_server};
use super::{Host, Protocol, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings};

pub const STACK: StackInfo = StackInfo {
    name: "tokio-websockets",
    package: "tokio-websockets",
    version: super::versions::of_crate("tokio-websockets"),
    protocol: Protocol::WebSocket,
    host: Host::InProcess,
    notes: "Suite: max_payload_len raised and outgoing frame_size raised to the same limit, so a \
            message goes back as one frame as with the other stacks (its default splits at 4 MiB). \
            No read-buffer setting (small-buffers = suite). No compression support.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    start_tokio_server(STACK.name, settings, |listener, profile| {
        accept_loop(STACK.name, listener, profile, echo)
    })
}

async fn echo(stream: TcpStream, profile: Profile) {
    let mut builder = ServerBuilder::new();
    if let Some(max) = profile.max_message_bytes() {
        builder = builder
            .limits(Limits::default().max_payload_len(Some(max)))
            .config(Config::default().frame_size(max));
    }
    let Ok((_request, mut ws)) = builder.accept(stream).await else {
        return;
    };
    // The stream answers pings and closes by itself while we keep reading.
    while let Some(Ok(msg)) = ws.next().await {
        if !(msg.is_text() || msg.is_binary()) {
            continue;
        }
        super::demo::per_message(STACK.name);
        if ws.send(msg).await.is_err() {
            return;
        }
    }
}
