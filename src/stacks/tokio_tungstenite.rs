//! tokio-tungstenite: the dedicated WebSocket library of the original
//! question, on a bare tokio accept loop.

use std::sync::Arc;

use futures_util::{future, SinkExt, StreamExt, TryStreamExt};

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::room::{self, Room};
use super::runtime::{accept_loop, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings, Service, SMALL_READ_BUFFER_BYTES};

pub const STACK: StackInfo = StackInfo {
    name: "tokio-tungstenite",
    package: "tokio-tungstenite",
    version: super::versions::of_crate("tokio-tungstenite"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Suite: max_message_size and max_frame_size raised; 128 KiB read buffer (default). \
            small-buffers: read_buffer_size 4 KiB. No permessage-deflate in tungstenite 0.29 (no feature for it). \
            flush-each: `ws.send(msg).await` per echo, which flushes each one. batched: the \
            stream split and forwarded into the sink (`StreamExt::forward`), which feeds echoes \
            while messages are ready and flushes when the read would block; this is what the \
            library's own examples/echo-server.rs does, so batched is what it recommends. \
            broadcast: one unbounded queue per connection, as examples/server.rs keeps (its \
            peer map of unbounded senders); each message cloned into every queue (a `Bytes` \
            payload, shared) and framed per connection; the writer per the echo policy.",
    deflate: false,
    start,
};

/// The tungstenite configuration for a profile; axum takes the same values
/// through its own builder.
pub fn config(profile: Profile) -> Option<WebSocketConfig> {
    let suite = |c: WebSocketConfig| {
        let max = profile.max_message_bytes();
        c.max_message_size(max).max_frame_size(max)
    };
    match profile {
        Profile::Defaults => None,
        Profile::Suite => Some(suite(WebSocketConfig::default())),
        Profile::SmallBuffers => {
            Some(suite(WebSocketConfig::default()).read_buffer_size(SMALL_READ_BUFFER_BYTES))
        }
    }
}

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                echo(stream, profile, policy)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Room::new();
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                broadcast(stream, profile, policy, room.clone())
            })
        }),
    }
}

/// Every data message into the room; the room's queue out to the peer.
async fn broadcast(
    stream: ServerStream,
    profile: Profile,
    policy: EchoPolicy,
    room: Arc<Room<Message>>,
) {
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, config(profile)).await else {
        return;
    };
    let (write, mut read) = ws.split();
    let (_member, rx) = room.join();
    let writer = tokio::spawn(room::write_queue(write, rx, policy));
    while let Some(Ok(msg)) = read.next().await {
        if msg.is_text() || msg.is_binary() {
            room.publish(msg);
        }
    }
    writer.abort();
}

async fn echo(stream: ServerStream, profile: Profile, policy: EchoPolicy) {
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, config(profile)).await else {
        return;
    };
    // tungstenite answers pings and closes by itself while we keep reading;
    // either loop ends when the peer's close completes or the socket fails.
    match policy {
        EchoPolicy::FlushEach => echo_flush_each(ws).await,
        EchoPolicy::Batched => echo_batched(ws).await,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<ServerStream>;

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

/// As the library's examples/echo-server.rs: `forward` feeds each echo into
/// the sink while the stream has messages ready and flushes when it has
/// none, so tungstenite's write buffer takes several echoes per write.
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
