//! The echo contract, for every in-process stack in the table: echo of
//! text and binary at the frame-length boundaries and 16 MiB, fragmented
//! input, ping/pong, the close handshake, a window of 16 small messages and
//! 100 concurrent connections, under each echo write policy (the batched
//! cases are named `batched_...`). The Python stacks get the same checks in
//! `child_stacks.rs`.
//!
//! The tests are made from [`stacks::STACKS`] (see `table/mod.rs`): one per
//! case and stack, named `case::stack`, so `cargo test --test stacks -- axum`
//! runs one stack's. Cases that do not apply to raw TCP are skipped with the
//! reason.
//!
//! Tests assert behaviour only; nothing here is timed.

use std::process::ExitCode;
use std::time::Duration;

use libtest_mimic::Trial;

use wsbench::client::wire::{OP_BINARY, OP_CONTINUATION, OP_TEXT};
use wsbench::client::{self, Budget, Connection, Driver, MessageSpec, PayloadKind, Target};
use wsbench::placement::Placement;
use wsbench::settings::{EchoPolicy, Profile, ServerSettings};
use wsbench::stacks::{self, versions, Host, Protocol, Runtime, ServerHandle, StackInfo};

mod table;
use table::{Action, Case};

/// Sizes at the frame-length encoding boundaries (7-bit, 16-bit, 64-bit
/// lengths), plus 16 MiB.
const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 16 << 20];

fn start(stack: &StackInfo, echo: EchoPolicy) -> ServerHandle {
    let settings = ServerSettings {
        placement: Placement::Unpinned,
        profile: Profile::Suite,
        echo,
        ..Default::default()
    };
    stack.start(&settings).unwrap()
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

fn echo_all_sizes(stack: &'static StackInfo, echo: EchoPolicy) {
    let name = stack.name;
    let server = start(stack, echo);
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

fn fragmented_message_comes_back_whole(stack: &'static StackInfo, echo: EchoPolicy) {
    let name = stack.name;
    let server = start(stack, echo);
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

fn ping_gets_pong(stack: &'static StackInfo, echo: EchoPolicy) {
    let name = stack.name;
    let server = start(stack, echo);
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

fn close_handshake_completes(stack: &'static StackInfo, echo: EchoPolicy) {
    let name = stack.name;
    let server = start(stack, echo);
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

/// Sixteen small messages in flight at once: the case a batched policy
/// writes several echoes at a time for. Every echo must come back, in order,
/// and none may be held back (the client waits for the last ones with
/// nothing more to send).
fn window_of_16_small_messages(stack: &'static StackInfo, echo: EchoPolicy) {
    let name = stack.name;
    let server = start(stack, echo);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        let mut conn = Connection::open(&target).await.unwrap();
        for (kind, size) in [(PayloadKind::Binary, 16), (PayloadKind::Text, 128)] {
            let spec = MessageSpec {
                size_bytes: size,
                kind,
                window: 16,
            };
            let mut hist = client::new_histogram();
            let n = conn
                .run(spec, Budget::Count(1000), &mut hist)
                .await
                .unwrap_or_else(|e| panic!("{name} {echo}: {size} B {kind:?}: {e}"));
            assert_eq!(n, 1000);
            assert_eq!(hist.len(), 1000);
        }
        // A lone message after the burst still comes back.
        let spec = MessageSpec {
            size_bytes: 32,
            kind: PayloadKind::Binary,
            window: 1,
        };
        let n = conn
            .run(spec, Budget::Count(1), &mut client::new_histogram())
            .await
            .unwrap();
        assert_eq!(n, 1);
        conn.close().await.unwrap();
    }));
    server.shutdown().unwrap();
}

fn hundred_connections_hundred_messages(stack: &'static StackInfo, echo: EchoPolicy) {
    let name = stack.name;
    let server = start(stack, echo);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        let mut conns = client::connect_many(&target, 100).await.unwrap();
        let spec = MessageSpec {
            size_bytes: 128,
            kind: PayloadKind::Binary,
            window: 1,
        };
        // Both drivers, in turn on the same connections, verify the same
        // count.
        for (turn, driver) in [Driver::Uring, Driver::Epoll].into_iter().enumerate() {
            let mut hist = client::new_histogram();
            let budget = Budget::Count(100);
            let stats = client::drive_on(&mut conns, spec, budget, &mut hist, driver)
                .await
                .unwrap();
            assert_eq!(stats.round_trips, 100 * 100, "{driver:?}");
            assert_eq!(hist.len(), 100 * 100, "{driver:?}");
            let each = 100 * (turn as u64 + 1);
            assert!(
                conns.iter().all(|c| c.verified_round_trips() == each),
                "{driver:?}"
            );
        }
        client::close_all(conns).await.unwrap();
    }));
    server.shutdown().unwrap();
}

