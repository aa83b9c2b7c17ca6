//! fastwebsockets: a minimal, fast frame layer, upgraded through hyper's
//! HTTP/1.1 server; `FragmentCollector` reassembles fragmented messages.

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::runtime::{accept_loop, start_tokio_server};
use super::{Host, Protocol, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings};

pub const STACK: StackInfo = StackInfo {
    name: "fastwebsockets",
    package: "fastwebsockets",
    version: super::versions::of_crate("fastwebsockets"),
    protocol: Protocol::WebSocket,
    host: Host::InProcess,
    notes: "hyper http1 upgrade; auto close and auto pong on; set_max_message_size raised. \
            No read-buffer setting (small-buffers = suite). No compression support.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    start_tokio_server(STACK.name, settings, |listener, profile| {
        accept_loop(STACK.name, listener, profile, serve_http)
    })
}

async fn serve_http(stream: TcpStream, profile: Profile) {
    let service = service_fn(move |mut req: Request<Incoming>| async move {
        let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            if let Ok(ws) = upgrade.await {
                echo(ws, profile).await;
            }
        });
        Ok::<_, WebSocketError>(response)
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn echo(mut ws: fastwebsockets::WebSocket<TokioIo<Upgraded>>, profile: Profile) {
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    if let Some(max) = profile.max_message_bytes() {
        ws.set_max_message_size(max);
    }
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = match ws.read_frame().await {
            Ok(frame) => frame,
            Err(_) => return,
        };
        match frame.opcode {
            OpCode::Close => return,
            OpCode::Text | OpCode::Binary => {
                super::demo::per_message(STACK.name);
                if let Err(_closed) = ws.write_frame(frame).await {
                    return;
                }
            }
            _ => {}
        }
    }
}
