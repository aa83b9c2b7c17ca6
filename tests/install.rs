//! `wsbench` as an installed tool, run from a directory outside the
//! checkout: `list` writes nothing anywhere, `--version` names the commit,
//! and a Python stack served from there (its venv made in the user's cache
//! directory, its script written out of the binary) answers `run --url`.
//!
//! The binary is installed as `cargo install --path . --root R` installs
//! one, by copying the built binary to `R/bin/wsbench`: a second build
//! inside `cargo test` would cost minutes. The environment is that of a
//! user: no CARGO_TARGET_DIR or WSBENCH_CACHE_DIR, HOME and XDG_CACHE_HOME
//! in the test's own directory. Every wait has a deadline that only guards
//! against a hang; nothing here is timed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use wsbench::stacks::child::Environment;

mod command;

use command::{transcript, Server};

/// From spawning `serve` to its "serving" line: the first one creates the
/// venv and installs the pinned packages from PyPI.
const SERVE_DEADLINE: Duration = Duration::from_secs(600);

/// A fresh directory tree for one run of this test, removed when dropped.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let root = std::env::temp_dir().join(format!("wsbench-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["root/bin", "cwd", "home"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let bin = root.join("root/bin/wsbench");
        std::fs::copy(env!("CARGO_BIN_EXE_wsbench"), &bin).unwrap();
        Scratch { root }
    }

    fn bin(&self) -> PathBuf {
        self.root.join("root/bin/wsbench")
    }
    fn cwd(&self) -> PathBuf {
        self.root.join("cwd")
    }
    fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The installed binary, run from the empty directory as a user would.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin());
        cmd.args(args)
            .current_dir(self.cwd())
            .env_remove("CARGO_TARGET_DIR")
            .env_remove(wsbench::stacks::cache::CACHE_DIR_ENV)
            .env_remove(wsbench::placement::PLACEMENT_ENV)
            .env("HOME", self.root.join("home"))
            .env("XDG_CACHE_HOME", self.cache());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("running wsbench {args:?}: {e}"));
        assert!(out.status.success(), "wsbench {args:?}{}", transcript(&out));
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The names under `dir`, or none when it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_installed_binary_lists_without_writing_and_serves_a_python_stack_from_anywhere() {
    let scratch = Scratch::new();

    let out = scratch.run(&["--version"]);
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("wsbench {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(head) = head {
        let head = String::from_utf8_lossy(&head.stdout);
        assert!(
            version.contains(head.trim()),
            "--version names another commit than HEAD {}: {version}",
            head.trim()
        );
    }

    let out = scratch.run(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for stack in wsbench::stacks::STACKS {
        assert!(
            text.lines().any(|l| l.starts_with(stack.name)),
            "{} missing from list{}",
            stack.name,
            transcript(&out)
        );
    }
    let cache = scratch.cache().join("wsbench");
    assert!(
        text.contains(&format!("{} (the user's cache directory)", cache.display())),
        "list does not say the environments are in {}{}",
        cache.display(),
        transcript(&out)
    );
    for dir in [scratch.cwd(), scratch.cache(), scratch.root.join("home")] {
        assert_eq!(
            entries(&dir),
            Vec::<String>::new(),
            "list wrote into {}{}",
            dir.display(),
            transcript(&out)
        );
    }

    // No interpreter here (the venv is made below, not looked for).
    let python = wsbench::stacks::find("python-aiohttp")
        .unwrap()
        .environment();
    if let Some(Environment::Unavailable(why)) = python {
        assert!(
            std::env::var("WSBENCH_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "python stacks unavailable: {why} (and WSBENCH_REQUIRE_PYTHON=1)"
        );
        eprintln!("skipping serve and run: python stacks unavailable: {why}");
        return;
    }

    let cmd = scratch.command(&[
        "serve",
        "--stack",
        "python-aiohttp",
        "--addr",
        "127.0.0.1:0",
    ]);
    // The installed binary's serve: SIGTERM stops its Python child too.
    let mut server = Server::start(cmd, SERVE_DEADLINE, "serve --stack python-aiohttp");
    let out = scratch.run(&["run", "--url", &server.url, "--duration", "0.3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("stack {} conns 1 ", server.url)),
        "{}",
        transcript(&out)
    );
    server.stop();

    assert_eq!(
        entries(&scratch.cwd()),
        Vec::<String>::new(),
        "serve or run wrote into the current directory"
    );
    let made = entries(&cache);
    for dir in ["venv", "scripts", "logs"] {
        assert!(
            made.iter().any(|m| m == dir),
            "no {dir} in {}: {made:?}",
            cache.display()
        );
    }
}
