//! `discussion.md` from a template a person writes (`discussion.template.md`):
//! the prose is theirs, every figure and every comparison in it is a named
//! reference that this module fills in from a results file and checks
//! against it. An unknown name, a reference that does not select exactly
//! one measurement, or a claim the run contradicts is an error, so stale
//! prose cannot land.
//!
//! # Syntax
//!
//! A directive is `{{ ... }}` (it may span lines); HTML comments
//! (`<!-- ... -->`) are dropped. Words are separated by white space.
//!
//! A *reference* is `group.stack.metric` followed by filters on the
//! measurement's parameters, e.g. `latency.axum.rtt_mean_us kind=binary`.
//! The metric must be in [`crate::metrics`]; filters are `key=value`,
//! `key!=value`, `key<value`, `key<=value`, `key>value`, `key>=value`,
//! where a number may carry a binary suffix (`16KiB`, `1MiB`), and `key=-`
//! keeps only the measurements without that parameter. In a
//! *pattern* the stack is `*` (every stack), a set (`@ws`: WebSocket
//! stacks, `@floor`: raw TCP, `@in-process`, `@rust-ws`: in-process
//! WebSocket stacks, `@child`: child processes, `@python`, `@node`: by
//! runtime) or a name; `except=NAME`
//! leaves a stack out. Stacks are taken in [`STACKS`] order. Options:
//! `as=MiB` shows bytes in MiB.
//!
//! Directives (A, B: references or patterns; B may also be a number):
//!
//! - `{{A}}`: the figure, formatted by its unit ("26.2 µs", "14,219 ns");
//! - `{{param A KEY}}`: a parameter of the one measurement A selects;
//! - `{{ratio A B}}` "1.20×", `{{share A B}}` "0.95", `{{times A B}}` "21",
//!   `{{pct A B}}` "5%" (how far A is from B); for two figures measured in
//!   the same interleaved rounds, `ratio` and `pct` are the median of the
//!   paired round ratios, with its interval: "1.20× (1.18–1.22)";
//! - `{{threshold}}` "10%": the claim threshold;
//! - `{{confirmation PATH}}` "498 of 500 confirmed (480 of them beyond
//!   the 10% threshold again), 2 within noise, ...": what another run's
//!   results (PATH, beside the template) say about every claim of this
//!   run's report and of this discussion, wherever in it they are made
//!   (see [`expand_with_claims`]), with that run's commit, CPU and date;
//! - `{{rounds A}}` "12 rounds (intervals of 96.1% coverage)": how many
//!   interleaved rounds measured figure A;
//! - `{{claims A}}`: of the stacks of pattern A (one figure each), every
//!   pair whose paired ratio clears the claim threshold
//!   ([`crate::rounds::CLAIM_THRESHOLD`]), and how many pairs are within
//!   noise;
//! - `{{list A}}` "raw-tcp 0 bytes; axum 0 bytes", `{{list A vs B}}`
//!   "axum 810 MiB/s vs 651 MiB/s; ...", `{{stacks A OP B}}` the stacks of
//!   pattern A for which the comparison holds, `{{range A}}` "8.1 MiB/s to
//!   8.8 MiB/s", `{{range A / B}}` "0.95 to 1.04", `{{mean A}}`;
//! - `{{count A OP B}}` "62 of 63": the cases of pattern A (every stack and
//!   parameter combination) for which the comparison with its partner in B
//!   holds; `{{exceptions A OP B}}` lists those for which it does not;
//! - `{{check A OP B}}`, `{{check every A OP B}}`, `{{check A within 5% B}}`,
//!   `{{check best A is STACK}}`, `{{check best A by KEY is VALUE}}`,
//!   `{{check run.GROUP.FIELD is VALUE}}`
//!   (lowest mean per parameter value, or highest for a metric where
//!   higher is better; for figures of one block of rounds, the best stack
//!   must also clear the claim threshold against every other): expand to
//!   nothing, and fail when the run contradicts them. OP is `<`, `<=`,
//!   `>`, `>=`, `==`, `!=`. Two figures measured in the same rounds are
//!   ordered only by their paired ratio:
//!   `<` and `>` hold only when its whole interval clears the claim
//!   threshold (a gap within noise satisfies `<=` and `>=` but neither
//!   `<` nor `>`); this holds for `count`, `exceptions` and `stacks` too;
//! - `{{table HEAD | title: metric filters | ...}}`: a markdown table, one
//!   row per stack of HEAD's pattern (`group.stacks` with filters, and
//!   `rows=KEY` for a row per stack and parameter value), one column per
//!   `title: ...` part; `{{table group.stacks.metric rows=KEY
//!   columns=stacks}}` puts the stacks in the columns; `label=source` adds
//!   the figures' source to the row label;
//! - `{{run.GROUP.FIELD}}` (GROUP may be `*`): cpu, cpus, memory_gib,
//!   kernel, rustc, commit, date, placement, echo, server_threads,
//!   client_threads, quick, tcp_congestion_control, malloc, client_driver,
//!   versions.
//!
//! A partner in B is the measurement of B's metric (and group) with A's
//! stack (unless B names one) and A's parameters, overridden by B's filters.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::metrics::{self, Better, Metric, Unit};
use crate::report::claims::{self, Claim, Versus};
use crate::results::{Measurement, ResultsFile};
use crate::rounds::{Paired, Standing, CLAIM_THRESHOLD};
use crate::stacks::{Host, Protocol, Runtime, StackInfo, STACKS};

/// The template's name, beside the report directory.
pub const TEMPLATE_FILE: &str = "discussion.template.md";
/// The expanded file, beside the template.
pub const OUTPUT_FILE: &str = "discussion.md";

