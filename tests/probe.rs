//! The conformance probe on every stack: whatever one client sends, the
//! server must keep serving the others. Whether a stack conforms to RFC 6455
//! is a finding the table records, not something asserted here; the table
//! is printed so that CI logs show it (`cargo test --test probe -- --nocapture`).
//!
//! Nothing here is timed; every wait inside the probe is bounded.

use wsbench::placement::Placement;
use wsbench::probe::{self, ProbeTable};
use wsbench::settings::ServerSettings;
use wsbench::stacks::{self, Host, Protocol};

fn probe(name: &str) -> ProbeTable {
    let settings = ServerSettings {
        placement: Placement::Unpinned,
        ..Default::default()
    };
    let stack = stacks::find(name).unwrap();
    let table =
        probe::probe_stack(stack, &settings).unwrap_or_else(|e| panic!("probing {name}: {e:#}"));
    println!("{}", probe::format_table(&table));
    table
}

fn check(name: &str) {
    let table = probe(name);
    let stack = stacks::find(name).unwrap();
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
        assert_eq!(m.metric, row.case);
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

/// The Python stacks need a venv; without one they are skipped, saying why.
fn check_python(name: &str) {
    match stacks::python::availability() {
        Ok(()) => check(name),
        Err(why) => eprintln!("skipping the probe of {name}: {why}"),
    }
}

macro_rules! probe_tests {
    ($check:ident: $($test:ident => $stack:literal,)*) => {
        $(
            #[test]
            fn $test() {
                $check($stack);
            }
        )*
    };
}

probe_tests! { check:
    raw_tcp => "raw-tcp",
    tokio_tungstenite => "tokio-tungstenite",
    axum => "axum",
    fastwebsockets => "fastwebsockets",
    tokio_websockets => "tokio-websockets",
    actix_ws => "actix-ws",
}

probe_tests! { check_python:
    python_websockets => "python-websockets",
    python_aiohttp => "python-aiohttp",
}

/// A stack added to the table must get a test above.
#[test]
fn every_stack_is_probed() {
    let tested = [
        "raw-tcp",
        "tokio-tungstenite",
        "axum",
        "fastwebsockets",
        "tokio-websockets",
        "actix-ws",
    ];
    let in_process: Vec<&str> = stacks::in_process().map(|s| s.name).collect();
    assert_eq!(in_process, tested);
    let python: Vec<&str> = stacks::STACKS
        .iter()
        .filter(|s| s.host == Host::ChildProcess)
        .map(|s| s.name)
        .collect();
    assert_eq!(python, ["python-websockets", "python-aiohttp"]);
}
