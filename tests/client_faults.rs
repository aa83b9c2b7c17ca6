//! The client must not be fooled or hung: a server that corrupts, drops,
//! stalls or dies is reported, naming the stack, within a bounded time.

use std::time::{Duration, Instant};

use fault_server::Reply;
use tokio_tungstenite::tungstenite::Message;
use wsbench::client::wire::{OP_BINARY, OP_TEXT};
use wsbench::client::{
    self, Budget, ClientError, Connection, Driver, ErrorKind, MessageSpec, PayloadKind, Target,
};
use wsbench::stacks::Protocol;

mod fault_server;

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

/// An echo server that misbehaves as told; returns the target the client
/// should hit.
fn bad_server(how: Misbehaviour) -> Target {
    fault_server::start("misbehaving-test-server", move |this, msg| {
        match (how, msg) {
            (Misbehaviour::Corrupt, Message::Binary(b)) => {
                let mut v = b.to_vec();
                let last = v.len() - 1;
                v[last] ^= 0x20;
                Reply::Send(Message::Binary(v.into()))
            }
            (Misbehaviour::Truncate, Message::Binary(b)) => {
                Reply::Send(Message::Binary(b.slice(..b.len() - 1)))
            }
            // Every other message, the first included.
            (Misbehaviour::Drop, m) if this % 2 == 0 => Reply::Send(m),
            (Misbehaviour::Drop, _) => Reply::Nothing,
            (Misbehaviour::WrongKind, Message::Binary(b)) => {
                Reply::Send(Message::Text(String::from_utf8(b.to_vec()).unwrap().into()))
            }
            (Misbehaviour::Stall, _) => Reply::Nothing,
            (Misbehaviour::Die, _) => Reply::Close,
            (_, m) => Reply::Send(m),
        }
    })
}

/// A small and a large message (checked as it arrives), in flight alone
/// or with others.
const WAYS: [(usize, usize); 4] = [(64, 1), (64, 4), (200_000, 1), (200_000, 3)];

/// The loops the client waits for echoes in, each of which must catch
/// every fault.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// Through the runtime (`Connection::run`).
    Runtime,
    /// In blocking system calls (`client::drive` with one connection).
    Blocking,
    /// On io_uring (`client::drive_on` with two connections).
    Uring,
}

/// Runs 10 round trips of `size_bytes` with `window` in flight against a
/// misbehaving server in each loop and returns the errors, each with a
/// line that says how it came.
fn errors_against(
    how: Misbehaviour,
    size_bytes: usize,
    window: usize,
) -> Vec<(String, ClientError)> {
    [Waiting::Runtime, Waiting::Blocking, Waiting::Uring]
        .into_iter()
        .map(|waiting| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let target = bad_server(how);
            rt.block_on(async {
                let n = if matches!(waiting, Waiting::Uring) {
                    2
                } else {
                    1
                };
                let mut conns = Vec::new();
                for _ in 0..n {
                    let mut conn = Connection::open(&target).await.unwrap();
                    conn.set_stall_timeout(Duration::from_secs(1));
                    conns.push(conn);
                }
                let spec = MessageSpec {
                    size_bytes,
                    kind: PayloadKind::Binary,
                    window,
                };
                let started = Instant::now();
                let mut hist = client::new_histogram();
                // A blocking or io_uring run cannot be timed out from this
                // thread; the elapsed time is checked after it instead.
                let r = match waiting {
                    Waiting::Blocking => {
                        client::drive(&mut conns, spec, Budget::Count(10), &mut hist)
                            .await
                            .map(|_| ())
                    }
                    Waiting::Uring => client::drive_on(
                        &mut conns,
                        spec,
                        Budget::Count(10),
                        &mut hist,
                        Driver::Uring,
                    )
                    .await
                    .map(|_| ()),
                    Waiting::Runtime => tokio::time::timeout(
                        Duration::from_secs(30),
                        conns[0].run(spec, Budget::Count(10), &mut hist),
                    )
                    .await
                    .expect("the client must give up on its own, well before 30 s")
                    .map(|_| ()),
                };
                let err = r.expect_err("a misbehaving server must fail the run");
                assert_eq!(err.stack, "misbehaving-test-server", "{err}");
                assert!(
                    err.to_string()
                        .starts_with("stack misbehaving-test-server: "),
                    "the message names the stack: {err}"
                );
                assert!(started.elapsed() < Duration::from_secs(20), "{err}");
                let how = format!("{size_bytes} B, window {window}, {waiting:?}: {err}");
                (how, err)
            })
        })
        .collect()
}

