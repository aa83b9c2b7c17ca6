//! tokio-tungstenite: the dedicated WebSocket library of the original
//! question, on a bare tokio accept loop.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::runtime::{accept_loop, start_tokio_server};
use super::{Host, Protocol, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings, SMALL_READ_BUFFER_BYTES};

pub const STACK: StackInfo = StackInfo {
    name: "tokio-tungstenite",
    package: "tokio-tungstenite",
    version: super::versions::of_crate("tokio-tungstenite"),
    protocol: Protocol::WebSocket,
    host: Host::InProcess,
    notes: "Suite: max_message_size and max_frame_size raised; 128 KiB read buffer (default). \
            small-buffers: read_buffer_size 4 KiB. No compression support in tungstenite.",
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
    start_tokio_server(STACK.name, settings, |listener, profile| {
        accept_loop(STACK.name, listener, profile, echo)
    })
}

async fn echo(stream: TcpStream, profile: Profile) {
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, config(profile)).await
    else {
        return;
    };
    // tungstenite answers pings and closes by itself while we keep reading;
    // the loop ends when the peer's close completes or the socket fails.
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
