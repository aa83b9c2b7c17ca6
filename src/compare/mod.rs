//! Regression checks between two commits, or between two versions of one
//! crate built into the same commit (`wsbench compare`).
//!
//! `compare` builds both sides, runs the quick measurement set of each in
//! interleaved rounds, one child process per build, stack and round, and
//! judges every metric:
//!
//! - [`measure`]: one round, in process (`wsbench measure`, hidden);
//! - [`worktree`]: git worktrees and the two builds;
//! - [`dependency`]: a version of a crate swapped into a worktree, and
//!   which stacks depend on it;
//! - [`child`]: child processes with deadlines and logs;
//! - [`stats`] and [`metrics`]: the statistics and which metric gets which;
//! - [`report`]: verdicts, the table, Markdown and JSON.
//!
//! Exit codes: 0 no regression, 1 a regression, 2 could not build or run.
//!
//! The `measure` command line is a contract between versions: `compare`
//! runs the base commit's `wsbench measure` with the options below, so
//! options may be added but not renamed or removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::placement::Placement;
use crate::results::RunInfo;

pub mod child;
pub mod dependency;
pub mod measure;
pub mod metrics;
pub mod report;
pub mod stats;
pub mod worktree;

use dependency::{Resolved, Version};
use report::{Judging, Method, Row, Samples};
use worktree::Side;

/// Arguments of `wsbench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The commit to compare against (two commits of wsbench; for two
    /// versions of a library, --stack or --crate with --base and --head).
    pub base: Option<String>,
    /// The commit under test (default: the working tree as it is,
    /// uncommitted changes included).
    pub head: Option<String>,
    /// Compare two versions of this stack's library (its crate: for the
    /// stack tokio-websockets, the crate tokio-websockets) rather than two
    /// commits; every stack depending on the crate is measured.
    #[arg(long, value_name = "STACK", conflicts_with = "crate_name")]
    pub stack: Option<String>,
    /// Compare two versions of this crate of wsbench's build (e.g.
    /// tungstenite, which tokio-tungstenite and axum use); every stack
    /// depending on it is measured.
    #[arg(long = "crate", value_name = "NAME")]
    pub crate_name: Option<String>,
    /// With --stack or --crate, the version to compare against:
    /// crate:VERSION (crates.io), path:DIR (a crate, or a workspace with
    /// it) or git:URL[#REV].
    #[arg(long = "base", value_name = "VERSION", value_parser = Version::parse)]
    pub base_version: Option<Version>,
    /// With --stack or --crate, the version under test (as --base).
    #[arg(long = "head", value_name = "VERSION", value_parser = Version::parse)]
    pub head_version: Option<Version>,
    /// With --base and --head versions: the wsbench commit both are built
    /// into (default HEAD; uncommitted changes are not in either build).
    #[arg(long, value_name = "REV")]
    pub at: Option<String>,
    /// Cargo profile of both builds. Anything but release (the default)
    /// builds faster but measures code users do not run; the report says
    /// which it was.
    #[arg(long, value_name = "PROFILE", default_value = "release")]
    pub build_profile: String,
    /// Rounds per build: each stack is measured this many times in each
    /// build, alternating between the builds. A 95% interval needs at
    /// least 6; 12 give one of 96.1% between the 3rd and 10th round ratio
    /// (README, "Regression checks", has the trade-off).
    #[arg(long, default_value_t = 12)]
    pub rounds: usize,
    /// Smallest change of a timing or rate called a regression or an
    /// improvement: 0.03 = 1.03 times the time or 1/1.03 times the rate.
    #[arg(long, default_value_t = 0.03)]
    pub threshold: f64,
    /// Cargo features for both builds (e.g. regression-demo).
    #[arg(long)]
    pub features: Option<String>,
    /// An environment variable K=V for the base build's rounds only (repeatable).
    #[arg(long = "base-env", value_name = "K=V", value_parser = parse_env)]
    pub base_env: Vec<(String, String)>,
    /// An environment variable K=V for the head build's rounds only (repeatable).
    #[arg(long = "head-env", value_name = "K=V", value_parser = parse_env)]
    pub head_env: Vec<(String, String)>,
    /// Comma-separated stacks (default: every in-process stack both builds
    /// know; with --stack or --crate, those of them built on the crate).
    #[arg(long, value_delimiter = ',')]
    pub stacks: Vec<String>,
    /// Also measure the Python stacks (timings only).
    #[arg(long)]
    pub python: bool,
    /// Where client and server threads run (default: $WSBENCH_PLACEMENT or
    /// same-core).
    #[arg(long, value_enum)]
    pub placement: Option<Placement>,
    /// Milliseconds of one timed window.
    #[arg(long, default_value_t = 100)]
    pub window_ms: u64,
    /// Timed windows per phase (latency, throughput) and round; window k of
    /// the base and of the head run back to back.
    #[arg(long, default_value_t = 10)]
    pub windows: usize,
    /// How timings are judged: paired (per-round ratios; the only method).
    #[arg(long, value_enum, default_value_t = Method::Paired)]
    pub method: Method,
    /// Seconds one measuring process may take before it is killed.
    #[arg(long, default_value_t = 300)]
    pub round_timeout_s: u64,
    /// Seconds one build may take before it is killed.
    #[arg(long, default_value_t = 1800)]
    pub build_timeout_s: u64,
    /// Cargo target directory both builds share (default:
    /// target/wsbench/compare/target).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Use this wsbench binary for the base instead of building it (it
    /// should have been built from BASE).
    #[arg(long, value_name = "PATH")]
    pub base_binary: Option<PathBuf>,
    /// Use this wsbench binary for the head instead of building it.
    #[arg(long, value_name = "PATH")]
    pub head_binary: Option<PathBuf>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Arguments of the hidden `wsbench measure` (one round of the quick set).
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// Where to write the round's figures (JSON: the results.json group
    /// schema plus each window's values).
    #[arg(long)]
    pub out: PathBuf,
    /// Comma-separated stacks to measure (default: every in-process stack).
    #[arg(long, value_delimiter = ',')]
    pub stacks: Vec<String>,
    /// Also measure the Python stacks (timings only) when no --stacks is given.
    #[arg(long)]
    pub python: bool,
    /// Where client and server threads run (default: $WSBENCH_PLACEMENT or
    /// same-core).
    #[arg(long, value_enum)]
    pub placement: Option<Placement>,
    /// Milliseconds of one timed window.
    #[arg(long, default_value_t = 100)]
    pub window_ms: u64,
    /// Timed windows per phase (latency, throughput).
    #[arg(long, default_value_t = 10)]
    pub windows: usize,
    /// Milliseconds of warm-up before each phase.
    #[arg(long, default_value_t = 200)]
    pub warm_up_ms: u64,
    /// Round trips counted for allocations per round trip.
    #[arg(long, default_value_t = 1000)]
    pub alloc_round_trips: u64,
    /// Idle connections opened to read the heap each costs.
    #[arg(long, default_value_t = 100)]
    pub idle_conns: usize,
    /// Serve one stack as a worker of `compare`: commands on stdin, one
    /// window at a time (see `measure::serve_worker`).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// Runs one round of the quick measurement set.
