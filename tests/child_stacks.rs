//! The child-process stacks (Python's and Node's) against the suite's echo
//! contract, driven by a real WebSocket client (tungstenite) over loopback.
//!
//! The tests are made from the stack table (see `table/mod.rs`): every
//! child-process stack gets each case, named `case::stack`; the echo
//! contract and a window of 16 run under each echo write policy (the
//! batched cases are named `batched_...`). Where Python, Node or the
//! pinned packages cannot be had, each is skipped with the reason, unless
//! `WSBENCH_REQUIRE_PYTHON=1` or `WSBENCH_REQUIRE_NODE=1` (as in CI), which
//! turns the reason into a failure. Every network wait has a timeout that
//! only guards against a hang; nothing here is timed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use libtest_mimic::{Completion, Trial};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use wsbench::settings::{EchoPolicy, Profile, ServerSettings};
use wsbench::stacks::{
    child, node, python, versions, Host, Protocol, Runtime, ServerHandle, StackInfo,
};

mod table;
use table::{Action, Case};

/// Long enough for a 16 MiB echo through a debug-built client on a loaded
/// machine; only a hang reaches it.
const WAIT: Duration = Duration::from_secs(60);

/// The sizes around each frame-length encoding boundary, and the suite's
/// largest message.
const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 16 << 20];

type Ws = WebSocketStream<TcpStream>;

fn settings(profile: Profile) -> ServerSettings {
    ServerSettings {
        profile,
        ..ServerSettings::default()
    }
}

async fn connect(addr: SocketAddr) -> Ws {
    let tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    tcp.set_nodelay(true).unwrap();
    // Above the 16 MiB the tests send, which is tungstenite's default frame limit.
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    // Any path must upgrade.
    let url = format!("ws://{addr}/any/path?q=1");
    let (ws, _) = timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(url, tcp, Some(config)),
    )
    .await
    .expect("handshake timed out")
    .expect("handshake");
    ws
}

async fn send(ws: &mut Ws, msg: Message) {
    timeout(WAIT, ws.send(msg))
        .await
        .expect("send timed out")
        .expect("send");
}

async fn next(ws: &mut Ws) -> Message {
    timeout(WAIT, ws.next())
        .await
        .expect("receive timed out")
        .expect("connection ended")
        .expect("receive")
}

/// Exactly `len` bytes of UTF-8 with one-, two-, three- and four-byte
/// characters, so that an echo that re-encodes text differently shows.
fn text_of_len(len: usize) -> String {
    let mut s = String::with_capacity(len);
    for c in "wsbench ü€😀 ".chars().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(c);
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

fn binary_of_len(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Sends one message and checks that the same kind and bytes come back.
async fn echo(ws: &mut Ws, sent: Message, what: &str) {
    let want_text = sent.is_text();
    let want = sent.clone().into_data();
    send(ws, sent).await;
    let got = next(ws).await;
    assert_eq!(
        got.is_text(),
        want_text,
        "{what}: echoed as the wrong kind: {got:?}",
        got = kind(&got)
    );
    let got = got.into_data();
    // Not assert_eq: a 16 MiB mismatch would flood the output.
    assert!(
        got == want,
        "{what}: echo differs ({} bytes back, {} sent)",
        got.len(),
        want.len()
    );
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "frame",
    }
}

/// The CPUs the kernel lets a process run on, from /proc.
fn cpus_allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

fn assert_gone(pid: u32) {
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists"
    );
}

