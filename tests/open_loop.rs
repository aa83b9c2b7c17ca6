//! The open-loop client (`wsbench::client::open_loop`): it keeps its
//! schedule, says when it cannot, shows the stalls a closed loop hides
//! (coordinated omission), and still fails on any wrong or missing echo,
//! naming the stack. Each test runs on both drivers, io_uring and epoll.

use std::time::{Duration, Instant};

use fault_server::Reply;
use tokio_tungstenite::tungstenite::Message;
use wsbench::client::{self, open_loop, Arrivals, Connection, Driver, ErrorKind, OpenLoop, Target};
use wsbench::stacks::Protocol;

mod fault_server;

const STACK: &str = "open-loop-test-server";

#[derive(Clone, Copy)]
enum Behaviour {
    /// Echoes everything.
    Echo,
    /// Never echoes message `n` (counting from 0) of a connection.
    Drop(u64),
    /// Flips a byte of message `n`'s echo.
    Corrupt(u64),
    /// Echoes the first `n` messages of a connection, then nothing.
    StallAfter(u64),
    /// Cuts the last byte off message `n`'s echo.
    Truncate(u64),
}

/// Both drivers; a kernel without io_uring fails here rather than test
/// epoll twice.
const DRIVERS: [Driver; 2] = [Driver::Uring, Driver::Epoll];

/// An echo server that behaves as told; returns the target the client
/// should hit.
fn server(how: Behaviour) -> Target {
    fault_server::start(STACK, move |this, msg| match (how, msg) {
        (Behaviour::Drop(k), _) if this == k => Reply::Nothing,
        (Behaviour::Corrupt(k), Message::Binary(b)) if this == k => {
            let mut v = b.to_vec();
            v[20] ^= 0x20;
            Reply::Send(Message::Binary(v.into()))
        }
        (Behaviour::StallAfter(k), _) if this >= k => Reply::Nothing,
        (Behaviour::Truncate(k), Message::Binary(b)) if this == k => {
            Reply::Send(Message::Binary(b.slice(..b.len() - 1)))
        }
        (_, m @ (Message::Binary(_) | Message::Text(_))) => Reply::Send(m),
        _ => Reply::Nothing,
    })
}

fn connect(target: &Target, n: usize) -> (tokio::runtime::Runtime, Vec<Connection>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conns = rt.block_on(client::connect_many(target, n)).unwrap();
    (rt, conns)
}

fn at(rate: f64, secs: f64, driver: Driver) -> OpenLoop {
    OpenLoop::constant(rate, Duration::from_secs_f64(secs), driver)
}

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e6
}

/// The point of the open loop: a 50 ms stall once a second shows in the
/// corrected p99.9 (every message meant for the stall waits), while a
/// closed loop at the same rate, timed from the actual send, sees one
/// slow round trip per stall and misses most of it.
#[test]
fn a_stall_shows_open_loop_and_hides_from_a_closed_loop() {
    for driver in DRIVERS {
        let target = pausing_server();
        let (_rt, mut conns) = connect(&target, 1);
        let open = open_loop::run(&mut conns, at(2000.0, 3.0, driver)).unwrap();
        let closed = open_loop::run(
            &mut conns,
            OpenLoop {
                window: Some(1),
                ..at(2000.0, 3.0, driver)
            },
        )
        .unwrap();
        let summary = format!(
            "{driver:?}: open: corrected p99.9 {:.1} ms, uncorrected {:.1} ms; closed: corrected {:.1} ms, uncorrected {:.1} ms",
            ms(&open.corrected, 0.999),
            ms(&open.uncorrected, 0.999),
            ms(&closed.corrected, 0.999),
            ms(&closed.uncorrected, 0.999)
        );
        assert!(ms(&open.corrected, 0.999) >= 40.0, "{summary}");
        assert!(ms(&closed.uncorrected, 0.999) < 40.0, "{summary}");
        // The correction recovers what the closed loop's own timing hides.
        assert!(ms(&closed.corrected, 0.999) >= 40.0, "{summary}");
        assert_eq!(open.sent, 6000, "{summary}");
        assert_eq!(closed.sent, 6000, "{summary}");
    }
}

/// An echo server for one connection whose thread stops for 50 ms once a
/// second (a collector's pause, a blocking call).
fn pausing_server() -> Target {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut ws = tokio_tungstenite::tungstenite::accept(stream).unwrap();
        let mut last_pause = Instant::now();
        while let Ok(msg) = ws.read() {
            if last_pause.elapsed() >= Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(50));
                last_pause = Instant::now();
            }
            if (msg.is_binary() || msg.is_text()) && ws.send(msg).is_err() {
                return;
            }
        }
    });
    Target {
        stack: STACK.into(),
        addr,
        host: addr.to_string(),
        path: "/".into(),
        protocol: Protocol::WebSocket,
        transport: wsbench::settings::Transport::Plain,
    }
}

/// At a low rate the client sends exactly what the schedule says, whatever
/// the spacing, and every echo comes back verified.
#[test]
fn the_schedule_is_kept() {
    let target = server(Behaviour::Echo);
    let (_rt, mut conns) = connect(&target, 10);
    let cases = DRIVERS.map(|d| [(d, Arrivals::Constant), (d, Arrivals::Poisson)]);
    for (driver, arrivals) in cases.into_iter().flatten() {
        let spec = OpenLoop {
            arrivals,
            ..at(1000.0, 2.0, driver)
        };
        let started = Instant::now();
        let run = open_loop::run(&mut conns, spec).unwrap();
        let expected = 2000.0;
        let off = (run.sent as f64 - expected).abs() / expected;
        let tolerance = match arrivals {
            Arrivals::Constant => 0.01,
            // A Poisson count of mean 2,000 has a standard deviation of 45;
            // the seed is fixed, so this is one draw, well inside.
            Arrivals::Poisson => 0.05,
        };
        assert!(
            off <= tolerance,
            "{driver:?}, {arrivals:?}: {} sent, {expected} scheduled",
            run.sent
        );
        assert_eq!(run.corrected.len(), run.sent);
        assert_eq!(run.lateness.len(), run.sent);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{driver:?}, {arrivals:?}: a 2 s schedule took {:?}",
            started.elapsed()
        );
        // Sent on time: the achieved rate is the offered one.
        assert!(
            run.achieved_per_s() > 0.95 * 1000.0,
            "{driver:?}, {arrivals:?}: {}",
            run.achieved_per_s()
        );
    }
}

