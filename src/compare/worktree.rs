//! The two builds of a comparison: a git worktree per commit (or the
//! checkout itself for the working tree), each built with
//! `cargo build --profile release --locked --bin wsbench` (or another
//! profile), and the binary copied out so that both builds exist side by
//! side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::child;

/// How long a git command may take.
const GIT_LIMIT: Duration = Duration::from_secs(120);

/// How long `wsbench list` may take: the first one creates the Python venv
/// and installs its packages.
const LIST_LIMIT: Duration = Duration::from_secs(600);

/// One side of a comparison and where its sources are.
#[derive(Debug, Clone)]
pub struct Side {
    /// "base" or "head".
    pub role: &'static str,
    /// What the user asked for ("HEAD~1", "main"), or "working tree"; for
    /// two versions of a crate, the version ("crate:0.13.3").
    pub rev: String,
    /// The full commit hash (for the working tree: of HEAD).
    pub sha: String,
    /// Whether this is the checkout as-is, uncommitted changes included.
    pub working_tree: bool,
    /// Tracked files of the working tree differ from HEAD.
    pub dirty: bool,
    /// Where its sources are: a worktree, or the repository itself.
    pub src: PathBuf,
}

impl Side {
    /// A short name for files and tables: the first 10 hex digits, plus
    /// "-dirty" for a working tree with changes.
    pub fn short(&self) -> String {
        let short = &self.sha[..self.sha.len().min(10)];
        if self.dirty {
            format!("{short}-dirty")
        } else {
            short.to_string()
        }
    }
}

/// Runs git in `repo` and returns its stdout, trimmed.
pub fn git(repo: &Path, args: &[&str], logs: &Path) -> anyhow::Result<String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(repo).args(args);
    child::run_capture(
        &mut cmd,
        &logs.join("git.stdout"),
        &logs.join("git.log"),
        GIT_LIMIT,
        &format!("git {}", args.join(" ")),
    )
}

/// The repository around the current directory.
pub fn repo_root(logs: &Path) -> anyhow::Result<PathBuf> {
    let root = git(Path::new("."), &["rev-parse", "--show-toplevel"], logs)
        .context("wsbench compare runs inside the wsbench git repository")?;
    Ok(PathBuf::from(root))
}

/// The commit a revision names.
pub fn resolve(repo: &Path, rev: &str, logs: &Path) -> anyhow::Result<String> {
    git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
        logs,
    )
    .with_context(|| format!("{rev:?} does not name a commit"))
}

/// Whether tracked files differ from HEAD (untracked files do not count,
/// as in [`crate::machine::commit`]).
pub fn is_dirty(repo: &Path, logs: &Path) -> anyhow::Result<bool> {
    Ok(!git(
        repo,
        &["status", "--porcelain", "--untracked-files=no"],
        logs,
    )?
    .is_empty())
}

/// Checks out `sha` in a detached worktree at `path`, replacing what a
/// crashed earlier run may have left there.
pub fn add_worktree(repo: &Path, path: &Path, sha: &str, logs: &Path) -> anyhow::Result<()> {
    if path.exists() {
        remove_worktree(repo, path, logs);
    }
    let _ = git(repo, &["worktree", "prune"], logs);
    let path_str = path.to_str().context("worktree path is not UTF-8")?;
    git(
        repo,
        &["worktree", "add", "--detach", "--force", path_str, sha],
        logs,
    )?;
    Ok(())
}

/// Removes a worktree; falls back to deleting the directory and pruning,
/// and never fails (it runs on the way out of errors too).
pub fn remove_worktree(repo: &Path, path: &Path, logs: &Path) {
    let Some(path_str) = path.to_str() else {
        return;
    };
    if git(repo, &["worktree", "remove", "--force", path_str], logs).is_err() && path.exists() {
        let _ = std::fs::remove_dir_all(path);
    }
    let _ = git(repo, &["worktree", "prune"], logs);
}

/// What a build took.
pub struct Built {
    pub binary: PathBuf,
    pub build_s: f64,
}

/// How both sides are built.
pub struct BuildOptions<'a> {
    /// Cargo's profile: release, or dev for a build in a fraction of the
    /// time whose timings users do not see.
    pub profile: &'a str,
    /// Cargo features (e.g. regression-demo).
    pub features: Option<&'a str>,
    /// How long one build may take.
    pub limit: Duration,
}

