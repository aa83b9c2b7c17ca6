//! The leak check (issue 7): after 1,000 cycles of connect, one verified
//! echo and disconnect (half with the close handshake, half with a reset,
//! some of those in the middle of a frame), a stack's server-side live heap
//! returns to where it started, within a stated tolerance. The cycles and
//! tolerances are `wsbench::measure::leak`'s, which also says why the
//! tolerances are what they are; `benches/leak.rs` records the figures at
//! 10,000 cycles.
//!
//! In-process stacks are read through the counting allocator installed
//! below, charged to server threads; the Python stacks through their RSS
//! and Node's through V8's live heap after a full collection
//! (`wsbench::measure::leak::source`).
//! A deliberately leaking server proves the check can fail. Nothing is
//! timed; every wait is bounded. One test per row of the stack table,
//! `returns_its_memory::<stack>` (see `table/mod.rs`).

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use wsbench::client::Target;
use wsbench::measure::alloc::CountingAlloc;
use wsbench::measure::leak::{
    cycles, returned_bytes, settled_bytes, source, tolerance_bytes, ALLOCATOR_TOLERANCE_BYTES,
    WARM_UP_CYCLES,
};
use wsbench::placement::Placement;
use wsbench::settings::{Profile, ServerSettings};
use wsbench::stacks::runtime::{accept_loop, start_tokio_server, ServerStream};
use wsbench::stacks::{Host, Protocol, Runtime, ServerHandle, StackInfo};

mod table;
use table::{Action, Case};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const CYCLES: usize = 1000;

/// Bounds the cycles of one stack in a debug build on a busy machine.
const CYCLES_DEADLINE: Duration = Duration::from_secs(120);

/// Server threads of every stack share the allocator's server counters, so
/// the tests that read them take turns.
static SERVER_COUNTERS: Mutex<()> = Mutex::new(());

/// Warms a stack up, runs `n` cycles and returns how many bytes the server
/// kept (allocator, RSS or live heap). Panics, naming the stack, when a cycle fails.
fn bytes_kept_after_cycles(stack: &StackInfo, n: usize) -> i64 {
    let settings = ServerSettings {
        placement: Placement::Unpinned,
        profile: Profile::Suite,
        ..ServerSettings::default()
    };
    let server = stack.start(&settings).unwrap();
    let target = Target::of(&server);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = |n: usize, what: &str| {
        let started = Instant::now();
        rt.block_on(async {
            tokio::time::timeout(CYCLES_DEADLINE, cycles(&target, n))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: {what} not done within {} s",
                        stack.name,
                        CYCLES_DEADLINE.as_secs()
                    )
                })
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        started.elapsed()
    };
    run(WARM_UP_CYCLES, "warm-up");
    let before = settled_bytes(&server).unwrap();
    let took = run(n, "cycles");
    let after = returned_bytes(&server, before).unwrap();
    server.shutdown().unwrap();
    let kept = after - before;
    println!(
        "{}: {n} cycles in {:.1} s; {kept:+} bytes kept ({:.2} per cycle)",
        stack.name,
        took.as_secs_f64(),
        kept as f64 / n as f64
    );
    kept
}

/// Runs the check on an in-process stack, taking turns on the counters.
fn heap_returns(stack: &'static StackInfo) {
    let name = stack.name;
    CountingAlloc::mark_installed();
    let _turn = SERVER_COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let kept = bytes_kept_after_cycles(stack, CYCLES);
    assert!(
        kept <= ALLOCATOR_TOLERANCE_BYTES,
        "stack {name}: the server kept {kept} bytes of live heap after {CYCLES} cycles, \
         over the {} KiB tolerance",
        ALLOCATOR_TOLERANCE_BYTES >> 10
    );
}

/// A child process's memory is its own, so these need no turn on the
/// counters.
fn child_returns(stack: &'static StackInfo) {
    let kept = bytes_kept_after_cycles(stack, CYCLES);
    let tolerance = tolerance_bytes(stack);
    assert!(
        kept <= tolerance,
        "stack {}: the server's {} grew by {kept} bytes after {CYCLES} cycles, \
         over the {} KiB tolerance",
        stack.name,
        source(stack).as_str(),
        tolerance >> 10
    );
}

/// In-process stacks are read through the allocator, child processes
/// through their runtime (which needs the Python venv or Node).
fn plan(stack: &'static StackInfo) -> Vec<Case> {
    let action = match stack.host() {
        Host::InProcess => Action::Run(heap_returns),
        Host::ChildProcess => Action::RunWhereAvailable(child_returns),
    };
    vec![Case::new("returns_its_memory", stack, action)]
}

fn main() -> ExitCode {
    let caught = Trial::test("a_leaking_server_is_caught", || {
        a_leaking_server_is_caught();
        Ok(())
    });
    table::run("tests/leak.rs", plan, vec![caught])
}

/// Bytes the leaking server never frees, per connection.
const LEAK_PER_CONNECTION: usize = 256;

/// A raw-TCP echo that leaks [`LEAK_PER_CONNECTION`] bytes per connection
/// on its server threads, as a stack that forgets its connections would.
const LEAKY: StackInfo = StackInfo {
    name: "leaky-test-server",
    package: "tokio",
    version: "test",
    protocol: Protocol::RawTcp,
    runtime: Runtime::Native,
    notes: "leaks on purpose",
    deflate: false,
    start: start_leaky,
};

fn start_leaky(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let mut handle = start_tokio_server(LEAKY.name, settings, |listener, profile| {
        accept_loop(LEAKY.name, listener, profile, leaky_echo)
    })?;
    handle.protocol = Protocol::RawTcp;
    Ok(handle)
}

async fn leaky_echo(mut stream: ServerStream, _profile: Profile) {
    Box::leak(vec![0u8; LEAK_PER_CONNECTION].into_boxed_slice());
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The check is not fooled: a server that keeps 256 bytes per connection
/// keeps them all, and that is over the tolerance.
fn a_leaking_server_is_caught() {
    CountingAlloc::mark_installed();
    let _turn = SERVER_COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let kept = bytes_kept_after_cycles(&LEAKY, CYCLES);
    let leaked = (CYCLES * LEAK_PER_CONNECTION) as i64;
    assert!(
        kept >= leaked,
        "the leaking server kept {kept} bytes, not the {leaked} it leaked"
    );
    assert!(kept > ALLOCATOR_TOLERANCE_BYTES);
}