/// Why a template could not be expanded. `line` is the template line the
/// directive starts on.
#[derive(Debug, thiserror::Error)]
pub enum DiscussionError {
    #[error("line {line}: {what}: {why}")]
    Syntax {
        line: usize,
        what: String,
        why: String,
    },
    #[error("line {line}: unknown metric {name:?} (not in the metric catalogue)")]
    UnknownMetric { line: usize, name: String },
    #[error("line {line}: unknown stack {name:?}")]
    UnknownStack { line: usize, name: String },
    #[error("line {line}: unknown group {name:?}: the results hold {known}")]
    UnknownGroup {
        line: usize,
        name: String,
        known: String,
    },
    #[error("line {line}: unknown run field {name:?}")]
    UnknownRunField { line: usize, name: String },
    #[error("line {line}: {reference} matches no measurement; candidates: {}", candidates.join("; "))]
    NoMatch {
        line: usize,
        reference: String,
        candidates: Vec<String>,
    },
    #[error("line {line}: {reference} matches {} measurements: {}", candidates.len(), candidates.join("; "))]
    Ambiguous {
        line: usize,
        reference: String,
        candidates: Vec<String>,
    },
    #[error("line {line}: the run contradicts the claim {claim:?}: {values}")]
    Contradicted {
        line: usize,
        claim: String,
        values: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, DiscussionError>;

/// Expands the template at `template` against `results` and writes the
/// result to `out`. Nothing is written when the expansion fails.
pub fn write(template: &Path, results: &ResultsFile, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(template).map_err(|source| DiscussionError::Io {
        path: template.to_path_buf(),
        source,
    })?;
    let expanded = expand_beside(&text, results, template.parent())?;
    crate::results::write_atomically(out, expanded.as_bytes()).map_err(|e| DiscussionError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::other(format!("{e:#}")),
    })
}

/// The template with its comments dropped and every directive expanded.
pub fn expand(template: &str, results: &ResultsFile) -> Result<String> {
    expand_beside(template, results, None)
}

/// [`expand`], with `{{confirmation PATH}}` reading PATH from `dir` (the
/// template's directory).
pub fn expand_beside(template: &str, results: &ResultsFile, dir: Option<&Path>) -> Result<String> {
    expand_with_claims(template, results, dir).map(|(text, _)| text)
}

/// [`expand_beside`], and every claim the discussion makes between two
/// stacks: the pairs its `{{claims}}` name, and each `<` or `>` a check,
/// count or list found to hold between two stacks' figures of one block of
/// rounds. `{{confirmation PATH}}` counts these with the report's own
/// ([`claims::claims`]), wherever in the template they are made.
pub fn expand_with_claims(
    template: &str,
    results: &ResultsFile,
    dir: Option<&Path>,
) -> Result<(String, Vec<Claim>)> {
    let text = strip_comments(template);
    let made = RefCell::new(Vec::new());
    let confirmations = RefCell::new(Vec::new());
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        line += rest[..start].matches('\n').count();
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| DiscussionError::Syntax {
            line,
            what: "{{".into(),
            why: "no closing }}".into(),
        })?;
        let body = &after[..end];
        let cx = Cx {
            results,
            line,
            dir,
            made: &made,
            confirmations: &confirmations,
        };
        out.push_str(&cx.directive(body.trim())?);
        line += body.matches('\n').count();
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    let made = made.into_inner();
    let all = claims::with_discussion(results, CLAIM_THRESHOLD, &made);
    for (i, confirmation) in confirmations.into_inner().iter().enumerate() {
        out = out.replacen(&placeholder(i), &confirmation.text(&all, results), 1);
    }
    Ok((out, made))
}

/// Where `{{confirmation}}`'s text goes until every claim is known: a
/// string no template holds.
fn placeholder(i: usize) -> String {
    format!("\u{1}confirmation {i}\u{1}")
}

/// A `{{confirmation PATH}}` read, waiting for the claims.
struct Confirmation {
    other: ResultsFile,
}

impl Confirmation {
    /// What the other run says of `all`, naming its commit, CPU and date,
    /// and saying so when its CPU differs.
    fn text(&self, all: &[Claim], results: &ResultsFile) -> String {
        let run = &self
            .other
            .groups
            .values()
            .next()
            .expect("checked when read")
            .run;
        let commit: String = run.commit.chars().take(7).collect();
        let elsewhere = if claims::same_cpus(results, &self.other) {
            String::new()
        } else {
            ", a different CPU from this run's".to_string()
        };
        format!(
            "{} (the run of commit `{commit}` on {}{elsewhere}, {})",
            claims::tally(all, &self.other, CLAIM_THRESHOLD).text(),
            run.cpu,
            run.date
        )
    }
}

/// The template without `<!-- ... -->` comments; a comment alone on its
/// lines leaves no blank line behind. Line numbers of what follows shift,
/// so comments are replaced by as many newlines as they held.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("-->")
            .map_or(rest.len(), |e| start + e + 3);
        let mut comment_lines = rest[start..end].matches('\n').count();
        rest = &rest[end..];
        // The newline ending the comment's own line goes with it.
        if (out.is_empty() || out.ends_with('\n')) && rest.starts_with('\n') {
            rest = &rest[1..];
            comment_lines += 1;
        }
        // Kept as an empty directive so line numbers stay the template's.
        if comment_lines > 0 {
            out.push_str("{{");
            out.push_str(&"\n".repeat(comment_lines));
            out.push_str("}}");
        }
    }
    out.push_str(rest);
    out
}

/// A comparison between two figures.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    /// Within this fraction of the other figure.
    Within(f64),
}

impl Op {
    fn parse(token: &str) -> Option<Op> {
        Some(match token {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Within(f) => (a - b).abs() <= f * b.abs(),
        }
    }
}

/// The paired ratio of two figures measured in the same interleaved rounds.
fn paired(a: &Measurement, b: &Measurement) -> Option<Paired> {
    Paired::of(a.rounds.as_ref()?, b.rounds.as_ref()?)
}

/// Whether `a OP b` holds, `b` being `b_value` (a partner figure's or a
/// number). Two figures measured in the same rounds are ordered (`<`, `>`)
/// only by the interval of their paired ratio beyond [`CLAIM_THRESHOLD`]:
/// a gap within noise is no `<` and no `>` (and both `<=` and `>=`).
fn compare_figures(op: Op, a: &Measurement, b: Option<&Measurement>, b_value: f64) -> bool {
    let standing = b
        .and_then(|b| paired(a, b))
        .map(|p| p.standing(CLAIM_THRESHOLD));
    match (op, standing) {
        (Op::Lt, Some(s)) => s == Standing::Lower,
        (Op::Gt, Some(s)) => s == Standing::Higher,
        (Op::Le, Some(s)) => s != Standing::Higher,
        (Op::Ge, Some(s)) => s != Standing::Lower,
        _ => op.holds(a.value, b_value),
    }
}

/// " (1.18–1.22)": the interval of a paired ratio, for a ratio's text.
fn interval_text(p: Paired) -> String {
    format!(" ({:.2}–{:.2})", p.interval.lo, p.interval.hi)
}

/// A filter's value for "no such parameter": `cell=-` keeps the
/// measurements that have no `cell`, `cell!=-` those that have one.
const ABSENT: &str = "-";

/// A condition on one parameter.
#[derive(Debug, Clone)]
struct Filter {
    key: String,
    op: Op,
    value: String,
}

impl Filter {
    /// `key=value`, `key<=value`, ...; None when the token is no filter.
    fn parse(token: &str) -> Option<Filter> {
        // A key starts with a letter and may hold digits: `p99_limit_us`.
        let key_len = token
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .filter(|&n| n > 0 && token.starts_with(|c: char| c.is_ascii_lowercase()))?;
        let (key, rest) = token.split_at(key_len);
        let (op, value) = ["<=", ">=", "!=", "<", ">", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))?;
        let op = if op == "=" { Op::Eq } else { Op::parse(op)? };
        Some(Filter {
            key: key.to_string(),
            op,
            value: canonical(value),
        })
    }

    fn accepts(&self, m: &Measurement) -> bool {
        let Some(actual) = m.param(&self.key) else {
            let wanted_absent = self.value == ABSENT;
            return if self.op == Op::Eq {
                wanted_absent
            } else {
                self.op == Op::Ne && !wanted_absent
            };
        };
        if self.value == ABSENT {
            return self.op == Op::Ne;
        }
        match (actual.parse::<f64>(), self.value.parse::<f64>()) {
            (Ok(a), Ok(b)) => self.op.holds(a, b),
            _ => match self.op {
                Op::Eq => actual == self.value,
                Op::Ne => actual != self.value,
                _ => false,
            },
        }
    }
}

/// A parameter value as results.json writes it: "16KiB" -> "16384".
fn canonical(value: &str) -> String {
    for (suffix, scale) in [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)] {
        if let Some(n) = value
            .strip_suffix(suffix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            return (n * scale).to_string();
        }
    }
    value.to_string()
}

/// Which stacks a reference covers.
#[derive(Debug, Clone)]
enum Stacks {
    One(String),
    Set(String),
}

