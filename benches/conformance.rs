//! How does each stack treat bad input? Runs the RFC 6455 conformance and
//! abuse probe (`wsbench probe`) against every stack and records the table.
//! A stack that violates the RFC is a finding, recorded here, not a
//! failure; a stack that stops serving others ends the run.

mod common;

use common::*;
use wsbench::measure::alloc::CountingAlloc;
use wsbench::settings::Profile;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Test mode (`cargo test`) records the table of one in-process stack and
/// one child process: tests/probe.rs probes every stack, with the same
/// deliberate waits, and asserts more of each table than this does.
const TEST_MODE_STACKS: [&str; 2] = ["tokio-tungstenite", "python-websockets"];

fn main() {
    CountingAlloc::mark_installed();
    let mode = Mode::from_env();
    if mode.quick && mode.records() {
        // Quick mode is for timing checks within 3 minutes; the probe's
        // verdicts do not depend on speed, and its deliberate waits (a
        // silent peer, a stalled reader, actix-web's linger) take most of
        // a minute.
        eprintln!(
            "wsbench: conformance: skipped in quick mode (WSBENCH_QUICK=1); \
             the results keep the table of the last full run"
        );
        return;
    }
    let mut rec = Recorder::new("conformance", &mode);
    let stacks = stacks_to_measure(&mode)
        .into_iter()
        .filter(|s| mode.records() || TEST_MODE_STACKS.contains(&s.name));
    for stack in stacks {
        let table = wsbench::probe::probe_stack(stack, &mode.settings(Profile::Suite))
            .unwrap_or_else(|e| fail(&format!("benchmark conformance/{}: {e:#}", stack.name)));
        eprint!("{}", wsbench::probe::format_table(&table));
        if !table.always_served() {
            fail(&format!(
                "benchmark conformance/{}: the stack stopped serving other connections",
                stack.name
            ));
        }
        rec.extend(table.to_measurements(mode.placement.as_str()));
        rec.flush();
    }
    rec.finish();
}