pub fn measure(args: &MeasureArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.window_ms >= 1, "--window-ms must be at least 1");
    anyhow::ensure!(
        args.alloc_round_trips >= 1,
        "--alloc-round-trips must be at least 1"
    );
    anyhow::ensure!(args.idle_conns >= 1, "--idle-conns must be at least 1");
    let placement = match args.placement {
        Some(p) => p,
        None => Placement::from_env()?,
    };
    let plan = measure::Plan {
        placement,
        window: Duration::from_millis(args.window_ms),
        windows: args.windows,
        warm_up: Duration::from_millis(args.warm_up_ms),
        alloc_round_trips: args.alloc_round_trips,
        idle_conns: args.idle_conns,
    };
    let stacks = measure::select_stacks(&args.stacks, args.python)?;
    if args.worker {
        anyhow::ensure!(stacks.len() == 1, "--worker measures exactly one stack");
        measure::serve_worker(stacks[0], &plan, &args.out)
    } else {
        measure::measure_to_file(&stacks, &plan, &args.out)
    }
}

/// Runs a comparison; returns the process exit code.
pub fn run(args: &CompareArgs) -> i32 {
    child::catch_interrupts();
    match compare(args) {
        Ok(rows) => {
            let regressions = report::regressions(&rows);
            eprintln!("wsbench compare: {}", report::summary(&rows));
            if regressions > 0 {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("wsbench compare: could not build or run: {e:#}");
            2
        }
    }
}

fn progress(msg: &str) {
    eprintln!("wsbench compare: {msg}");
}

/// One side's settings and results, as the JSON report records them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideReport {
    pub rev: String,
    pub commit: String,
    pub working_tree: bool,
    pub dirty: bool,
    pub env: Vec<(String, String)>,
    pub build_s: f64,
    /// The run record of this side's first round.
    pub run: Option<RunInfo>,
}

/// The whole comparison, as written to `<base>-<head>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareReport {
    pub schema: u32,
    pub base: SideReport,
    pub head: SideReport,
    pub features: Option<String>,
    pub placement: String,
    pub rounds: usize,
    pub window_ms: u64,
    pub windows: usize,
    pub method: Method,
    pub threshold: f64,
    /// The coverage asked of each timing's interval.
    pub confidence: f64,
    /// The coverage `rounds` give exactly; `None` when they are too few
    /// for an interval (older reports: a bootstrap's nominal level only).
    #[serde(default)]
    pub coverage: Option<f64>,
    pub stacks: Vec<String>,
    /// Stacks only one build knows, not compared.
    pub skipped_stacks: Vec<String>,
    pub elapsed_s: f64,
    pub regressions: usize,
    pub rows: Vec<Row>,
    /// Two versions of one crate rather than two commits: what each side
    /// resolved it to (older reports: none).
    #[serde(default)]
    pub swap: Option<SwapReport>,
    /// The cargo profile of both builds (older reports: release).
    #[serde(default = "release")]
    pub build_profile: String,
}

