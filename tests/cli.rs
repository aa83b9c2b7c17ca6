//! The `wsbench` command line: help lists every value, a typo is refused
//! with the valid ones, `run --json` prints results.json records, and
//! `run --url` drives a `serve` child without `--stack`.
//!
//! Every wait has a deadline that only guards against a hang; nothing here
//! is timed.

use std::process::{Command, Output};
use std::time::Duration;

use clap::ValueEnum;
use wsbench::client::PayloadKind;
use wsbench::placement::Placement;
use wsbench::results::GroupResults;
use wsbench::settings::Profile;
use wsbench::stacks::STACKS;

mod command;

use command::{transcript, Server};

const WSBENCH: &str = env!("CARGO_BIN_EXE_wsbench");

/// From spawning `serve` to its "serving" line (a debug build, a loaded
/// machine).
const SERVE_DEADLINE: Duration = Duration::from_secs(30);

fn wsbench(args: &[&str]) -> Output {
    Command::new(WSBENCH)
        .args(args)
        // The default placement must not come from the caller's shell.
        .env_remove(wsbench::placement::PLACEMENT_ENV)
        .output()
        .unwrap_or_else(|e| panic!("running {WSBENCH}: {e}"))
}

fn value_names<E: ValueEnum>() -> Vec<String> {
    E::value_variants()
        .iter()
        .map(|v| v.to_possible_value().unwrap().get_name().to_string())
        .collect()
}

// ---- help and refusals ----

#[test]
fn value_enum_names_are_the_parse_names() {
    for p in Placement::ALL {
        assert_eq!(p.to_possible_value().unwrap().get_name(), p.as_str());
    }
    for p in Profile::ALL {
        assert_eq!(p.to_possible_value().unwrap().get_name(), p.as_str());
    }
    for k in PayloadKind::value_variants() {
        let name = k.to_possible_value().unwrap().get_name().to_string();
        assert_eq!(name, k.as_str());
        assert_eq!(PayloadKind::parse(&name).unwrap(), *k);
    }
}

