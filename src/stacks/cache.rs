//! The one directory where the harness keeps what it makes for the
//! child-process stacks: the Python venv, the Node packages, the server
//! scripts written out of the binary, and the servers' stderr logs. Never
//! the current directory, so that a command run anywhere leaves no
//! `target/` behind.
//!
//! It is, in order: `$WSBENCH_CACHE_DIR`; `$CARGO_TARGET_DIR/wsbench`;
//! `target/wsbench` of the checkout this binary was built from, when run
//! from inside it (so `cargo bench` and `cargo test` keep their
//! environments in the checkout, as before); otherwise the user's cache
//! directory, `$XDG_CACHE_HOME/wsbench` or `~/.cache/wsbench`.
//!
//! The scripts are embedded at build time (build.rs embeds every file of
//! `python/` and `node/`), so an installed binary needs nothing of the
//! checkout: [`scripts`] writes them under `scripts/<key>/`, the key a hash
//! of their contents, so that builds with different scripts never
//! overwrite each other's.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;

include!(concat!(env!("OUT_DIR"), "/scripts.rs"));

/// Names the directory outright, over every other rule.
pub const CACHE_DIR_ENV: &str = "WSBENCH_CACHE_DIR";

/// The directory, and which rule chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Absolute.
    pub dir: PathBuf,
    /// "WSBENCH_CACHE_DIR", "CARGO_TARGET_DIR", "run from the checkout
    /// /path", "the user's cache directory".
    pub why: String,
}

/// Where the harness's environments are, by the rules at the top; nothing
/// is created. An error only when no rule applies (no `$HOME`).
pub fn place() -> anyhow::Result<Place> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let checkout = checkout_around(&cwd);
    choose(|name| std::env::var_os(name), &cwd, checkout.as_deref())
}

/// The rules, given the environment (`var`), the current directory and
/// the checkout around it.
fn choose(
    var: impl Fn(&str) -> Option<OsString>,
    cwd: &Path,
    checkout: Option<&Path>,
) -> anyhow::Result<Place> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let user_cache = || "the user's cache directory".to_string();
    let (dir, why) = if let Some(dir) = var(CACHE_DIR_ENV) {
        (PathBuf::from(dir), CACHE_DIR_ENV.to_string())
    } else if let Some(target) = var("CARGO_TARGET_DIR") {
        (
            PathBuf::from(target).join("wsbench"),
            "CARGO_TARGET_DIR".to_string(),
        )
    } else if let Some(checkout) = checkout {
        let why = format!("run from the checkout {}", checkout.display());
        (checkout.join("target").join("wsbench"), why)
    } else if let Some(cache) = var("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        // The XDG spec says to ignore a relative XDG_CACHE_HOME.
        (PathBuf::from(cache).join("wsbench"), user_cache())
    } else if let Some(home) = var("HOME") {
        (
            PathBuf::from(home).join(".cache").join("wsbench"),
            user_cache(),
        )
    } else {
        anyhow::bail!("no place for the child-process stacks' environments: set {CACHE_DIR_ENV} (neither XDG_CACHE_HOME nor HOME is set)");
    };
    // A relative WSBENCH_CACHE_DIR or CARGO_TARGET_DIR is taken from the
    // current directory, once: interpreter paths under it must stay valid
    // whatever directory a server is started from.
    Ok(Place {
        dir: cwd.join(dir),
        why,
    })
}

/// The checkout this binary was built from, when `cwd` is inside it.
fn checkout_around(cwd: &Path) -> Option<PathBuf> {
    let root = fs::canonicalize(env!("CARGO_MANIFEST_DIR")).ok()?;
    let cwd = fs::canonicalize(cwd).ok()?;
    (root.join("Cargo.toml").is_file() && cwd.starts_with(&root)).then_some(root)
}

/// The embedded text of `name` (a path in the checkout, "python/requirements.txt").
pub fn file(name: &str) -> &'static str {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("{name} is not among the files build.rs embeds"))
}

