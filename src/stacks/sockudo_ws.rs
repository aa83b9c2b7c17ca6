//! sockudo-ws: a WebSocket library that aims at uWebSockets' speed (SIMD
//! masking and UTF-8, a cork buffer per connection), with its own HTTP/1.1
//! handshake on a tokio stream.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use sockudo_ws::server::WebSocketServer;
use sockudo_ws::{Config, Http1, Message, PubSub, SubscriberId, WebSocketStream};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::runtime::{accept_loop, start_tokio_server};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "sockudo-ws",
    package: "sockudo-ws",
    version: super::versions::of_crate("sockudo-ws"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Its own HTTP/1.1 handshake (WebSocketServer::<Http1>::accept_raw), never answering \
            an extension offer; default features off except tokio-runtime and simd (its \
            default also builds permessage-deflate, which is off unless configured). Suite: \
            max_payload_length and max_frame_size raised (its default frame limit is 16 MiB); \
            its keepalive ping after 30 s of silence and its 120 s idle close turned off, as no \
            other stack has them. No read-buffer setting used (small-buffers = suite). \
            flush-each: `ws.send(msg)` per echo. batched: `ws.feed(msg)` per echo and \
            `next()` flushes before it waits for input, the echo loop its README gives; its \
            sink also writes once 64 KiB are queued. broadcast: the library's own PubSub with \
            one topic, as its examples/pubsub_echo.rs uses it: one unbounded queue per \
            connection (a connection that stops reading has its messages buffered without \
            bound), each message cloned (its `Bytes` payload shared) and framed per \
            connection (the library has no pre-encoded frame to write to many); publishes \
            serialized by a lock of ours, since PubSub sends outside its own lock and two \
            publishers' messages could otherwise reach two subscribers in different orders. \
            One task per connection selects between its queue and the socket, as that \
            example does, so while it writes the connection is not read; on the unsplit \
            stream, as the split writer has no `feed`. flush-each: `ws.send(msg)` per \
            message, the example's writer; batched: `ws.feed(msg)` for every message already \
            queued, then `ws.flush()`.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    let server = WebSocketServer::<Http1>::new(config(settings.profile));
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, _profile| {
                echo(server.clone(), stream, policy)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Arc::new(Room::default());
            accept_loop(STACK.name, listener, profile, move |stream, _profile| {
                broadcast(server.clone(), stream, policy, room.clone())
            })
        }),
    }
}

fn config(profile: Profile) -> Config {
    let config = Config::builder().auto_ping(false).idle_timeout(0);
    match profile.max_message_bytes() {
        Some(max) => config.max_payload_length(max).max_frame_size(max),
        None => config,
    }
    .build()
}

async fn echo(server: WebSocketServer<Http1>, stream: TcpStream, policy: EchoPolicy) {
    let Ok((mut ws, _handshake)) = server.accept_raw(stream).await else {
        return;
    };
    let _ = echo_messages(&mut ws, policy).await;
}

async fn echo_messages(
    ws: &mut WebSocketStream<TcpStream>,
    policy: EchoPolicy,
) -> sockudo_ws::Result<()> {
    // Pings are answered and a close is replied to by the stream itself.
    while let Some(message) = ws.next().await {
        match message? {
            message @ (Message::Text(_) | Message::Binary(_)) => {
                super::demo::per_message(STACK.name);
                match policy {
                    EchoPolicy::FlushEach => ws.send(message).await?,
                    EchoPolicy::Batched => ws.feed(message).await?,
                }
            }
            Message::Close(_) => return Ok(()),
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    Ok(())
}

/// The one topic of the broadcast room.
const TOPIC: &str = "room";

/// The broadcast room: the library's PubSub, and the lock that puts its
/// publishes in one order.
#[derive(Default)]
struct Room {
    pubsub: PubSub,
    /// PubSub takes its recipients under its lock and sends after releasing
    /// it, so two publishes could interleave; holding this one across each
    /// publish gives every subscriber the same order.
    order: Mutex<()>,
}

impl Room {
    fn publish(&self, message: Message) {
        // Nothing is left inconsistent under a `()` lock, so a poisoned one
        // is as good as any.
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        self.pubsub.publish(TOPIC, message);
    }
}

/// A connection's subscription; dropping it leaves the room.
struct Member<'a> {
    room: &'a Room,
    id: SubscriberId,
}

impl<'a> Member<'a> {
    fn join(room: &'a Room) -> (Member<'a>, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = room.pubsub.create_subscriber(tx);
        room.pubsub.subscribe(id, TOPIC);
        (Member { room, id }, rx)
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.room.pubsub.remove_subscriber(self.id);
    }
}

async fn broadcast(
    server: WebSocketServer<Http1>,
    stream: TcpStream,
    policy: EchoPolicy,
    room: Arc<Room>,
) {
    let Ok((mut ws, _handshake)) = server.accept_raw(stream).await else {
        return;
    };
    let (_member, mut rx) = Member::join(&room);
    let _ = broadcast_messages(&mut ws, &room, &mut rx, policy).await;
}

/// As examples/pubsub_echo.rs: one task selects between the socket, whose
/// data messages go to the room, and the connection's queue, whose
/// messages go out under the policy.
async fn broadcast_messages(
    ws: &mut WebSocketStream<TcpStream>,
    room: &Room,
    rx: &mut mpsc::UnboundedReceiver<Message>,
    policy: EchoPolicy,
) -> sockudo_ws::Result<()> {
    loop {
        tokio::select! {
            // The room holds this queue's sender while the member lives.
            Some(message) = rx.recv() => match policy {
                EchoPolicy::FlushEach => ws.send(message).await?,
                EchoPolicy::Batched => {
                    ws.feed(message).await?;
                    while let Ok(more) = rx.try_recv() {
                        ws.feed(more).await?;
                    }
                    ws.flush().await?;
                }
            },
            // Pings are answered and a close is replied to by the stream
            // itself.
            message = ws.next() => match message {
                Some(message) => match message? {
                    message @ (Message::Text(_) | Message::Binary(_)) => room.publish(message),
                    Message::Close(_) => return Ok(()),
                    Message::Ping(_) | Message::Pong(_) => {}
                },
                None => return Ok(()),
            },
        }
    }
}