fn release() -> String {
    "release".into()
}

/// A comparison of two versions of one crate, as the JSON report records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapReport {
    /// The crate whose versions were compared.
    #[serde(rename = "crate")]
    pub crate_name: String,
    /// The stack it was named by (--stack), if any.
    pub stack: Option<String>,
    pub base: Resolved,
    pub head: Resolved,
    /// The in-process stacks that depend on the crate: those measured,
    /// unless --stacks named others.
    pub dependents: Vec<String>,
    /// What differs between the two sides' Cargo.lock: the packages only
    /// one side has ("head: NAME VERSION (SOURCE)").
    pub differences: Vec<String>,
}

/// Two versions of one crate to compare, as asked.
struct Swap {
    crate_name: String,
    stack: Option<String>,
    base: Version,
    head: Version,
}

/// What the two sides of a [`Swap`] became.
struct Swapped {
    metadata: [dependency::Metadata; 2],
    report: SwapReport,
}

/// Whether the in-process stack whose package is `package` is built on
/// `crate_name` in either side's graph: through its package, or through
/// what every in-process server runs on ([`crate::stacks::runtime::CRATES`]).
fn stack_depends(metadata: &[dependency::Metadata], package: &str, crate_name: &str) -> bool {
    let mut from = vec![package];
    from.extend(crate::stacks::runtime::CRATES);
    metadata.iter().any(|m| m.depends_on(&from, crate_name))
}

/// The two versions asked for with --stack or --crate, or none for two
/// commits; a clear error for a mix of the two or a missing part.
fn swap_of(args: &CompareArgs) -> anyhow::Result<Option<Swap>> {
    let versions = args.base_version.is_some() || args.head_version.is_some();
    let named = args.stack.is_some() || args.crate_name.is_some();
    if !versions && !named {
        anyhow::ensure!(
            args.base.is_some(),
            "say what to compare: two commits of wsbench (`wsbench compare BASE [HEAD]`) or two versions of a library (`--stack STACK --base VERSION --head VERSION`)"
        );
        anyhow::ensure!(
            args.at.is_none(),
            "--at goes with --base and --head versions"
        );
        return Ok(None);
    }
    anyhow::ensure!(
        args.base.is_none() && args.head.is_none(),
        "compare either two commits (BASE HEAD) or two versions (--base VERSION --head VERSION), not both"
    );
    anyhow::ensure!(
        args.base_binary.is_none() && args.head_binary.is_none(),
        "--base-binary and --head-binary go with two commits; two versions are built here"
    );
    let (Some(base), Some(head)) = (&args.base_version, &args.head_version) else {
        anyhow::bail!(
            "two versions need both --base and --head (each crate:VERSION, path:DIR or git:URL#REV)"
        )
    };
    let crate_name = match (&args.stack, &args.crate_name) {
        (Some(name), _) => {
            let stack = crate::stacks::STACKS
                .iter()
                .find(|s| s.name == name)
                .with_context(|| format!("unknown stack {name:?}; `wsbench list` shows them"))?;
            anyhow::ensure!(
                stack.host() == crate::stacks::Host::InProcess,
                "{name} serves from a child process ({} {} is not a Rust crate): compare swaps versions of the crates wsbench is built with",
                stack.package,
                stack.version
            );
            stack.package.to_string()
        }
        (None, Some(name)) => name.clone(),
        (None, None) => anyhow::bail!(
            "--base and --head versions need --stack STACK or --crate NAME: the library they are versions of"
        ),
    };
    let absolute = |v: &Version| -> anyhow::Result<Version> {
        Ok(match v {
            Version::Path(p) => Version::Path(
                p.canonicalize()
                    .with_context(|| format!("{v}: no such directory"))?,
            ),
            other => other.clone(),
        })
    };
    Ok(Some(Swap {
        crate_name,
        stack: args.stack.clone(),
        base: absolute(base)?,
        head: absolute(head)?,
    }))
}

/// The two sides of a comparison of two commits: BASE, and HEAD or the
/// working tree.
fn commit_sides(args: &CompareArgs, repo: &Path, logs: &Path) -> anyhow::Result<(Side, Side)> {
    let base_rev = args.base.clone().context("BASE is needed")?;
    let base_sha = worktree::resolve(repo, &base_rev, logs)?;
    let (head_sha, head_working_tree, head_dirty) = match &args.head {
        Some(rev) => (worktree::resolve(repo, rev, logs)?, false, false),
        None => (
            worktree::resolve(repo, "HEAD", logs)?,
            true,
            worktree::is_dirty(repo, logs)?,
        ),
    };
    let base = Side {
        role: "base",
        rev: base_rev,
        sha: base_sha,
        working_tree: false,
        dirty: false,
        src: PathBuf::new(),
    };
    let head = Side {
        role: "head",
        rev: args.head.clone().unwrap_or_else(|| "working tree".into()),
        sha: head_sha,
        working_tree: head_working_tree,
        dirty: head_dirty,
        src: repo.to_path_buf(),
    };
    Ok((base, head))
}

