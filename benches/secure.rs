//! What do `wss://` and permessage-deflate cost? Every stack over plain TCP
//! and over TLS; every stack with permessage-deflate also compressed, plain
//! and over TLS. Per cell: latency (one connection, one message in flight,
//! 32 B and 1 KiB), throughput (1 KiB, 16 KiB, 1 MiB, several in flight),
//! the server's and the client's CPU per message, the echoes' frame bytes
//! per message byte, and new connections per second (full TLS handshakes:
//! the client resumes no session). Messages are JSON-like text; the
//! compressed cells also send random bytes (binary) at 1 KiB latency and
//! 16 KiB throughput, which DEFLATE cannot shrink. Memory per idle
//! connection in each cell is the memory group's (it needs the counting
//! allocator, which this group's timings must not carry).
//!
//! Every cell runs through the one driver that speaks TLS and deflate
//! (`wsbench::client::secure`), the plain cells too, so that what differs
//! between cells is the layer, not the client's code. Each workload is one
//! block of interleaved rounds over every stack and cell. criterion times
//! one TLS case and one deflate case, for its report and the flamegraphs
//! (`cargo bench --bench secure -- --profile-time 5`).

mod common;

use std::time::Duration;

use common::*;
use criterion::Throughput;
use wsbench::client::payload::{Bodies, Content};
use wsbench::client::secure::{self, Layers, SecureConnection};
use wsbench::client::{self, Budget};
use wsbench::metrics::{self, Metric, Source};
use wsbench::settings::{self, Compression, Profile, ServerSettings, Transport};
use wsbench::stacks::{ServerHandle, StackInfo};
use wsbench::workload::{self, SecureSample};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// What each case records.
const FIGURES: &[&Metric] = &[
    &metrics::RTT_MEAN_US,
    &metrics::RTT_P50_US,
    &metrics::RTT_P99_US,
    &metrics::MSGS_PER_S,
    &metrics::MIB_PER_S,
    &metrics::SERVER_CPU_NS_PER_MSG,
    &metrics::CLIENT_CPU_NS_PER_MSG,
    &metrics::FRAME_BYTES_PER_MESSAGE_BYTE,
    &metrics::ROUND_TRIPS_VERIFIED,
];

/// One cell of the matrix: what the connection speaks above TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    transport: Transport,
    compression: Compression,
}

impl Cell {
    const ALL: [Cell; 4] = [
        Cell::new(Transport::Plain, Compression::Off),
        Cell::new(Transport::Tls, Compression::Off),
        Cell::new(Transport::Plain, Compression::Deflate),
        Cell::new(Transport::Tls, Compression::Deflate),
    ];

    const fn new(transport: Transport, compression: Compression) -> Cell {
        Cell {
            transport,
            compression,
        }
    }

    fn label(self) -> &'static str {
        settings::layers_label(self.transport, self.compression)
    }

    fn applies_to(self, stack: &StackInfo) -> bool {
        self.compression == Compression::Off || stack.deflate
    }
}

/// One workload: a message size and how many are in flight.
#[derive(Debug, Clone, Copy)]
struct Load {
    what: &'static str,
    size_bytes: usize,
    window: usize,
    /// The compressed cells also send random bytes at this point.
    random_too: bool,
}

const LOADS: [Load; 5] = [
    Load::new("latency", 32, 1, false),
    Load::new("latency", KIB, 1, true),
    Load::new("throughput", KIB, 16, false),
    Load::new("throughput", 16 * KIB, 16, true),
    Load::new("throughput", MIB, 4, false),
];

impl Load {
    const fn new(what: &'static str, size_bytes: usize, window: usize, random_too: bool) -> Load {
        Load {
            what,
            size_bytes,
            window,
            random_too,
        }
    }

    fn contents(self, cell: Cell) -> Vec<Content> {
        if self.random_too && cell.compression == Compression::Deflate {
            vec![Content::Json, Content::Random]
        } else {
            vec![Content::Json]
        }
    }
}

