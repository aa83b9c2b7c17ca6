//! A tokio-tungstenite echo server that answers as a test tells it, for
//! the tests that check the client is neither fooled nor hung by a bad
//! server (`client_faults.rs`, `open_loop.rs`).

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wsbench::client::Target;
use wsbench::stacks::Protocol;

/// What the server does with one message.
pub enum Reply {
    Send(Message),
    #[allow(dead_code)] // Each test file compiles this module; not all go silent.
    Nothing,
    /// Drops the connection without a close frame.
    #[allow(dead_code)] // Each test file compiles this module; not all close.
    Close,
}

/// Starts the server on a thread and runtime of its own (a lone
/// connection's client blocks its thread); `reply` is called with each
/// message of a connection and its index there, counting from 0. Returns
/// the target the client should hit, named `stack`.
pub fn start(stack: &str, reply: impl Fn(u64, Message) -> Reply + Copy + Send + 'static) -> Target {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The thread ends with the test process.
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    let mut n = 0u64;
                    while let Some(Ok(msg)) = ws.next().await {
                        let this = n;
                        n += 1;
                        match reply(this, msg) {
                            Reply::Send(m) => {
                                if ws.send(m).await.is_err() {
                                    return;
                                }
                            }
                            Reply::Nothing => {}
                            Reply::Close => return,
                        }
                    }
                });
            }
        })
    });
    Target {
        stack: stack.into(),
        addr,
        host: addr.to_string(),
        path: "/".into(),
        protocol: Protocol::WebSocket,
        transport: wsbench::settings::Transport::Plain,
    }
}