#[test]
fn help_of_run_serve_and_probe_lists_every_value() {
    let mut expected: Vec<String> = STACKS.iter().map(|s| s.name.to_string()).collect();
    expected.extend(value_names::<Placement>());
    expected.extend(value_names::<Profile>());
    for command in ["run", "serve", "probe"] {
        let out = wsbench(&[command, "--help"]);
        assert!(out.status.success(), "{command} --help{}", transcript(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        for name in &expected {
            assert!(
                help.contains(name.as_str()),
                "{command} --help does not list {name}{}",
                transcript(&out)
            );
        }
    }
    let out = wsbench(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for kind in value_names::<PayloadKind>() {
        assert!(
            help.contains(&kind),
            "run --help does not list {kind}{}",
            transcript(&out)
        );
    }
}

/// Runs `args`, which must be refused as a usage error naming every value
/// in `valid`.
fn assert_refused(args: &[&str], valid: &[String]) {
    let out = wsbench(args);
    // clap exits 2 on a usage error, before anything runs.
    assert_eq!(out.status.code(), Some(2), "{args:?}{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value"),
        "{args:?}{}",
        transcript(&out)
    );
    for name in valid {
        assert!(
            err.contains(name.as_str()),
            "{args:?}: the error does not name {name}{}",
            transcript(&out)
        );
    }
}

#[test]
fn typos_are_refused_with_the_valid_values() {
    let stacks: Vec<String> = STACKS.iter().map(|s| s.name.to_string()).collect();
    assert_refused(&["run", "--stack", "axun"], &stacks);
    assert_refused(&["serve", "--stack", "axun"], &stacks);
    assert_refused(&["probe", "--stack", "axun"], &stacks);
    let placements = value_names::<Placement>();
    assert_refused(
        &["run", "--stack", "axum", "--placement", "same"],
        &placements,
    );
    assert_refused(&["compare", "main", "--placement", "same"], &placements);
    assert_refused(
        &["measure", "--out", "x.json", "--placement", "same"],
        &placements,
    );
    assert_refused(
        &["run", "--stack", "axum", "--kind", "utf8"],
        &value_names::<PayloadKind>(),
    );
    assert_refused(
        &["serve", "--stack", "axum", "--profile", "small"],
        &value_names::<Profile>(),
    );
}

#[test]
fn run_needs_a_stack_or_a_url() {
    let out = wsbench(&["run", "--duration", "0.1"]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--stack") && err.contains("--url"),
        "the error names neither --stack nor --url{}",
        transcript(&out)
    );
}

// ---- run --json ----

/// The `run --json` document of a successful run.
fn parse_run_json(out: &Output) -> GroupResults {
    assert!(out.status.success(), "run --json{}", transcript(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "run --json is not GroupResults JSON: {e}{}",
            transcript(out)
        )
    })
}

fn value_of(results: &GroupResults, metric: &str) -> f64 {
    results
        .measurements
        .iter()
        .find(|m| m.metric == metric)
        .unwrap_or_else(|| panic!("no {metric} in {:#?}", results.measurements))
        .value
}

#[test]
fn run_json_prints_the_records_the_benches_write() {
    let out = wsbench(&[
        "run",
        "--stack",
        "raw-tcp",
        "--duration",
        "0.3",
        "--size",
        "64",
        "--json",
    ]);
    let results = parse_run_json(&out);
    assert_eq!(results.run.placement, "same-core");
    assert!(value_of(&results, "round_trips_verified") > 0.0);
    assert!(value_of(&results, "msgs_per_s") > 0.0);
    for metric in [
        "rtt_p50_us",
        "rtt_p99_us",
        "client_cpu_ns_per_msg",
        "server_cpu_ns_per_msg",
    ] {
        value_of(&results, metric);
    }
    for m in &results.measurements {
        let def = wsbench::metrics::find(&m.metric)
            .unwrap_or_else(|| panic!("{} is not in the metric catalogue", m.metric));
        assert_eq!(m.unit, def.unit.as_str(), "{m:?}");
        assert_eq!(m.group, "run");
        assert_eq!(m.stack, "raw-tcp");
        assert!(m.stack_version.starts_with("tokio "), "{m:?}");
        assert_eq!(m.params["size_bytes"], 64);
        assert_eq!(m.params["kind"], "binary");
        assert_eq!(m.placement, "same-core");
    }
}

/// `run` records the driver it used, as asked, open loop and closed; an
/// unknown one is refused with the valid ones.
#[test]
fn run_records_the_client_driver() {
    for (driver, recorded) in [("uring", "io_uring"), ("epoll", "epoll")] {
        let open = ["--conns", "4", "--rate", "2000", "--duration", "0.3"];
        let closed = ["--conns", "4", "--window", "4", "--duration", "0.3"];
        for load in [open, closed] {
            let mut args = vec!["run", "--stack", "raw-tcp", "--driver", driver, "--json"];
            args.extend(load);
            let results = parse_run_json(&wsbench(&args));
            assert_eq!(results.run.client_driver, recorded, "{args:?}");
            let verified = value_of(&results, "round_trips_verified");
            if load == open {
                assert_eq!(verified, 600.0, "{args:?}");
            } else {
                assert!(verified > 0.0, "{args:?}");
            }
        }
    }
    let out = wsbench(&[
        "run", "--stack", "raw-tcp", "--rate", "100", "--driver", "kqueue",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("uring"),
        "{}",
        transcript(&out)
    );
}

// ---- run --url against a serve child ----

/// A `wsbench serve` of `stack` on a free port.
fn serve(stack: &str) -> Server {
    let mut cmd = Command::new(WSBENCH);
    cmd.args(["serve", "--stack", stack, "--addr", "127.0.0.1:0"]);
    Server::start(cmd, SERVE_DEADLINE, &format!("serve --stack {stack}"))
}

#[test]
fn run_url_without_stack_names_the_result_after_the_url() {
    let server = serve("tokio-tungstenite");
    let out = wsbench(&["run", "--url", &server.url, "--duration", "0.3", "--json"]);
    let results = parse_run_json(&out);
    assert!(value_of(&results, "round_trips_verified") > 0.0);
    for m in &results.measurements {
        assert_eq!(m.stack, server.url);
        assert_eq!(m.params["url"], server.url.as_str());
    }
    // The server ran elsewhere: its CPU is not claimed.
    assert!(results
        .measurements
        .iter()
        .all(|m| m.metric != "server_cpu_ns_per_msg"));

    // The text form names it the same way.
    let out = wsbench(&["run", "--url", &server.url, "--duration", "0.3"]);
    assert!(out.status.success(), "{}", transcript(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("stack {} conns 1 ", server.url)),
        "{}",
        transcript(&out)
    );
}

#[test]
fn run_url_with_stack_names_the_result_after_the_stack() {
    let server = serve("raw-tcp");
    assert!(server.url.starts_with("tcp://"), "{}", server.url);
    let out = wsbench(&[
        "run",
        "--url",
        &server.url,
        "--stack",
        "raw-tcp",
        "--duration",
        "0.3",
        "--json",
    ]);
    let results = parse_run_json(&out);
    assert!(value_of(&results, "round_trips_verified") > 0.0);
    for m in &results.measurements {
        assert_eq!(m.stack, "raw-tcp");
        assert!(m.stack_version.starts_with("tokio "), "{m:?}");
    }
}
