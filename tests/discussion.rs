//! discussion.md is the expansion of discussion.template.md against the
//! committed reference run; the expander rejects unknown names, references
//! that do not select one measurement, and claims the run contradicts.
//!
//! `WSBENCH_BLESS=1 cargo test --test discussion` rewrites discussion.md
//! from the template and target-reports/results.json (what `wsbench report
//! --publish` does after a complete run).

use std::path::{Path, PathBuf};

use wsbench::report::discussion::{expand, expand_beside, expand_with_claims, DiscussionError};
use wsbench::results::{Measurement, ResultsFile};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference_run() -> ResultsFile {
    ResultsFile::load(&root().join("target-reports/results.json")).expect("committed results")
}

fn template() -> String {
    std::fs::read_to_string(root().join("discussion.template.md")).expect("the template exists")
}

#[test]
fn the_committed_discussion_is_the_expansion_of_the_template() {
    let expanded = expand_beside(&template(), &reference_run(), Some(&root()))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = root().join("discussion.md");
    if std::env::var_os("WSBENCH_BLESS").is_some() {
        std::fs::write(&path, &expanded).unwrap();
    }
    let committed = std::fs::read_to_string(&path).expect("discussion.md exists");
    assert!(
        committed == expanded,
        "discussion.md is not the expansion of discussion.template.md; run `wsbench report --publish` \
         (or WSBENCH_BLESS=1 cargo test --test discussion) and commit the result"
    );
    assert!(!expanded.contains("{{") && !expanded.contains("<!--"));
}

/// The reference run with the one figure of `group` that `pick` selects
/// set to `value`.
fn with_figure(group: &str, pick: impl Fn(&Measurement) -> bool, value: f64) -> ResultsFile {
    let mut run = reference_run();
    let mut changed = 0;
    for m in run.groups.get_mut(group).unwrap().measurements.iter_mut() {
        if pick(m) {
            // A figure measured in rounds moves with all its rounds.
            if let Some(r) = &mut m.rounds {
                let factor = value / m.value;
                let values = r.values.iter().map(|v| v * factor).collect();
                *r = wsbench::rounds::Rounds::new(&r.block, values);
            }
            m.value = value;
            changed += 1;
        }
    }
    assert_eq!(changed, 1);
    run
}

/// One latency figure (binary messages) of the reference run.
fn latency_figure(stack: &str, metric: &str) -> f64 {
    reference_run().groups["latency"]
        .measurements
        .iter()
        .find(|m| {
            m.stack == stack && m.metric == metric && m.param("kind").as_deref() == Some("binary")
        })
        .unwrap()
        .value
}

/// The reference run with one latency figure (binary messages) scaled.
fn altered(stack: &str, metric: &str, factor: f64) -> ResultsFile {
    let value = latency_figure(stack, metric);
    with_figure(
        "latency",
        |m| m.stack == stack && m.metric == metric && m.param("kind").as_deref() == Some("binary"),
        value * factor,
    )
}

#[test]
fn a_run_that_contradicts_a_claim_fails_naming_it() {
    // axum ten times slower: "each within a factor of two of the floor" is false.
    let run = altered("axum", "rtt_mean_us", 10.0);
    match expand_beside(&template(), &run, Some(&root())) {
        Err(DiscussionError::Contradicted { claim, values, .. }) => {
            assert!(claim.contains("latency.@rust-ws.rtt_mean_us"), "{claim}");
            assert!(claim.contains("within"), "{claim}");
            assert!(values.contains("axum"), "{values}");
            assert!(values.contains("µs"), "{values}");
        }
        other => panic!("expected a contradicted claim, got {other:?}"),
    }
}

#[test]
fn a_different_leader_fails_the_claim_that_names_one() {
    // actix-ws's idle connection the smallest: the prose names wtx.
    let run = with_figure(
        "memory",
        |m| {
            m.stack == "actix-ws"
                && m.metric == "live_bytes_per_idle_conn"
                && m.param("profile").as_deref() == Some("suite")
                && m.param("cell").is_none()
        },
        1.0,
    );
    match expand_beside(&template(), &run, Some(&root())) {
        Err(DiscussionError::Contradicted { claim, values, .. }) => {
            assert!(
                claim.starts_with("check best memory.")
                    && claim.contains(".live_bytes_per_idle_conn profile=suite cell=- is wtx"),
                "{claim}"
            );
            assert!(values.contains("best is actix-ws"), "{values}");
        }
        other => panic!("expected a contradicted claim, got {other:?}"),
    }
}

