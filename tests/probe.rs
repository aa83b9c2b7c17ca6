//! The conformance probe on every stack: whatever one client sends, the
//! server must keep serving the others. Whether a stack conforms to RFC 6455
//! is a finding the table records, not something asserted here; the table
//! is printed so that CI logs show it (`cargo test --test probe -- --nocapture`).
//!
//! One test per row of the stack table, `probe::<stack>` (see
//! `table/mod.rs`).
//!
//! Nothing here is timed; every wait inside the probe is bounded.

use std::process::ExitCode;

use wsbench::placement::Placement;
use wsbench::probe::{self, ProbeTable};
use wsbench::settings::ServerSettings;
use wsbench::stacks::{Host, Protocol, StackInfo};

mod table;
use table::{Action, Case};

fn probe(stack: &'static StackInfo) -> ProbeTable {
    let name = stack.name;
    let settings = ServerSettings {
        placement: Placement::Unpinned,
        ..Default::default()
    };
    let table =
        probe::probe_stack(stack, &settings).unwrap_or_else(|e| panic!("probing {name}: {e:#}"));
    println!("{}", probe::format_table(&table));
    table
}

fn check(stack: &'static StackInfo) {
    let name = stack.name;
    let table = probe(stack);
    assert_eq!(table.stack, name);
    assert_eq!(table.stack_version, stack.package_version());

    let cases: Vec<&str> = table.rows.iter().map(|r| r.case).collect();
    assert_eq!(cases, probe::case_names().collect::<Vec<_>>());
    for row in &table.rows {
        assert!(
            !row.outcome.is_empty(),
            "{name}: case {} has no outcome",
            row.case
        );
        assert!(
            row.still_serving,
            "{name}: stopped serving after case {}: {}",
            row.case,
            row.serving_error.as_deref().unwrap_or("?")
        );
        assert_eq!(row.applicable, stack.protocol == Protocol::WebSocket);
    }
    assert!(table.always_served());
    assert_eq!(table.shutdown_error, None, "{name}: did not stop cleanly");

    let measurements = table.to_measurements("unpinned");
    let applicable = table.rows.iter().filter(|r| r.applicable).count();
    assert_eq!(measurements.len(), applicable);
    for (m, row) in measurements.iter().zip(&table.rows) {
        assert_eq!(m.group, "conformance");
        assert_eq!(m.bench, format!("conformance/{name}/{}", row.case));
        assert_eq!(m.metric, "conforms");
        assert_eq!(m.params["case"], row.case);
        assert_eq!(m.value, if row.conforms { 1.0 } else { 0.0 });
        assert_eq!(m.unit, "bool");
        assert_eq!(m.source, "probe");
        assert_eq!(m.placement, "unpinned");
        assert_eq!(m.params["expected"], row.expected);
        let detail = m.detail.as_deref().unwrap();
        assert!(detail.starts_with(&row.outcome), "{detail}");
        assert!(detail.ends_with(" (still serving)"), "{detail}");
    }
}

/// Every stack is probed; the Python stacks need their venv (skipped with
/// the reason without it, a failure under `WSBENCH_REQUIRE_PYTHON=1`).
fn plan(stack: &'static StackInfo) -> Vec<Case> {
    let action = match stack.host() {
        Host::InProcess => Action::Run(check),
        Host::ChildProcess => Action::RunWhereAvailable(check),
    };
    vec![Case::new("probe", stack, action)]
}

fn main() -> ExitCode {
    table::run("tests/probe.rs", plan, Vec::new())
}