/// `group.stack.metric` with its filters and options.
#[derive(Debug, Clone)]
struct Ref {
    text: String,
    group: String,
    stacks: Stacks,
    /// None only in a table's head, whose columns name the metric.
    metric: Option<&'static Metric>,
    filters: Vec<Filter>,
    except: Vec<String>,
    options: BTreeMap<String, String>,
}

impl Ref {
    fn metric(&self) -> &'static Metric {
        self.metric
            .expect("references outside table heads name a metric")
    }

    fn is_pattern(&self) -> bool {
        matches!(self.stacks, Stacks::Set(_))
    }
}

/// One side of a comparison.
#[derive(Debug, Clone)]
enum Operand {
    Ref(Ref),
    Number(f64),
}

/// Option keys that are not parameters of a measurement.
const OPTIONS: [&str; 5] = ["as", "rows", "columns", "label", "except"];

/// What one directive is expanded with.
struct Cx<'a> {
    results: &'a ResultsFile,
    line: usize,
    /// Where `{{confirmation PATH}}` looks for PATH.
    dir: Option<&'a Path>,
    /// The claims between stacks made so far.
    made: &'a RefCell<Vec<Claim>>,
    /// The other runs of the `{{confirmation}}`s so far, in order.
    confirmations: &'a RefCell<Vec<Confirmation>>,
}