/// Builds `wsbench` from `src` into the shared `target_dir` and copies the
/// binary to `dest`.
///
/// Both sides share one target directory so that the dependencies are
/// compiled once and stay compiled across comparisons. The wsbench package
/// itself is cleaned first: cargo fingerprints its sources by paths relative
/// to the package root and by modification time, so after a build from one
/// worktree it may take another checkout with older files (the working
/// tree) for up to date and hand back the first build's binary.
pub fn build(
    side: &Side,
    target_dir: &Path,
    options: &BuildOptions<'_>,
    dest: &Path,
    log: &Path,
) -> anyhow::Result<Built> {
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut clean = Command::new(&cargo);
    clean
        .current_dir(&side.src)
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "clean",
            "--profile",
            options.profile,
            "--package",
            "wsbench",
        ]);
    child::run_logged(
        &mut clean,
        log,
        options.limit,
        &format!("cleaning the {} build", side.role),
    )?;

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&side.src)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .args([
            "build",
            "--profile",
            options.profile,
            "--locked",
            "--bin",
            "wsbench",
        ]);
    if let Some(f) = options.features {
        cmd.args(["--features", f]);
    }
    let what = format!("building {} {} ({})", side.role, side.rev, side.short());
    if let Err(e) = child::run_logged(&mut cmd, log, options.limit, &what) {
        // The compiler's own messages, which a log's last lines may not
        // reach (an error in a dependency, then pages of notes).
        let errors = compiler_errors(log);
        if errors.is_empty() {
            return Err(e);
        }
        anyhow::bail!(
            "{what} failed; the compiler says:\n{errors}(all of cargo's output: {})",
            log.display()
        );
    }
    // Cargo's output directory for a profile: the built-in ones share
    // "debug" and "release", a custom one has its own name.
    let dir = match options.profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    };
    let built = target_dir.join(dir).join("wsbench");
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(&built, dest)
        .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    Ok(Built {
        binary: dest.to_path_buf(),
        build_s: started.elapsed().as_secs_f64(),
    })
}

/// The error messages in a cargo log: each from its `error` line to the
/// next blank line, at most [`ERROR_LINES`] lines in all, indented.
fn compiler_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("error") {
            inside = true;
        } else if line.trim().is_empty() {
            inside = false;
        }
        if inside {
            out.push(format!("    {line}\n"));
        }
        if out.len() >= ERROR_LINES {
            out.push("    ...\n".into());
            break;
        }
    }
    out.concat()
}

/// Lines of compiler errors a failed build's message quotes.
const ERROR_LINES: usize = 60;

/// One row of a build's `wsbench list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// The package it measures (a crate for the in-process stacks).
    pub package: String,
    pub in_process: bool,
    pub available: bool,
}

/// The stacks a build knows, from its `wsbench list`. `target_root` is its
/// CARGO_TARGET_DIR, where the Python venv is looked for; with `setup`
/// the child-process stacks' environments are made first (`wsbench
/// setup`; builds from before `setup` existed make them in `list`).
pub fn list_stacks(
    binary: &Path,
    logs: &Path,
    role: &str,
    target_root: &Path,
    setup: bool,
) -> anyhow::Result<Vec<Listed>> {
    if setup {
        let mut cmd = Command::new(binary);
        cmd.env("CARGO_TARGET_DIR", target_root).arg("setup");
        let setup_log = logs.join(format!("setup-{role}.log"));
        if let Err(e) = child::run_capture(
            &mut cmd,
            &logs.join(format!("setup-{role}.stdout")),
            &setup_log,
            LIST_LIMIT,
            &format!("wsbench setup of the {role} build"),
        ) {
            // A newer build whose setup failed lists its child-process
            // stacks as not installed, so they are left out.
            eprintln!(
                "wsbench compare: {e:#} (a build from before `wsbench setup` has none, and its `list` makes the environments instead; see {})",
                setup_log.display()
            );
        }
    }
    let mut cmd = Command::new(binary);
    cmd.env("CARGO_TARGET_DIR", target_root).arg("list");
    let text = child::run_capture(
        &mut cmd,
        &logs.join(format!("list-{role}.stdout")),
        &logs.join(format!("list-{role}.log")),
        LIST_LIMIT,
        &format!("wsbench list of the {role} build"),
    )?;
    Ok(parse_list(&text))
}

/// The table of `wsbench list`: a header, a row per stack ("name package
/// version protocol where"), then (in newer builds) an empty line and notes.
fn parse_list(text: &str) -> Vec<Listed> {
    text.lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(Listed {
                name: words.next()?.to_string(),
                package: words.next()?.to_string(),
                in_process: line.contains("in process"),
                available: !line.contains("unavailable") && !line.contains("not installed"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{parse_list, Listed};

    #[test]
    fn the_list_of_an_older_or_a_newer_build_reads_the_same() {
        let table = "stack package protocol where\n\
                     axum axum 0.8.9 websocket in process\n\
                     python-aiohttp aiohttp 3.13.2 websocket child process\n\
                     node-ws ws 8.18.3 websocket unavailable: no node";
        let newer = "stack package protocol where\n\
                     axum axum 0.8.9 websocket in process\n\
                     python-aiohttp aiohttp 3.13.2 websocket child process, not installed yet (first use)\n\
                     node-ws ws 8.18.3 websocket unavailable: no node\n\
                     \n\
                     Environments of the child-process stacks: /c (CARGO_TARGET_DIR); ...";
        let row = |name: &str, package: &str, in_process, available| Listed {
            name: name.into(),
            package: package.into(),
            in_process,
            available,
        };
        assert_eq!(
            parse_list(table),
            [
                row("axum", "axum", true, true),
                row("python-aiohttp", "aiohttp", false, true),
                row("node-ws", "ws", false, false)
            ]
        );
        assert_eq!(
            parse_list(newer),
            [
                row("axum", "axum", true, true),
                row("python-aiohttp", "aiohttp", false, false),
                row("node-ws", "ws", false, false)
            ]
        );
    }
}