/// The cases criterion times: one TLS and one deflate case, 16 KiB of
/// JSON-like text, on the original question's dedicated library and on
/// the first Rust stack with permessage-deflate.
const CRITERION_CASES: [(&str, Cell); 2] = [
    (
        "tokio-tungstenite",
        Cell::new(Transport::Tls, Compression::Off),
    ),
    ("yawc", Cell::new(Transport::Plain, Compression::Deflate)),
];
const CRITERION_LOAD: usize = 3;

/// Test mode (`cargo test`) runs the group on one stack of each kind (the
/// floor, a bare tokio stack, hyper under axum, actix-web, a Rust stack with
/// permessage-deflate, Python, Node); tests/secure.rs echo-verifies every
/// stack over TLS and with deflate.
const TEST_MODE_STACKS: [&str; 7] = [
    "raw-tcp",
    "tokio-tungstenite",
    "axum",
    "actix-ws",
    "yawc",
    "python-websockets",
    "node-ws",
];

/// A quick run: the criterion cases' stacks, one workload, the cells of
/// those cases and the plain one beside each.
const QUICK_LOAD: usize = 1;

struct Slot {
    stack: &'static StackInfo,
    cell: Cell,
    server: ServerHandle,
    layers: Layers,
}

struct SecureCase<'a> {
    slot: &'a Slot,
    conn: SecureConnection,
    bodies: Bodies,
    window: usize,
    id: String,
    function: String,
    parameter: String,
    params: wsbench::results::Params,
}

impl SecureCase<'_> {
    fn round_trips(&mut self, budget: Budget) -> Result<SecureSample, client::ClientError> {
        workload::secure_round_trips(
            &mut self.conn,
            &self.bodies,
            self.window,
            budget,
            self.slot.server.pid,
        )
    }
}

fn main() {
    let mode = Mode::from_env();
    const WARM_UP: Duration = Duration::from_millis(500);
    let mut c = mode.criterion(Duration::from_secs(2), WARM_UP);
    let _rt = client_runtime(&mode);
    let mut rec = Recorder::new("secure", &mode).with_client_driver(secure::DRIVER_NAME);
    let mut group = c.benchmark_group("secure");
    group.sample_size(10);

    let quick = mode.quick && mode.bench;
    let stacks: Vec<&'static StackInfo> = stacks_to_measure(&mode)
        .into_iter()
        .filter(|s| !quick || CRITERION_CASES.iter().any(|(name, _)| *name == s.name))
        .filter(|s| mode.records() || TEST_MODE_STACKS.contains(&s.name))
        .collect();
    let mut slots = Vec::new();
    for &stack in &stacks {
        for cell in Cell::ALL {
            if !cell.applies_to(stack) {
                continue;
            }
            let quick_cell = cell.compression == Compression::Off
                && cell.transport == Transport::Plain
                || CRITERION_CASES.contains(&(stack.name, cell));
            if quick && !quick_cell {
                continue;
            }
            let label = format!("secure/{}/{}", stack.name, cell.label());
            let settings = ServerSettings {
                transport: cell.transport,
                compression: cell.compression,
                ..mode.settings(Profile::Suite)
            };
            let server = start_server(stack, &settings, &label);
            let layers = Layers::new(cell.transport, cell.compression, None)
                .unwrap_or_else(|e| fail(&format!("benchmark {label}: {e:#}")));
            slots.push(Slot {
                stack,
                cell,
                server,
                layers,
            });
        }
    }

    // Test mode runs the smallest load and criterion's: every cell and
    // content once, without the unoptimised build's megabyte messages.
    let loads: Vec<(usize, Load)> = if quick {
        vec![(QUICK_LOAD, LOADS[QUICK_LOAD])]
    } else if !mode.records() {
        [0, CRITERION_LOAD].map(|i| (i, LOADS[i])).to_vec()
    } else {
        LOADS.into_iter().enumerate().collect()
    };
    for (index, load) in loads {
        let mut cases = Vec::new();
        for slot in &slots {
            for content in load.contents(slot.cell) {
                cases.push(open_case(slot, load, content));
            }
        }
        if mode.criterion_phase() && index == CRITERION_LOAD {
            for case in cases.iter_mut().filter(|case| {
                CRITERION_CASES.contains(&(case.slot.stack.name, case.slot.cell))
                    && case.bodies.content() == Content::Json
            }) {
                group.throughput(Throughput::Bytes(load.size_bytes as u64));
                let id = criterion::BenchmarkId::new(&case.function, &case.parameter);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        case.round_trips(Budget::Count(iters))
                            .unwrap_or_else(|e| fail(&format!("benchmark {}: {e}", case.id)))
                            .sample
                            .elapsed
                    })
                });
            }
        }
        if mode.rounds_phase() {
            let block = format!("secure/{}/{}", load.what, size_label(load.size_bytes));
            let plan = mode.round_plan(10, Duration::from_millis(60));
            let samples = wsbench::rounds::interleave(&mut cases, plan, |case, budget| {
                case.round_trips(budget)
            })
            .unwrap_or_else(|(i, e)| fail(&format!("benchmark {}: {e}", cases[i].id)));
            for (case, samples) in cases.iter().zip(&samples) {
                rec.add_rounds(
                    &case.id,
                    case.slot.stack,
                    &case.params,
                    &block,
                    samples,
                    FIGURES,
                );
            }
            rec.flush();
        }
        for case in cases {
            case.conn
                .close()
                .unwrap_or_else(|e| fail(&format!("benchmark {}: closing: {e}", case.id)));
        }
    }

    if !quick && mode.rounds_phase() {
        let n = if mode.records() { 300 } else { 3 };
        for slot in &slots {
            handshakes(&mut rec, slot, n);
        }
        rec.flush();
    }
    for slot in slots {
        stop_server(slot.server);
    }
    group.finish();
    c.final_summary();
    rec.finish();
}