impl Cx<'_> {
    fn syntax(&self, what: &str, why: impl Into<String>) -> DiscussionError {
        DiscussionError::Syntax {
            line: self.line,
            what: what.to_string(),
            why: why.into(),
        }
    }

    fn directive(&self, body: &str) -> Result<String> {
        if body.is_empty() {
            return Ok(String::new());
        }
        if let Some(rest) = body.strip_prefix("table ") {
            return self.table(rest);
        }
        let tokens: Vec<&str> = body.split_whitespace().collect();
        let claim = tokens.join(" ");
        match tokens[0] {
            "check" => self.check(&tokens[1..], &claim).map(|()| String::new()),
            "param" => {
                let (r, next) = self.reference(&tokens, 1, true)?;
                let key = tokens
                    .get(next)
                    .ok_or_else(|| self.syntax(&claim, "param needs a parameter name"))?;
                let m = self.one(&r)?;
                let value = m.params.get(*key).ok_or_else(|| {
                    self.syntax(&claim, format!("{} has no parameter {key}", m.bench))
                })?;
                Ok(param_text(key, value))
            }
            "ratio" | "share" | "times" | "pct" => {
                let (a, b, p) = self.two_figures(&tokens[1..])?;
                let r = a / b;
                Ok(match tokens[0] {
                    // Two figures of the same rounds: the median of their
                    // paired ratios, with its interval.
                    "ratio" => match p {
                        Some(p) => format!("{:.2}×{}", p.ratio, interval_text(p)),
                        None => format!("{r:.2}×"),
                    },
                    "share" => format!("{r:.2}"),
                    "times" => format!("{r:.0}"),
                    _ => format!(
                        "{:.0}%{}",
                        (p.map_or(r, |p| p.ratio) - 1.0).abs() * 100.0,
                        p.map(|p| format!(" (ratio {:.2}–{:.2})", p.interval.lo, p.interval.hi))
                            .unwrap_or_default()
                    ),
                })
            }
            "claims" => self.claims(&tokens[1..]),
            "confirmation" => self.confirmation(&tokens[1..]),
            "threshold" => Ok(format!("{:.0}%", CLAIM_THRESHOLD * 100.0)),
            "rounds" => {
                let (r, _) = self.reference(&tokens, 1, true)?;
                let m = self.one(&r)?;
                let rounds = m.rounds.as_ref().ok_or_else(|| {
                    self.syntax(&claim, format!("{} was not measured in rounds", m.bench))
                })?;
                Ok(match rounds.coverage {
                    Some(c) => format!(
                        "{} rounds (intervals of {:.1}% coverage)",
                        rounds.values.len(),
                        c * 100.0
                    ),
                    None => format!("{} rounds (too few for an interval)", rounds.values.len()),
                })
            }
            "list" => self.list(&tokens[1..]),
            "stacks" => {
                let cases = self.cases(&tokens[1..], &claim)?;
                let names: Vec<&str> = cases
                    .iter()
                    .filter(|c| c.holds)
                    .map(|c| c.a.stack.as_str())
                    .collect();
                Ok(names.join(", "))
            }
            "range" => self.range(&tokens[1..]),
            "mean" => {
                let (r, _) = self.reference(&tokens, 1, true)?;
                let values: Vec<f64> = self.all(&r)?.iter().map(|m| m.value).collect();
                Ok(format_value(&r, mean(&values)))
            }
            "count" => {
                let cases = self.cases(&tokens[1..], &claim)?;
                let held = cases.iter().filter(|c| c.holds).count();
                Ok(format!("{held} of {}", cases.len()))
            }
            "exceptions" => {
                let cases = self.cases(&tokens[1..], &claim)?;
                let failed: Vec<String> = cases
                    .iter()
                    .filter(|c| !c.holds)
                    .map(|c| c.describe(true))
                    .collect();
                Ok(if failed.is_empty() {
                    "none".to_string()
                } else {
                    failed.join("; ")
                })
            }
            first if first.starts_with("run.") => self.run_field(first),
            _ => {
                let (r, next) = self.reference(&tokens, 0, true)?;
                if next != tokens.len() {
                    return Err(self.syntax(&claim, format!("unexpected {:?}", tokens[next])));
                }
                if r.is_pattern() {
                    return Err(self.syntax(&claim, "a figure names one stack"));
                }
                Ok(format_value(&r, self.one(&r)?.value))
            }
        }
    }

    /// Parses a reference starting at `tokens[at]`; returns it and the index
    /// after its filters.
    fn reference(&self, tokens: &[&str], at: usize, needs_metric: bool) -> Result<(Ref, usize)> {
        let text = tokens
            .get(at)
            .ok_or_else(|| self.syntax(&tokens.join(" "), "a reference is missing"))?;
        let parts: Vec<&str> = text.split('.').collect();
        let head_without_metric = parts.len() == 2 && !needs_metric;
        if parts.len() != 3 && !head_without_metric {
            return Err(self.syntax(text, "a reference is group.stack.metric"));
        }
        let group = parts[0].to_string();
        if !self.results.groups.contains_key(&group) {
            return Err(DiscussionError::UnknownGroup {
                line: self.line,
                name: group,
                known: self
                    .results
                    .groups
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let stacks = match parts[1] {
            "*" => Stacks::Set("all".into()),
            set if set.starts_with('@') => {
                let name = &set[1..];
                if !SETS.contains(&name) {
                    return Err(DiscussionError::UnknownStack {
                        line: self.line,
                        name: set.to_string(),
                    });
                }
                Stacks::Set(name.to_string())
            }
            name => {
                self.known_stack(name)?;
                Stacks::One(name.to_string())
            }
        };
        let metric = match parts.get(2) {
            Some(name) => {
                Some(
                    metrics::find(name).ok_or_else(|| DiscussionError::UnknownMetric {
                        line: self.line,
                        name: name.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mut r = Ref {
            text: text.to_string(),
            group,
            stacks,
            metric,
            filters: Vec::new(),
            except: Vec::new(),
            options: BTreeMap::new(),
        };
        let mut next = at + 1;
        while let Some(filter) = tokens.get(next).and_then(|t| Filter::parse(t)) {
            r.text.push(' ');
            r.text.push_str(tokens[next]);
            if OPTIONS.contains(&filter.key.as_str()) {
                if filter.key == "except" {
                    self.known_stack(&filter.value)?;
                    r.except.push(filter.value);
                } else {
                    r.options.insert(filter.key, filter.value);
                }
            } else {
                r.filters.push(filter);
            }
            next += 1;
        }
        Ok((r, next))
    }

    fn known_stack(&self, name: &str) -> Result<()> {
        if STACKS.iter().any(|s| s.name == name)
            || self.results.measurements().any(|m| m.stack == name)
        {
            Ok(())
        } else {
            Err(DiscussionError::UnknownStack {
                line: self.line,
                name: name.to_string(),
            })
        }
    }

    /// A reference or a number.
    fn operand(&self, tokens: &[&str], at: usize) -> Result<(Operand, usize)> {
        if let Some(n) = tokens.get(at).and_then(|t| t.parse::<f64>().ok()) {
            return Ok((Operand::Number(n), at + 1));
        }
        let (r, next) = self.reference(tokens, at, true)?;
        Ok((Operand::Ref(r), next))
    }

    /// `<`, `<=`, ... or `within N%`.
    fn op(&self, tokens: &[&str], at: usize) -> Result<(Op, usize)> {
        let claim = tokens.join(" ");
        let token = tokens
            .get(at)
            .ok_or_else(|| self.syntax(&claim, "a comparison is missing"))?;
        if *token == "within" {
            let pct = tokens
                .get(at + 1)
                .and_then(|t| t.strip_suffix('%'))
                .and_then(|t| t.parse::<f64>().ok())
                .ok_or_else(|| self.syntax(&claim, "within needs a percentage, e.g. 5%"))?;
            return Ok((Op::Within(pct / 100.0), at + 2));
        }
        Op::parse(token)
            .map(|op| (op, at + 1))
            .ok_or_else(|| self.syntax(&claim, format!("{token:?} is no comparison")))
    }

    /// The stacks a reference covers, in table order.
    fn stacks_of(&self, r: &Ref) -> Vec<String> {
        let mut names: Vec<String> = match &r.stacks {
            Stacks::One(name) => vec![name.clone()],
            Stacks::Set(set) => STACKS
                .iter()
                .filter(|s| in_set(s, set))
                .map(|s| s.name.to_string())
                .collect(),
        };
        names.retain(|n| !r.except.contains(n));
        names
    }

    /// Every measurement a reference selects, stacks in table order.
    fn all(&self, r: &Ref) -> Result<Vec<&Measurement>> {
        let group = &self.results.groups[&r.group];
        let metric = r.metric().name;
        let mut out = Vec::new();
        for stack in self.stacks_of(r) {
            out.extend(group.measurements.iter().filter(|m| {
                m.stack == stack && m.metric == metric && r.filters.iter().all(|f| f.accepts(m))
            }));
        }
        if out.is_empty() {
            return Err(self.no_match(r));
        }
        Ok(out)
    }

    /// The one measurement a reference selects.
    fn one(&self, r: &Ref) -> Result<&Measurement> {
        let found = self.all(r)?;
        if found.len() > 1 {
            return Err(DiscussionError::Ambiguous {
                line: self.line,
                reference: r.text.clone(),
                candidates: found.iter().map(|m| describe(m)).collect(),
            });
        }
        Ok(found[0])
    }

    fn no_match(&self, r: &Ref) -> DiscussionError {
        let stacks = self.stacks_of(r);
        let candidates = self.results.groups[&r.group]
            .measurements
            .iter()
            .filter(|m| {
                stacks.contains(&m.stack) && Some(m.metric.as_str()) == r.metric.map(|x| x.name)
            })
            .take(12)
            .map(describe)
            .collect();
        DiscussionError::NoMatch {
            line: self.line,
            reference: r.text.clone(),
            candidates,
        }
    }

    /// The measurement of `b` that goes with `a`: `a`'s stack unless `b`
    /// names one, `a`'s parameters (in the same group) overridden by `b`'s
    /// filters. None when the run has no such measurement.
    fn partner<'r>(&'r self, b: &Ref, a: &Measurement) -> Result<Option<&'r Measurement>> {
        let stack = match &b.stacks {
            Stacks::One(name) => name.as_str(),
            Stacks::Set(_) => a.stack.as_str(),
        };
        let metric = b.metric().name;
        let found: Vec<&Measurement> = self.results.groups[&b.group]
            .measurements
            .iter()
            .filter(|m| {
                m.stack == stack
                    && m.metric == metric
                    && b.filters.iter().all(|f| f.accepts(m))
                    && (b.group != a.group
                        || a.params.iter().all(|(k, v)| {
                            b.filters.iter().any(|f| &f.key == k) || m.params.get(k) == Some(v)
                        }))
            })
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found[0])),
            _ => Err(DiscussionError::Ambiguous {
                line: self.line,
                reference: format!("{} for {}", b.text, describe(a)),
                candidates: found.iter().map(|m| describe(m)).collect(),
            }),
        }
    }

    /// Two single figures: `A B` or `A / B`, and their paired ratio when
    /// they were measured in the same rounds.
    fn two_figures(&self, tokens: &[&str]) -> Result<(f64, f64, Option<Paired>)> {
        let (a, next) = self.reference(tokens, 0, true)?;
        let next = if tokens.get(next) == Some(&"/") {
            next + 1
        } else {
            next
        };
        let (b, _) = self.operand(tokens, next)?;
        let a = self.one(&a)?;
        Ok(match b {
            Operand::Number(n) => (a.value, n, None),
            Operand::Ref(r) => {
                let b = self.one(&r)?;
                (a.value, b.value, paired(a, b))
            }
        })
    }

    /// `confirmation PATH`: what the run at PATH (another full run's
    /// results.json) says about every claim of this report and this
    /// discussion ([`crate::report::claims::tally`]); filled in once the
    /// whole template is expanded.
    fn confirmation(&self, tokens: &[&str]) -> Result<String> {
        let text = tokens.join(" ");
        let [path] = tokens else {
            return Err(self.syntax(&text, "confirmation takes one path"));
        };
        let dir = self
            .dir
            .ok_or_else(|| self.syntax(&text, "confirmation needs the template's directory"))?;
        let other =
            ResultsFile::load(&dir.join(path)).map_err(|e| self.syntax(&text, format!("{e:#}")))?;
        if other.groups.is_empty() {
            return Err(self.syntax(&text, "that run holds no group"));
        }
        let mut all = self.confirmations.borrow_mut();
        all.push(Confirmation { other });
        Ok(placeholder(all.len() - 1))
    }

    /// Notes that `better` did better than `worse` by `v` (times worse of
    /// `worse`), unless they are one stack's figures. A claim between two
    /// stacks is about one case: figures of other parameters are an error,
    /// as another run could not be asked about them.
    fn made(&self, better: &Measurement, worse: &Measurement, v: Versus) -> Result<()> {
        if better.stack == worse.stack {
            return Ok(());
        }
        if better.params != worse.params {
            return Err(self.syntax(
                &format!("{} against {}", better.bench, worse.bench),
                "a comparison between two stacks needs the same parameters on both sides",
            ));
        }
        self.made.borrow_mut().push(Claim {
            group: worse.group.clone(),
            metric: worse.metric.clone(),
            params: worse.params.clone(),
            better: better.stack.clone(),
            worse: worse.stack.clone(),
            times: v.times,
            lo: v.lo,
            hi: v.hi,
        });
        Ok(())
    }

    /// [`compare_figures`], noting a `<` or `>` that holds between two
    /// stacks' figures of one block of rounds as a claim.
    fn compare(
        &self,
        op: Op,
        a: &Measurement,
        b: Option<&Measurement>,
        b_value: f64,
    ) -> Result<bool> {
        let holds = compare_figures(op, a, b, b_value);
        if let (true, Some(b), Some(better)) =
            (holds, b, metrics::find(&a.metric).map(|m| m.better))
        {
            // Which side is better depends on the metric's direction.
            let a_better = match (op, better) {
                (Op::Lt, Better::Lower) | (Op::Gt, Better::Higher) => Some(true),
                (Op::Gt, Better::Lower) | (Op::Lt, Better::Higher) => Some(false),
                _ => None,
            };
            let (good, bad) = match a_better {
                Some(true) => (a, b),
                Some(false) => (b, a),
                None => return Ok(holds),
            };
            if let Some(v) = Versus::of(bad, good, better) {
                self.made(good, bad, v)?;
            }
        }
        Ok(holds)
    }

    /// `claims A`: of the stacks pattern A selects (one figure each), every
    /// pair measured in the same rounds whose paired ratio clears
    /// [`CLAIM_THRESHOLD`], better first; then how many pairs are within
    /// noise, and how many were measured in different blocks of rounds.
    fn claims(&self, tokens: &[&str]) -> Result<String> {
        let (a, next) = self.reference(tokens, 0, true)?;
        let text = tokens.join(" ");
        if next != tokens.len() {
            return Err(self.syntax(&text, format!("unexpected {:?}", tokens[next])));
        }
        let mut all = self.all(&a)?;
        let stacks: std::collections::BTreeSet<&str> =
            all.iter().map(|m| m.stack.as_str()).collect();
        if stacks.len() != all.len() {
            return Err(self.syntax(
                &text,
                "claims needs filters that select one figure per stack",
            ));
        }
        let better = a.metric().better;
        match better {
            Better::Lower => all.sort_by(|x, y| x.value.total_cmp(&y.value)),
            Better::Higher => all.sort_by(|x, y| y.value.total_cmp(&x.value)),
            Better::Neither => return Err(self.syntax(&text, "a metric with no better direction")),
        }
        let (mut made, mut noise, mut unpaired) = (Vec::new(), 0, 0);
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                // y against x as "times worse", the report's own figure.
                // Figures of different blocks of rounds make no claim.
                let Some(v) = Versus::of(y, x, better) else {
                    unpaired += 1;
                    continue;
                };
                // The medians and the paired ratio can disagree on which
                // is better; the ratio decides.
                let (ahead, behind, v) = match v.worse(CLAIM_THRESHOLD) {
                    Some(true) => (x, y, v),
                    Some(false) => (
                        y,
                        x,
                        Versus::of(x, y, better).expect("paired one way, paired the other"),
                    ),
                    None => {
                        noise += 1;
                        continue;
                    }
                };
                self.made(ahead, behind, v)?;
                made.push(format!(
                    "{} ahead of {} by {:.2}× ({:.2}–{:.2})",
                    ahead.stack, behind.stack, v.times, v.lo, v.hi
                ));
            }
        }
        let pairs = all.len() * all.len().saturating_sub(1) / 2;
        let paired = pairs - unpaired;
        let mut text = match (made.is_empty(), noise) {
            (true, _) if paired == 0 => "no claim".to_string(),
            (true, _) => format!("no claim: all {paired} pairs within noise"),
            (false, 0) => made.join("; "),
            (false, n) => format!(
                "{}; the other {n} of {paired} pairs within noise",
                made.join("; ")
            ),
        };
        if unpaired > 0 {
            text.push_str(&format!(
                " ({unpaired} of the {pairs} pairs were measured in different rounds and make no claim)"
            ));
        }
        Ok(text)
    }

    /// Every case of pattern A paired with B and compared.
    fn cases(&self, tokens: &[&str], claim: &str) -> Result<Vec<Case<'_>>> {
        let (a, next) = self.reference(tokens, 0, true)?;
        let (op, next) = self.op(tokens, next)?;
        let (b, next) = self.operand(tokens, next)?;
        if next != tokens.len() {
            return Err(self.syntax(claim, format!("unexpected {:?}", tokens[next])));
        }
        let mut out = Vec::new();
        let all = self.all(&a)?;
        let keys = varying(&all);
        for m in all {
            let (b_value, partner) = match &b {
                Operand::Number(n) => (*n, None),
                Operand::Ref(r) => match self.partner(r, m)? {
                    Some(p) => (p.value, Some(p)),
                    None => continue,
                },
            };
            out.push(Case {
                a: m,
                b: partner,
                b_value,
                holds: self.compare(op, m, partner, b_value)?,
                reference: a.clone(),
                label: case_label(m, &keys),
            });
        }
        if out.is_empty() {
            return Err(self.syntax(
                claim,
                "no case of the pattern has a partner to compare with",
            ));
        }
        Ok(out)
    }

    fn check(&self, tokens: &[&str], claim: &str) -> Result<()> {
        let contradicted = |values: String| DiscussionError::Contradicted {
            line: self.line,
            claim: claim.to_string(),
            values,
        };
        match tokens.first() {
            Some(&"every") => {
                let cases = self.cases(&tokens[1..], claim)?;
                let failed: Vec<String> = cases
                    .iter()
                    .filter(|c| !c.holds)
                    .map(|c| c.describe(false))
                    .collect();
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(contradicted(format!("not for {}", failed.join("; "))))
                }
            }
            Some(&"best") => self.check_best(&tokens[1..], claim),
            Some(run) if run.starts_with("run.") => {
                if tokens.len() != 3 || tokens[1] != "is" {
                    return Err(self.syntax(claim, "expected `run.GROUP.FIELD is VALUE`"));
                }
                let actual = self.run_field(run)?;
                if actual == tokens[2] {
                    Ok(())
                } else {
                    Err(contradicted(format!("{run} is {actual}")))
                }
            }
            _ => {
                let (a, next) = self.reference(tokens, 0, true)?;
                if a.is_pattern() {
                    return Err(self.syntax(claim, "a pattern needs `check every`"));
                }
                let (op, next) = self.op(tokens, next)?;
                let (b, next) = self.operand(tokens, next)?;
                if next != tokens.len() {
                    return Err(self.syntax(claim, format!("unexpected {:?}", tokens[next])));
                }
                let a_m = self.one(&a)?;
                let (b_m, b_value, b_text) = match &b {
                    Operand::Number(n) => (None, *n, format!("{n}")),
                    Operand::Ref(r) => {
                        let m = self.one(r)?;
                        let p = paired(a_m, m)
                            .map(|p| {
                                format!(
                                    ", paired ratio {:.2}×{} with a {:.0}% threshold",
                                    p.ratio,
                                    interval_text(p),
                                    CLAIM_THRESHOLD * 100.0
                                )
                            })
                            .unwrap_or_default();
                        (
                            Some(m),
                            m.value,
                            format!("{} = {}{p}", r.text, format_value(r, m.value)),
                        )
                    }
                };
                if self.compare(op, a_m, b_m, b_value)? {
                    Ok(())
                } else {
                    Err(contradicted(format!(
                        "{} = {}, {b_text}",
                        a.text,
                        format_value(&a, a_m.value)
                    )))
                }
            }
        }
    }

    /// `best A is STACK` or `best A by KEY is VALUE`.
    fn check_best(&self, tokens: &[&str], claim: &str) -> Result<()> {
        let (a, mut next) = self.reference(tokens, 0, true)?;
        let by = if tokens.get(next) == Some(&"by") {
            next += 2;
            Some(
                *tokens
                    .get(next - 1)
                    .ok_or_else(|| self.syntax(claim, "by needs a parameter"))?,
            )
        } else {
            None
        };
        if tokens.get(next) != Some(&"is") || next + 2 != tokens.len() {
            return Err(self.syntax(claim, "expected `best A [by KEY] is NAME`"));
        }
        let expected = tokens[next + 1];
        if by.is_none() {
            self.known_stack(expected)?;
        }
        // Mean figure per stack (or per parameter value), in first-seen order.
        let mut groups: Vec<(String, Vec<f64>)> = Vec::new();
        for m in self.all(&a)? {
            let key = match by {
                Some(k) => m.param(k).unwrap_or_default(),
                None => m.stack.clone(),
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, values)) => values.push(m.value),
                None => groups.push((key, vec![m.value])),
            }
        }
        let means: Vec<(String, f64)> = groups.into_iter().map(|(k, v)| (k, mean(&v))).collect();
        let higher = a.metric().better == Better::Higher;
        let best = means
            .iter()
            .fold(None::<&(String, f64)>, |best, c| match best {
                Some(b) if (higher && b.1 >= c.1) || (!higher && b.1 <= c.1) => Some(b),
                _ => Some(c),
            })
            .expect("all() returns at least one measurement");
        if best.0 == expected {
            // Figures of one block of rounds: best only when its paired
            // ratio against every other stack clears the claim threshold.
            let all = self.all(&a)?;
            let chosen: Vec<&&Measurement> = all.iter().filter(|m| m.stack == expected).collect();
            if let (None, [chosen]) = (by, chosen.as_slice()) {
                let op = if higher { Op::Gt } else { Op::Lt };
                for other in all.iter().filter(|m| m.stack != expected) {
                    if let Some(p) = paired(chosen, other) {
                        if !self.compare(op, chosen, Some(other), other.value)? {
                            return Err(DiscussionError::Contradicted {
                                line: self.line,
                                claim: claim.to_string(),
                                values: format!(
                                    "{expected} against {}: paired ratio {:.2}×{}, within the {:.0}% threshold",
                                    other.stack,
                                    p.ratio,
                                    interval_text(p),
                                    CLAIM_THRESHOLD * 100.0
                                ),
                            });
                        }
                    }
                }
            }
            Ok(())
        } else {
            let values: Vec<String> = means
                .iter()
                .map(|(k, v)| format!("{k} {}", format_value(&a, *v)))
                .collect();
            Err(DiscussionError::Contradicted {
                line: self.line,
                claim: claim.to_string(),
                values: format!("best is {}: {}", best.0, values.join("; ")),
            })
        }
    }

    /// `list A` or `list A vs B`.
    fn list(&self, tokens: &[&str]) -> Result<String> {
        let (a, next) = self.reference(tokens, 0, true)?;
        let b = if tokens.get(next) == Some(&"vs") {
            Some(self.reference(tokens, next + 1, true)?.0)
        } else {
            None
        };
        let mut items = Vec::new();
        let all = self.all(&a)?;
        let keys = varying(&all);
        for m in all {
            let label = case_label(m, &keys);
            match &b {
                None => items.push(format!("{label} {}", format_value(&a, m.value))),
                Some(b) => {
                    if let Some(p) = self.partner(b, m)? {
                        items.push(format!(
                            "{label} {} vs {}",
                            format_value(&a, m.value),
                            format_value(b, p.value)
                        ));
                    }
                }
            }
        }
        // A comparison with no partner at all would leave a hole in the prose.
        if let (Some(b), true) = (&b, items.is_empty()) {
            return Err(self.no_match(b));
        }
        Ok(items.join("; "))
    }

    /// `range A` (figures) or `range A / B` (shares).
    fn range(&self, tokens: &[&str]) -> Result<String> {
        let (a, next) = self.reference(tokens, 0, true)?;
        if tokens.get(next) == Some(&"/") {
            let (b, _) = self.reference(tokens, next + 1, true)?;
            let mut shares = Vec::new();
            for m in self.all(&a)? {
                if let Some(p) = self.partner(&b, m)? {
                    shares.push(m.value / p.value);
                }
            }
            if shares.is_empty() {
                return Err(self.no_match(&b));
            }
            let (lo, hi) = min_max(&shares);
            return Ok(format!("{lo:.2} to {hi:.2}"));
        }
        let values: Vec<f64> = self.all(&a)?.iter().map(|m| m.value).collect();
        let (lo, hi) = min_max(&values);
        Ok(format!(
            "{} to {}",
            format_value(&a, lo),
            format_value(&a, hi)
        ))
    }

    fn run_field(&self, text: &str) -> Result<String> {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 3 {
            return Err(self.syntax(text, "a run field is run.GROUP.FIELD"));
        }
        let runs: Vec<_> =
            if parts[1] == "*" {
                self.results.groups.values().map(|g| &g.run).collect()
            } else {
                let g = self.results.groups.get(parts[1]).ok_or_else(|| {
                    DiscussionError::UnknownGroup {
                        line: self.line,
                        name: parts[1].to_string(),
                        known: self
                            .results
                            .groups
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
                vec![&g.run]
            };
        let mut values: Vec<String> = Vec::new();
        for run in &runs {
            let v = match parts[2] {
                "cpu" => run.cpu.clone(),
                "cpus" => run.cpus.to_string(),
                "memory_gib" => format!("{:.0}", run.memory_bytes as f64 / (1u64 << 30) as f64),
                "kernel" => run.kernel.clone(),
                "rustc" => run.rustc.clone(),
                "commit" => {
                    let short: String = run.commit.chars().take(12).collect();
                    if run.commit.ends_with("-dirty") {
                        format!("{short}-dirty")
                    } else {
                        short
                    }
                }
                "date" => run.date.chars().take(10).collect(),
                "placement" => run.placement.clone(),
                "echo" => run.echo.clone(),
                "server_threads" => run.server_threads.to_string(),
                "client_threads" => run.client_threads.to_string(),
                "quick" => if run.quick { "quick mode" } else { "full mode" }.to_string(),
                "tcp_congestion_control" => match run.tcp_congestion_control.as_str() {
                    "unknown" => "not recorded".to_string(),
                    cc => cc.to_string(),
                },
                "malloc" => run.malloc.clone(),
                "client_driver" => run.client_driver.clone(),
                "versions" => STACKS
                    .iter()
                    .filter_map(|s| run.versions.get(s.name).cloned())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => {
                    return Err(DiscussionError::UnknownRunField {
                        line: self.line,
                        name: other.to_string(),
                    })
                }
            };
            if !values.contains(&v) {
                values.push(v);
            }
        }
        if parts[2] == "date" {
            values.sort();
            values.truncate(1);
        }
        Ok(values.join(", "))
    }

    /// `HEAD | title: metric filters | ...`.
    fn table(&self, body: &str) -> Result<String> {
        let mut parts = body.split('|');
        let head: Vec<&str> = parts.next().unwrap_or("").split_whitespace().collect();
        let (head, next) = self.reference(&head, 0, false)?;
        if next
            != body
                .split('|')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .count()
        {
            return Err(self.syntax(&head.text, "unexpected words in a table's head"));
        }
        let rows_key = head.options.get("rows").cloned();
        if head.options.get("columns").map(String::as_str) == Some("stacks") {
            return self.stack_columns(&head, rows_key.as_deref());
        }
        let mut columns: Vec<(String, Ref)> = Vec::new();
        for part in parts {
            let (title, spec) = part
                .split_once(':')
                .ok_or_else(|| self.syntax(part.trim(), "a column is `title: metric filters`"))?;
            let spec: Vec<&str> = spec.split_whitespace().collect();
            let mut column = head.clone();
            let mut rest = &spec[..];
            if let Some(first) = spec.first().filter(|t| Filter::parse(t).is_none()) {
                column.metric =
                    Some(
                        metrics::find(first).ok_or_else(|| DiscussionError::UnknownMetric {
                            line: self.line,
                            name: first.to_string(),
                        })?,
                    );
                rest = &spec[1..];
            }
            for token in rest {
                let f = Filter::parse(token).ok_or_else(|| {
                    self.syntax(token, "expected a filter such as size_bytes=1KiB")
                })?;
                if OPTIONS.contains(&f.key.as_str()) {
                    column.options.insert(f.key, f.value);
                } else {
                    column.filters.retain(|g| g.key != f.key);
                    column.filters.push(f);
                }
            }
            if column.metric.is_none() {
                return Err(self.syntax(part.trim(), "the column names no metric"));
            }
            columns.push((title.trim().to_string(), column));
        }
        let mut out = String::from("| stack |");
        if let Some(key) = &rows_key {
            out.push_str(&format!(" {key} |"));
        }
        for (title, _) in &columns {
            out.push_str(&format!(" {title} |"));
        }
        out.push_str("\n|");
        out.push_str(&" --- |".repeat(1 + columns.len() + usize::from(rows_key.is_some())));
        out.push('\n');
        for stack in self.stacks_of(&head) {
            let row_values: Vec<Option<String>> = match &rows_key {
                None => vec![None],
                Some(key) => self
                    .param_values(&head.group, key, Some(&stack))
                    .into_iter()
                    .map(Some)
                    .collect(),
            };
            for row_value in row_values {
                let mut cells = Vec::new();
                let mut source = None;
                for (_, column) in &columns {
                    let mut cell = column.clone();
                    cell.stacks = Stacks::One(stack.clone());
                    if let (Some(key), Some(v)) = (&rows_key, &row_value) {
                        cell.filters.push(Filter {
                            key: key.clone(),
                            op: Op::Eq,
                            value: v.clone(),
                        });
                    }
                    cells.push(match self.cell(&cell)? {
                        Some(m) => {
                            source.get_or_insert_with(|| m.source.clone());
                            format_value(&cell, m.value)
                        }
                        None if self.skipped(&cell) => "skipped".to_string(),
                        None => "–".to_string(),
                    });
                }
                if cells.iter().all(|c| c == "–") {
                    continue;
                }
                let mut label = stack.clone();
                if head.options.get("label").map(String::as_str) == Some("source") {
                    if let Some(source) = source {
                        label.push_str(&format!(" ({source})"));
                    }
                }
                out.push_str(&format!("| {label} |"));
                if let Some(v) = &row_value {
                    out.push_str(&format!(" {v} |"));
                }
                for cell in cells {
                    out.push_str(&format!(" {cell} |"));
                }
                out.push('\n');
            }
        }
        Ok(out.trim_end().to_string())
    }

    /// A table with the stacks as columns and a row per value of `key`.
    fn stack_columns(&self, head: &Ref, key: Option<&str>) -> Result<String> {
        let key = key.ok_or_else(|| self.syntax(&head.text, "columns=stacks needs rows=KEY"))?;
        if head.metric.is_none() {
            return Err(self.syntax(&head.text, "columns=stacks needs a metric in the head"));
        }
        let stacks: Vec<String> = self
            .stacks_of(head)
            .into_iter()
            .filter(|s| {
                self.results.groups[&head.group]
                    .measurements
                    .iter()
                    .any(|m| &m.stack == s)
            })
            .collect();
        let mut out = format!("| {key} | {} |\n|", stacks.join(" | "));
        out.push_str(&" --- |".repeat(1 + stacks.len()));
        out.push('\n');
        for value in self.param_values(&head.group, key, None) {
            out.push_str(&format!("| {value} |"));
            for stack in &stacks {
                let mut cell = head.clone();
                cell.stacks = Stacks::One(stack.clone());
                cell.filters.push(Filter {
                    key: key.to_string(),
                    op: Op::Eq,
                    value: value.clone(),
                });
                let text = match self.cell(&cell)? {
                    Some(m) => format_value(&cell, m.value),
                    None => "–".to_string(),
                };
                out.push_str(&format!(" {text} |"));
            }
            out.push('\n');
        }
        Ok(out.trim_end().to_string())
    }

    /// A table cell: one measurement, none, or an ambiguity error.
    fn cell(&self, r: &Ref) -> Result<Option<&Measurement>> {
        match self.one(r) {
            Ok(m) => Ok(Some(m)),
            Err(DiscussionError::NoMatch { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the harness recorded the point as skipped.
    fn skipped(&self, r: &Ref) -> bool {
        let mut skipped = r.clone();
        skipped.metric = Some(&metrics::SKIPPED);
        matches!(self.cell(&skipped), Ok(Some(_)))
    }

    /// Distinct values of a parameter in a group, in the order first seen.
    fn param_values(&self, group: &str, key: &str, stack: Option<&str>) -> Vec<String> {
        let mut values = Vec::new();
        for m in &self.results.groups[group].measurements {
            if stack.is_some_and(|s| s != m.stack) {
                continue;
            }
            if let Some(v) = m.param(key) {
                if !values.contains(&v) {
                    values.push(v);
                }
            }
        }
        values
    }
}

/// One case of a pattern with its partner.
struct Case<'a> {
    a: &'a Measurement,
    b: Option<&'a Measurement>,
    b_value: f64,
    holds: bool,
    reference: Ref,
    label: String,
}

impl Case<'_> {
    /// "tokio-websockets binary 16 MiB (10,776,692 ns against 10,242,173
    /// ns, 1.05 of it)".
    fn describe(&self, with_share: bool) -> String {
        let r = &self.reference;
        let mut text = format!(
            "{} ({} against {}",
            self.label,
            format_value(r, self.a.value),
            match self.b {
                Some(b) => format_measurement(b, self.b_value),
                None => format!("{}", self.b_value),
            }
        );
        let p = self.b.and_then(|b| paired(self.a, b));
        if with_share && self.b_value != 0.0 {
            match p {
                Some(p) => text.push_str(&format!(", {:.2}×{} of it", p.ratio, interval_text(p))),
                None => text.push_str(&format!(", {:.2} of it", self.a.value / self.b_value)),
            }
        } else if let Some(p) = p {
            text.push_str(&format!(
                ", paired ratio {:.2}×{}",
                p.ratio,
                interval_text(p)
            ));
        }
        text.push(')');
        text
    }
}

/// The named sets of stacks a pattern can take (`@ws`, ...).
const SETS: [&str; 8] = [
    "all",
    "ws",
    "floor",
    "in-process",
    "rust-ws",
    "child",
    "python",
    "node",
];

/// Whether a stack belongs to a named set.
fn in_set(stack: &StackInfo, set: &str) -> bool {
    match set {
        "ws" => stack.protocol == Protocol::WebSocket,
        "floor" => stack.protocol == Protocol::RawTcp,
        "in-process" => stack.host() == Host::InProcess,
        "rust-ws" => stack.host() == Host::InProcess && stack.protocol == Protocol::WebSocket,
        "child" => stack.host() == Host::ChildProcess,
        "python" => stack.runtime == Runtime::Python,
        "node" => stack.runtime == Runtime::Node,
        _ => true,
    }
}

/// Parameters that tell cases apart, in the order labels show them.
const LABEL_KEYS: [&str; 7] = [
    "echo",
    "kind",
    "size_bytes",
    "profile",
    "case",
    "placement",
    "conns",
];

/// The label keys whose values differ between `cases`.
fn varying(cases: &[&Measurement]) -> Vec<&'static str> {
    LABEL_KEYS
        .into_iter()
        .filter(|k| {
            cases
                .iter()
                .any(|m| m.params.get(*k) != cases[0].params.get(*k))
        })
        .collect()
}

/// A measurement's stack and the parameters in `keys`, for lists and
/// messages: "tokio-websockets binary 16 MiB".
fn case_label(m: &Measurement, keys: &[&str]) -> String {
    let mut label = m.stack.clone();
    for key in keys {
        if let Some(v) = m.params.get(*key) {
            label.push(' ');
            label.push_str(&param_text(key, v));
            if *key == "conns" {
                label.push_str(" conns");
            }
        }
    }
    label
}

/// Every parameter, for error messages.
fn describe(m: &Measurement) -> String {
    let params: Vec<String> = m
        .params
        .iter()
        .map(|(k, v)| format!("{k}={}", plain(v)))
        .collect();
    format!("{}.{}.{} {}", m.group, m.stack, m.metric, params.join(" "))
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A parameter as prose quotes it: sizes in binary units, counts grouped.
fn param_text(key: &str, v: &serde_json::Value) -> String {
    match (key, v.as_f64()) {
        ("size_bytes", Some(n)) => size_text(n),
        (_, Some(n)) if n.fract() == 0.0 => grouped(n, 0),
        _ => plain(v),
    }
}

/// "32 B", "16 KiB", "1 MiB".
fn size_text(bytes: f64) -> String {
    let b = bytes as u64;
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

/// A figure as the reference's metric (and its `as=` option) shows it.
fn format_value(r: &Ref, v: f64) -> String {
    if r.options.get("as").map(String::as_str) == Some("MiB") {
        return format!("{} MiB", grouped(v / f64::from(1u32 << 20), 1));
    }
    format_unit(r.metric.map_or(Unit::Ratio, |m| m.unit), v)
}

fn format_measurement(m: &Measurement, v: f64) -> String {
    format_unit(m.definition().map_or(Unit::Ratio, |d| d.unit), v)
}

fn format_unit(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Milliseconds => format!("{} ms", grouped(v, 1)),
        Unit::Microseconds => format!("{} µs", grouped(v, 1)),
        Unit::Nanoseconds => format!("{} ns", grouped(v, 0)),
        Unit::MibPerS if v.abs() < 100.0 => format!("{} MiB/s", grouped(v, 1)),
        Unit::MibPerS => format!("{} MiB/s", grouped(v, 0)),
        Unit::MsgsPerS
        | Unit::ConnsPerS
        | Unit::Bytes
        | Unit::BytesPerS
        | Unit::Msgs
        | Unit::Conns => {
            format!("{} {}", grouped(v, 0), unit.as_str())
        }
        // A rare allocation (0.02 per round trip) is not "0.0".
        Unit::Allocs if v != 0.0 && v.abs() < 0.1 => format!("{} allocs", grouped(v, 2)),
        Unit::Allocs => format!("{} allocs", grouped(v, 1)),
        Unit::Ratio => format!("{v:.3}"),
        Unit::Bool if v == 1.0 => "✓".to_string(),
        Unit::Bool => "✗".to_string(),
    }
}

/// `v` with `decimals` decimals and thousands separators: "1,018.4".
fn grouped(v: f64, decimals: usize) -> String {
    let text = format!("{:.decimals$}", v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    // "-0" is not a figure anyone measured.
    if v < 0.0 && out.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.insert(0, '-');
    }
    out
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_rounded() {
        assert_eq!(grouped(1018.44, 1), "1,018.4");
        assert_eq!(grouped(14219.4, 0), "14,219");
        assert_eq!(grouped(-128.0, 0), "-128");
        assert_eq!(grouped(-0.01, 0), "0");
        assert_eq!(format_unit(Unit::MibPerS, 8.85), "8.8 MiB/s");
        assert_eq!(format_unit(Unit::MibPerS, 1260.2), "1,260 MiB/s");
        assert_eq!(size_text(16.0 * 1024.0 * 1024.0), "16 MiB");
        assert_eq!(size_text(128.0), "128 B");
    }

    #[test]
    fn filters_parse_and_sizes_are_canonical() {
        let f = Filter::parse("size_bytes>=1MiB").unwrap();
        assert_eq!(
            (f.key.as_str(), f.op, f.value.as_str()),
            ("size_bytes", Op::Ge, "1048576")
        );
        assert!(Filter::parse("latency.axum.rtt_mean_us").is_none());
        assert!(Filter::parse("<").is_none());
    }

    #[test]
    fn a_dash_asks_for_a_parameter_to_be_absent() {
        let with_cell = |cell: Option<&str>| {
            let mut pairs = vec![("profile", serde_json::json!("suite"))];
            pairs.extend(cell.map(|c| ("cell", serde_json::json!(c))));
            let subject = crate::results::Subject {
                group: "memory",
                bench: "memory/axum/idle",
                stack: "axum",
                stack_version: "axum 0.8.9",
                params: &crate::results::params(&pairs),
                placement: "same-core",
            };
            Measurement::new(
                &subject,
                &metrics::LIVE_BYTES_PER_IDLE_CONN,
                1.0,
                metrics::Source::Allocator,
            )
        };
        let (idle, tls) = (with_cell(None), with_cell(Some("tls")));
        let absent = Filter::parse("cell=-").unwrap();
        assert!(absent.accepts(&idle) && !absent.accepts(&tls));
        let present = Filter::parse("cell!=-").unwrap();
        assert!(!present.accepts(&idle) && present.accepts(&tls));
        // Other values keep their meaning on a missing parameter.
        assert!(!Filter::parse("cell=tls").unwrap().accepts(&idle));
        assert!(Filter::parse("cell!=tls").unwrap().accepts(&idle));
    }

    #[test]
    fn comments_go_and_line_numbers_stay() {
        let text = "<!-- a\nb -->\nx {{y}}\n";
        let stripped = strip_comments(text);
        assert!(!stripped.contains("<!--"));
        assert_eq!(stripped.matches('\n').count(), text.matches('\n').count());
    }
}