/// A client that cannot keep up with its schedule says so, instead of
/// passing its own delay off as the server's latency.
#[test]
fn a_client_slower_than_its_schedule_is_flagged() {
    let target = server(Behaviour::Echo);
    let (_rt, mut conns) = connect(&target, 4);
    for driver in DRIVERS {
        let slow = OpenLoop {
            // 200 µs of client CPU per message at 10,000 msgs/s: twice what
            // one thread can do.
            busy_per_send: Duration::from_micros(200),
            ..at(10_000.0, 0.5, driver)
        };
        let run = open_loop::run(&mut conns, slow).unwrap();
        let why = run
            .behind()
            .unwrap_or_else(|| panic!("{driver:?}: a client at twice its capacity is behind: sent {} late p99 {} p99 {} achieved {}", run.sent, run.lateness.value_at_quantile(0.99), run.corrected.value_at_quantile(0.99), run.achieved_per_s()));
        assert!(why.contains("held them back"), "{driver:?}: {why}");
        assert!(
            Duration::from_nanos(run.lateness.value_at_quantile(0.99)) > open_loop::LATENESS_BOUND,
            "{driver:?}: {why}"
        );
    }
}

/// Runs a short open-loop schedule against a faulty server on each
/// driver and returns the errors, checking that each names the stack and
/// came within a bound, and that both drivers found the same fault.
fn error_against(how: Behaviour) -> ErrorKind {
    let errors = DRIVERS.map(|driver| {
        let target = server(how);
        let (_rt, mut conns) = connect(&target, 4);
        let spec = OpenLoop {
            stall_timeout: Duration::from_secs(1),
            ..at(2000.0, 0.5, driver)
        };
        let started = Instant::now();
        let err = open_loop::run(&mut conns, spec).expect_err("a faulty server must fail the run");
        assert_eq!(err.stack, STACK, "{driver:?}: {err}");
        assert!(
            err.to_string().starts_with(&format!("stack {STACK}: ")),
            "{driver:?}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{driver:?}: {err}"
        );
        err
    });
    let [uring, epoll] = errors;
    assert_eq!(
        std::mem::discriminant(&uring.kind),
        std::mem::discriminant(&epoll.kind),
        "io_uring: {uring}; epoll: {epoll}"
    );
    uring.kind
}

#[test]
fn a_dropped_echo_fails_the_run() {
    let kind = error_against(Behaviour::Drop(30));
    assert!(
        matches!(kind, ErrorKind::OutOfOrder { seq: 30, .. }),
        "{kind:?}"
    );
}

#[test]
fn a_corrupted_echo_fails_the_run() {
    let kind = error_against(Behaviour::Corrupt(30));
    assert!(
        matches!(kind, ErrorKind::Differs { seq: 30, .. }),
        "{kind:?}"
    );
}

#[test]
fn a_truncated_echo_fails_the_run() {
    let kind = error_against(Behaviour::Truncate(30));
    assert!(
        matches!(kind, ErrorKind::Length { seq: 30, .. }),
        "{kind:?}"
    );
}

#[test]
fn echoes_missing_at_the_end_fail_the_run() {
    let kind = error_against(Behaviour::StallAfter(30));
    assert!(
        matches!(kind, ErrorKind::MissingEchoes { first: 30, .. }),
        "{kind:?}"
    );
}

#[test]
fn nonsense_is_refused() {
    let target = server(Behaviour::Echo);
    let (_rt, mut conns) = connect(&target, 1);
    for driver in DRIVERS {
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let err =
                open_loop::run(&mut conns, at(rate, 0.1, driver)).expect_err("no rate, no run");
            assert!(err.to_string().contains("positive rate"), "{err}");
        }
    }
}

/// The two drivers send and verify exactly the same messages for the same
/// schedule: a constant rate's count is fixed by the schedule.
#[test]
fn both_drivers_verify_the_same_count() {
    let target = server(Behaviour::Echo);
    let (_rt, mut conns) = connect(&target, 10);
    let counts = DRIVERS.map(|driver| {
        let run = open_loop::run(&mut conns, at(2000.0, 1.0, driver)).unwrap();
        assert_eq!(run.corrected.len(), run.sent, "{driver:?}");
        assert_eq!(run.uncorrected.len(), run.sent, "{driver:?}");
        run.sent
    });
    assert_eq!(counts, [2000, 2000], "io_uring, epoll");
}

/// A test server the client drives with io_uring and then with epoll on
/// the same connections: each driver leaves them as the other expects.
#[test]
fn the_drivers_take_turns_on_the_same_connections() {
    let target = server(Behaviour::Echo);
    let (_rt, mut conns) = connect(&target, 3);
    for driver in [Driver::Uring, Driver::Epoll, Driver::Uring] {
        let run = open_loop::run(&mut conns, at(3000.0, 0.2, driver)).unwrap();
        assert_eq!(run.sent, 600, "{driver:?}");
    }
}
