//! Records the versions of the stacks' crates (from Cargo.lock) and Python
//! packages (from python/requirements.txt) as compile-time environment
//! variables, so `wsbench list` and every result name the exact version.

use std::fs;

const CRATES: &[&str] = &[
    "tokio-tungstenite",
    "axum",
    "fastwebsockets",
    "tokio-websockets",
    "actix-ws",
    "actix-web",
    "tokio",
    "hyper",
];

fn env_key(name: &str) -> String {
    format!(
        "WSBENCH_VERSION_{}",
        name.to_uppercase().replace(['-', '.'], "_")
    )
}

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=python/requirements.txt");

    let lock = fs::read_to_string("Cargo.lock").unwrap_or_default();
    for krate in CRATES {
        // Several versions of one crate can be in the lock file (axum pulls
        // its own tokio-tungstenite); the highest is the direct dependency
        // unless Cargo.toml pins an exact one, which we check for below.
        let mut versions: Vec<String> = Vec::new();
        let mut lines = lock.lines();
        while let Some(line) = lines.next() {
            if line.trim() == format!("name = \"{krate}\"") {
                if let Some(v) = lines
                    .next()
                    .and_then(|l| l.trim().strip_prefix("version = "))
                {
                    versions.push(v.trim_matches('"').to_string());
                }
            }
        }
        let manifest = fs::read_to_string("Cargo.toml").unwrap_or_default();
        let pinned = manifest
            .lines()
            .find(|l| l.starts_with(&format!("{krate} ")))
            .and_then(|l| l.split("\"=").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_string);
        let version = pinned
            .or_else(|| versions.last().cloned())
            .unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env={}={}", env_key(krate), version);
    }

    let reqs = fs::read_to_string("python/requirements.txt").unwrap_or_default();
    for pkg in ["websockets", "aiohttp", "uvloop"] {
        let version = reqs
            .lines()
            .filter_map(|l| l.split('#').next())
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{pkg}=="))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "unpinned".into());
        println!(
            "cargo:rustc-env={}={}",
            env_key(&format!("py-{pkg}")),
            version
        );
    }
}
