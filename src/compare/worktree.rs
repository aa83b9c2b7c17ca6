//! The two builds of a comparison: a git worktree per commit (or the
//! checkout itself for the working tree), each built with
//! `cargo build --release --locked --bin wsbench`, and the binary copied
//! out so that both builds exist side by side.

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
    /// What the user asked for ("HEAD~1", "main"), or "working tree".
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
    features: Option<&str>,
    dest: &Path,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<Built> {
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut clean = Command::new(&cargo);
    clean
        .current_dir(&side.src)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["clean", "--release", "--package", "wsbench"]);
    child::run_logged(
        &mut clean,
        log,
        limit,
        &format!("cleaning the {} build", side.role),
    )?;

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&side.src)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .args(["build", "--release", "--locked", "--bin", "wsbench"]);
    if let Some(f) = features {
        cmd.args(["--features", f]);
    }
    child::run_logged(
        &mut cmd,
        log,
        limit,
        &format!("building {} ({})", side.role, side.short()),
    )?;
    let built = target_dir.join("release").join("wsbench");
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

/// The stacks a build knows, from its `wsbench list`: (name, runs in
/// process, available). `target_root` is its CARGO_TARGET_DIR, where the
/// Python venv is looked for (and made, the first time, by `wsbench setup`;
/// builds from before `setup` existed make it in `list` instead).
pub fn list_stacks(
    binary: &Path,
    logs: &Path,
    role: &str,
    target_root: &Path,
) -> anyhow::Result<Vec<(String, bool, bool)>> {
    let mut setup = Command::new(binary);
    setup.env("CARGO_TARGET_DIR", target_root).arg("setup");
    let setup_log = logs.join(format!("setup-{role}.log"));
    if let Err(e) = child::run_capture(
        &mut setup,
        &logs.join(format!("setup-{role}.stdout")),
        &setup_log,
        LIST_LIMIT,
        &format!("wsbench setup of the {role} build"),
    ) {
        // A newer build whose setup failed lists its child-process stacks
        // as not installed, so they are left out below.
        eprintln!(
            "wsbench compare: {e:#} (a build from before `wsbench setup` has none, and its `list` makes the environments instead; see {})",
            setup_log.display()
        );
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

/// The table of `wsbench list`: a header, a row per stack, then (in newer
/// builds) an empty line and notes.
fn parse_list(text: &str) -> Vec<(String, bool, bool)> {
    text.lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let name = line.split_whitespace().next()?.to_string();
            let in_process = line.contains("in process");
            let available = !line.contains("unavailable") && !line.contains("not installed");
            Some((name, in_process, available))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_list;

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
        let row = |name: &str, in_process, available| (name.to_string(), in_process, available);
        assert_eq!(
            parse_list(table),
            [
                row("axum", true, true),
                row("python-aiohttp", false, true),
                row("node-ws", false, false)
            ]
        );
        assert_eq!(
            parse_list(newer),
            [
                row("axum", true, true),
                row("python-aiohttp", false, false),
                row("node-ws", false, false)
            ]
        );
    }
}
