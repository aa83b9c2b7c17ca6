// Each test binary uses part of this module.
#![allow(dead_code)]

//! Test cases made from the stack table: each test binary that uses this
//! says, for one row of [`STACKS`], which cases it runs, and gets one named
//! test per case and stack (`case::stack`), which `cargo test` can filter
//! and reports as its own pass, failure or skip.
//!
//! A row the binary has no plan for becomes a failing test naming the row,
//! never a silent pass, and `table::every_stack_has_cases` checks that every
//! row of the table got at least one case.

use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use wsbench::stacks::{Protocol, Runtime, ServerHandle, StackInfo, STACKS};

/// A check of one stack; a panic fails it.
pub type Check = fn(&'static StackInfo);

/// What a binary does with one case of one stack.
pub enum Action {
    /// Runs the check; a panic fails it.
    Run(Check),
    /// Runs the check when the stack's runtime is there (the Python venv,
    /// Node and its packages). Without it the case is skipped with the
    /// reason, or fails where CI requires that runtime
    /// (`WSBENCH_REQUIRE_PYTHON=1`, `WSBENCH_REQUIRE_NODE=1`).
    RunWhereAvailable(Check),
    /// The case does not apply to this stack: skipped, saying why.
    Skip(&'static str),
    /// Another binary tests this stack (named in the text): no test here,
    /// but the row is accounted for.
    Elsewhere(&'static str),
    /// The binary has no cases for this kind of stack: a failure.
    NoPlan(String),
}

pub struct Case {
    pub name: &'static str,
    pub stack: &'static StackInfo,
    pub action: Action,
}

impl Case {
    pub fn new(name: &'static str, stack: &'static StackInfo, action: Action) -> Case {
        Case {
            name,
            stack,
            action,
        }
    }

    /// The failing case for a row the binary does not know how to test.
    pub fn no_plan(binary: &str, stack: &'static StackInfo) -> Case {
        let why = format!(
            "{binary} has no cases for stack {} ({:?} host, {:?} protocol): add them, \
             or the stack goes untested",
            stack.name,
            stack.host(),
            stack.protocol
        );
        Case::new("has_cases", stack, Action::NoPlan(why))
    }

    fn into_trial(self) -> Option<Trial> {
        let stack = self.stack;
        let name = format!("{}::{}", self.name, stack.name);
        Some(match self.action {
            Action::Elsewhere(_) => return None,
            Action::Run(check) => Trial::test(name, move || {
                check(stack);
                Ok(())
            }),
            Action::RunWhereAvailable(check) => {
                Trial::ignorable_test(name, move || match runtime_or_skip(stack)? {
                    Some(reason) => Ok(Completion::ignored_with(reason)),
                    None => {
                        check(stack);
                        Ok(Completion::Completed)
                    }
                })
            }
            Action::Skip(reason) => Trial::ignorable_test(name, move || {
                Ok(Completion::ignored_with(format!(
                    "{}: {reason}",
                    stack.name
                )))
            }),
            Action::NoPlan(why) => Trial::test(name, move || Err(why.into())),
        })
    }
}

/// `Ok(None)` when `stack` can run here; `Ok(Some(reason))` to skip; a
/// failure when it cannot and CI requires its runtime.
pub fn runtime_or_skip(stack: &StackInfo) -> Result<Option<String>, Failed> {
    match stack.availability() {
        Ok(()) => Ok(None),
        Err(why) => {
            let (what, required) = match stack.runtime {
                Runtime::Native => ("rust", None),
                Runtime::Python => ("python", Some(REQUIRE_PYTHON)),
                Runtime::Node => ("node", Some(REQUIRE_NODE)),
            };
            match required {
                Some(var) if required_by(var) => {
                    Err(format!("{what} stacks unavailable: {why} (and {var}=1)").into())
                }
                _ => Ok(Some(format!("{what} stacks unavailable: {why}"))),
            }
        }
    }
}

/// CI sets these so that a missing runtime fails instead of skipping.
pub const REQUIRE_PYTHON: &str = "WSBENCH_REQUIRE_PYTHON";
pub const REQUIRE_NODE: &str = "WSBENCH_REQUIRE_NODE";

pub fn required_by(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

pub fn require_python() -> bool {
    required_by(REQUIRE_PYTHON)
}

/// A row no binary knows: hosted in a child process but speaking raw TCP.
/// The self-checks feed it to a binary's plan, which must refuse it.
pub const UNKNOWN_KIND: StackInfo = StackInfo {
    name: "made-up-child-raw-tcp",
    package: "none",
    version: "0",
    protocol: Protocol::RawTcp,
    runtime: Runtime::Python,
    notes: "a row for the table's own tests; never started",
    deflate: false,
    start: never_started,
};

fn never_started(_: &wsbench::settings::ServerSettings) -> anyhow::Result<ServerHandle> {
    anyhow::bail!("the made-up stack is never started")
}

/// Runs the cases `plan` makes for every row of [`STACKS`], plus `extra`
/// trials, plus the check that every row has at least one case (one
/// marked [`Action::Elsewhere`] counts).
pub fn run(
    binary: &'static str,
    plan: fn(&'static StackInfo) -> Vec<Case>,
    extra: Vec<Trial>,
) -> ExitCode {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = STACKS
        .iter()
        .flat_map(plan)
        .filter_map(Case::into_trial)
        .collect();
    trials.push(Trial::test("table::every_stack_has_cases", move || {
        let bare: Vec<&str> = STACKS
            .iter()
            .filter(|s| plan(s).is_empty())
            .map(|s| s.name)
            .collect();
        if bare.is_empty() {
            Ok(())
        } else {
            Err(format!("{binary}: no cases for stacks {bare:?}").into())
        }
    }));
    trials.extend(extra);
    libtest_mimic::run(&args, trials).exit_code()
}

/// The self-check that `plan` fails a row of a kind it has no cases for,
/// rather than passing it with none.
pub fn refuses_unknown_kind(plan: fn(&'static StackInfo) -> Vec<Case>) -> Trial {
    Trial::test("table::a_stack_of_unknown_kind_fails", move || {
        let cases = plan(&UNKNOWN_KIND);
        if cases.iter().any(|c| matches!(c.action, Action::NoPlan(_))) {
            Ok(())
        } else {
            Err(format!(
                "a {:?}-hosted {:?} stack got {} cases and no failure",
                UNKNOWN_KIND.host(),
                UNKNOWN_KIND.protocol,
                cases.len()
            )
            .into())
        }
    })
}
