//! RFC 6455 conformance and abuse probe.
//!
//! [`probe_stack`] starts a stack's server and, case by case, opens a fresh
//! raw connection, sends input a good client never would (an unmasked
//! frame, an unknown opcode, a 32 MiB + 1 B header, half a frame, a reader
//! that stops reading, ...) and records what the server did about it. After
//! every case a fresh load-client connection checks, with verified echoes,
//! that the server still serves others: whatever one client does, the rest
//! must not notice. A connection that never speaks is kept open through
//! every case, and the half-sent one is left dangling, for the same reason.
//!
//! A server that breaks the RFC is a finding, recorded in the table, not an
//! error. How a row is judged (`conforms`):
//!
//! - bad input: the server must fail the connection (RFC 6455 7.1.7) and
//!   answer nothing. The close frame before it is a SHOULD, so closing TCP
//!   without one conforms, but a close frame that is sent must carry the
//!   status code the RFC names (1002, 1007; any valid code for an
//!   over-limit message, where the limit is the server's policy);
//! - a silent peer: nothing is required; closing it or keeping it conforms;
//! - a slow reader: the echo must arrive intact once read, and others must
//!   be served while it is unread.
//!
//! The outcome column says exactly what happened, so a lenient verdict
//! never hides the detail.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

use crate::client::Target;
use crate::metrics::{self, Source};
use crate::results::Measurement;
use crate::settings::ServerSettings;
use crate::stacks::{Protocol, StackInfo};

mod cases;
mod raw;

/// A hard cap on one case, over the bounds each wait already has: a case
/// that somehow exceeds it is recorded as a finding and the probe moves on.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// The outcome of every case on a stack that does not speak WebSocket.
const NOT_APPLICABLE: &str = "not applicable";

/// The probe's findings on one stack.
#[derive(Debug, Clone)]
pub struct ProbeTable {
    /// The stack's short name, e.g. "axum".
    pub stack: String,
    /// Package and version, e.g. "axum 0.8.9".
    pub stack_version: String,
    /// One row per case, in [`case_names`] order.
    pub rows: Vec<ProbeRow>,
    /// Set when the server did not stop cleanly after the probe (it may be
    /// stuck on a connection the probe left behind).
    pub shutdown_error: Option<String>,
}

/// One case on one stack.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub case: &'static str,
    /// What RFC 6455 asks of the server.
    pub expected: &'static str,
    /// What the server did: "closed with 1002", "closed without close
    /// frame", "kept open", "echoed it (5 B binary), then kept open", ...
    pub outcome: String,
    /// False for a stack the case does not apply to (raw TCP).
    pub applicable: bool,
    /// Whether the outcome meets the RFC (see the module docs).
    pub conforms: bool,
    /// Whether a fresh connection got verified echoes after the case.
    pub still_serving: bool,
    /// Why the still-serving check failed, when it did.
    pub serving_error: Option<String>,
}

/// Every case's name, in the order the table lists them.
pub fn case_names() -> impl Iterator<Item = &'static str> {
    cases::CASES.iter().map(|c| c.name)
}

/// Starts `stack`'s server, runs every case against it and stops it.
///
/// Returns `Err` only when the server cannot start or the probe cannot run;
/// a server that misbehaves, even one that stops serving, yields a table
/// that says so.
pub fn probe_stack(stack: &StackInfo, settings: &ServerSettings) -> anyhow::Result<ProbeTable> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the probe's runtime")?;
    let server = stack.start(settings)?;
    let target = Target::of(&server);
    // Every connection the cases opened is dropped when this returns, so
    // that the shutdown below does not wait on them.
    let rows = rt.block_on(async {
        match stack.protocol {
            Protocol::WebSocket => probe_cases(&target).await,
            Protocol::RawTcp => not_applicable(&target).await,
        }
    });
    let shutdown_error = server.shutdown().err().map(|e| format!("{e:#}"));
    Ok(ProbeTable {
        stack: stack.name.to_string(),
        stack_version: stack.package_version(),
        rows,
        shutdown_error,
    })
}

