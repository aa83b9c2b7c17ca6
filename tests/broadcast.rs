//! The broadcast contract, for every stack in the table: a room of 50 gets
//! every broadcast, verified, under each echo write policy (the writer's
//! flush policy); a slow consumer's run ends within its deadline; and a
//! server that drops, repeats or reorders a delivery is caught, naming the
//! stack. Each runs on both of the client's drivers, io_uring and epoll.
//!
//! Tests assert behaviour only; nothing here is timed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use libtest_mimic::Trial;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use wsbench::client::broadcast::{Broadcast, Pause, RoomClient};
use wsbench::client::{self, Connection, Driver, ErrorKind, PayloadKind, Target};
use wsbench::placement::Placement;
use wsbench::settings::{EchoPolicy, Profile, ServerSettings, Service};
use wsbench::stacks::{Host, Protocol, ServerHandle, StackInfo};

mod table;
use table::{Action, Case};

fn start(stack: &StackInfo, echo: EchoPolicy) -> ServerHandle {
    let settings = ServerSettings {
        placement: Placement::Unpinned,
        profile: Profile::Suite,
        echo,
        service: Service::Broadcast,
        ..Default::default()
    };
    stack.start(&settings).unwrap_or_else(|e| panic!("{e:#}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Both drivers, where this kernel has io_uring (`client_faults.rs` and
/// `open_loop.rs` require it where it is expected).
fn drivers() -> Vec<Driver> {
    match Driver::choose(Some(Driver::Uring)) {
        Ok(Driver::Uring) => vec![Driver::Uring, Driver::Epoll],
        _ => vec![Driver::Epoll],
    }
}

/// A room of `n` on `target`, five of them senders, synchronised.
fn room(rt: &tokio::runtime::Runtime, target: &Target, n: usize, kind: PayloadKind) -> RoomClient {
    let conns = rt
        .block_on(client::connect_room(target, n))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut room = RoomClient::new(conns, 5.min(n), 64, kind).unwrap();
    room.sync().unwrap_or_else(|e| panic!("{e:#}"));
    room
}

fn room_of_50(stack: &'static StackInfo, echo: EchoPolicy) {
    let server = start(stack, echo);
    let target = Target::of(&server);
    let rt = runtime();
    let kinds: &[PayloadKind] = match stack.protocol {
        Protocol::WebSocket => &[PayloadKind::Binary, PayloadKind::Text],
        Protocol::RawTcp => &[PayloadKind::Binary],
    };
    for &kind in kinds {
        let mut room = room(&rt, &target, 50, kind);
        // The drivers take turns on one room: each run starts where the
        // other left the connections.
        for driver in drivers() {
            let spec = Broadcast {
                size_bytes: 64,
                kind,
                stall_timeout: Duration::from_secs(10),
                ..Broadcast::constant(500.0, Duration::from_millis(300), driver)
            };
            let run = room
                .run(spec)
                .unwrap_or_else(|e| panic!("{} on {driver:?}: {e:#}", stack.name));
            let name = format!("{} on {driver:?}", stack.name);
            assert!(
                run.broadcasts >= 140,
                "{name}: {} broadcasts",
                run.broadcasts
            );
            assert_eq!(run.deliveries, run.broadcasts * 50, "{name}");
            assert_eq!(run.latency.len(), run.deliveries, "{name}");
        }
        rt.block_on(client::close_all(room.into_connections()))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    server.shutdown().unwrap();
}

fn room_of_50_flush_each(stack: &'static StackInfo) {
    room_of_50(stack, EchoPolicy::FlushEach)
}

fn room_of_50_batched(stack: &'static StackInfo) {
    room_of_50(stack, EchoPolicy::Batched)
}

/// One receiver of ten stops reading for 1 s while 4 KiB broadcasts go
/// on: whatever the server does about it, the run ends in time and what
/// arrives is verified.
fn slow_consumer_ends(stack: &'static StackInfo) {
    for driver in drivers() {
        slow_consumer_ends_on(stack, driver);
    }
}

fn slow_consumer_ends_on(stack: &'static StackInfo, driver: Driver) {
    let server = start(stack, EchoPolicy::FlushEach);
    let target = Target::of(&server);
    let rt = runtime();
    let mut conns = rt
        .block_on(client::connect_room(&target, 9))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let slow = rt
        .block_on(Connection::open_with_recv_buffer(&target, 4096))
        .unwrap_or_else(|e| panic!("{e:#}"));
    conns.push(slow);
    let size = 4096;
    let mut room = RoomClient::new(conns, 2, size, PayloadKind::Binary).unwrap();
    room.sync().unwrap_or_else(|e| panic!("{e:#}"));
    let began = Instant::now();
    let spec = Broadcast {
        size_bytes: size,
        stall_timeout: Duration::from_secs(10),
        pause: Some(Pause {
            conn: 9,
            after: Duration::from_millis(200),
            length: Duration::from_secs(1),
        }),
        ..Broadcast::constant(200.0, Duration::from_millis(1500), driver)
    };
    let name = format!("{} on {driver:?}", stack.name);
    let run = room.run(spec).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let took = began.elapsed();
    assert!(took < Duration::from_secs(20), "{name}: {took:?}");
    let slow = run.slow.expect("a slow outcome");
    // Whatever it was, it is accounted for: delivered, dropped or cut off.
    assert!(
        slow.delivered + slow.dropped == run.broadcasts || slow.disconnected.is_some(),
        "{name}: {slow:?} of {} broadcasts",
        run.broadcasts
    );
    for c in room.into_connections() {
        c.abort();
    }
    drop(server);
}

fn plan(stack: &'static StackInfo) -> Vec<Case> {
    let run = |check| match stack.host() {
        Host::InProcess => Action::Run(check),
        Host::ChildProcess => Action::RunWhereAvailable(check),
    };
    if stack.host() == Host::ChildProcess && stack.protocol == Protocol::RawTcp {
        return vec![Case::no_plan("tests/broadcast.rs", stack)];
    }
    vec![
        Case::new("room_of_50", stack, run(room_of_50_flush_each)),
        Case::new("batched_room_of_50", stack, run(room_of_50_batched)),
        Case::new("slow_consumer_ends", stack, run(slow_consumer_ends)),
    ]
}

/// What the faulty room does to one delivery.
#[derive(Clone, Copy)]
enum Fault {
    /// Never sends the 20th delivery to the third connection.
    Drop,
    /// Sends it twice.
    Repeat,
    /// Sends the 21st before the 20th.
    Swap,
}

/// A tokio-tungstenite broadcast room that mistreats the third
/// connection's 20th delivery as `fault` says.
fn faulty_room(fault: Fault) -> Target {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let rt = runtime();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            let members = std::sync::Arc::new(std::sync::Mutex::new(Vec::<
                mpsc::UnboundedSender<Message>,
            >::new()));
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                let members = members.clone();
                tokio::spawn(async move {
                    let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    let (mut write, mut read) = ws.split();
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let index = {
                        let mut m = members.lock().unwrap();
                        m.push(tx);
                        m.len() - 1
                    };
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        let mut held = None;
                        while let Some(msg) = rx.recv().await {
                            n += 1;
                            let out: Vec<Message> = match (index == 2 && n == 20, fault) {
                                (true, Fault::Drop) => vec![],
                                (true, Fault::Repeat) => vec![msg.clone(), msg],
                                (true, Fault::Swap) => {
                                    held = Some(msg);
                                    vec![]
                                }
                                (false, _) => std::iter::once(msg).chain(held.take()).collect(),
                            };
                            for m in out {
                                if write.send(m).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                    while let Some(Ok(msg)) = read.next().await {
                        if msg.is_binary() || msg.is_text() {
                            for tx in members.lock().unwrap().iter() {
                                let _ = tx.send(msg.clone());
                            }
                        }
                    }
                });
            }
        })
    });
    Target {
        stack: "faulty-room".into(),
        addr,
        host: addr.to_string(),
        path: "/".into(),
        protocol: Protocol::WebSocket,
        transport: wsbench::settings::Transport::Plain,
    }
}

fn fault_is_caught(fault: Fault, name: &str, driver: Driver) {
    let target = faulty_room(fault);
    let rt = runtime();
    let conns = rt.block_on(client::connect_room(&target, 4)).unwrap();
    let mut room = RoomClient::new(conns, 1, 32, PayloadKind::Binary).unwrap();
    let spec = Broadcast {
        stall_timeout: Duration::from_secs(1),
        ..Broadcast::constant(1000.0, Duration::from_millis(100), driver)
    };
    // The synchronising probes are deliveries too: the fault may fall there.
    let err = match room.sync() {
        Err(e) => e,
        Ok(()) => room.run(spec).expect_err(name),
    };
    let text = format!("{err:#}");
    assert!(text.contains("faulty-room"), "{name}: {text}");
    assert!(
        matches!(
            err.kind,
            ErrorKind::Delivery { .. } | ErrorKind::MissingDeliveries { .. }
        ),
        "{name}: {text}"
    );
}

fn main() -> ExitCode {
    let faults = [
        ("a_dropped_delivery_is_caught", Fault::Drop),
        ("a_repeated_delivery_is_caught", Fault::Repeat),
        ("a_reordered_delivery_is_caught", Fault::Swap),
    ];
    let mut extra: Vec<Trial> = faults
        .into_iter()
        .flat_map(|(name, fault)| {
            drivers().into_iter().map(move |driver| {
                Trial::test(format!("faults::{name}::{}", driver.as_str()), move || {
                    fault_is_caught(fault, name, driver);
                    Ok(())
                })
            })
        })
        .collect();
    extra.push(table::refuses_unknown_kind(plan));
    table::run("tests/broadcast.rs", plan, extra)
}
