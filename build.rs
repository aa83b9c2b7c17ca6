//! Writes `$OUT_DIR/versions.rs`: every package in Cargo.lock, every `==`
//! pin in python/requirements.txt and every dependency of node/package.json
//! with the version the suite uses.
//! `src/stacks/versions.rs` includes it, and each stack looks its own
//! package up there, so no list of packages is kept by hand here.
//!
//! Also writes `$OUT_DIR/scripts.rs`, every file of python/ and node/
//! embedded, so that an installed binary serves the child-process stacks
//! without the checkout (`src/stacks/cache.rs`), and passes the commit
//! HEAD was at to the build as `WSBENCH_BUILD_COMMIT` for `--version`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=python/requirements.txt");
    println!("cargo:rerun-if-changed=node/package.json");
    // Directories: cargo reruns on a change to any file below them.
    println!("cargo:rerun-if-changed=python");
    println!("cargo:rerun-if-changed=node");

    let lock = fs::read_to_string("Cargo.lock").expect("cannot read Cargo.lock");
    let manifest = fs::read_to_string("Cargo.toml").expect("cannot read Cargo.toml");
    let requirements =
        fs::read_to_string("python/requirements.txt").expect("cannot read python/requirements.txt");
    let node_manifest =
        fs::read_to_string("node/package.json").expect("cannot read node/package.json");

    // The compiler that builds this crate, which is not always the `rustc`
    // on PATH when a run starts (rustup overrides, RUSTC=...).
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = std::process::Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WSBENCH_RUSTC_VERSION={rustc_version}");

    let crates = crate_versions(&lock, &manifest);
    let python = python_pins(&requirements);
    let node = node_pins(&node_manifest);

    let mut out = String::new();
    out.push_str("/// Every package in Cargo.lock and the version this build uses.\n");
    out.push_str(&table("CRATES", &crates));
    out.push_str("/// Every package pinned with `==` in python/requirements.txt.\n");
    out.push_str(&table("PYTHON", &python));
    out.push_str("/// Every dependency of node/package.json, each pinned exactly.\n");
    out.push_str(&table("NODE", &node));
    let out_dir = std::env::var("OUT_DIR").unwrap();
    fs::write(Path::new(&out_dir).join("versions.rs"), out).expect("cannot write versions.rs");
    fs::write(Path::new(&out_dir).join("scripts.rs"), scripts()).expect("cannot write scripts.rs");

    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WSBENCH_BUILD_COMMIT={commit}");
    // HEAD moves when it is switched (HEAD) or its branch gets a commit
    // (the branch's ref, or packed-refs once git has packed it). A path that
    // does not exist would make cargo rerun this script on every build.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