async fn probe_cases(target: &Target) -> Vec<ProbeRow> {
    let mut probe = cases::Probe::new(target).await;
    let mut rows = Vec::with_capacity(cases::CASES.len());
    for case in cases::CASES {
        let verdict = tokio::time::timeout(CASE_LIMIT, probe.run(case))
            .await
            .unwrap_or_else(|_| cases::Verdict {
                outcome: format!("probe gave up after {} s", CASE_LIMIT.as_secs()),
                conforms: false,
            });
        let serving = cases::check_serving(target).await;
        rows.push(ProbeRow {
            case: case.name,
            expected: case.expected,
            outcome: verdict.outcome,
            applicable: true,
            conforms: verdict.conforms,
            still_serving: serving.is_ok(),
            serving_error: serving.err(),
        });
    }
    rows
}

/// Raw TCP is not WebSocket: no case applies, but the server must serve.
async fn not_applicable(target: &Target) -> Vec<ProbeRow> {
    let serving = cases::check_serving(target).await;
    cases::CASES
        .iter()
        .map(|case| ProbeRow {
            case: case.name,
            expected: case.expected,
            outcome: NOT_APPLICABLE.to_string(),
            applicable: false,
            conforms: false,
            still_serving: serving.is_ok(),
            serving_error: serving.clone().err(),
        })
        .collect()
}

impl ProbeTable {
    /// One `conformance` measurement of [`metrics::CONFORMS`] per
    /// applicable case (the case a parameter): value 1 when the server
    /// conforms, 0 when not. Cases that do not apply (raw TCP) are left out
    /// rather than scored 0.
    pub fn to_measurements(&self, placement: &str) -> Vec<Measurement> {
        self.rows
            .iter()
            .filter(|row| row.applicable)
            .map(|row| Measurement {
                group: "conformance".into(),
                bench: format!("conformance/{}/{}", self.stack, row.case),
                stack: self.stack.clone(),
                stack_version: self.stack_version.clone(),
                params: BTreeMap::from([
                    ("case".to_string(), row.case.into()),
                    ("expected".to_string(), row.expected.into()),
                ]),
                metric: metrics::CONFORMS.name.into(),
                value: if row.conforms { 1.0 } else { 0.0 },
                unit: metrics::CONFORMS.unit.as_str().into(),
                source: Source::Probe.as_str().into(),
                placement: placement.into(),
                detail: Some(format!(
                    "{}{}",
                    row.outcome,
                    if row.still_serving {
                        " (still serving)"
                    } else {
                        " (STOPPED SERVING)"
                    }
                )),
                rounds: None,
            })
            .collect()
    }

    /// True when the server served a fresh connection after every case.
    pub fn always_served(&self) -> bool {
        self.rows.iter().all(|row| row.still_serving)
    }
}

/// The table as aligned text: case, expected, outcome, conforms, still
/// serving; then why any still-serving check failed.
pub fn format_table(t: &ProbeTable) -> String {
    const HEADINGS: [&str; 5] = ["case", "expected", "outcome", "conforms", "still serving"];
    let cells: Vec<[String; 5]> = t
        .rows
        .iter()
        .map(|row| {
            [
                row.case.to_string(),
                row.expected.to_string(),
                row.outcome.clone(),
                match (row.applicable, row.conforms) {
                    (false, _) => "-".into(),
                    (true, true) => "yes".into(),
                    (true, false) => "NO".into(),
                },
                if row.still_serving { "yes" } else { "NO" }.into(),
            ]
        })
        .collect();
    let mut widths = HEADINGS.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };

    let mut out = format!("conformance probe: {} ({})\n", t.stack, t.stack_version);
    out += &line(HEADINGS);
    out += &line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str));
    for row in &cells {
        out += &line(row.each_ref().map(String::as_str));
    }
    for row in &t.rows {
        if let Some(e) = &row.serving_error {
            out += &format!("still-serving check after {}: {e}\n", row.case);
        }
    }
    if let Some(e) = &t.shutdown_error {
        out += &format!("shutdown after the probe: {e}\n");
    }
    out
}