/// The server's end of the TCP connection from `client_port` to
/// `server_port`, found among this process's descriptors (in-process stacks
/// only): a socket whose local port is the server's and whose peer port is
/// the client's.
fn server_end_of(server_port: u16, client_port: u16) -> Option<libc::c_int> {
    fn port(fd: libc::c_int, peer: bool) -> Option<u16> {
        // SAFETY: `addr` is large enough for any socket address and `len`
        // says so; the calls only write within it.
        unsafe {
            let mut addr: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let p = &mut addr as *mut libc::sockaddr_storage as *mut libc::sockaddr;
            let r = if peer {
                libc::getpeername(fd, p, &mut len)
            } else {
                libc::getsockname(fd, p, &mut len)
            };
            if r != 0 || addr.ss_family != libc::AF_INET as libc::sa_family_t {
                return None;
            }
            let v4 = &*(p as *const libc::sockaddr_in);
            Some(u16::from_be(v4.sin_port))
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::c_int>().ok())
        .find(|&fd| port(fd, false) == Some(server_port) && port(fd, true) == Some(client_port))
}

/// TCP_NODELAY is one of the suite's settings (README): small echoes must
/// not wait for Nagle's algorithm. Checked on the server's own socket,
/// which the client cannot see from its side.
fn server_socket_has_nodelay(stack: &'static StackInfo, echo: EchoPolicy) {
    let name = stack.name;
    let server = start(stack, echo);
    let target = Target::of(&server);
    runtime().block_on(bounded(name, async {
        let mut conn = Connection::open(&target).await.unwrap();
        // One echo, so the server has accepted and set up the connection.
        let spec = MessageSpec {
            size_bytes: 32,
            kind: PayloadKind::Binary,
            window: 1,
        };
        conn.run(spec, Budget::Count(1), &mut client::new_histogram())
            .await
            .unwrap();
        let fd = server_end_of(server.addr.port(), conn.local_port())
            .unwrap_or_else(|| panic!("{name}: the server's socket was not found"));
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `on` and `len` are valid for the option's size.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &mut on as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(r, 0, "{name}: getsockopt failed");
        assert_ne!(
            on, 0,
            "stack {name}: TCP_NODELAY is off on the server's socket"
        );
        conn.close().await.unwrap();
    }));
    server.shutdown().unwrap();
}

/// One check every in-process stack gets.
struct StackCase {
    name: &'static str,
    check: table::Check,
    applies: Applies,
}

#[derive(Clone, Copy)]
enum Applies {
    Always,
    /// Skipped on a raw-TCP stack, for this reason.
    WebSocketOnly(&'static str),
}

const NO_FRAMES: &str = "raw TCP has no frames, so nothing to fragment";
const NO_PING: &str = "raw TCP has no ping";

/// The cases every in-process stack gets, in the order they run: the
/// contract under flush-each, then again under batched (TCP_NODELAY does
/// not depend on the policy).
const CASES: [StackCase; 13] = [
    StackCase {
        name: "echoes_text_and_binary_at_every_size",
        check: |s| echo_all_sizes(s, EchoPolicy::FlushEach),
        applies: Applies::Always,
    },
    StackCase {
        name: "reassembles_fragmented_messages",
        check: |s| fragmented_message_comes_back_whole(s, EchoPolicy::FlushEach),
        applies: Applies::WebSocketOnly(NO_FRAMES),
    },
    StackCase {
        name: "answers_ping_with_pong",
        check: |s| ping_gets_pong(s, EchoPolicy::FlushEach),
        applies: Applies::WebSocketOnly(NO_PING),
    },
    StackCase {
        name: "completes_the_close_handshake",
        check: |s| close_handshake_completes(s, EchoPolicy::FlushEach),
        applies: Applies::Always,
    },
    StackCase {
        name: "echoes_a_window_of_16_small_messages",
        check: |s| window_of_16_small_messages(s, EchoPolicy::FlushEach),
        applies: Applies::Always,
    },
    StackCase {
        name: "serves_100_connections_with_100_messages_each",
        check: |s| hundred_connections_hundred_messages(s, EchoPolicy::FlushEach),
        applies: Applies::Always,
    },
    StackCase {
        name: "sets_tcp_nodelay_on_its_connections",
        check: |s| server_socket_has_nodelay(s, EchoPolicy::FlushEach),
        applies: Applies::Always,
    },
    StackCase {
        name: "batched_echoes_text_and_binary_at_every_size",
        check: |s| echo_all_sizes(s, EchoPolicy::Batched),
        applies: Applies::Always,
    },
    StackCase {
        name: "batched_reassembles_fragmented_messages",
        check: |s| fragmented_message_comes_back_whole(s, EchoPolicy::Batched),
        applies: Applies::WebSocketOnly(NO_FRAMES),
    },
    StackCase {
        name: "batched_answers_ping_with_pong",
        check: |s| ping_gets_pong(s, EchoPolicy::Batched),
        applies: Applies::WebSocketOnly(NO_PING),
    },
    StackCase {
        name: "batched_completes_the_close_handshake",
        check: |s| close_handshake_completes(s, EchoPolicy::Batched),
        applies: Applies::Always,
    },
    StackCase {
        name: "batched_echoes_a_window_of_16_small_messages",
        check: |s| window_of_16_small_messages(s, EchoPolicy::Batched),
        applies: Applies::Always,
    },
    StackCase {
        name: "batched_serves_100_connections_with_100_messages_each",
        check: |s| hundred_connections_hundred_messages(s, EchoPolicy::Batched),
        applies: Applies::Always,
    },
];

fn plan(stack: &'static StackInfo) -> Vec<Case> {
    match (stack.host(), stack.protocol) {
        (Host::InProcess, protocol) => CASES
            .iter()
            .map(|case| {
                let action = match (case.applies, protocol) {
                    (Applies::WebSocketOnly(why), Protocol::RawTcp) => Action::Skip(why),
                    (Applies::Always, _) | (Applies::WebSocketOnly(_), Protocol::WebSocket) => {
                        Action::Run(case.check)
                    }
                };
                Case::new(case.name, stack, action)
            })
            .collect(),
        (Host::ChildProcess, Protocol::WebSocket) => vec![Case::new(
            "echo_contract",
            stack,
            Action::Elsewhere("tests/child_stacks.rs"),
        )],
        (Host::ChildProcess, Protocol::RawTcp) => vec![Case::no_plan("tests/stacks.rs", stack)],
    }
}

fn main() -> ExitCode {
    table::run(
        "tests/stacks.rs",
        plan,
        vec![
            table::refuses_unknown_kind(plan),
            Trial::test("table::versions_come_from_the_lock_files", || {
                versions_come_from_the_lock_files();
                Ok(())
            }),
        ],
    )
}

/// Each row's version is its package's, as build.rs found it in Cargo.lock,
/// python/requirements.txt or node/package.json.
fn versions_come_from_the_lock_files() {
    for s in stacks::STACKS {
        let table = match s.runtime {
            Runtime::Native => versions::CRATES,
            Runtime::Python => versions::PYTHON,
            Runtime::Node => versions::NODE,
        };
        assert_eq!(
            versions::lookup(table, s.package),
            Some(s.version),
            "stack {}: version {} is not {}'s",
            s.name,
            s.version,
            s.package
        );
        assert!(
            s.version.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "stack {}: version {:?}",
            s.name,
            s.version
        );
    }
}
