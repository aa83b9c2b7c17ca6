//! What every Python stack shares: each is an echo script under `python/`
//! (`echo_<package>.py`) run as a child process ([`super::child`]), with
//! its row in its own file (`python_websockets.rs`, `python_aiohttp.rs`,
//! `python_picows.rs`).
//!
//! The interpreter is that of a virtual environment, `venv/` of the
//! [`cache`] directory, created and filled from `python/requirements.txt`
//! on first use, so that results always name the pinned versions. The
//! scripts run from the copies [`cache::scripts`] writes out of the binary.
//! Where Python or the packages cannot be had, the stacks report themselves
//! unavailable ([`availability`]) and callers skip them with the reason;
//! [`environment`] tells what is there without making anything.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;

use super::child::{self, lock_exclusive, run, Environment, Launch};
use super::{cache, Runtime, ServerHandle, StackInfo};
use crate::settings::ServerSettings;

/// The two stacks of the original comparison under their older names, for
/// callers that name them directly.
pub use super::python_aiohttp::STACK as AIOHTTP;
pub use super::python_websockets::STACK as WEBSOCKETS;

/// Names the interpreter that creates the venv (default `python3`).
pub const PYTHON_ENV: &str = "WSBENCH_PYTHON";

/// `1` runs the servers on uvloop instead of asyncio's own event loop.
pub const UVLOOP_ENV: &str = "WSBENCH_PYTHON_UVLOOP";

pub use super::child::LISTEN_DEADLINE;

/// websockets 17 needs Python 3.11 or later.
const MIN_PYTHON: (u32, u32) = (3, 11);

/// Whether the Python stacks can run here: `Err` holds why not (no
/// interpreter, too old a one, the packages could not be installed).
///
/// The first call creates the venv if needed, which takes a while and says
/// so on stderr; the answer is kept for the life of the process.
pub fn availability() -> Result<(), String> {
    venv().map(|_| ())
}

/// The venv as it is, made or not, checked without writing anything.
pub fn environment() -> Environment {
    let paths = match Paths::now() {
        Ok(paths) => paths,
        Err(e) => return Environment::Unavailable(format!("{e:#}")),
    };
    let why = match paths.ready() {
        Ok(versions) => return Environment::Ready(versions),
        Err(why) => why,
    };
    match check_interpreter(&paths.interpreter) {
        Ok(()) => Environment::NotInstalled(why),
        Err(e) => Environment::Unavailable(format!("{e:#}")),
    }
}

/// The version of `package` installed in the venv, as Python reports it;
/// `None` when the stacks are unavailable or the package is not installed.
/// Creates the venv if needed, like [`availability`].
pub fn installed_version(package: &str) -> Option<String> {
    venv().ok()?.versions.get(package).cloned()
}

/// The venv's interpreter, for running a Python client (the `websockets`
/// client, say) against any stack.
pub fn venv_python() -> Result<&'static Path, String> {
    venv().map(|v| v.python.as_path())
}

/// Starts a Python stack (a row of [`super::STACKS`] hosted in a child
/// process) under the placement's server CPUs. Its script is
/// `python/echo_<package>.py`: a Python stack is that script plus its row.
pub fn start(stack: &StackInfo, settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let launch = launch(stack).map_err(anyhow::Error::msg)?;
    child::spawn(launch, settings, settings.server_cpus().as_deref())
}

/// The script that serves `stack`: `echo_<package>.py` under `python/`.
pub fn script_of(stack: &StackInfo) -> String {
    format!("echo_{}.py", stack.package)
}

/// How [`child::spawn`] starts `stack`'s script with the venv's
/// interpreter.
pub(super) fn launch(stack: &StackInfo) -> Result<Launch<'static>, String> {
    if stack.runtime != Runtime::Python {
        return Err(format!("{} is not a Python stack", stack.name));
    }
    let venv = venv().map_err(|why| format!("python stacks unavailable: {why}"))?;
    let scripts = cache::scripts()?;
    let mut extra_args = Vec::new();
    if std::env::var(UVLOOP_ENV).is_ok_and(|v| v == "1") {
        extra_args.push("--uvloop".into());
    }
    Ok(Launch {
        stack: stack.name,
        program: &venv.python,
        script: scripts.join("python").join(script_of(stack)),
        extra_args,
        // Keeps __pycache__ out of the source tree.
        env: vec![("PYTHONDONTWRITEBYTECODE", "1".into())],
    })
}

// ---------------------------------------------------------------------------
// The virtual environment
// ---------------------------------------------------------------------------

struct Venv {
    python: PathBuf,
    /// Package name -> installed version.
    versions: BTreeMap<String, String>,
}