/// Swaps each side's version of the crate into its worktree, refuses two
/// sides that are the same code, and keeps each side's Cargo.toml and
/// Cargo.lock in the run's directory (the worktrees go when compare ends).
fn swap_versions(
    swap: &Swap,
    base: &Side,
    head: &Side,
    logs: &Path,
    run_dir: &Path,
) -> anyhow::Result<Swapped> {
    // Both paths are checked before either side is touched.
    let mut versions = Vec::new();
    for version in [&swap.base, &swap.head] {
        versions.push(match version {
            Version::Path(dir) => {
                Version::Path(dependency::crate_dir(dir, &swap.crate_name, logs)?)
            }
            other => other.clone(),
        });
    }
    let prepare = |side: &Side, version: &Version| -> anyhow::Result<_> {
        progress(&format!(
            "{}: {} {version} in wsbench {}",
            side.role,
            swap.crate_name,
            side.short()
        ));
        let (meta, r) = dependency::prepare(&side.src, &swap.crate_name, version, logs, side.role)?;
        progress(&format!(
            "{}: {} resolves to {}",
            side.role,
            swap.crate_name,
            r.describe()
        ));
        for file in ["Cargo.toml", "Cargo.lock"] {
            let kept = run_dir.join(format!("{}-{file}", side.role));
            std::fs::copy(side.src.join(file), &kept)
                .with_context(|| format!("keeping {}", kept.display()))?;
        }
        Ok((meta, r))
    };
    let (base_meta, base_resolved) = prepare(base, &versions[0])?;
    let (head_meta, head_resolved) = prepare(head, &versions[1])?;
    let metadata = [base_meta, head_meta];
    anyhow::ensure!(
        !base_resolved.same_code(&head_resolved),
        "base ({}) and head ({}) both resolve to {} {}: there is nothing to compare",
        swap.base,
        swap.head,
        swap.crate_name,
        base_resolved.describe()
    );
    // Known before anything is built, from this binary's stack table; the
    // builds' own lists decide what is measured (`choose_stacks`).
    let dependents: Vec<&str> = crate::stacks::STACKS
        .iter()
        .filter(|s| s.host() == crate::stacks::Host::InProcess)
        .filter(|s| stack_depends(&metadata, s.package, &swap.crate_name))
        .map(|s| s.name)
        .collect();
    anyhow::ensure!(
        !dependents.is_empty(),
        "no stack of wsbench depends on {}: there would be nothing to measure",
        swap.crate_name
    );
    progress(&format!(
        "stacks depending on {}: {}",
        swap.crate_name,
        dependents.join(", ")
    ));
    let differences = dependency::differences(&metadata[0], &metadata[1]);
    Ok(Swapped {
        metadata,
        report: SwapReport {
            crate_name: swap.crate_name.clone(),
            stack: swap.stack.clone(),
            base: base_resolved,
            head: head_resolved,
            dependents: Vec::new(),
            differences,
        },
    })
}

