//! tokio-websockets: a WebSocket library built on tokio-util's codec, with
//! SIMD masking and UTF-8 validation.

use futures_util::{future, SinkExt, StreamExt, TryStreamExt};
use tokio::net::TcpStream;
use tokio_websockets::{Config, Limits, ServerBuilder};

use super::runtime::{accept_loop, start_tokio_server};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings};

pub const STACK: StackInfo = StackInfo {
    name: "tokio-websockets",
    package: "tokio-websockets",
    version: super::versions::of_crate("tokio-websockets"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Suite: max_payload_len raised and outgoing frame_size raised to the same limit, so a \
            message goes back as one frame as with the other stacks (its default splits at 4 MiB). \
            No read-buffer setting (small-buffers = suite). No compression support. flush-each: \
            `ws.send(msg).await` per echo, as the library's examples/echo_server.rs and \
            autobahn_server.rs do (its own recommendation). batched: the stream split and \
            forwarded into the sink, which feeds echoes while messages are ready and flushes \
            when the read would block; but the library's stream writes queued frames out at the \
            start of every read (WebSocketStream::poll_next), so batched still writes about once \
            per echo unless the socket is full.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    start_tokio_server(STACK.name, settings, move |listener, profile| {
        accept_loop(STACK.name, listener, profile, move |stream, profile| {
            echo(stream, profile, policy)
        })
    })
}

async fn echo(stream: TcpStream, profile: Profile, policy: EchoPolicy) {
    let mut builder = ServerBuilder::new();
    if let Some(max) = profile.max_message_bytes() {
        builder = builder
            .limits(Limits::default().max_payload_len(Some(max)))
            .config(Config::default().frame_size(max));
    }
    let Ok((_request, ws)) = builder.accept(stream).await else {
        return;
    };
    // The stream answers pings and closes by itself while we keep reading.
    match policy {
        EchoPolicy::FlushEach => echo_flush_each(ws).await,
        EchoPolicy::Batched => echo_batched(ws).await,
    }
}

type Ws = tokio_websockets::WebSocketStream<TcpStream>;

async fn echo_flush_each(mut ws: Ws) {
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

/// `forward` feeds each echo into the sink while the stream has messages
/// ready and flushes when it has none.
async fn echo_batched(ws: Ws) {
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| {
            let data = msg.is_text() || msg.is_binary();
            if data {
                super::demo::per_message(STACK.name);
            }
            future::ready(data)
        })
        .forward(write)
        .await;
}
