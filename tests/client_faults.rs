//! The client must not be fooled or hung: a server that corrupts, drops,
//! stalls or dies is reported, naming the stack, within a bounded time.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wsbench::client::{self, Budget, Connection, MessageSpec, PayloadKind, Target};
use wsbench::stacks::Protocol;

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Flips one byte in every echo.
    Corrupt,
    /// Drops the last byte of every echo.
    Truncate,
    /// Echoes every other message only.
    Drop,
    /// Echoes binary messages as text.
    WrongKind,
    /// Reads but never answers.
    Stall,
    /// Closes the TCP connection after the first message.
    Die,
}

/// A tokio-tungstenite echo server that misbehaves as told. Returns the
/// target the client should hit.
async fn bad_server(how: Misbehaviour) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                let mut n = 0u64;
                while let Some(Ok(msg)) = ws.next().await {
                    n += 1;
                    let reply = match (how, msg) {
                        (Misbehaviour::Corrupt, Message::Binary(b)) => {
                            let mut v = b.to_vec();
                            let last = v.len() - 1;
                            v[last] ^= 0x20;
                            Some(Message::Binary(v.into()))
                        }
                        (Misbehaviour::Truncate, Message::Binary(b)) => {
                            Some(Message::Binary(b.slice(..b.len() - 1)))
                        }
                        (Misbehaviour::Drop, m) => (n % 2 == 1).then_some(m),
                        (Misbehaviour::WrongKind, Message::Binary(b)) => {
                            Some(Message::Text(String::from_utf8(b.to_vec()).unwrap().into()))
                        }
                        (Misbehaviour::Stall, _) => None,
                        (Misbehaviour::Die, _) => return,
                        (_, m) => Some(m),
                    };
                    if let Some(reply) = reply {
                        if ws.send(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Target {
        stack: "misbehaving-test-server".into(),
        addr,
        host: addr.to_string(),
        path: "/".into(),
        protocol: Protocol::WebSocket,
    }
}

/// Runs 10 round trips against a misbehaving server and returns the error.
fn error_against(how: Misbehaviour, window: usize) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let target = bad_server(how).await;
        let mut conn = Connection::open(&target).await.unwrap();
        conn.set_stall_timeout(Duration::from_secs(1));
        let spec = MessageSpec {
            size_bytes: 64,
            kind: PayloadKind::Binary,
            window,
        };
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            conn.run(spec, Budget::Count(10), &mut client::new_histogram()),
        )
        .await
        .expect("the client must give up on its own, well before 30 s");
        let err = r
            .expect_err("a misbehaving server must fail the run")
            .to_string();
        assert!(
            err.contains("misbehaving-test-server"),
            "the error names the stack: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        err
    })
}

#[test]
fn corrupted_echo_is_rejected() {
    for window in [1, 4] {
        let err = error_against(Misbehaviour::Corrupt, window);
        assert!(err.contains("differs"), "{err}");
    }
}

#[test]
fn truncated_echo_is_rejected() {
    let err = error_against(Misbehaviour::Truncate, 1);
    assert!(err.contains("63 bytes, sent 64"), "{err}");
}

#[test]
fn dropped_echo_is_caught() {
    // The window lets the next echo arrive in place of the dropped one.
    let err = error_against(Misbehaviour::Drop, 4);
    assert!(
        err.contains("dropped, repeated or reordered") || err.contains("stalled"),
        "{err}"
    );
}

#[test]
fn echo_of_the_wrong_kind_is_rejected() {
    let err = error_against(Misbehaviour::WrongKind, 1);
    assert!(err.contains("opcode"), "{err}");
}

#[test]
fn stalled_server_is_reported_within_the_stall_timeout() {
    for window in [1, 4] {
        let err = error_against(Misbehaviour::Stall, window);
        assert!(err.contains("stalled"), "{err}");
    }
}

#[test]
fn dead_server_is_reported() {
    let err = error_against(Misbehaviour::Die, 1);
    assert!(err.contains("closed"), "{err}");
}

#[test]
fn refused_connection_names_the_stack() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Bind and drop, so the port is very likely closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = Target {
        stack: "nobody".into(),
        addr,
        host: addr.to_string(),
        path: "/".into(),
        protocol: Protocol::WebSocket,
    };
    let err = rt
        .block_on(Connection::open(&target))
        .err()
        .expect("nothing listens there")
        .to_string();
    assert!(err.starts_with("stack nobody:"), "{err}");
}

#[test]
fn bad_urls_are_explained() {
    assert!(Target::from_url("http://x", "s")
        .unwrap_err()
        .to_string()
        .contains("expected ws://"));
    assert!(Target::from_url("wss://127.0.0.1:1/", "s")
        .unwrap_err()
        .to_string()
        .contains("TLS"));
    let t = Target::from_url("ws://127.0.0.1:9001/chat", "s").unwrap();
    assert_eq!(t.path, "/chat");
    assert_eq!(t.addr.port(), 9001);
}