/// Removes the worktrees however `compare` ends.
struct Cleanup {
    repo: PathBuf,
    logs: PathBuf,
    worktrees: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for w in self.worktrees.drain(..) {
            worktree::remove_worktree(&self.repo, &w, &self.logs);
        }
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Runs the whole comparison and returns its rows.
fn compare(args: &CompareArgs) -> anyhow::Result<Vec<Row>> {
    let started = Instant::now();
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(
        args.threshold.is_finite() && args.threshold >= 0.0,
        "--threshold must be a number >= 0"
    );
    anyhow::ensure!(args.window_ms >= 1, "--window-ms must be at least 1");
    anyhow::ensure!(args.windows >= 1, "--windows must be at least 1");
    let placement = match args.placement {
        Some(p) => p,
        None => Placement::from_env()?,
    };

    // Everything goes under <repo>/target/wsbench/compare; git needs a log
    // directory before the repository is known, so start in a temporary one.
    let boot_logs = std::env::temp_dir().join(format!("wsbench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&boot_logs)?;
    let repo = worktree::repo_root(&boot_logs)?;
    let _ = std::fs::remove_dir_all(&boot_logs);
    let target = crate::results::target_dir();
    // The repository's target directory. The measuring processes get it as
    // CARGO_TARGET_DIR, so that the Python stacks of both builds use the
    // one venv under it instead of making one in each worktree.
    let target_root = if target.is_absolute() {
        target
    } else {
        repo.join(target)
    };
    let compare_dir = target_root.join("wsbench").join("compare");
    let logs_tmp = compare_dir.join("logs");
    std::fs::create_dir_all(&logs_tmp)
        .with_context(|| format!("creating {}", logs_tmp.display()))?;

    let swap = swap_of(args)?;
    let (mut base, mut head) = match &swap {
        None => commit_sides(args, &repo, &logs_tmp)?,
        Some(swap) => {
            let at = args.at.as_deref().unwrap_or("HEAD");
            let sha = worktree::resolve(&repo, at, &logs_tmp)?;
            if args.at.is_none() && worktree::is_dirty(&repo, &logs_tmp)? {
                progress("the checkout has uncommitted changes; both builds are of HEAD without them (--at names another commit)");
            }
            let side = |role, version: &Version| Side {
                role,
                rev: version.to_string(),
                sha: sha.clone(),
                working_tree: false,
                dirty: false,
                src: PathBuf::new(),
            };
            (side("base", &swap.base), side("head", &swap.head))
        }
    };
    let name = match &swap {
        None => format!("{}-{}", base.short(), head.short()),
        Some(swap) => format!(
            "{}-{}-{}",
            swap.crate_name,
            swap.base.label(),
            swap.head.label()
        ),
    };
    let run_dir = compare_dir.join("runs").join(&name);
    let _ = std::fs::remove_dir_all(&run_dir);
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let _ = std::fs::remove_dir_all(&logs_tmp);

    let mut cleanup = Cleanup {
        repo: repo.clone(),
        logs: logs.clone(),
        worktrees: Vec::new(),
        files: Vec::new(),
    };
    for side in [&mut base, &mut head] {
        if side.working_tree {
            continue;
        }
        let path = match &swap {
            None => compare_dir.join(format!("{}-{}", side.role, side.short())),
            Some(swap) => compare_dir.join(format!("{}-{}", side.role, swap.crate_name)),
        };
        progress(&format!(
            "checking out {} {} ({}) in {}",
            side.role,
            if swap.is_some() { "wsbench" } else { &side.rev },
            side.short(),
            path.display()
        ));
        cleanup.worktrees.push(path.clone());
        worktree::add_worktree(&repo, &path, &side.sha, &logs)?;
        side.src = path;
    }
    let mut swapped = match &swap {
        None => None,
        Some(swap) => Some(swap_versions(swap, &base, &head, &logs, &run_dir)?),
    };

    let target_dir = args
        .target_dir
        .clone()
        .unwrap_or_else(|| compare_dir.join("target"));
    let build_limit = Duration::from_secs(args.build_timeout_s);
    let mut binaries = Vec::new();
    let mut build_s = Vec::new();
    for (side, prebuilt) in [(&base, &args.base_binary), (&head, &args.head_binary)] {
        if let Some(bin) = prebuilt {
            anyhow::ensure!(bin.is_file(), "{} is not a file", bin.display());
            progress(&format!("{}: using {} as built", side.role, bin.display()));
            binaries.push(bin.clone());
            build_s.push(0.0);
            continue;
        }
        let log = logs.join(format!("build-{}.log", side.role));
        progress(&format!(
            "building {} {} ({}{}) from {}; cargo's output goes to {}",
            side.role,
            side.rev,
            side.short(),
            args.features
                .as_deref()
                .map(|f| format!(", features {f}"))
                .unwrap_or_default(),
            side.src.display(),
            log.display()
        ));
        let dest = run_dir.join(format!("wsbench-{}", side.role));
        cleanup.files.push(dest.clone());
        let built = worktree::build(
            side,
            &target_dir,
            &worktree::BuildOptions {
                profile: &args.build_profile,
                features: args.features.as_deref(),
                limit: build_limit,
            },
            &dest,
            &log,
        )?;
        progress(&format!("built {} in {:.0} s", side.role, built.build_s));
        binaries.push(built.binary);
        build_s.push(built.build_s);
    }

    let depends = |s: &worktree::Listed| match &swapped {
        None => true,
        Some(w) => s.in_process && stack_depends(&w.metadata, &s.package, &w.report.crate_name),
    };
    let chosen = choose_stacks(args, &binaries, &logs, &target_root, &depends)?;
    let (stacks, skipped) = (chosen.stacks, chosen.skipped);
    if let Some(s) = &mut swapped {
        s.report.dependents = chosen.dependents;
    }
    anyhow::ensure!(!stacks.is_empty(), "no stack to measure");
    if args.build_profile != "release" {
        progress(&format!(
            "both builds use cargo's {} profile: its timings are not those of a release build",
            args.build_profile
        ));
    }
    if !skipped.is_empty() {
        progress(&format!(
            "not compared (known to one build only): {}",
            skipped.join(", ")
        ));
    }

    let sides = [
        SideRun {
            side: &base,
            binary: &binaries[0],
            env: &args.base_env,
        },
        SideRun {
            side: &head,
            binary: &binaries[1],
            env: &args.head_env,
        },
    ];
    let plan = RoundsPlan {
        rounds: args.rounds,
        stacks: &stacks,
        placement,
        window_ms: args.window_ms,
        windows: args.windows,
        limit: Duration::from_secs(args.round_timeout_s),
        dir: &run_dir,
        target_root: &target_root,
    };
    let measured = run_rounds(&plan, &sides)?;

    let how = Judging {
        method: args.method,
        threshold: args.threshold,
        confidence: stats::CONFIDENCE,
    };
    let rows = report::judge_all(&stacks, &measured.samples, &how);
    let regressions = report::regressions(&rows);
    let report = CompareReport {
        schema: 1,
        base: side_report(&base, &args.base_env, build_s[0], measured.runs[0].clone()),
        head: side_report(&head, &args.head_env, build_s[1], measured.runs[1].clone()),
        features: args.features.clone(),
        placement: placement.to_string(),
        rounds: args.rounds,
        window_ms: args.window_ms,
        windows: args.windows,
        method: args.method,
        threshold: args.threshold,
        confidence: how.confidence,
        coverage: stats::median_rank(args.rounds, how.confidence).map(|r| r.coverage),
        stacks: stacks.clone(),
        skipped_stacks: skipped,
        elapsed_s: started.elapsed().as_secs_f64(),
        regressions,
        rows,
        swap: swapped.map(|s| s.report),
        build_profile: args.build_profile.clone(),
    };
    print!("{}", report::text_table(&report.rows));
    println!("{}", report::interval_legend(args.rounds, how.confidence));
    let md = compare_dir.join(format!("{name}.md"));
    let json = compare_dir.join(format!("{name}.json"));
    crate::results::write_atomically(&md, markdown(&report).as_bytes())?;
    crate::results::write_atomically(&json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    progress(&format!(
        "{} in {:.0} s; wrote {} and {}; rounds and logs in {}",
        name,
        report.elapsed_s,
        md.display(),
        json.display(),
        run_dir.display()
    ));
    drop(cleanup);
    Ok(report.rows)
}

fn side_report(
    side: &Side,
    env: &[(String, String)],
    build_s: f64,
    run: Option<RunInfo>,
) -> SideReport {
    SideReport {
        rev: side.rev.clone(),
        commit: side.sha.clone(),
        working_tree: side.working_tree,
        dirty: side.dirty,
        env: env.to_vec(),
        build_s,
        run,
    }
}

/// The stacks to compare, those only one build knows, and (comparing two
/// versions of a crate) those depending on it.
struct Chosen {
    stacks: Vec<String>,
    skipped: Vec<String>,
    dependents: Vec<String>,
}

/// The stacks to compare: those asked for, or else every in-process stack
/// (and available Python stack with --python) that both builds list and
/// that `depends` on what is compared (all, for two commits).
fn choose_stacks(
    args: &CompareArgs,
    binaries: &[PathBuf],
    logs: &Path,
    target_root: &Path,
    depends: &dyn Fn(&worktree::Listed) -> bool,
) -> anyhow::Result<Chosen> {
    // The child-process stacks' environments are made only when one of
    // them may be measured.
    let setup = args.python || !args.stacks.is_empty();
    let base = worktree::list_stacks(&binaries[0], logs, "base", target_root, setup)?;
    let head = worktree::list_stacks(&binaries[1], logs, "head", target_root, setup)?;
    let wanted = |s: &worktree::Listed| {
        if args.stacks.is_empty() {
            (s.in_process || (args.python && s.available)) && depends(s)
        } else {
            args.stacks.iter().any(|n| n.trim() == s.name)
        }
    };
    let mut chosen = Chosen {
        stacks: Vec::new(),
        skipped: Vec::new(),
        dependents: Vec::new(),
    };
    for s in &head {
        let in_base = base.iter().any(|b| b.name == s.name);
        if in_base && s.in_process && depends(s) {
            chosen.dependents.push(s.name.clone());
        }
        if !wanted(s) {
            continue;
        }
        if in_base {
            chosen.stacks.push(s.name.clone());
        } else {
            chosen.skipped.push(format!("{} (head only)", s.name));
        }
    }
    for s in base.iter().filter(|s| wanted(s)) {
        if !head.iter().any(|h| h.name == s.name) {
            chosen.skipped.push(format!("{} (base only)", s.name));
        }
    }
    for n in &args.stacks {
        anyhow::ensure!(
            base.iter().chain(head.iter()).any(|s| s.name == n.trim()),
            "unknown stack {n:?}: neither build lists it"
        );
    }
    Ok(chosen)
}

struct SideRun<'a> {
    side: &'a Side,
    binary: &'a Path,
    env: &'a [(String, String)],
}

struct RoundsPlan<'a> {
    rounds: usize,
    stacks: &'a [String],
    placement: Placement,
    window_ms: u64,
    windows: usize,
    limit: Duration,
    dir: &'a Path,
    /// CARGO_TARGET_DIR of the measuring processes (where the venv is).
    target_root: &'a Path,
}

struct Measured {
    /// Keyed by (stack, phase and metric: [`metrics::key_of`]).
    samples: BTreeMap<(String, String), Samples>,
    /// Each side's first run record.
    runs: [Option<RunInfo>; 2],
}

/// The measuring loop. In each round, each stack gets one worker process
/// per build; the two take turns window by window (A B B A A B ...), so
/// that window k of each build sees the same load of the machine. Which
/// build goes first flips from stack to stack and round to round.
fn run_rounds(plan: &RoundsPlan<'_>, sides: &[SideRun<'_>; 2]) -> anyhow::Result<Measured> {
    let mut measured = Measured {
        samples: BTreeMap::new(),
        runs: [None, None],
    };
    for round in 0..plan.rounds {
        for (i, stack) in plan.stacks.iter().enumerate() {
            let first = (round + i) % 2;
            let started = Instant::now();
            let files = measure_pair(plan, sides, stack, round, first)?;
            for (s, file) in files.into_iter().enumerate() {
                if measured.runs[s].is_none() {
                    measured.runs[s] = Some(file.run.clone());
                }
                let windows = file.windows.get(stack.as_str());
                for m in file.measurements.iter().filter(|m| &m.stack == stack) {
                    // Older builds wrote other names, and their windows
                    // under the name alone.
                    let written = m.metric.clone();
                    let mut m = m.clone();
                    crate::results::upgrade_measurement(&mut m);
                    let key = metrics::key_of(&m);
                    let e = measured
                        .samples
                        .entry((stack.clone(), key.clone()))
                        .or_default();
                    let w = windows
                        .and_then(|w| w.get(&key).or_else(|| w.get(&written)))
                        .cloned()
                        .unwrap_or_default();
                    if s == 0 {
                        e.base.push(m.value);
                        e.base_windows.push(w);
                    } else {
                        e.head.push(m.value);
                        e.head_windows.push(w);
                    }
                }
            }
            progress(&format!(
                "round {}/{} {stack}: {:.1} s",
                round + 1,
                plan.rounds,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(measured)
}

/// One round of one stack: a worker per build, alternating windows.
fn measure_pair(
    plan: &RoundsPlan<'_>,
    sides: &[SideRun<'_>; 2],
    stack: &str,
    round: usize,
    first: usize,
) -> anyhow::Result<Vec<measure::RoundFile>> {
    let deadline = Instant::now() + plan.limit;
    let order = [first, 1 - first];
    let outs: Vec<PathBuf> = sides
        .iter()
        .map(|side| {
            plan.dir.join(format!(
                "round{}-{stack}-{}.json",
                round + 1,
                side.side.role
            ))
        })
        .collect();
    let mut workers: [Option<child::Worker>; 2] = [None, None];
    // One after the other, so that neither's start-up (and untimed
    // figures) competes with the other's.
    for s in order {
        let side = &sides[s];
        let mut cmd = Command::new(side.binary);
        // The side's sources are the current directory, so the round's run
        // record names its commit.
        cmd.current_dir(&side.side.src)
            .env("CARGO_TARGET_DIR", plan.target_root)
            .arg("measure")
            .arg("--worker")
            .arg("--out")
            .arg(&outs[s])
            .args(["--stacks", stack])
            .args(["--placement", plan.placement.as_str()])
            .args(["--window-ms", &plan.window_ms.to_string()]);
        for (k, v) in side.env {
            cmd.env(k, v);
        }
        let log = plan
            .dir
            .join("logs")
            .join(format!("measure-{}.log", side.side.role));
        let what = format!("measuring {stack} with the {} build", side.side.role);
        let mut w = child::Worker::spawn(&mut cmd, &log, &what)?;
        w.ask(None, "ready", deadline)?;
        workers[s] = Some(w);
    }
    let [Some(a), Some(b)] = &mut workers else {
        unreachable!("both workers started")
    };
    let pair = [a, b];
    for phase in [measure::Phase::Latency, measure::Phase::Throughput] {
        let warm = format!("warm-up {}", phase.as_str());
        let window = format!("window {}", phase.as_str());
        for s in order {
            pair[s].ask(Some(&warm), "ok", deadline)?;
        }
        for k in 0..plan.windows {
            let turn = if k % 2 == 0 {
                order
            } else {
                [order[1], order[0]]
            };
            for s in turn {
                pair[s].ask(Some(&window), "ok", deadline)?;
            }
        }
    }
    for s in order {
        pair[s].ask(Some("done"), "done", deadline)?;
    }
    let mut files = Vec::new();
    for (s, w) in workers.into_iter().enumerate() {
        w.expect("started").wait(deadline)?;
        let text = std::fs::read_to_string(&outs[s])
            .with_context(|| format!("reading {}", outs[s].display()))?;
        files.push(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a round file", outs[s].display()))?,
        );
    }
    Ok(files)
}

/// The Markdown report: what was compared, how, and the table.
pub fn markdown(r: &CompareReport) -> String {
    let side = |s: &SideReport| {
        let what = if s.working_tree {
            format!(
                "working tree at {}{}",
                &s.commit[..s.commit.len().min(10)],
                if s.dirty {
                    " with uncommitted changes"
                } else {
                    ""
                }
            )
        } else {
            format!("{} = {}", s.rev, &s.commit[..s.commit.len().min(10)])
        };
        let env = if s.env.is_empty() {
            String::new()
        } else {
            let kv: Vec<String> = s.env.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
            format!("; environment {}", kv.join(" "))
        };
        format!("{what} (built in {:.0} s{env})", s.build_s)
    };
    let mut out = String::new();
    out.push_str("# wsbench compare\n\n");
    match &r.swap {
        None => {
            out.push_str(&format!("- base: {}\n", side(&r.base)));
            out.push_str(&format!("- head: {}\n", side(&r.head)));
        }
        Some(swap) => {
            let version = |v: &Resolved, s: &SideReport| {
                format!(
                    "`{}`: {} {} (built in {:.0} s{})",
                    v.asked,
                    swap.crate_name,
                    v.describe(),
                    s.build_s,
                    if s.env.is_empty() {
                        String::new()
                    } else {
                        let kv: Vec<String> =
                            s.env.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
                        format!("; environment {}", kv.join(" "))
                    }
                )
            };
            out.push_str(&format!(
                "Two versions of the crate {}{}, each built into wsbench {}.\n\n",
                swap.crate_name,
                swap.stack
                    .as_deref()
                    .map(|s| format!(" (the library of the stack {s})"))
                    .unwrap_or_default(),
                &r.base.commit[..r.base.commit.len().min(10)]
            ));
            out.push_str(&format!("- base: {}\n", version(&swap.base, &r.base)));
            out.push_str(&format!("- head: {}\n", version(&swap.head, &r.head)));
            out.push_str(&format!(
                "- stacks depending on it: {}\n",
                swap.dependents.join(", ")
            ));
            out.push_str(&format!(
                "- Cargo.lock differs in: {}\n",
                if swap.differences.is_empty() {
                    "nothing".to_string()
                } else {
                    swap.differences.join("; ")
                }
            ));
        }
    }
    if r.build_profile != "release" {
        out.push_str(&format!(
            "- built with cargo's `{}` profile, not release: the timings are not those users get\n",
            r.build_profile
        ));
    }
    if let Some(f) = &r.features {
        out.push_str(&format!("- features (both builds): `{f}`\n"));
    }
    if let Some(run) = r.base.run.as_ref().or(r.head.run.as_ref()) {
        out.push_str(&format!(
            "- machine: {} ({} CPUs), {}, TCP congestion control {}, allocator {}, client driver {}; placement {}\n",
            run.cpu, run.cpus, run.kernel, run.tcp_congestion_control, run.malloc, run.client_driver, r.placement
        ));
    }
    out.push_str(&format!(
        "- {} rounds; in each, per stack, {} windows of {} ms per phase, alternating between the builds; {:.0} s in all\n",
        r.rounds, r.windows, r.window_ms, r.elapsed_s
    ));
    out.push_str(&format!(
        "- timings: {} per-round ratios; {}; threshold {}%\n",
        r.method.as_str(),
        report::interval_legend(r.rounds, r.confidence),
        report::fmt_percent(r.threshold)
    ));
    if !r.skipped_stacks.is_empty() {
        out.push_str(&format!(
            "- not compared: {}\n",
            r.skipped_stacks.join(", ")
        ));
    }
    out.push_str(&format!("\n**{} regression(s)**\n\n", r.regressions));
    out.push_str(&report::markdown_table(&r.rows));
    out.push_str("\nMetrics:\n\n");
    for m in metrics::METRICS {
        let how = match m.kind {
            metrics::Kind::Timing => "timing".to_string(),
            metrics::Kind::Exact { tolerance: 0.0 } => "exact".to_string(),
            metrics::Kind::Exact { tolerance } => format!("exact within {tolerance} {}", m.unit()),
        };
        out.push_str(&format!(
            "- `{}`, {} ({how}): {}\n",
            m.name(),
            m.phase,
            m.what
        ));
    }
    out.push_str(
        "\nRatio: head/base; for timings, the median over rounds of each round's median \
         ratio of windows measured back to back. Interval: two of the rounds' ratios in \
         sorted order, chosen so that the binomial law gives the stated exact coverage of \
         the median ratio whatever the ratios' distribution. Verdicts: a regression or an \
         improvement when the whole interval lies beyond the threshold (exact metrics: \
         when the median changed by the tolerance or more); no change when the whole interval lies within it; \
         inconclusive when the rounds were too noisy to tell at this threshold, or too \
         few for an interval, which is not a regression (more --rounds narrow the \
         interval).\n",
    );
    out
}
