//! sockudo-ws: a WebSocket library that aims at uWebSockets' speed (SIMD
//! masking and UTF-8, a cork buffer per connection), with its own HTTP/1.1
//! handshake on a tokio stream.

use futures_util::{SinkExt, StreamExt};
use sockudo_ws::server::WebSocketServer;
use sockudo_ws::{Config, Http1, Message, WebSocketStream};
use tokio::net::TcpStream;

use super::runtime::{accept_loop, start_tokio_server};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings};

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
            sink also writes once 64 KiB are queued.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    let server = WebSocketServer::<Http1>::new(config(settings.profile));
    start_tokio_server(STACK.name, settings, move |listener, profile| {
        accept_loop(STACK.name, listener, profile, move |stream, _profile| {
            echo(server.clone(), stream, policy)
        })
    })
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