/// The directory holding every embedded file under its checkout path
/// (`<dir>/python/echo_aiohttp.py`), written out on the first call of the
/// process; later calls return it.
pub fn scripts() -> Result<&'static Path, String> {
    static SCRIPTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SCRIPTS
        .get_or_init(|| write_scripts().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

fn write_scripts() -> anyhow::Result<PathBuf> {
    let dir = place()?.dir.join("scripts").join(key());
    for (name, text) in FILES {
        let path = dir.join(name);
        if fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        // Atomically: another process starting a server at the same moment
        // never reads half a script.
        crate::results::write_atomically(&path, text.as_bytes())?;
    }
    Ok(dir)
}

/// 16 hex digits of the FNV-1a hash of every embedded file's name and text.
fn key() -> String {
    key_of(FILES)
}

fn key_of(files: &[(&str, &str)]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, text) in files {
        for byte in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_a_stack_runs_is_embedded() {
        for stack in super::super::STACKS {
            let name = match stack.runtime {
                super::super::Runtime::Python => {
                    format!("python/{}", super::super::python::script_of(stack))
                }
                super::super::Runtime::Node => {
                    format!("node/{}", super::super::node::script_of(stack))
                }
                super::super::Runtime::Native => continue,
            };
            assert!(
                FILES.iter().any(|(n, _)| *n == name),
                "{} runs {name}, which build.rs did not embed",
                stack.name
            );
        }
        for name in [
            "python/requirements.txt",
            "python/_echo_common.py",
            "node/package.json",
            "node/package-lock.json",
        ] {
            assert!(!file(name).is_empty(), "{name} is embedded empty");
        }
    }

    #[test]
    fn a_change_to_any_file_changes_the_key() {
        let files = [("python/a.py", "print(1)\n"), ("node/b.cjs", "x\n")];
        let key = key_of(&files);
        assert_eq!(key.len(), 16);
        let edited = [("python/a.py", "print(2)\n"), ("node/b.cjs", "x\n")];
        let renamed = [("python/c.py", "print(1)\n"), ("node/b.cjs", "x\n")];
        // The same bytes split differently between name and text.
        let shifted = [("python/a.py", "print(1)\nn"), ("ode/b.cjs", "x\n")];
        for other in [&edited, &renamed, &shifted] {
            assert_ne!(key_of(other), key, "{other:?} has the key of {files:?}");
        }
    }

    fn vars(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs = pairs.to_vec();
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_directory_follows_the_rules_in_order() {
        let cwd = Path::new("/work/elsewhere");
        let checkout = Some(Path::new("/src/wsbench"));
        let all = [
            (CACHE_DIR_ENV, "cache"),
            ("CARGO_TARGET_DIR", "/t"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        let dir = |pairs: &[(&'static str, &'static str)], checkout| {
            choose(vars(pairs), cwd, checkout).unwrap().dir
        };
        // A relative WSBENCH_CACHE_DIR is taken from the current directory.
        assert_eq!(dir(&all, checkout), Path::new("/work/elsewhere/cache"));
        assert_eq!(dir(&all[1..], checkout), Path::new("/t/wsbench"));
        assert_eq!(
            dir(&all[2..], checkout),
            Path::new("/src/wsbench/target/wsbench")
        );
        assert_eq!(dir(&all[2..], None), Path::new("/xdg/wsbench"));
        assert_eq!(dir(&all[3..], None), Path::new("/home/u/.cache/wsbench"));
        // An empty variable counts as unset, a relative XDG_CACHE_HOME as
        // invalid (the XDG spec).
        let odd = [
            (CACHE_DIR_ENV, ""),
            ("XDG_CACHE_HOME", "rel"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir(&odd, None), Path::new("/h/.cache/wsbench"));
        let err = choose(vars(&[]), cwd, None).unwrap_err().to_string();
        assert!(err.contains(CACHE_DIR_ENV), "{err}");
    }
}