/// Every way of waiting against a misbehaving server, each error checked.
fn each_way(how: Misbehaviour, ways: &[(usize, usize)], check: impl Fn(&ErrorKind, usize) -> bool) {
    for &(size, window) in ways {
        for (how, err) in errors_against(how, size, window) {
            assert!(check(&err.kind, size), "{how} ({:?})", err.kind);
        }
    }
}

#[test]
fn corrupted_echo_is_rejected() {
    each_way(Misbehaviour::Corrupt, &WAYS, |err, _| {
        matches!(err, ErrorKind::Differs { .. })
    });
}

#[test]
fn truncated_echo_is_rejected() {
    each_way(Misbehaviour::Truncate, &WAYS, |err, size| {
        matches!(err, ErrorKind::Length { got_bytes, sent_bytes, .. }
            if *got_bytes == size as u64 - 1 && *sent_bytes == size as u64)
    });
}

#[test]
fn dropped_echo_is_caught() {
    // With a window, the next echo arrives in place of the dropped one;
    // with one message in flight, nothing arrives.
    each_way(Misbehaviour::Drop, &WAYS, |err, _| {
        matches!(
            err,
            ErrorKind::OutOfOrder { .. } | ErrorKind::Stalled { .. }
        )
    });
}

#[test]
fn echo_of_the_wrong_kind_is_rejected() {
    each_way(Misbehaviour::WrongKind, &WAYS, |err, _| {
        matches!(
            err,
            ErrorKind::WrongKind {
                got_opcode: OP_TEXT,
                sent_opcode: OP_BINARY,
                ..
            }
        )
    });
}

#[test]
fn stalled_server_is_reported_within_the_stall_timeout() {
    each_way(Misbehaviour::Stall, &WAYS, |err, _| {
        matches!(err, ErrorKind::Stalled { .. })
    });
}

#[test]
fn dead_server_is_reported() {
    each_way(Misbehaviour::Die, &WAYS, |err, _| err.is_disconnect());
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
        transport: wsbench::settings::Transport::Plain,
    };
    let err = rt
        .block_on(Connection::open(&target))
        .err()
        .expect("nothing listens there");
    assert_eq!(err.stack, "nobody");
    assert!(matches!(err.kind, ErrorKind::Connect { .. }), "{err}");
    assert!(err.to_string().starts_with("stack nobody:"), "{err}");
}

#[test]
fn bad_urls_are_explained() {
    assert!(Target::from_url("http://x", "s")
        .unwrap_err()
        .to_string()
        .contains("expected ws://"));
    let t = Target::from_url("ws://127.0.0.1:9001/chat", "s").unwrap();
    assert_eq!(t.path, "/chat");
    assert_eq!(t.addr.port(), 9001);
    assert_eq!(t.transport, wsbench::settings::Transport::Plain);
    let t = Target::from_url("wss://127.0.0.1:9443/", "s").unwrap();
    assert_eq!(t.transport, wsbench::settings::Transport::Tls);
    assert_eq!(t.protocol, Protocol::WebSocket);
    let t = Target::from_url("tls://127.0.0.1:9443", "s").unwrap();
    assert_eq!(t.protocol, Protocol::RawTcp);
    assert_eq!(t.transport, wsbench::settings::Transport::Tls);
}

/// A TLS target given to the driver that speaks plain TCP is refused
/// before anything is sent, naming the driver that speaks TLS.
#[test]
fn the_plain_driver_refuses_a_tls_target() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = Target::from_url("wss://127.0.0.1:1/", "s").unwrap();
    let err = rt
        .block_on(Connection::open(&target))
        .err()
        .expect("refused");
    assert!(matches!(err.kind, ErrorKind::Tls(_)), "{err}");
    assert!(err.to_string().contains("client::secure"), "{err}");
}
