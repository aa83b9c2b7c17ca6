//! wtx: a collection of transport implementations (HTTP/2, gRPC, database
//! clients, WebSocket) on its own stream traits, with its own WebSocket
//! handshake.

use tokio::net::TcpStream;
use wtx::collection::Vector;
use wtx::web_socket::{OpCode, WebSocketAcceptor, WebSocketPayloadOrigin};

use super::runtime::{accept_loop, start_tokio_server};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings};

pub const STACK: StackInfo = StackInfo {
    name: "wtx",
    package: "wtx",
    version: super::versions::of_crate("wtx"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Pinned to the last release that builds with this rustc (1.95; later releases need \
            1.96, and 0.47.x is yanked). WebSocketAcceptor::default().accept on the TCP stream \
            (its own handshake; compression `()`, so deflate is never negotiated); features \
            tokio, web-socket-handshake and crypto-ring (the handshake's SHA-1 needs a crypto \
            backend). Suite: set_max_payload_len at the limit (its default is 64 MiB, above \
            it). No read-buffer setting used (small-buffers = suite). Pongs and close replies \
            written by the reader (auto reply); fragments joined and text validated by \
            read_frame. Echo policy: not applicable, both policies run the same code: \
            write_frame writes header and payload in one vectored write to the socket, and \
            the library has no write buffer and no flush to defer.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    start_tokio_server(STACK.name, settings, move |listener, profile| {
        accept_loop(STACK.name, listener, profile, echo)
    })
}

async fn echo(stream: TcpStream, profile: Profile) {
    let _ = echo_frames(stream, profile).await;
}

async fn echo_frames(stream: TcpStream, profile: Profile) -> wtx::Result<()> {
    // Any path is accepted: the default request check accepts every one.
    let mut ws = WebSocketAcceptor::default().accept(stream).await?;
    if let Some(max) = profile.max_message_bytes() {
        ws.set_max_payload_len(max);
    }
    let (mut common, mut reader, mut writer) = ws.split_mut();
    let mut buffer = Vector::new();
    loop {
        let mut frame = reader
            .read_frame(&mut buffer, &mut common, WebSocketPayloadOrigin::Adaptive)
            .await?;
        match frame.op_code() {
            OpCode::Binary | OpCode::Text => {
                super::demo::per_message(STACK.name);
                writer.write_frame(&mut common, &mut frame).await?;
            }
            // The reply went out as the close was read.
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}
