//! tokio-websockets: a WebSocket library built on tokio-util's codec, with
//! SIMD masking and UTF-8 validation.

use futures_util::{future, SinkExt, StreamExt, TryStreamExt};

use tokio::sync::broadcast;
use tokio_websockets::{Config, Limits, Message, ServerBuilder};

use super::room;
use super::runtime::{accept_loop, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "tokio-websockets",
    package: "tokio-websockets",
    version: super::versions::of_crate("tokio-websockets"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Suite: max_payload_len raised and outgoing frame_size raised to the same limit, so a \
            message goes back as one frame as with the other stacks (its default splits at 4 MiB). \
            No read-buffer setting (small-buffers = suite). No permessage-deflate in tokio-websockets 0.13. flush-each: \
            `ws.send(msg).await` per echo, as the library's examples/echo_server.rs and \
            autobahn_server.rs do (its own recommendation). batched: the stream split and \
            forwarded into the sink, which feeds echoes while messages are ready and flushes \
            when the read would block; but the library's stream writes queued frames out at the \
            start of every read (WebSocketStream::poll_next), so batched still writes about once \
            per echo unless the socket is full. broadcast: a tokio broadcast channel of 100 \
            messages, as in the tokio-websockets chat server of Comprehensive Rust \
            (google/comprehensive-rust, src/concurrency/async-exercises/chat-async/src/bin/\
            server.rs; the library's own examples have no broadcast): a connection that falls \
            more than 100 messages behind (the ring rounds up to 128) gets `Lagged` and is \
            dropped, as that example's `msg?` does. Unlike that example's one task selecting \
            between the socket and the channel, which stops reading a peer while it waits to \
            write to it, the socket is split (`StreamExt::split`, as axum's examples/chat) into a \
            reader that publishes and a writer task. Each message cloned (its `Bytes` payload \
            shared, not copied) and framed per connection. flush-each: `send(msg).await` per \
            message, as the example; batched: every message already in the channel fed, then \
            one flush.",
    deflate: false,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                echo(stream, profile, policy)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let (tx, _) = broadcast::channel(room::BROADCAST_CAPACITY);
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                broadcast(stream, profile, policy, tx.clone())
            })
        }),
    }
}

/// The channel as in the chat server of Comprehensive Rust, the socket
/// split as in axum's examples/chat: a writer task sends what the channel
/// brings, this task publishes what the peer sends, and either ending ends
/// both. The reader goes on while the writer waits for a slow peer.
async fn broadcast(
    stream: ServerStream,
    profile: Profile,
    policy: EchoPolicy,
    tx: broadcast::Sender<Message>,
) {
    let mut builder = ServerBuilder::new();
    if let Some(max) = profile.max_message_bytes() {
        builder = builder
            .limits(Limits::default().max_payload_len(Some(max)))
            .config(Config::default().frame_size(max));
    }
    let Ok((_request, ws)) = builder.accept(stream).await else {
        return;
    };
    let (write, mut read) = ws.split();
    let mut writer = tokio::spawn(room::write_ring(write, tx.subscribe(), policy));
    loop {
        tokio::select! {
            _ = &mut writer => return,
            incoming = read.next() => match incoming {
                Some(Ok(msg)) => {
                    if msg.is_text() || msg.is_binary() {
                        // Err only when no receiver is left, and this
                        // connection's own is one.
                        let _ = tx.send(msg);
                    }
                }
                // Pings and closes were answered by the stream itself
                // (its close reply flushed before it ends).
                _ => break,
            },
        }
    }
    writer.abort();
}

async fn echo(stream: ServerStream, profile: Profile, policy: EchoPolicy) {
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

type Ws = tokio_websockets::WebSocketStream<ServerStream>;

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
