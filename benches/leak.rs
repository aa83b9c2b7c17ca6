//! Does a stack give back what its connections took? Per stack, many
//! cycles of connect, one verified echo and disconnect, half of them with
//! the close handshake and half abrupt (a TCP reset right after the echo,
//! or in the middle of a frame's header or payload); then the server's live
//! heap must return to where it stood before the cycles, within
//! [`tolerance_bytes`].
//!
//! Figures for in-process stacks come from the counting allocator, charged
//! to server threads; for the Python stacks from the server process's RSS.
//! A stack that keeps more than the tolerance is a finding, printed and
//! recorded with a detail; in test mode (`cargo test`) it fails the run.
//! Not timed, so not a criterion benchmark.

mod common;

use std::time::Instant;

use common::*;
use wsbench::measure::alloc::CountingAlloc;
use wsbench::measure::leak::{
    cycles, returned_bytes, settled_bytes, source, tolerance_bytes, CONNS_PER_BATCH, WARM_UP_CYCLES,
};
use wsbench::metrics::{self, Source};
use wsbench::settings::Profile;
use wsbench::stacks::StackInfo;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    CountingAlloc::mark_installed();
    let mode = Mode::from_env();
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("leak", &mode);
    let n_cycles = if mode.records() {
        mode.pick(10_000, 1_000)
    } else {
        200
    };
    let mut leaks = Vec::new();
    for stack in stacks_to_measure(&mode) {
        if let Some(leak) = leak_check(&mut rec, &rt, &mode, stack, n_cycles) {
            leaks.push(leak);
        }
        rec.flush();
    }
    rec.finish();
    // A bench run records a leak as a finding; a test run fails on it.
    if !leaks.is_empty() && !mode.records() {
        fail(&leaks.join("; "));
    }
}

/// Measures one stack; returns the finding when it keeps more than its
/// tolerance.
fn leak_check(
    rec: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    mode: &Mode,
    stack: &StackInfo,
    n_cycles: usize,
) -> Option<String> {
    let id = format!("leak/{}", stack.name);
    let server = start_server(stack, &mode.settings(Profile::Suite), &id);
    let target = target(&server);
    let run = |n: usize, what: &str| {
        rt.block_on(cycles(&target, n))
            .unwrap_or_else(|e| fail(&format!("benchmark {id}: {what}: {e}")))
    };
    let read = |what: &str, bytes: anyhow::Result<i64>| {
        bytes.unwrap_or_else(|e| fail(&format!("benchmark {id}: {what}: {e:#}")))
    };
    run(WARM_UP_CYCLES, "warm-up");
    let source = source(stack);
    let before = read("memory before the cycles", settled_bytes(&server));
    let started = Instant::now();
    run(n_cycles, "cycles");
    let cycling = started.elapsed();
    let after = read("memory after the cycles", returned_bytes(&server, before));
    stop_server(server);

    let delta = after - before;
    let tolerance = tolerance_bytes(stack);
    let per_cycle = delta as f64 / n_cycles as f64;
    let verdict = if delta <= tolerance {
        format!("within the {} KiB tolerance", tolerance >> 10)
    } else {
        format!(
            "LEAK: {delta} bytes kept after {n_cycles} cycles, over the {} KiB tolerance",
            tolerance >> 10
        )
    };
    eprintln!(
        "wsbench: {id}: {n_cycles} cycles in {:.1} s; {} {before} -> {after} bytes \
         ({delta:+}, {per_cycle:.2} per cycle): {verdict}",
        cycling.as_secs_f64(),
        source.as_str()
    );
    let params = params(&[
        ("cycles", v(n_cycles)),
        ("conns_per_batch", v(CONNS_PER_BATCH)),
    ]);
    let delta_m = &metrics::LIVE_BYTES_AFTER_CYCLES_DELTA;
    rec.add(&id, stack, &params, delta_m, delta as f64, source)
        .detail = Some(verdict.clone());
    let per_cycle_m = &metrics::LIVE_BYTES_PER_CYCLE;
    rec.add(&id, stack, &params, per_cycle_m, per_cycle, source);
    let tolerance_m = &metrics::LIVE_BYTES_TOLERANCE;
    rec.add(
        &id,
        stack,
        &params,
        tolerance_m,
        tolerance as f64,
        Source::Harness,
    );
    (delta > tolerance).then(|| format!("benchmark {id}: {verdict}"))
}
