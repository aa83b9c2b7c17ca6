//! sockudo-ws: a WebSocket library that aims at uWebSockets' speed (SIMD
//! masking and UTF-8, a cork buffer per connection), with its own HTTP/1.1
//! handshake on a tokio stream.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use sockudo_ws::deflate::{self, DeflateConfig, DeflateNegotiation};
use sockudo_ws::server::WebSocketServer;
use sockudo_ws::stream::CompressedWebSocketStream;
use sockudo_ws::{
    handshake, Config, Error, Http1, Message, PubSub, Role, SubscriberId, WebSocketStream,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::runtime::{accept_loop, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{Compression, EchoPolicy, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "sockudo-ws",
    package: "sockudo-ws",
    version: super::versions::of_crate("sockudo-ws"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Its own HTTP/1.1 handshake (WebSocketServer::<Http1>::accept_raw), which never \
            answers an extension offer; default features off except tokio-runtime, simd and \
            permessage-deflate (for --compression deflate, below). Suite: \
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
            queued, then `ws.flush()`. --compression deflate: the library's Http1 \
            handshake never answers an offer (only its axum integration negotiates), so the \
            handshake is done here with its own pieces, as that integration does: \
            handshake::parse_request, deflate::negotiate_server_deflate with \
            DeflateConfig::default() (window bits 15 and context takeover both ways, level 6, \
            and messages under 32 bytes sent uncompressed: its compression_threshold) and \
            handshake::build_response, then CompressedWebSocketStream::server_with_leftover, a \
            separate stream type with the same Stream and Sink (an offer it cannot honour \
            gets the plain stream). Crate feature permessage-deflate; the plain path runs the \
            same code apart from one frame-parser state the feature adds. It answers \
            `permessage-deflate; client_max_window_bits` with a bare `permessage-deflate`.",
    deflate: true,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    let compression = settings.compression;
    let server = WebSocketServer::<Http1>::new(config(settings.profile));
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, _profile| {
                echo(server.clone(), stream, compression, policy)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Arc::new(Room::default());
            accept_loop(STACK.name, listener, profile, move |stream, _profile| {
                broadcast(server.clone(), stream, compression, policy, room.clone())
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

/// A connection after the upgrade: the library's plain stream, or its
/// compressed one when permessage-deflate was negotiated.
enum Ws {
    Plain(WebSocketStream<ServerStream>),
    Deflate(CompressedWebSocketStream<ServerStream>),
}

/// What both stream types are to the echo and broadcast loops.
trait Messages:
    Stream<Item = sockudo_ws::Result<Message>> + Sink<Message, Error = Error> + Unpin
{
}

impl<W> Messages for W where
    W: Stream<Item = sockudo_ws::Result<Message>> + Sink<Message, Error = Error> + Unpin
{
}

/// The upgrade: the library's own handshake, or with compression on the
/// deflate handshake below.
async fn accept(
    server: &WebSocketServer<Http1>,
    stream: ServerStream,
    compression: Compression,
) -> Option<Ws> {
    match compression {
        Compression::Off => server.accept_raw(stream).await.ok().map(|(ws, _)| Ws::Plain(ws)),
        Compression::Deflate => accept_deflate(stream, server.config().clone()).await.ok(),
    }
}

/// The largest upgrade request read, as the library's own handshake has it.
const MAX_REQUEST_BYTES: usize = 8192;

/// The library's Http1 handshake (server_handshake) with the
/// permessage-deflate negotiation its axum integration does: the first
/// offer it can honour is accepted with `DeflateConfig::default()`.
async fn accept_deflate(mut stream: ServerStream, config: Config) -> sockudo_ws::Result<Ws> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(Error::InvalidHttp("request too large"));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::ConnectionClosed);
        }
        let Some((request, consumed)) = handshake::parse_request(&buf)? else {
            continue;
        };
        let negotiated = request
            .extensions
            .and_then(|offers| deflate::negotiate_server_deflate(offers, &DeflateConfig::default()));
        let accept_key = handshake::generate_accept_key(request.key);
        let extensions = negotiated.as_ref().map(DeflateNegotiation::to_response_header);
        let response = handshake::build_response(&accept_key, None, extensions.as_deref());
        stream.write_all(&response).await?;
        stream.flush().await?;
        // Frames sent right behind the request.
        let leftover = (consumed < buf.len()).then(|| buf.split_off(consumed).freeze());
        return Ok(match negotiated {
            Some(negotiated) => Ws::Deflate(CompressedWebSocketStream::server_with_leftover(
                stream,
                config,
                negotiated.config,
                leftover,
            )),
            None => Ws::Plain(WebSocketStream::from_raw_with_leftover(
                stream,
                Role::Server,
                config,
                leftover,
            )),
        });
    }
}

async fn echo(
    server: WebSocketServer<Http1>,
    stream: ServerStream,
    compression: Compression,
    policy: EchoPolicy,
) {
    let _ = match accept(&server, stream, compression).await {
        Some(Ws::Plain(mut ws)) => echo_messages(&mut ws, policy).await,
        Some(Ws::Deflate(mut ws)) => echo_messages(&mut ws, policy).await,
        None => return,
    };
}

async fn echo_messages(ws: &mut impl Messages, policy: EchoPolicy) -> sockudo_ws::Result<()> {
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
    stream: ServerStream,
    compression: Compression,
    policy: EchoPolicy,
    room: Arc<Room>,
) {
    let Some(ws) = accept(&server, stream, compression).await else {
        return;
    };
    let (_member, mut rx) = Member::join(&room);
    let _ = match ws {
        Ws::Plain(mut ws) => broadcast_messages(&mut ws, &room, &mut rx, policy).await,
        Ws::Deflate(mut ws) => broadcast_messages(&mut ws, &room, &mut rx, policy).await,
    };
}

/// As examples/pubsub_echo.rs: one task selects between the socket, whose
/// data messages go to the room, and the connection's queue, whose
/// messages go out under the policy.
async fn broadcast_messages(
    ws: &mut impl Messages,
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