fn expand_one(directive: &str) -> Result<String, DiscussionError> {
    expand(directive, &reference_run())
}

#[test]
fn figures_and_derived_values_are_formatted_by_unit() {
    let latency = |stack: &'static str, metric: &'static str| {
        move |m: &Measurement| {
            m.stack == stack && m.metric == metric && m.param("kind").as_deref() == Some("binary")
        }
    };
    let mut run = with_figure("latency", latency("axum", "rtt_mean_us"), 26.2);
    for (stack, metric, value) in [
        ("axum", "server_cpu_ns_per_msg", 14_219.4),
        ("fastwebsockets", "rtt_mean_us", 25.92),
        ("raw-tcp", "rtt_mean_us", 21.6),
    ] {
        let m = run
            .groups
            .get_mut("latency")
            .unwrap()
            .measurements
            .iter_mut()
            .find(|m| latency(stack, metric)(m))
            .unwrap();
        // Set by hand: no rounds, so ratios are of the values alone.
        m.value = value;
        m.rounds = None;
    }
    let big = run
        .groups
        .get_mut("throughput")
        .unwrap()
        .measurements
        .iter_mut()
        .find(|m| {
            m.stack == "axum"
                && m.metric == "mib_per_s"
                && m.param("kind").as_deref() == Some("binary")
                && m.param("size_bytes").as_deref() == Some("16777216")
                && m.param("echo").as_deref() == Some("flush-each")
        });
    big.unwrap().value = 558.4;
    let fig = |d: &str| expand(d, &run).unwrap_or_else(|e| panic!("{d}: {e}"));
    assert_eq!(fig("{{latency.axum.rtt_mean_us kind=binary}}"), "26.2 µs");
    assert_eq!(
        fig("{{latency.axum.server_cpu_ns_per_msg kind=binary}}"),
        "14,219 ns"
    );
    assert_eq!(
        fig("{{throughput.axum.mib_per_s kind=binary size_bytes=16MiB echo=flush-each}}"),
        "558 MiB/s"
    );
    assert_eq!(
        fig("{{ratio latency.fastwebsockets.rtt_mean_us kind=binary latency.raw-tcp.rtt_mean_us kind=binary}}"),
        "1.20×"
    );
    assert_eq!(
        fig("{{param scaling.axum.msgs_per_s conns=8192 echo=flush-each conns}}"),
        "8,192"
    );
    let commit = &run.groups["latency"].run.commit[..12];
    assert_eq!(fig("{{run.*.commit}}"), commit);
    assert_eq!(
        fig("a{{check latency.axum.rtt_mean_us kind=binary > 1}}b"),
        "ab"
    );
}

