//! What every Node stack shares: each is an echo script under `node/`
//! (`echo_<package>.cjs`) run by Node as a child process
//! ([`super::child`]), with its row in its own file (`node_ws.rs`).
//!
//! The packages are those `node/package-lock.json` pins, installed with
//! `npm ci` in `node/` of the [`cache`] directory on first use, so that
//! results always name the pinned versions. The scripts run from the copies
//! [`cache::scripts`] writes out of the binary. Where Node, npm or the
//! packages cannot be had, the stacks report themselves unavailable
//! ([`availability`]) and callers skip them with the reason; [`environment`]
//! tells what is installed without installing anything.

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

/// Names the Node executable (default `node`); npm is looked up beside it
/// on PATH as `npm`, or named with [`NPM_ENV`].
pub const NODE_ENV: &str = "WSBENCH_NODE";
/// Names the npm executable (default `npm`).
pub const NPM_ENV: &str = "WSBENCH_NPM";

/// The scripts use `node:util`'s parseArgs, in Node since 18.3.
const MIN_NODE: (u32, u32) = (18, 3);

/// Whether the Node stacks can run here: `Err` holds why not (no Node, too
/// old a one, no npm, the packages could not be installed). The first call
/// installs the packages if needed, which takes a few seconds and says so
/// on stderr; the answer is kept for the life of the process.
pub fn availability() -> Result<(), String> {
    install().map(|_| ())
}

/// The packages as they are, installed or not, checked without writing
/// anything.
pub fn environment() -> Environment {
    let paths = match Paths::now() {
        Ok(paths) => paths,
        Err(e) => return Environment::Unavailable(format!("{e:#}")),
    };
    match paths.ready() {
        Ok(versions) => Environment::Ready(versions),
        Err(why) => Environment::NotInstalled(why),
    }
}

/// The version of `package` installed, from its own package.json; `None`
/// when the stacks are unavailable or the package is not installed.
pub fn installed_version(package: &str) -> Option<String> {
    install().ok()?.versions.get(package).cloned()
}

/// The script that serves `stack`: `echo_<package>.cjs` under `node/`.
pub fn script_of(stack: &StackInfo) -> String {
    format!("echo_{}.cjs", stack.package)
}

/// Starts a Node stack (a row of [`super::STACKS`] run by Node) under the
/// placement's server CPUs.
pub fn start(stack: &StackInfo, settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let launch = launch(stack).map_err(anyhow::Error::msg)?;
    child::spawn(launch, settings, settings.server_cpus().as_deref())
}

/// How [`child::spawn`] starts `stack`'s script with Node and the
/// installed packages.
pub(super) fn launch(stack: &StackInfo) -> Result<Launch<'static>, String> {
    if stack.runtime != Runtime::Node {
        return Err(format!("{} is not a Node stack", stack.name));
    }
    let install = install().map_err(|why| format!("node stacks unavailable: {why}"))?;
    let scripts = cache::scripts()?;
    Ok(Launch {
        stack: stack.name,
        program: &install.node,
        script: scripts.join("node").join(script_of(stack)),
        extra_args: Vec::new(),
        env: vec![
            // CommonJS `require` looks here after the script's own directory.
            ("NODE_PATH", install.modules.clone().into_os_string()),
            // `gc()` for the collector the memory readings run first.
            ("NODE_OPTIONS", "--expose-gc".into()),
        ],
    })
}

struct Install {
    node: PathBuf,
    modules: PathBuf,
    /// Package name -> installed version.
    versions: BTreeMap<String, String>,
}

