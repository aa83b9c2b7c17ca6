//! The client as worker processes (`wsbench::workers`, issue 19): their
//! rounds add up exactly to what they verified, a worker that sees a
//! corrupt echo ends the round with an error naming the stack and the
//! worker, and a worker that dies is named with its exit status, in time.

mod fault_server;

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;
use wsbench::client::{Budget, Driver, MessageSpec, PayloadKind, Target};
use wsbench::placement::Placement;
use wsbench::settings::ServerSettings;
use wsbench::stacks;
use wsbench::workers::Workers;

const WSBENCH: &str = env!("CARGO_BIN_EXE_wsbench");

const SPEC: MessageSpec = MessageSpec {
    size_bytes: 32,
    kind: PayloadKind::Binary,
    window: 2,
};

/// Two workers, unpinned, with `conns` connections between them.
fn two_workers(target: &Target, server_pid: Option<u32>, conns: usize) -> Workers {
    Workers::start(
        Path::new(WSBENCH),
        target,
        server_pid,
        conns,
        SPEC,
        Driver::Epoll,
        &[None, None],
    )
    .unwrap_or_else(|e| panic!("starting the workers: {e}"))
}

#[test]
fn two_workers_add_up_exactly_what_they_verified() {
    let stack = stacks::find("tokio-tungstenite").unwrap();
    let settings = ServerSettings {
        placement: Placement::Unpinned,
        ..ServerSettings::default()
    };
    let server = stack.start(&settings).unwrap();
    let target = Target::of(&server);
    // 7 connections: 4 and 3.
    let mut workers = two_workers(&target, server.pid, 7);
    assert_eq!((workers.conns(), workers.procs()), (7, 2));

    let s = workers.round_trips(Budget::Count(40)).unwrap();
    assert_eq!(s.round_trips, 7 * 40);
    assert_eq!(
        s.hist.len(),
        7 * 40,
        "every round trip in the merged histogram"
    );
    assert_eq!(s.conns, 7);
    assert!(s.elapsed > Duration::ZERO);
    assert!(s.cpu.client_ns > 0, "the workers' CPU is counted");
    assert!(s.cpu.server_ns > 0, "the server's CPU is read here");

    let stretch = Duration::from_millis(200);
    let before = Instant::now();
    let s = workers
        .round_trips(Budget::Until(Instant::now() + stretch))
        .unwrap();
    assert!(s.round_trips > 0);
    assert_eq!(s.hist.len(), s.round_trips);
    // The workers stop at one deadline on the shared clock: the span from
    // the first send to the last echo is about the stretch.
    assert!(s.elapsed <= before.elapsed(), "{:?}", s.elapsed);
    assert!(s.elapsed >= stretch / 2, "{:?}", s.elapsed);
    workers.close().unwrap();
    server.shutdown().unwrap();
}

#[test]
fn a_corrupt_echo_ends_the_round_naming_the_stack_and_the_worker() {
    // The 30th message of every connection comes back with a byte changed.
    let target = fault_server::start("corrupting", |i, msg| {
        fault_server::Reply::Send(match msg {
            Message::Binary(b) if i == 30 => {
                let mut v = b.to_vec();
                v[20] ^= 1;
                Message::Binary(v.into())
            }
            other => other,
        })
    });
    let mut workers = two_workers(&target, None, 4);
    let started = Instant::now();
    let e = workers.round_trips(Budget::Count(100)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    let text = e.to_string();
    assert!(
        text.starts_with("stack corrupting: client worker "),
        "{text}"
    );
    assert!(text.contains("of 2 (pid "), "{text}");
}

#[test]
fn a_worker_that_dies_is_named_with_its_exit_status() {
    let target = fault_server::start("echoing", |_, msg| fault_server::Reply::Send(msg));
    let mut workers = two_workers(&target, None, 2);
    let pid = workers.pids()[1] as libc::pid_t;
    // SAFETY: signals a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let e = workers.round_trips(Budget::Count(10)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    let text = e.to_string();
    assert!(text.contains("client worker 2 of 2"), "{text}");
    assert!(text.contains("signal: 9"), "{text}");
}

#[test]
fn a_worker_that_cannot_connect_says_why() {
    // A port nothing listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = Target::from_url(&format!("ws://{addr}/"), "absent").unwrap();
    let e = Workers::start(
        Path::new(WSBENCH),
        &target,
        None,
        2,
        SPEC,
        Driver::Epoll,
        &[None],
    )
    .err()
    .expect("no server, no workers");
    let text = e.to_string();
    assert!(
        text.starts_with("stack absent: client worker 1 of 1"),
        "{text}"
    );
    assert!(text.contains("connect"), "{text}");
}
