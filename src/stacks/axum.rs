//! axum: the web framework of the original question, with its `ws`
//! extractor (built on the same tokio-tungstenite version as the
//! `tokio-tungstenite` stack), served by `axum::serve` behind a router.

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;

use super::runtime::start_tokio_server;
use super::{Host, Protocol, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings, SMALL_READ_BUFFER_BYTES};

pub const STACK: StackInfo = StackInfo {
    name: "axum",
    package: "axum",
    version: super::versions::of_crate("axum"),
    protocol: Protocol::WebSocket,
    host: Host::InProcess,
    notes: "WebSocketUpgrade with max_message_size and max_frame_size raised; routes `/` and \
            `/{*path}` through a Router. small-buffers: read_buffer_size 4 KiB.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    start_tokio_server(STACK.name, settings, |listener, profile| async move {
        let app = Router::new()
            .route("/", get(upgrade))
            .route("/{*path}", get(upgrade))
            .with_state(profile);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("wsbench: axum: server ended: {e}");
        }
    })
}

async fn upgrade(ws: WebSocketUpgrade, State(profile): State<Profile>) -> Response {
    let ws = match profile.max_message_bytes() {
        Some(max) => ws.max_message_size(max).max_frame_size(max),
        None => ws,
    };
    let ws = match profile {
        Profile::SmallBuffers => ws.read_buffer_size(SMALL_READ_BUFFER_BYTES),
        _ => ws,
    };
    ws.on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    use axum::extract::ws::Message;
    while let Some(Ok(msg)) = socket.recv().await {
        if !matches!(msg, Message::Text(_) | Message::Binary(_)) {
            continue;
        }
        super::demo::per_message(STACK.name);
        if socket.send(msg).await.is_err() {
            return;
        }
    }
}