/// The venv, prepared once per process. `OnceLock` makes the other threads
/// wait while one installs; the lock file does the same for other processes
/// (several test binaries may start at once).
fn venv() -> Result<&'static Venv, String> {
    static VENV: OnceLock<Result<Venv, String>> = OnceLock::new();
    VENV.get_or_init(|| prepare_venv().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// Where the venv is and what it must be made from.
struct Paths {
    dir: PathBuf,
    python: PathBuf,
    interpreter: String,
    /// Holds everything the venv was made from; any change to it means a
    /// fresh venv. Written last, so an interrupted install is redone next
    /// time.
    marker: PathBuf,
    marker_text: String,
}

impl Paths {
    fn now() -> anyhow::Result<Paths> {
        let dir = cache::place()?.dir.join("venv");
        let interpreter = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_string());
        let pins = cache::file("python/requirements.txt");
        Ok(Paths {
            python: dir.join("bin/python"),
            marker: dir.join("wsbench-installed.txt"),
            marker_text: format!("{PYTHON_ENV}={interpreter}\n{pins}"),
            interpreter,
            dir,
        })
    }

    /// The installed versions when the venv was made from these pins and
    /// still runs; otherwise why it must be made. Writes nothing.
    fn ready(&self) -> Result<BTreeMap<String, String>, String> {
        match fs::read_to_string(&self.marker) {
            Ok(text) if text == self.marker_text => query_versions(&self.python)
                .map_err(|e| format!("its interpreter no longer runs: {e:#}")),
            Ok(_) => Err(format!("python/requirements.txt or {PYTHON_ENV} changed")),
            Err(_) => Err("first use".to_string()),
        }
    }
}

fn prepare_venv() -> anyhow::Result<Venv> {
    let base = cache::place()?.dir;
    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let _lock = lock_exclusive(&base.join("venv.lock"))?;
    // Looked at under the lock: another process may have just made it.
    let paths = Paths::now()?;
    let Paths {
        dir,
        python,
        interpreter,
        marker,
        marker_text,
    } = &paths;
    let why = match paths.ready() {
        Ok(versions) => {
            return Ok(Venv {
                python: python.clone(),
                versions,
            })
        }
        Err(why) => why,
    };
    check_interpreter(interpreter)?;
    let requirements = cache::scripts()
        .map_err(anyhow::Error::msg)?
        .join("python/requirements.txt");
    eprintln!("wsbench: creating Python venv at {} ({why})", dir.display());
    let started = Instant::now();
    if dir.exists() {
        fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove the old {}", dir.display()))?;
    }
    run(Command::new(interpreter).arg("-m").arg("venv").arg(dir)).with_context(|| {
        format!(
            "`{interpreter} -m venv` failed (on Debian and Ubuntu: apt-get install python3-venv)"
        )
    })?;
    run(Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "-r",
        ])
        .arg(&requirements))
    .context("`pip install -r python/requirements.txt` failed (is PyPI reachable?)")?;
    let versions = query_versions(python)?;
    fs::write(marker, marker_text).with_context(|| format!("cannot write {}", marker.display()))?;

    let listed: Vec<String> = versions.iter().map(|(p, v)| format!("{p} {v}")).collect();
    eprintln!(
        "wsbench: Python venv ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        listed.join(", ")
    );
    Ok(Venv {
        python: python.clone(),
        versions,
    })
}

/// Says clearly when the interpreter is missing or too old, which pip would
/// only report as "no matching distribution".
fn check_interpreter(interpreter: &str) -> anyhow::Result<()> {
    let out =
        run(Command::new(interpreter)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]))
        .with_context(|| format!("cannot run {interpreter} (name a Python 3 with {PYTHON_ENV})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim();
    let parsed = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match parsed {
        Some(v) if v >= MIN_PYTHON => Ok(()),
        _ => anyhow::bail!(
            "{interpreter} is Python {version}; the pinned packages need {}.{} or later (name another with {PYTHON_ENV})",
            MIN_PYTHON.0,
            MIN_PYTHON.1
        ),
    }
}

/// The installed versions of every package python/requirements.txt pins.
fn query_versions(python: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let packages: Vec<&str> = super::versions::PYTHON.iter().map(|(p, _)| *p).collect();
    let script = format!(
        "import importlib.metadata as m\nfor p in {packages:?}:\n    print(p, m.version(p))"
    );
    let out = run(Command::new(python).arg("-c").arg(script))?;
    let versions: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, v)| (p.to_string(), v.trim().to_string()))
        .collect();
    anyhow::ensure!(
        versions.len() == packages.len(),
        "the venv lacks some of {packages:?}"
    );
    Ok(versions)
}
