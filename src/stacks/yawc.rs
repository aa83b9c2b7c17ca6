//! yawc: a WebSocket library on tokio-util's codec with permessage-deflate,
//! upgraded through hyper's HTTP/1.1 server (its own echo_server example).

use futures_util::{future, SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use yawc::{Frame, HttpWebSocket, OpCode, Options, WebSocket, WebSocketError};

use super::runtime::{accept_loop, start_tokio_server};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings};

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
            unless Options ask for it (they do not). No read-buffer setting used \
            (small-buffers = suite). Pongs and close replies are queued by the read side and \
            written on the next poll, so the loop keeps reading. flush-each: `ws.send(frame)` \
            per echo. batched: the stream forwarded into the sink, which feeds echoes while \
            frames are ready and flushes when the read would block.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    start_tokio_server(STACK.name, settings, move |listener, profile| {
        accept_loop(STACK.name, listener, profile, move |stream, profile| {
            serve_http(stream, profile, policy)
        })
    })
}

fn options(profile: Profile) -> Options {
    let options = Options::default().with_utf8().without_compression();
    match profile.max_message_bytes() {
        // Both bounds are exclusive: a message of exactly the limit passes.
        Some(max) => options
            .with_max_payload_read(max + 1)
            .with_max_read_buffer(max + 1),
        None => options,
    }
}

async fn serve_http(stream: TcpStream, profile: Profile, policy: EchoPolicy) {
    let service = service_fn(move |mut req: Request<Incoming>| async move {
        let (response, upgrade) = WebSocket::upgrade_with_options(&mut req, options(profile))?;
        tokio::spawn(async move {
            if let Ok(ws) = upgrade.await {
                match policy {
                    EchoPolicy::FlushEach => echo_flush_each(ws).await,
                    EchoPolicy::Batched => echo_batched(ws).await,
                }
            }
        });
        Ok::<_, WebSocketError>(response)
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