/// `{{confirmation PATH}}` counts another run's verdicts on this run's
/// claims: the run against itself confirms every one, and a run on
/// another CPU is named as such.
#[test]
fn confirmation_counts_another_runs_verdicts() {
    let dir = std::env::temp_dir().join(format!("wsbench-confirmation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = reference_run();
    let n = wsbench::report::claims::claims(&run, wsbench::rounds::CLAIM_THRESHOLD).len();
    assert!(n > 0);
    run.save(&dir.join("same.json")).unwrap();
    let mut elsewhere = run.clone();
    for g in elsewhere.groups.values_mut() {
        g.run.cpu = "Another CPU".into();
    }
    elsewhere.save(&dir.join("elsewhere.json")).unwrap();
    let same = expand_beside("{{confirmation same.json}}", &run, Some(&dir)).unwrap();
    assert!(
        same.starts_with(&format!(
            "{n} of {n} confirmed ({n} of them beyond the 10% threshold again), 0 within noise"
        )),
        "{same}"
    );
    // The discussion's own claims between stacks join the report's, even
    // those made after the confirmation: a `{{claims}}` list and a `<`.
    let template = "{{confirmation same.json}} {{claims latency.@ws.rtt_p50_us kind=binary}}";
    let (text, made) = expand_with_claims(template, &run, Some(&dir)).unwrap();
    assert!(!made.is_empty());
    let all =
        wsbench::report::claims::with_discussion(&run, wsbench::rounds::CLAIM_THRESHOLD, &made);
    assert!(
        all.len() > n,
        "the WebSocket stacks' pairs add claims beyond the best and the floor"
    );
    let k = all.len();
    assert!(text.starts_with(&format!("{k} of {k} confirmed")), "{text}");
    let (best, worst) = (&made[0].better, &made[0].worse);
    let check = format!(
        "{{{{check latency.{best}.rtt_p50_us kind=binary < latency.{worst}.rtt_p50_us kind=binary}}}}"
    );
    let (_, made) = expand_with_claims(&check, &run, Some(&dir)).unwrap();
    assert_eq!(
        made.iter()
            .map(|c| (&c.better, &c.worse))
            .collect::<Vec<_>>(),
        [(best, worst)]
    );
    // Between two stacks at different parameters of one block there is no
    // claim another run could be asked about: an error, not a guess.
    let across = "{{check throughput.sockudo-ws.mib_per_s kind=binary size_bytes=128 echo=batched \
                  > throughput.yawc.mib_per_s kind=binary size_bytes=128 echo=flush-each}}";
    let e = expand_with_claims(across, &run, Some(&dir)).unwrap_err();
    assert!(e.to_string().contains("same parameters"), "{e}");
    assert!(!same.contains("different CPU"), "{same}");
    let other = expand_beside("{{confirmation elsewhere.json}}", &run, Some(&dir)).unwrap();
    assert!(other.contains("on Another CPU, a different CPU"), "{other}");
    // Without the template's directory, or with a missing file: an error.
    assert!(expand("{{confirmation same.json}}", &run).is_err());
    assert!(expand_beside("{{confirmation absent.json}}", &run, Some(&dir)).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_metric_is_an_error() {
    let e = expand_one("{{latency.axum.rtt_median_us kind=binary}}").unwrap_err();
    assert!(
        matches!(&e, DiscussionError::UnknownMetric { name, line: 1 } if name == "rtt_median_us"),
        "{e:?}"
    );
}

#[test]
fn an_unknown_stack_is_an_error() {
    let e = expand_one("\n{{latency.axom.rtt_mean_us kind=binary}}").unwrap_err();
    assert!(
        matches!(&e, DiscussionError::UnknownStack { name, line: 2 } if name == "axom"),
        "{e:?}"
    );
    let e = expand_one("{{check every latency.@rust.rtt_mean_us < 1}}").unwrap_err();
    assert!(matches!(e, DiscussionError::UnknownStack { .. }), "{e:?}");
}

#[test]
fn an_unknown_group_or_run_field_is_an_error() {
    let e = expand_one("{{latncy.axum.rtt_mean_us}}").unwrap_err();
    assert!(matches!(e, DiscussionError::UnknownGroup { .. }), "{e:?}");
    let e = expand_one("{{run.latency.cpu_model}}").unwrap_err();
    assert!(
        matches!(e, DiscussionError::UnknownRunField { .. }),
        "{e:?}"
    );
}

#[test]
fn an_ambiguous_reference_is_an_error_naming_the_candidates() {
    // Binary and text were both measured.
    let e = expand_one("{{latency.axum.rtt_mean_us}}").unwrap_err();
    match e {
        DiscussionError::Ambiguous { candidates, .. } => {
            assert_eq!(candidates.len(), 2);
            assert!(
                candidates.iter().any(|c| c.contains("kind=text")),
                "{candidates:?}"
            );
        }
        other => panic!("expected an ambiguity, got {other:?}"),
    }
}

#[test]
fn a_reference_that_matches_nothing_is_an_error() {
    let e = expand_one("{{latency.axum.rtt_mean_us kind=binary size_bytes=64}}").unwrap_err();
    assert!(matches!(e, DiscussionError::NoMatch { .. }), "{e:?}");
}

#[test]
fn a_list_against_figures_that_partner_none_is_an_error() {
    // The idle figures per cell have no partner among the profiles.
    let e = expand_one(
        "{{list memory.*.live_bytes_per_idle_conn profile=suite cell=- vs memory.*.live_bytes_per_idle_conn profile=defaults-deflate-offered cell=tls}}",
    )
    .unwrap_err();
    assert!(matches!(e, DiscussionError::NoMatch { .. }), "{e:?}");
}

/// Numbers the prose may hold outside directives and code spans: names
/// (RFC 6455, HTTP/1.1, TLS 1.3, X25519, section 5.1, UTF-8, p99) and the suite's fixed
/// buffer and limit sizes, the load group's p99 limits, answered share,
/// client-core flag and run length, and the test server's pause, which
/// are settings of the code, not figures of a run.
const ALLOWED: [&str; 24] = [
    "RFC 6455",
    "TLS 1.3",
    "X25519",
    "P-256",
    "V8",
    "libp2p",
    "HTTP/1.1",
    "HTTP/1",
    "section 5.1",
    "section 5.2",
    "UTF-8",
    "p99.9",
    "p99",
    "p50",
    "32 MiB",
    "128 KiB",
    "64 KiB",
    "4 KiB",
    "10 ms",
    "1 ms",
    "99%",
    "75%",
    "150 ms",
    "50 ms",
];

/// `text` without what lies between `open` and `close`.
fn strip(text: &str, open: &str, close: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let end = after.find(close).expect("closed");
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    out
}

/// The prose of a template: without comments, directives, images and
/// code spans.
fn prose(template: &str) -> String {
    let text = strip(&strip(template, "<!--", "-->"), "{{", "}}");
    let text = strip(&text, "![", ")");
    text.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn every_number_in_the_prose_comes_from_the_expander() {
    let mut text = prose(&template());
    for allowed in ALLOWED {
        text = text.replace(allowed, "");
    }
    let typed: Vec<&str> = text
        .lines()
        .filter(|line| line.chars().any(|c| c.is_ascii_digit()))
        .collect();
    assert!(
        typed.is_empty(),
        "numbers typed into the template: {typed:#?}"
    );
}

#[test]
fn the_prose_check_sees_typed_numbers() {
    let text = prose("<!-- 1 -->mean {{latency.axum.rtt_mean_us}} or 26.2 µs, `cargo bench`");
    assert!(text.contains("26.2"), "{text}");
    assert!(!text.contains('1') && !text.contains("rtt_mean_us") && !text.contains("bench"));
}

#[test]
fn expanding_writes_nothing_when_a_claim_fails() {
    let dir = std::env::temp_dir().join(format!("wsbench-discussion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("t.md");
    let out = dir.join("out.md");
    std::fs::write(
        &template,
        "{{check latency.axum.rtt_mean_us kind=binary < 1}}",
    )
    .unwrap();
    let e = wsbench::report::discussion::write(&template, &reference_run(), &out).unwrap_err();
    assert!(
        matches!(e, DiscussionError::Contradicted { line: 1, .. }),
        "{e:?}"
    );
    assert!(!Path::new(&out).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run` with every expected group it lacks given one figure (one of the
/// latency group's, moved): a committed reference run may predate a
/// group, and a publish needs every group.
fn with_every_group(mut run: ResultsFile) -> ResultsFile {
    let latency = run.groups["latency"].clone();
    for group in wsbench::report::EXPECTED_GROUPS {
        if run.groups.contains_key(*group) {
            continue;
        }
        let mut figure = latency.measurements[0].clone();
        figure.group = group.to_string();
        figure.bench = format!("{group}/{}/100/0.5", figure.stack);
        run.replace_group(
            group,
            wsbench::results::GroupResults {
                run: latency.run.clone(),
                pair_run: None,
                measurements: vec![figure],
            },
        );
    }
    run
}

#[test]
fn the_report_step_expands_the_template_beside_its_directory() {
    let dir =
        std::env::temp_dir().join(format!("wsbench-discussion-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let axum = latency_figure("axum", "rtt_mean_us");
    // A bound twice the reference's figure: true of the reference whatever
    // machine made it, false once the figure is ten times as large.
    std::fs::write(
        dir.join("discussion.template.md"),
        format!(
            "<!-- how -->\naxum: {{{{latency.axum.rtt_mean_us kind=binary}}}}{{{{check latency.axum.rtt_mean_us kind=binary < {:.0}}}}}\n",
            (axum * 2.0).ceil()
        ),
    )
    .unwrap();
    // Set field by field, so options other helpers add keep their defaults.
    let mut opts = wsbench::report::ReportOptions::defaults();
    opts.results_path = dir.join("results.json");
    opts.criterion_dir = dir.join("criterion");
    opts.out_dir = dir.join("report");
    opts.publish_dir = dir.join("reports");
    with_every_group(reference_run())
        .save(&opts.results_path)
        .unwrap();
    // Only a publish writes the discussion, and it needs the latency flamegraphs.
    for m in &reference_run().groups["latency"].measurements {
        let case = m.bench.splitn(3, '/').nth(2).unwrap().replace('/', "_");
        let profile = opts
            .criterion_dir
            .join("latency")
            .join(&m.stack)
            .join(case)
            .join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(profile.join("flamegraph.svg"), "<svg/>").unwrap();
    }
    wsbench::report::publish(&opts).unwrap();
    let written = std::fs::read_to_string(dir.join("discussion.md")).unwrap();
    assert_eq!(written, format!("axum: {axum:.1} µs\n"));

    // A run that contradicts the claim fails the report and leaves the
    // old discussion as it was.
    with_every_group(altered("axum", "rtt_mean_us", 10.0))
        .save(&opts.results_path)
        .unwrap();
    let e = wsbench::report::publish(&opts).unwrap_err();
    assert!(format!("{e:#}").contains("contradicts"), "{e:#}");
    assert_eq!(
        std::fs::read_to_string(dir.join("discussion.md")).unwrap(),
        written
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reference run with every stack's binary latency p50 measured in one
/// block of 12 rounds: round i is `base * factor(stack) * drift(i)`.
fn with_rounds(factor: impl Fn(&str) -> f64) -> ResultsFile {
    let mut run = reference_run();
    for m in run
        .groups
        .get_mut("latency")
        .unwrap()
        .measurements
        .iter_mut()
    {
        if m.metric == "rtt_p50_us" && m.param("kind").as_deref() == Some("binary") {
            let values: Vec<f64> = (0..12)
                .map(|i| 10.0 * factor(&m.stack) * (1.0 + 0.5 * ((i * 7 % 12) as f64 / 11.0)))
                .collect();
            let r = wsbench::rounds::Rounds::new("latency", values);
            m.value = r.median();
            m.rounds = Some(r);
        }
    }
    run
}

#[test]
fn figures_of_one_block_are_ordered_only_beyond_the_claim_threshold() {
    let check = "{{check latency.tokio-tungstenite.rtt_p50_us kind=binary < latency.axum.rtt_p50_us kind=binary}}";
    let gap = |axum: f64| move |s: &str| if s == "axum" { axum } else { 1.0 };
    // 5% apart: the medians differ, but the gap is within noise.
    let close = with_rounds(gap(1.05));
    match expand(check, &close) {
        Err(DiscussionError::Contradicted { values, .. }) => {
            assert!(values.contains("paired ratio"), "{values}")
        }
        other => panic!("expected a contradiction, got {other:?}"),
    }
    // ...and satisfies <= both ways.
    let le = "{{check latency.axum.rtt_p50_us kind=binary <= latency.tokio-tungstenite.rtt_p50_us kind=binary}}";
    assert_eq!(expand(le, &close).unwrap(), "");
    // 30% apart, every round: a claim, whatever the drift.
    let far = with_rounds(gap(1.3));
    assert_eq!(expand(check, &far).unwrap(), "");
    let ratio = "{{ratio latency.axum.rtt_p50_us kind=binary latency.tokio-tungstenite.rtt_p50_us kind=binary}}";
    assert_eq!(expand(ratio, &far).unwrap(), "1.30× (1.30–1.30)");
    assert_eq!(expand("{{threshold}}", &far).unwrap(), "10%");
    assert_eq!(
        expand("{{rounds latency.axum.rtt_p50_us kind=binary}}", &far).unwrap(),
        "12 rounds (intervals of 96.1% coverage)"
    );
    // The claims among the in-process WebSocket stacks: axum behind each.
    let claims = "{{claims latency.@rust-ws.rtt_p50_us kind=binary}}";
    let text = expand(claims, &far).unwrap();
    assert!(
        text.contains("tokio-tungstenite ahead of axum by 1.30×"),
        "{text}"
    );
    assert!(text.contains("within noise"), "{text}");
    assert!(!text.contains("ahead of tokio-tungstenite"), "{text}");
    let rust_ws = wsbench::stacks::in_process()
        .filter(|s| s.protocol == wsbench::stacks::Protocol::WebSocket)
        .count();
    assert_eq!(
        expand(claims, &close).unwrap(),
        format!(
            "no claim: all {} pairs within noise",
            rust_ws * (rust_ws - 1) / 2
        )
    );
}