/// The packages, installed once per process; the lock file makes other
/// processes wait while one installs.
fn install() -> Result<&'static Install, String> {
    static INSTALL: OnceLock<Result<Install, String>> = OnceLock::new();
    INSTALL
        .get_or_init(|| prepare().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// Where the packages are and what they must be installed from.
struct Paths {
    dir: PathBuf,
    modules: PathBuf,
    node: String,
    /// Everything the install was made from; any change means a fresh one.
    /// Written last, so that an interrupted install is redone next time.
    marker: PathBuf,
    marker_text: String,
}

impl Paths {
    /// Runs `node --version` (for the marker), so an error here means no
    /// usable Node.
    fn now() -> anyhow::Result<Paths> {
        let dir = cache::place()?.dir.join("node");
        let node = std::env::var(NODE_ENV).unwrap_or_else(|_| "node".to_string());
        let node_version = check_node(&node)?;
        let lock = cache::file("node/package-lock.json");
        Ok(Paths {
            modules: dir.join("node_modules"),
            marker: dir.join("wsbench-installed.txt"),
            marker_text: format!("{NODE_ENV}={node} {node_version}\n{lock}"),
            node,
            dir,
        })
    }

    /// The installed versions when the packages were installed from these
    /// pins; otherwise why they must be. Writes nothing.
    fn ready(&self) -> Result<BTreeMap<String, String>, String> {
        match fs::read_to_string(&self.marker) {
            Ok(text) if text == self.marker_text => {
                query_versions(&self.modules).map_err(|e| format!("{e:#}"))
            }
            Ok(_) => Err("node/package-lock.json or Node changed".to_string()),
            Err(_) => Err("first use".to_string()),
        }
    }
}

fn prepare() -> anyhow::Result<Install> {
    let base = cache::place()?.dir;
    let npm = std::env::var(NPM_ENV).unwrap_or_else(|_| "npm".to_string());
    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let _lock = lock_exclusive(&base.join("node.lock"))?;
    // Looked at under the lock: another process may have just installed.
    let paths = Paths::now()?;
    let node = resolve(&paths.node)?;
    let why = match paths.ready() {
        Ok(versions) => {
            return Ok(Install {
                versions,
                node,
                modules: paths.modules,
            })
        }
        Err(why) => why,
    };
    let Paths {
        dir,
        modules,
        marker,
        marker_text,
        ..
    } = paths;
    eprintln!(
        "wsbench: installing the Node stacks' packages in {} ({why})",
        dir.display()
    );
    let started = Instant::now();
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove the old {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::write(dir.join("package.json"), cache::file("node/package.json"))?;
    fs::write(
        dir.join("package-lock.json"),
        cache::file("node/package-lock.json"),
    )?;
    run(Command::new(&npm)
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&dir))
    .with_context(|| format!("`{npm} ci` of node/package-lock.json failed (is npm installed, the registry reachable?)"))?;
    let versions = query_versions(&modules)?;
    fs::write(&marker, marker_text)
        .with_context(|| format!("cannot write {}", marker.display()))?;
    let listed: Vec<String> = versions.iter().map(|(p, v)| format!("{p} {v}")).collect();
    eprintln!(
        "wsbench: Node packages ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        listed.join(", ")
    );
    Ok(Install {
        node,
        modules,
        versions,
    })
}

/// Node's version ("20.20.2"), or a clear error when it is missing or too
/// old for the scripts.
fn check_node(node: &str) -> anyhow::Result<String> {
    let out = run(Command::new(node).arg("--version"))
        .with_context(|| format!("cannot run {node} (install Node, or name it with {NODE_ENV})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().trim_start_matches('v').to_string();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= MIN_NODE => Ok(version),
        _ => anyhow::bail!(
            "{node} is Node {version}; the scripts need {}.{} or later (name another with {NODE_ENV})",
            MIN_NODE.0,
            MIN_NODE.1
        ),
    }
}

/// `node` as an absolute path, so that a server started from any directory
/// runs the Node that was checked.
fn resolve(node: &str) -> anyhow::Result<PathBuf> {
    if node.contains('/') {
        return Ok(std::path::absolute(node)?);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(node))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow::anyhow!("{node} is not on PATH"))
}

/// The installed version of every package node/package.json pins.
fn query_versions(modules: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut versions = BTreeMap::new();
    for (package, _) in super::versions::NODE {
        let path = modules.join(package).join("package.json");
        let text = fs::read_to_string(&path)
            .with_context(|| format!("{package} is not installed ({} missing)", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("cannot parse {}", path.display()))?;
        let version = json["version"]
            .as_str()
            .with_context(|| format!("{} has no version", path.display()))?;
        versions.insert(package.to_string(), version.to_string());
    }
    Ok(versions)
}