/// `git args` in the package directory, its trimmed output if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// `pub const FILES: &[(&str, &str)]`: every script, requirement and lock
/// file of python/ and node/ by its path in the checkout, embedded with
/// `include_str!` (so cargo also rebuilds when one changes).
fn scripts() -> String {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let mut files = Vec::new();
    for dir in ["python", "node"] {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {dir}/: {e}")) {
            let name = entry.unwrap().file_name().into_string().unwrap();
            // Leaves out __pycache__/, node_modules/ and editor files.
            let wanted = [".py", ".cjs", ".json", ".txt"];
            if wanted.iter().any(|ext| name.ends_with(ext)) {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    let mut s = String::from("pub const FILES: &[(&str, &str)] = &[\n");
    for file in files {
        let path = Path::new(&root).join(&file);
        s.push_str(&format!(
            "    ({file:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    s.push_str("];\n");
    s
}

fn table(name: &str, rows: &BTreeMap<String, String>) -> String {
    let mut s = format!("pub const {name}: &[(&str, &str)] = &[\n");
    for (package, version) in rows {
        s.push_str(&format!("    ({package:?}, {version:?}),\n"));
    }
    s.push_str("];\n");
    s
}

/// One `[[package]]` entry of Cargo.lock.
struct Locked {
    name: String,
    version: String,
    /// "name" or, where several versions of it are locked, "name version".
    dependencies: Vec<String>,
}

fn parse_lock(lock: &str) -> Vec<Locked> {
    let mut packages = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let mut name = String::new();
        let mut version = String::new();
        let mut dependencies = Vec::new();
        let mut in_dependencies = false;
        for line in block.lines().map(str::trim) {
            if in_dependencies {
                if line == "]" {
                    in_dependencies = false;
                } else {
                    dependencies.push(line.trim_end_matches(',').trim_matches('"').to_string());
                }
            } else if let Some(v) = line.strip_prefix("name = ") {
                name = v.trim_matches('"').to_string();
            } else if let Some(v) = line.strip_prefix("version = ") {
                version = v.trim_matches('"').to_string();
            } else if line == "dependencies = [" {
                in_dependencies = true;
            }
        }
        packages.push(Locked {
            name,
            version,
            dependencies,
        });
    }
    packages
}

/// Package -> version. Where several versions of one package are locked
/// (axum pulls its own tokio-tungstenite, say), the one this crate depends
/// on directly wins: an exact `=x.y.z` pin in Cargo.toml first, then the
/// version Cargo.lock records for this crate's dependency, then the highest.
fn crate_versions(lock: &str, manifest: &str) -> BTreeMap<String, String> {
    let packages = parse_lock(lock);
    let root = manifest_name(manifest);
    let direct: Vec<&str> = packages
        .iter()
        .filter(|p| p.name == root)
        .flat_map(|p| p.dependencies.iter().map(String::as_str))
        .collect();

    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &packages {
        all.entry(p.name.clone())
            .or_default()
            .push(p.version.clone());
    }
    let mut chosen = BTreeMap::new();
    for (name, mut versions) in all {
        versions.sort_by_key(|v| numeric_parts(v));
        let from_lock = direct.iter().find_map(|d| {
            d.strip_prefix(&format!("{name} "))
                .map(|v| v.split(' ').next().unwrap_or(v).to_string())
        });
        let version = exact_pin(manifest, &name)
            .or(from_lock)
            .or_else(|| versions.last().cloned())
            .unwrap_or_default();
        chosen.insert(name, version);
    }
    chosen
}

fn manifest_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// `x.y.z` from a line `name = "=x.y.z"` or `name = { version = "=x.y.z", ... }`.
fn exact_pin(manifest: &str, name: &str) -> Option<String> {
    manifest
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}=")))
        .and_then(|l| l.split("\"=").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

/// "0.29.0" -> [0, 29, 0], so that 0.10 sorts above 0.9.
fn numeric_parts(version: &str) -> Vec<u64> {
    version
        .split(['.', '-', '+'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

fn python_pins(requirements: &str) -> BTreeMap<String, String> {
    requirements
        .lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().split_once("=="))
        .map(|(package, version)| (package.trim().to_string(), version.trim().to_string()))
        .collect()
}

/// The `"dependencies"` of package.json, which must name exact versions
/// (results name the version measured). A plain scan: the file is ours and
/// holds one flat object of strings there.
fn node_pins(manifest: &str) -> BTreeMap<String, String> {
    let start = manifest
        .find("\"dependencies\"")
        .expect("node/package.json has no dependencies");
    let rest = &manifest[start..];
    let open = rest
        .find('{')
        .expect("node/package.json: dependencies is not an object");
    let close = rest[open..]
        .find('}')
        .expect("node/package.json: unclosed dependencies")
        + open;
    rest[open + 1..close]
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let (package, version) = entry
                .split_once(':')
                .expect("node/package.json: a dependency without a version");
            let package = package.trim().trim_matches('"').to_string();
            let version = version.trim().trim_matches('"').to_string();
            assert!(
                !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "node/package.json: pin {package} exactly (\"{version}\" is a range)"
            );
            (package, version)
        })
        .collect()
}
