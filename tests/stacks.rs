//! The echo contract, for every in-process stack in the table: echo of
//! text and binary at the frame-length boundaries and 16 MiB, fragmented
//! input, ping/pong, the close handshake and 100 concurrent connections.
//! The Python stacks get the same checks in `python_stacks.rs`.
//!
//! Tests assert behaviour only; nothing here is timed.

use std::time::Duration;

use wsbench::client::wire::{OP_BINARY, OP_CONTINUATION, OP_TEXT};
use wsbench::client::{self, Budget, Connection, MessageSpec, PayloadKind, Target};
use wsbench::placement::Placement;
use wsbench::settings::{Profile, ServerSettings};
use wsbench::stacks::{self, Protocol, ServerHandle};

/// Sizes at the frame-length encoding boundaries (7-bit, 16-bit, 64-bit
/// lengths), plus 16 MiB.
const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 16 << 20];

fn start(name: &str) -> ServerHandle {
    let settings = ServerSettings {
        placement: Placement::Unpinned,
        profile: Profile::Suite,
        ..Default::default()
    };
    stacks::find(name).unwrap().start(&settings).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Bounds every test: a hang is a failure, not a stuck CI job.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 120 s"))
}

fn echo_all_sizes(name: &str) {
    let server = start(name);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        let mut conn = Connection::open(&target).await.unwrap();
        for kind in [PayloadKind::Binary, PayloadKind::Text] {
            for size in SIZES {
                let spec = MessageSpec {
                    size_bytes: size,
                    kind,
                    window: 1,
                };
                let mut hist = client::new_histogram();
                let n = conn
                    .run(spec, Budget::Count(3), &mut hist)
                    .await
                    .unwrap_or_else(|e| panic!("{size} B {kind:?}: {e}"));
                assert_eq!(n, 3);
                assert_eq!(hist.len(), 3);
            }
        }
        // Several in flight, large and small.
        for size in [32, 1 << 20] {
            let spec = MessageSpec {
                size_bytes: size,
                kind: PayloadKind::Binary,
                window: 8,
            };
            let n = conn
                .run(spec, Budget::Count(20), &mut client::new_histogram())
                .await
                .unwrap();
            assert_eq!(n, 20);
        }
        conn.close().await.unwrap();
    }));
    server.shutdown().unwrap();
}

fn fragmented_message_comes_back_whole(name: &str) {
    let server = start(name);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        let mut conn = Connection::open(&target).await.unwrap();
        for (opcode, parts) in [
            (
                OP_TEXT,
                vec![&b"hello "[..], &b"fragmented "[..], &b"world"[..]],
            ),
            (
                OP_BINARY,
                vec![&[1u8, 2, 3][..], &[][..], &[4u8; 70_000][..]],
            ),
        ] {
            let last = parts.len() - 1;
            for (i, part) in parts.iter().enumerate() {
                let op = if i == 0 { opcode } else { OP_CONTINUATION };
                conn.send_frame(i == last, op, part).await.unwrap();
            }
            let (got_op, got) = conn.recv_frame().await.unwrap();
            assert_eq!(got_op, opcode, "{name}: echo kind");
            assert_eq!(got, parts.concat(), "{name}: echo bytes");
        }
        conn.close().await.unwrap();
    }));
    server.shutdown().unwrap();
}

fn ping_gets_pong(name: &str) {
    let server = start(name);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        let mut conn = Connection::open(&target).await.unwrap();
        conn.ping(b"are you there").await.unwrap();
        conn.ping(b"").await.unwrap();
        // Data still flows after the pings.
        let spec = MessageSpec {
            size_bytes: 64,
            kind: PayloadKind::Text,
            window: 1,
        };
        conn.run(spec, Budget::Count(5), &mut client::new_histogram())
            .await
            .unwrap();
        conn.close().await.unwrap();
    }));
    server.shutdown().unwrap();
}

fn close_handshake_completes(name: &str) {
    let server = start(name);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        // Close right away, and after traffic.
        Connection::open(&target)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let mut conn = Connection::open(&target).await.unwrap();
        let spec = MessageSpec {
            size_bytes: 10,
            kind: PayloadKind::Binary,
            window: 1,
        };
        conn.run(spec, Budget::Count(10), &mut client::new_histogram())
            .await
            .unwrap();
        conn.close().await.unwrap();
    }));
    server.shutdown().unwrap();
}

fn hundred_connections_hundred_messages(name: &str) {
    let server = start(name);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        let mut conns = client::connect_many(&target, 100).await.unwrap();
        let spec = MessageSpec {
            size_bytes: 128,
            kind: PayloadKind::Binary,
            window: 1,
        };
        let mut hist = client::new_histogram();
        let stats = client::drive(&mut conns, spec, Budget::Count(100), &mut hist)
            .await
            .unwrap();
        assert_eq!(stats.round_trips, 100 * 100);
        assert_eq!(hist.len(), 100 * 100);
        assert!(conns.iter().all(|c| c.verified_round_trips() == 100));
        client::close_all(conns).await.unwrap();
    }));
    server.shutdown().unwrap();
}

fn websocket_only(name: &str) -> bool {
    stacks::find(name).unwrap().protocol == Protocol::WebSocket
}

macro_rules! stack_tests {
    ($($module:ident => $name:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            fn echoes_text_and_binary_at_every_size() {
                super::echo_all_sizes($name);
            }

            #[test]
            fn reassembles_fragmented_messages() {
                if super::websocket_only($name) {
                    super::fragmented_message_comes_back_whole($name);
                }
            }

            #[test]
            fn answers_ping_with_pong() {
                if super::websocket_only($name) {
                    super::ping_gets_pong($name);
                }
            }

            #[test]
            fn completes_the_close_handshake() {
                super::close_handshake_completes($name);
            }

            #[test]
            fn serves_100_connections_with_100_messages_each() {
                super::hundred_connections_hundred_messages($name);
            }
        }
    )*};
}

stack_tests! {
    raw_tcp => "raw-tcp",
    tokio_tungstenite => "tokio-tungstenite",
    axum => "axum",
    fastwebsockets => "fastwebsockets",
    tokio_websockets => "tokio-websockets",
    actix_ws => "actix-ws",
}

/// Every in-process stack of the table is covered by a module above.
#[test]
fn every_in_process_stack_is_tested() {
    let tested = [
        "raw-tcp",
        "tokio-tungstenite",
        "axum",
        "fastwebsockets",
        "tokio-websockets",
        "actix-ws",
    ];
    for s in stacks::in_process() {
        assert!(
            tested.contains(&s.name),
            "stack {} has no tests in tests/stacks.rs",
            s.name
        );
    }
}