/// The whole echo contract against one stack under the suite's settings.
async fn echo_contract(stack: &'static StackInfo, echo_policy: EchoPolicy) {
    let s = ServerSettings {
        echo: echo_policy,
        ..settings(Profile::Suite)
    };
    let server: ServerHandle = stack.start(&s).unwrap_or_else(|e| panic!("{e:#}"));
    let pid = server.pid.expect("a child process has a pid");
    if let Some(cpus) = s.placement.server_cpus() {
        let want: Vec<String> = cpus.iter().map(usize::to_string).collect();
        assert_eq!(
            cpus_allowed(pid),
            want.join(","),
            "{}: not pinned",
            stack.name
        );
    }

    let mut ws = connect(server.addr).await;
    for len in SIZES {
        echo(
            &mut ws,
            Message::text(text_of_len(len)),
            &format!("{} text {len} B", stack.name),
        )
        .await;
        echo(
            &mut ws,
            Message::binary(binary_of_len(len)),
            &format!("{} binary {len} B", stack.name),
        )
        .await;
    }

    // Fragmented input comes back as one message. The text is split inside
    // a two-byte character, so the server must reassemble before decoding.
    let text = "héllo wörld".as_bytes();
    let frames = [
        Frame::message(
            Bytes::copy_from_slice(&text[..2]),
            OpCode::Data(Data::Text),
            false,
        ),
        Frame::message(
            Bytes::copy_from_slice(&text[2..7]),
            OpCode::Data(Data::Continue),
            false,
        ),
        Frame::message(
            Bytes::copy_from_slice(&text[7..]),
            OpCode::Data(Data::Continue),
            true,
        ),
    ];
    for f in frames {
        send(&mut ws, Message::Frame(f)).await;
    }
    let got = next(&mut ws).await;
    assert!(
        got.is_text(),
        "{}: fragmented text came back as {}",
        stack.name,
        kind(&got)
    );
    assert_eq!(
        got.into_data(),
        Bytes::from_static(text),
        "{}: fragmented text",
        stack.name
    );

    let binary = binary_of_len(3 * 70_000);
    for (i, chunk) in binary.chunks(70_000).enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(Bytes::copy_from_slice(chunk), opcode, i == 2);
        send(&mut ws, Message::Frame(frame)).await;
    }
    let got = next(&mut ws).await;
    assert!(
        got.is_binary(),
        "{}: fragmented binary came back as {}",
        stack.name,
        kind(&got)
    );
    assert!(
        got.into_data() == binary,
        "{}: fragmented binary differs",
        stack.name
    );

    // Ping gets pong with the same payload.
    let payload = Bytes::from_static(b"wsbench-ping");
    send(&mut ws, Message::Ping(payload.clone())).await;
    match next(&mut ws).await {
        Message::Pong(p) => assert_eq!(p, payload, "{}: pong payload", stack.name),
        other => panic!("{}: ping answered with {}", stack.name, kind(&other)),
    }

    // The close handshake completes: a close comes back, then the server
    // closes the TCP connection.
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    send(&mut ws, Message::Close(Some(bye))).await;
    match next(&mut ws).await {
        Message::Close(Some(f)) => {
            assert_eq!(f.code, CloseCode::Normal, "{}: close code", stack.name)
        }
        other => panic!("{}: close answered with {}", stack.name, kind(&other)),
    }
    let mut rest = [0u8; 64];
    let n = timeout(WAIT, ws.get_mut().read(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{}: TCP still open after the close handshake", stack.name))
        .unwrap_or(0);
    assert_eq!(n, 0, "{}: bytes after the close handshake", stack.name);

    // Shutdown with a connection open: the server closes it with 1001 and
    // exits cleanly, and its process is gone. Shutdown blocks, so it runs on
    // its own thread while this client answers the close.
    let mut open = connect(server.addr).await;
    echo(
        &mut open,
        Message::text("still here"),
        &format!("{} second connection", stack.name),
    )
    .await;
    let stopping = tokio::task::spawn_blocking(move || server.shutdown());
    match next(&mut open).await {
        Message::Close(Some(f)) => assert_eq!(
            f.code,
            CloseCode::Away,
            "{}: close code on shutdown",
            stack.name
        ),
        other => panic!(
            "{}: shutdown sent {} instead of close",
            stack.name,
            kind(&other)
        ),
    }
    // Reading on sends the close reply tungstenite queued.
    let _ = timeout(WAIT, open.next())
        .await
        .expect("close reply timed out");
    let stopped = timeout(WAIT, stopping)
        .await
        .expect("shutdown timed out")
        .unwrap();
    stopped.unwrap_or_else(|e| panic!("{e:#}"));
    assert_gone(pid);
}

/// Sixteen small messages sent before any echo is read come back whole and
/// in order, and a lone message after them still comes back.
async fn window_of_16(stack: &'static StackInfo, echo_policy: EchoPolicy) {
    let s = ServerSettings {
        echo: echo_policy,
        ..settings(Profile::Suite)
    };
    let server = stack.start(&s).unwrap_or_else(|e| panic!("{e:#}"));
    let pid = server.pid.unwrap();
    let mut ws = connect(server.addr).await;
    let what = format!("{} {echo_policy}", stack.name);
    for round in 0..20 {
        let sent: Vec<Message> = (0..16)
            .map(|i| match i % 2 {
                0 => Message::binary(binary_of_len(16 + i)),
                _ => Message::text(text_of_len(128 + i)),
            })
            .collect();
        for m in &sent {
            timeout(WAIT, ws.feed(m.clone()))
                .await
                .expect("feed timed out")
                .expect("feed");
        }
        timeout(WAIT, ws.flush())
            .await
            .expect("flush timed out")
            .expect("flush");
        for (i, want) in sent.into_iter().enumerate() {
            let got = next(&mut ws).await;
            assert!(
                got == want,
                "{what}: round {round}, echo {i} is not message {i} ({} back)",
                kind(&got)
            );
        }
    }
    echo(
        &mut ws,
        Message::text("alone"),
        &format!("{what} lone message"),
    )
    .await;
    drop(ws);
    server.shutdown().unwrap_or_else(|e| panic!("{e:#}"));
    assert_gone(pid);
}

/// The library defaults still serve the contract for ordinary messages.
async fn defaults_profile(stack: &'static StackInfo) {
    let server = stack
        .start(&settings(Profile::Defaults))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = server.pid.unwrap();
    let mut ws = connect(server.addr).await;
    echo(
        &mut ws,
        Message::text(text_of_len(1000)),
        &format!("{} defaults text", stack.name),
    )
    .await;
    echo(
        &mut ws,
        Message::binary(binary_of_len(1000)),
        &format!("{} defaults binary", stack.name),
    )
    .await;
    drop(ws);
    server.shutdown().unwrap_or_else(|e| panic!("{e:#}"));
    assert_gone(pid);
}

/// The policy reaches the script, which refuses a name it does not know:
/// the setting is recorded, not dropped on the way.
fn passes_the_echo_policy(stack: &'static StackInfo) {
    let out = child::script_command(stack)
        .unwrap_or_else(|e| panic!("{e}"))
        .args(["--port", "0", "--echo", "sometimes"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}: accepted --echo sometimes",
        stack.name
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for policy in EchoPolicy::ALL {
        assert!(
            stderr.contains(policy.as_str()),
            "{}: the script does not offer --echo {policy}: {stderr}",
            stack.name
        );
    }
}

/// The server runs with the same fixed malloc threshold as the bench
/// process (`machine::fix_malloc`): its environment says so.
fn fixes_the_malloc_threshold(stack: &'static StackInfo) {
    let server = stack
        .start(&settings(Profile::Suite))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = server.pid.unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let want = format!(
        "{}={}",
        wsbench::machine::MALLOC_ENV,
        wsbench::machine::MALLOC_MMAP_THRESHOLD_BYTES
    );
    assert!(
        environ.split(|&b| b == 0).any(|v| v == want.as_bytes()),
        "{}: {want} is not in the server's environment",
        stack.name
    );
    server.shutdown().unwrap_or_else(|e| panic!("{e:#}"));
    assert_gone(pid);
}

fn port_in_use(stack: &'static StackInfo) {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = ServerSettings {
        addr: busy.local_addr().unwrap(),
        ..settings(Profile::Suite)
    };
    let err = match stack.start(&s) {
        Ok(_) => panic!("{}: started on a port in use", stack.name),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(stack.name),
        "error does not name the stack: {err}"
    );
    assert!(err.contains("in use"), "error does not say why: {err}");
}

fn bad_cpu(stack: &'static StackInfo) {
    // No machine this runs on has CPU 1023.
    let err = match child::start_pinned(stack, &settings(Profile::Suite), Some(&[1023])) {
        Ok(_) => panic!("{}: started pinned to CPU 1023", stack.name),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(stack.name),
        "error does not name the stack: {err}"
    );
    assert!(err.contains("1023"), "error does not name the CPUs: {err}");
}

/// Runs one of the async checks on a runtime of its own.
fn block_on<F: std::future::Future<Output = ()>>(check: impl FnOnce() -> F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(check())
}

/// The runtime's environment (the venv, the npm install) holds the
/// version the row names.
/// SIGUSR2 runs the collector and the script says so on stdout, twice in
/// a row; Node counts its live heap, CPython does not.
fn collects_on_request(stack: &'static StackInfo) {
    let server = stack.start(&settings(Profile::Suite)).unwrap();
    for _ in 0..2 {
        let live = server
            .collect_garbage()
            .unwrap_or_else(|e| panic!("{}: {e:#}", stack.name));
        match stack.runtime {
            Runtime::Node => assert!(
                live.is_some_and(|b| b > 0),
                "{}: no live heap after collecting: {live:?}",
                stack.name
            ),
            _ => assert_eq!(live, None, "{}", stack.name),
        }
    }
    server.shutdown().unwrap();
}

fn installs_the_pinned_version(stack: &'static StackInfo) {
    assert_eq!(
        stack.installed_version().as_deref(),
        Some(stack.version),
        "{}: the installed {} is not the pinned one",
        stack.name,
        stack.package
    );
}

/// Every package python/requirements.txt pins (uvloop and aiofastnet too,
/// which no stack names) is installed at that version.
fn the_venv_holds_every_pin() {
    for &(package, version) in versions::PYTHON {
        assert_eq!(
            python::installed_version(package).as_deref(),
            Some(version),
            "the venv's {package}"
        );
    }
}

/// Every package node/package.json pins is installed at that version.
fn the_node_install_holds_every_pin() {
    for &(package, version) in versions::NODE {
        assert_eq!(
            node::installed_version(package).as_deref(),
            Some(version),
            "the installed {package}"
        );
    }
}

/// Child-process WebSocket stacks get every case; in-process ones are
/// tests/stacks.rs's; a child process speaking raw TCP has no cases here.
fn plan(stack: &'static StackInfo) -> Vec<Case> {
    let cases: [(&str, table::Check); 11] = [
        ("serves_the_echo_contract", |s| {
            block_on(|| echo_contract(s, EchoPolicy::FlushEach))
        }),
        ("batched_serves_the_echo_contract", |s| {
            block_on(|| echo_contract(s, EchoPolicy::Batched))
        }),
        ("echoes_a_window_of_16_small_messages", |s| {
            block_on(|| window_of_16(s, EchoPolicy::FlushEach))
        }),
        ("batched_echoes_a_window_of_16_small_messages", |s| {
            block_on(|| window_of_16(s, EchoPolicy::Batched))
        }),
        (
            "passes_the_echo_policy_to_its_script",
            passes_the_echo_policy,
        ),
        ("serves_with_library_defaults", |s| {
            block_on(|| defaults_profile(s))
        }),
        (
            "runs_with_the_fixed_malloc_threshold",
            fixes_the_malloc_threshold,
        ),
        ("a_port_in_use_is_an_error_naming_the_stack", port_in_use),
        ("a_bad_cpu_set_is_an_error_naming_the_stack", bad_cpu),
        ("installs_the_pinned_version", installs_the_pinned_version),
        ("collects_its_garbage_on_request", collects_on_request),
    ];
    match (stack.host(), stack.protocol) {
        (Host::ChildProcess, Protocol::WebSocket) => cases
            .into_iter()
            .map(|(name, check)| Case::new(name, stack, Action::RunWhereAvailable(check)))
            .collect(),
        (Host::InProcess, _) => vec![Case::new(
            "echo_contract",
            stack,
            Action::Elsewhere("tests/stacks.rs"),
        )],
        (Host::ChildProcess, Protocol::RawTcp) => {
            vec![Case::no_plan("tests/child_stacks.rs", stack)]
        }
    }
}

fn main() -> ExitCode {
    let every_pin = |name: &str, stack: &'static StackInfo, check: fn()| {
        Trial::ignorable_test(name, move || {
            if let Some(reason) = table::runtime_or_skip(stack)? {
                return Ok(Completion::ignored_with(reason));
            }
            check();
            Ok(Completion::Completed)
        })
    };
    table::run(
        "tests/child_stacks.rs",
        plan,
        vec![
            table::refuses_unknown_kind(plan),
            every_pin(
                "venv::holds_every_pinned_package",
                &python::WEBSOCKETS,
                the_venv_holds_every_pin,
            ),
            every_pin(
                "node::holds_every_pinned_package",
                &wsbench::stacks::node_ws::STACK,
                the_node_install_holds_every_pin,
            ),
        ],
    )
}
