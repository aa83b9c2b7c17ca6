//! axum: the web framework of the original question, with its `ws`
//! extractor (built on the same tokio-tungstenite version as the
//! `tokio-tungstenite` stack), served by `axum::serve` behind a router.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::{future, StreamExt, TryStreamExt};

use tokio::sync::broadcast;

use super::room;
use super::runtime::{accept_loop, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings, Service, SMALL_READ_BUFFER_BYTES};

pub const STACK: StackInfo = StackInfo {
    name: "axum",
    package: "axum",
    version: super::versions::of_crate("axum"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "WebSocketUpgrade with max_message_size and max_frame_size raised; routes `/` and \
            `/{*path}` through a Router. small-buffers: read_buffer_size 4 KiB. flush-each: \
            `socket.send(msg).await` per echo, which flushes each one, as the echo in the docs of \
            axum::extract::ws does (the library's own recommendation). batched: the socket split \
            with `StreamExt::split` (the module docs' \"read and write concurrently\") and the \
            stream forwarded into the sink, which feeds echoes while messages are ready and \
            flushes when the read would block. broadcast: a tokio broadcast channel of 100 \
            messages (rounded up by tokio to 128), as axum's examples/chat does: a connection \
            that falls that far behind gets `Lagged` and is dropped, as the example's `while let Ok(msg) = \
            rx.recv().await` does; the writer task per the echo policy (flush-each: the \
            example's `sender.send(msg).await`). No permessage-deflate in axum 0.8 (its \
            WebSocket is tungstenite 0.29's, which has none).",
    deflate: false,
    start,
};

/// What every handler gets: the profile, the echo policy, and the
/// broadcast room's channel when the server serves one.
#[derive(Clone)]
struct AppState {
    profile: Profile,
    policy: EchoPolicy,
    room: Option<broadcast::Sender<Message>>,
}

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    let service = settings.service;
    start_tokio_server(STACK.name, settings, move |listener, profile| async move {
        let room =
            (service == Service::Broadcast).then(|| broadcast::channel(room::BROADCAST_CAPACITY).0);
        let app = Router::new()
            .route("/", get(upgrade))
            .route("/{*path}", get(upgrade))
            .with_state(AppState {
                profile,
                policy,
                room,
            });
        if listener.tls.is_some() {
            // axum::serve takes plain listeners only; over TLS, as axum's
            // examples/low-level-rustls does, each connection is served by
            // hyper on the TLS stream the accept loop hands over.
            accept_loop(STACK.name, listener, profile, move |stream, _| {
                serve_connection(app.clone(), stream)
            })
            .await;
            return;
        }
        let listener = listener.tcp.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("wsbench: axum: server ended: {e}");
        }
    })
}

/// One connection served by hyper's HTTP/1.1 with upgrades, as
/// `axum::serve` serves each of its own.
async fn serve_connection(app: Router, stream: ServerStream) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let AppState {
        profile,
        policy,
        room,
    } = state;
    let ws = match profile.max_message_bytes() {
        Some(max) => ws.max_message_size(max).max_frame_size(max),
        None => ws,
    };
    let ws = match profile {
        Profile::SmallBuffers => ws.read_buffer_size(SMALL_READ_BUFFER_BYTES),
        _ => ws,
    };
    match (room, policy) {
        (Some(tx), _) => ws.on_upgrade(move |socket| broadcast(socket, tx, policy)),
        (None, EchoPolicy::FlushEach) => ws.on_upgrade(echo_flush_each),
        (None, EchoPolicy::Batched) => ws.on_upgrade(echo_batched),
    }
}

/// As axum's examples/chat: a task writes what the channel brings, this
/// one reads into the channel, and either ending ends both.
async fn broadcast(socket: WebSocket, tx: broadcast::Sender<Message>, policy: EchoPolicy) {
    let (write, mut read) = socket.split();
    let mut writer = tokio::spawn(room::write_ring(write, tx.subscribe(), policy));
    loop {
        tokio::select! {
            _ = &mut writer => return,
            msg = read.next() => match msg {
                Some(Ok(msg)) if is_data(&msg) => {
                    // Err only when no receiver is left, and this
                    // connection's own is one.
                    let _ = tx.send(msg);
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    writer.abort();
}

fn is_data(msg: &Message) -> bool {
    matches!(msg, Message::Text(_) | Message::Binary(_))
}

async fn echo_flush_each(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if !is_data(&msg) {
            continue;
        }
        super::demo::per_message(STACK.name);
        if socket.send(msg).await.is_err() {
            return;
        }
    }
}

/// `forward` feeds each echo into the sink while the stream has messages
/// ready and flushes when it has none (axum's socket is tokio-tungstenite's
/// underneath, so its write buffer takes several echoes per write).
async fn echo_batched(socket: WebSocket) {
    let (write, read) = socket.split();
    let _ = read
        .try_filter(|msg| {
            let data = is_data(msg);
            if data {
                super::demo::per_message(STACK.name);
            }
            future::ready(data)
        })
        .forward(write)
        .await;
}
