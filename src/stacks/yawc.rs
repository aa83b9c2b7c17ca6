//! yawc: a WebSocket library on tokio-util's codec with permessage-deflate,
//! upgraded through hyper's HTTP/1.1 server (its own echo_server example).

use futures_util::{future, SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;

use tokio::sync::broadcast::{self, error::TryRecvError};
use yawc::{CompressionLevel, Frame, HttpWebSocket, OpCode, Options, WebSocket, WebSocketError};

use super::room::BROADCAST_CAPACITY;
use super::runtime::{accept_loop, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{Compression, EchoPolicy, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "yawc",
    package: "yawc",
    version: super::versions::of_crate("yawc"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "hyper http1 upgrade, as the library's examples/echo_server.rs does; default features \
            off (they are client TLS). Suite: max_payload_read and max_read_buffer raised (both \
            are exclusive bounds, so one byte over the limit); UTF-8 validation of text turned \
            on (with_utf8: its default is off, every other stack validates). Compression is off \
            unless Options ask for it (only under --compression deflate, below). No read-buffer setting used \
            (small-buffers = suite). Pongs and close replies are queued by the read side and \
            written on the next poll, so the loop keeps reading. flush-each: `ws.send(frame)` \
            per echo. batched: the stream forwarded into the sink, which feeds echoes while \
            frames are ready and flushes when the read would block. broadcast: a tokio \
            broadcast channel, as the library's broadcast server examples/axum_proxy.rs keeps \
            one per topic (of 1024 there; the suite's 100 here), with one task per \
            connection selecting between the channel and the socket as that example does; a \
            connection that falls 100 frames behind gets `Lagged` and is dropped (the example \
            skips what it missed, which would break the room's every-message contract); each \
            frame cloned (its `Bytes` payload shared) and framed per connection. While it \
            writes, the connection is not read. flush-each: `ws.send(frame)` per message, the \
            example's writer; batched: `feed` for every frame already in the channel, then \
            one flush. --compression deflate: Options::with_compression_level(\
            CompressionLevel::default()), i.e. level 6 with context takeover both ways and \
            window bits 15 (not negotiated: window-bit parameters need the `zlib` feature, \
            which is off) and no size threshold, so every message is compressed; no crate \
            feature needed (compression is built in), so the plain path is unchanged; it \
            answers a permessage-deflate offer with a bare `permessage-deflate`.",
    deflate: true,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    let service = settings.service;
    let compression = settings.compression;
    start_tokio_server(STACK.name, settings, move |listener, profile| {
        let room =
            (service == Service::Broadcast).then(|| broadcast::channel(BROADCAST_CAPACITY).0);
        accept_loop(STACK.name, listener, profile, move |stream, profile| {
            serve_http(stream, profile, compression, policy, room.clone())
        })
    })
}

fn options(profile: Profile, compression: Compression) -> Options {
    let options = match compression {
        Compression::Off => Options::default().with_utf8().without_compression(),
        // The library's defaults (DeflateOptions::default()) at zlib's
        // default level.
        Compression::Deflate => Options::default()
            .with_utf8()
            .with_compression_level(CompressionLevel::default()),
    };
    match profile.max_message_bytes() {
        // Both bounds are exclusive: a message of exactly the limit passes.
        Some(max) => options
            .with_max_payload_read(max + 1)
            .with_max_read_buffer(max + 1),
        None => options,
    }
}

/// Serves the upgrade; the socket then echoes, or joins the broadcast
/// room when there is one.
async fn serve_http(
    stream: ServerStream,
    profile: Profile,
    compression: Compression,
    policy: EchoPolicy,
    room: Option<broadcast::Sender<Frame>>,
) {
    let service = service_fn(move |mut req: Request<Incoming>| {
        let room = room.clone();
        async move {
            let (response, upgrade) = WebSocket::upgrade_with_options(&mut req, options(profile, compression))?;
            tokio::spawn(async move {
                if let Ok(ws) = upgrade.await {
                    match (room, policy) {
                        (Some(room), _) => broadcast(ws, room, policy).await,
                        (None, EchoPolicy::FlushEach) => echo_flush_each(ws).await,
                        (None, EchoPolicy::Batched) => echo_batched(ws).await,
                    }
                }
            });
            Ok::<_, WebSocketError>(response)
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// Text and binary frames (reassembled) are echoed; the stream also yields
/// pings, pongs and the close, which it has already answered.
fn is_data(frame: &Frame) -> bool {
    let data = matches!(frame.opcode(), OpCode::Text | OpCode::Binary);
    if data {
        super::demo::per_message(STACK.name);
    }
    data
}

async fn echo_flush_each(mut ws: HttpWebSocket) {
    // After a close the next read writes the queued reply and ends the
    // stream.
    while let Some(frame) = ws.next().await {
        if is_data(&frame) && ws.send(frame).await.is_err() {
            return;
        }
    }
}

async fn echo_batched(ws: HttpWebSocket) {
    let (write, read) = ws.split();
    let _ = read
        .filter(|frame| future::ready(is_data(frame)))
        .map(Ok::<Frame, WebSocketError>)
        .forward(write)
        .await;
}

/// As the library's examples/axum_proxy.rs serves its subscribers: one
/// task selects between the room's channel and the socket. A frame read is
/// sent into the channel; what the channel brings is written under the
/// policy. The connection ends when its peer's close completes, the
/// socket fails, or it lags behind the channel.
async fn broadcast(mut ws: HttpWebSocket, room: broadcast::Sender<Frame>, policy: EchoPolicy) {
    let mut rx = room.subscribe();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                // Lagged: this connection missed messages, so it is dropped.
                let Ok(frame) = msg else { return };
                if !write_ring(&mut ws, &mut rx, frame, policy).await {
                    return;
                }
            }
            frame = ws.next() => match frame {
                Some(frame) => match frame.opcode() {
                    // Err only when no receiver is left, and this
                    // connection's own is one.
                    OpCode::Text | OpCode::Binary => {
                        let _ = room.send(frame);
                    }
                    // The reply is queued; writing data after it would break
                    // the close handshake, so only the reads go on, which
                    // write the reply and end the stream.
                    OpCode::Close => {
                        drop(rx);
                        while ws.next().await.is_some() {}
                        return;
                    }
                    _ => {}
                },
                None => return,
            },
        }
    }
}

/// Writes `frame`, and under batched every frame already in the channel,
/// then flushes. `false` when the connection is to end: the socket failed,
/// or it lagged behind the channel (which reports that only once, so it is
/// acted on here).
async fn write_ring(
    ws: &mut HttpWebSocket,
    rx: &mut broadcast::Receiver<Frame>,
    frame: Frame,
    policy: EchoPolicy,
) -> bool {
    match policy {
        EchoPolicy::FlushEach => ws.send(frame).await.is_ok(),
        EchoPolicy::Batched => {
            if ws.feed(frame).await.is_err() {
                return false;
            }
            loop {
                match rx.try_recv() {
                    Ok(more) => {
                        if ws.feed(more).await.is_err() {
                            return false;
                        }
                    }
                    Err(TryRecvError::Empty) => return ws.flush().await.is_ok(),
                    // Lagged, or (never, the room outlives it) closed.
                    Err(_) => return false,
                }
            }
        }
    }
}