/// A connection of `slot`'s cell ready for `load` of `content`.
fn open_case(slot: &Slot, load: Load, content: Content) -> SecureCase<'_> {
    let parameter = format!(
        "{}/{}/{}/{}",
        slot.cell.label(),
        load.what,
        content.as_str(),
        size_label(load.size_bytes)
    );
    let id = format!("secure/{}/{parameter}", slot.stack.name);
    let target = target(&slot.server);
    let conn = SecureConnection::open(&target, &slot.layers)
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
    if slot.cell.compression == Compression::Deflate && conn.extension().is_none() {
        fail(&format!(
            "benchmark {id}: the server did not accept permessage-deflate"
        ));
    }
    let bodies = Bodies::new(content, load.size_bytes)
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
    let mut pairs = vec![
        ("transport", v(slot.cell.transport.as_str())),
        ("compression", v(slot.cell.compression.as_str())),
        ("cell", v(slot.cell.label())),
        ("workload", v(load.what)),
        ("content", v(content.as_str())),
        ("kind", v(content.kind().as_str())),
        ("size_bytes", v(load.size_bytes)),
        ("conns", v(1)),
        ("window", v(load.window)),
    ];
    if let Some(session) = conn.tls_session() {
        pairs.push(("tls", v(session)));
    }
    if let Some(answer) = conn.extension() {
        pairs.push(("deflate_answer", v(answer)));
    }
    SecureCase {
        slot,
        conn,
        bodies,
        window: load.window,
        id,
        function: slot.stack.name.to_string(),
        parameter,
        params: params(&pairs),
    }
}

/// New connections per second in `slot`'s cell: `n` of them, one after
/// another, each reset once open.
fn handshakes(rec: &mut Recorder, slot: &Slot, n: u64) {
    let id = format!(
        "secure/{}/{}/handshakes",
        slot.stack.name,
        slot.cell.label()
    );
    let target = target(&slot.server);
    // A few first, so that lazily made state is not charged to the rate.
    workload::secure_handshakes(&target, &slot.layers, n.min(10))
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
    let took = workload::secure_handshakes(&target, &slot.layers, n)
        .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
    let params = params(&[
        ("transport", v(slot.cell.transport.as_str())),
        ("compression", v(slot.cell.compression.as_str())),
        ("cell", v(slot.cell.label())),
        ("workload", v("handshakes")),
        ("count", v(n)),
        ("tls_resumption", v(false)),
    ]);
    rec.add(
        &id,
        slot.stack,
        &params,
        &metrics::HANDSHAKES_PER_S,
        n as f64 / took.as_secs_f64().max(1e-9),
        Source::Wallclock,
    );
}
