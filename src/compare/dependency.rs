//! Two versions of one dependency (`compare --stack S --base crate:V
//! --head path:P`): both sides are worktrees of the same wsbench commit,
//! each with the crate swapped in through its own Cargo.toml: a
//! `[patch.crates-io]` entry for a directory or a git revision, a version
//! requirement or `cargo update --precise` for a crates.io version. Each
//! side's `cargo metadata` then re-resolves its Cargo.lock (so the builds
//! can stay `--locked`) and says what the crate resolved to and which
//! stacks depend on it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::child;

/// How long one `cargo metadata` or `cargo update` may take: it may fetch
/// the registry's index or clone a git repository.
const CARGO_LIMIT: Duration = Duration::from_secs(600);

/// Where one side's version of the crate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// A version on crates.io: `crate:0.13.3`.
    Crate(String),
    /// A directory holding the crate, or a workspace that has it:
    /// `path:../my-fork` (absolute once parsed by [`Version::absolute`]).
    Path(PathBuf),
    /// A git repository at a revision, or at its default branch without
    /// one: `git:URL#REV`.
    Git { url: String, rev: Option<String> },
}

impl Version {
    /// Parses `crate:V`, `path:DIR` or `git:URL[#REV]`.
    pub fn parse(s: &str) -> Result<Version, String> {
        let bad = || format!("{s:?}: expected crate:VERSION, path:DIR or git:URL[#REV]");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.trim().is_empty() {
            return Err(bad());
        }
        match kind {
            "crate" => Ok(Version::Crate(rest.to_string())),
            "path" => Ok(Version::Path(PathBuf::from(rest))),
            "git" => {
                let (url, rev) = match rest.rsplit_once('#') {
                    Some((url, rev)) if !rev.is_empty() => (url, Some(rev.to_string())),
                    _ => (rest, None),
                };
                Ok(Version::Git {
                    url: url.to_string(),
                    rev,
                })
            }
            _ => Err(bad()),
        }
    }

    /// A file-name-safe label: `0.13.3`, `path-my-fork`, `git-REV`.
    pub fn label(&self) -> String {
        let raw = match self {
            Version::Crate(v) => v.clone(),
            Version::Path(p) => format!(
                "path-{}",
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
            Version::Git { rev: Some(r), .. } => format!("git-{}", &r[..r.len().min(12)]),
            Version::Git { rev: None, .. } => "git-default".to_string(),
        };
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Crate(v) => write!(f, "crate:{v}"),
            Version::Path(p) => write!(f, "path:{}", p.display()),
            Version::Git { url, rev: Some(r) } => write!(f, "git:{url}#{r}"),
            Version::Git { url, rev: None } => write!(f, "git:{url}"),
        }
    }
}

/// What one side's build resolved the crate to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// As asked: `crate:0.13.3`, `path:/abs/my-fork`, `git:URL#REV`.
    pub asked: String,
    pub version: String,
    /// cargo's source: `registry+https://...`, `git+URL?rev=REV#COMMIT`;
    /// none for a directory.
    pub source: Option<String>,
    /// The crate's directory, for a path.
    pub path: Option<PathBuf>,
    /// The commit a git source resolved to.
    pub commit: Option<String>,
}

impl Resolved {
    /// "0.13.3 from crates.io", "0.13.3 at /x", "0.14.0 from URL at abcdef1234".
    pub fn describe(&self) -> String {
        match (&self.path, &self.commit, &self.source) {
            (Some(p), _, _) => format!("{} at {}", self.version, p.display()),
            (None, Some(c), Some(s)) => format!(
                "{} from {} at {}",
                self.version,
                git_url(s),
                &c[..c.len().min(10)]
            ),
            (None, None, Some(s)) if s.contains("crates.io") => {
                format!("{} from crates.io", self.version)
            }
            (None, None, Some(s)) => format!("{} from {s}", self.version),
            (None, _, None) => self.version.clone(),
        }
    }

    /// Whether two resolutions are the same code: one registry version,
    /// one git commit of one repository, or one directory.
    pub fn same_code(&self, other: &Resolved) -> bool {
        match (&self.commit, &other.commit) {
            (Some(a), Some(b)) => {
                a == b
                    && self.source.as_deref().map(git_url) == other.source.as_deref().map(git_url)
            }
            (None, None) => {
                self.version == other.version
                    && self.source == other.source
                    && self.path == other.path
            }
            _ => false,
        }
    }
}

/// `git+URL?rev=REV#COMMIT` without the `git+` and what follows the URL.
fn git_url(source: &str) -> &str {
    let s = source.strip_prefix("git+").unwrap_or(source);
    s.split(['?', '#']).next().unwrap_or(s)
}

/// The parts of `cargo metadata --format-version 1` used here.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    packages: Vec<Package>,
    resolve: Option<Resolve>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    source: Option<String>,
    manifest_path: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
    root: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Node {
    id: String,
    deps: Vec<NodeDep>,
}

#[derive(Debug, Deserialize)]
struct NodeDep {
    pkg: String,
    dep_kinds: Vec<DepKind>,
}

#[derive(Debug, Deserialize)]
struct DepKind {
    /// None for a normal dependency; "dev" or "build" otherwise.
    kind: Option<String>,
}

impl Metadata {
    fn named(&self, name: &str) -> Vec<&Package> {
        self.packages.iter().filter(|p| p.name == name).collect()
    }

    fn by_id(&self) -> HashMap<&str, &Package> {
        self.packages.iter().map(|p| (p.id.as_str(), p)).collect()
    }

    /// Whether one of `packages`, direct dependencies of the root (a
    /// stack's package and the crates its server runs on), is `crate_name`
    /// or reaches it through normal dependencies: what the stack's code is
    /// compiled against.
    pub fn depends_on(&self, packages: &[&str], crate_name: &str) -> bool {
        let Some(resolve) = &self.resolve else {
            return false;
        };
        let ids = self.by_id();
        let nodes: HashMap<&str, &Node> =
            resolve.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let normal = |d: &&NodeDep| d.dep_kinds.iter().any(|k| k.kind.is_none());
        let Some(root) = resolve.root.as_deref().and_then(|r| nodes.get(r)) else {
            return false;
        };
        let mut queue: VecDeque<&str> = root
            .deps
            .iter()
            .filter(normal)
            .filter(|d| {
                ids.get(d.pkg.as_str())
                    .is_some_and(|p| packages.contains(&p.name.as_str()))
            })
            .map(|d| d.pkg.as_str())
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            if ids.get(id).is_some_and(|p| p.name == crate_name) {
                return true;
            }
            if let Some(node) = nodes.get(id) {
                queue.extend(node.deps.iter().filter(normal).map(|d| d.pkg.as_str()));
            }
        }
        false
    }

    /// Every resolved package but the root, as "name version source".
    fn locked(&self) -> BTreeSet<String> {
        let root = self.resolve.as_ref().and_then(|r| r.root.as_deref());
        self.packages
            .iter()
            .filter(|p| Some(p.id.as_str()) != root)
            .map(|p| {
                let from = match &p.source {
                    Some(s) if s.contains("crates.io") => "crates.io".to_string(),
                    Some(s) => s.clone(),
                    None => p
                        .manifest_path
                        .parent()
                        .unwrap_or(&p.manifest_path)
                        .display()
                        .to_string(),
                };
                format!("{} {} ({from})", p.name, p.version)
            })
            .collect()
    }
}

/// How the two sides' resolved graphs differ: the packages only one has,
/// each prefixed by the side ("base: tokio-websockets 0.13.3 (crates.io)").
pub fn differences(base: &Metadata, head: &Metadata) -> Vec<String> {
    let (b, h) = (base.locked(), head.locked());
    b.difference(&h)
        .map(|p| format!("base: {p}"))
        .chain(h.difference(&b).map(|p| format!("head: {p}")))
        .collect()
}

/// Runs `cargo` with `args` in `dir`, its stderr to `log`; returns stdout.
fn cargo(dir: &Path, args: &[&str], logs: &Path, role: &str) -> anyhow::Result<String> {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env("CARGO_TERM_COLOR", "never")
        .args(args);
    child::run_capture(
        &mut cmd,
        &logs.join(format!("cargo-{role}.stdout")),
        &logs.join(format!("cargo-{role}.log")),
        CARGO_LIMIT,
        &format!("cargo {} ({role})", args.join(" ")),
    )
}

/// The resolved graph of the package in `dir`; writes its Cargo.lock.
pub fn metadata(dir: &Path, logs: &Path, role: &str) -> anyhow::Result<Metadata> {
    let text = cargo(dir, &["metadata", "--format-version", "1"], logs, role)?;
    serde_json::from_str(&text).context("reading the output of cargo metadata")
}

/// The directory of the crate named `crate_name` at `dir`: the crate
/// itself, or a member of the workspace there. A clear error when there
/// is none.
pub fn crate_dir(dir: &Path, crate_name: &str, logs: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    anyhow::ensure!(
        manifest.is_file(),
        "path:{} has no Cargo.toml: it is not a crate",
        dir.display()
    );
    let manifest_arg = manifest.to_str().context("the path is not UTF-8")?;
    let text = cargo(
        dir,
        &[
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
            manifest_arg,
        ],
        logs,
        "path",
    )
    .with_context(|| format!("reading the crate at {}", dir.display()))?;
    let meta: Metadata = serde_json::from_str(&text).context("reading cargo metadata")?;
    match meta.named(crate_name).first() {
        Some(p) => Ok(p
            .manifest_path
            .parent()
            .context("a manifest path without a directory")?
            .to_path_buf()),
        None => {
            let names: Vec<&str> = meta.packages.iter().map(|p| p.name.as_str()).collect();
            anyhow::bail!(
                "path:{} is not the crate {crate_name}: it holds {}",
                dir.display(),
                if names.is_empty() {
                    "no crate".to_string()
                } else {
                    names.join(", ")
                }
            )
        }
    }
}

/// Swaps `version` of `crate_name` into the wsbench worktree at `tree`
/// and resolves it; returns the resolved graph and what the crate became.
/// `role` ("base", "head") names the side in messages and log files.
pub fn prepare(
    tree: &Path,
    crate_name: &str,
    version: &Version,
    logs: &Path,
    role: &str,
) -> anyhow::Result<(Metadata, Resolved)> {
    let manifest_path = tree.join("Cargo.toml");
    let mut manifest: toml_edit::DocumentMut = std::fs::read_to_string(&manifest_path)?
        .parse()
        .context("reading wsbench's Cargo.toml")?;
    let direct = manifest
        .get("dependencies")
        .and_then(|d| d.get(crate_name))
        .is_some();
    let before = metadata(tree, logs, role)?;
    let locked = before.named(crate_name);
    anyhow::ensure!(
        !locked.is_empty(),
        "wsbench's build has no crate named {crate_name}: nothing to swap"
    );
    anyhow::ensure!(
        locked.len() == 1,
        "wsbench's build has {} versions of {crate_name} ({}); compare swaps a crate the build has once",
        locked.len(),
        locked
            .iter()
            .map(|p| p.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let was = locked[0].version.clone();

    let patched = match version {
        Version::Crate(v) => {
            let registry = locked[0]
                .source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+"));
            if v != &was || !registry {
                if direct {
                    set_requirement(&mut manifest, crate_name, &format!("={v}"));
                    std::fs::write(&manifest_path, manifest.to_string())?;
                } else {
                    cargo(
                        tree,
                        &[
                            "update",
                            "--package",
                            &format!("{crate_name}@{was}"),
                            "--precise",
                            v,
                        ],
                        logs,
                        role,
                    )
                    .with_context(|| {
                        format!("{role}: {crate_name} {v} cannot replace {was} in wsbench's build")
                    })?;
                }
            }
            false
        }
        Version::Path(dir) => {
            let dir = dir.to_str().context("the path is not UTF-8")?;
            add_patch(&mut manifest, crate_name, [("path", dir)])?;
            std::fs::write(&manifest_path, manifest.to_string())?;
            true
        }
        Version::Git { url, rev } => {
            match rev {
                Some(rev) => add_patch(
                    &mut manifest,
                    crate_name,
                    [("git", url.as_str()), ("rev", rev.as_str())],
                )?,
                None => add_patch(&mut manifest, crate_name, [("git", url.as_str())])?,
            }
            std::fs::write(&manifest_path, manifest.to_string())?;
            true
        }
    };
    let mut after = metadata(tree, logs, role)?;
    let mut resolved = resolution(&after, crate_name, version);
    if patched && resolved.is_err() {
        // cargo uses a patch only where a requirement accepts its version;
        // a fork's main branch often carries the next one. wsbench's own
        // requirement can follow it, and the compiler then says whether
        // the stack still builds against it.
        if let (true, Some(unused)) = (direct, unused_patch(tree, crate_name)?) {
            eprintln!(
                "wsbench compare: {role}: {version} is {crate_name} {unused}, which wsbench's requirement does not accept; building this side with {crate_name} = \"={unused}\""
            );
            set_requirement(&mut manifest, crate_name, &format!("={unused}"));
            std::fs::write(&manifest_path, manifest.to_string())?;
            after = metadata(tree, logs, role)?;
            resolved = resolution(&after, crate_name, version);
        }
    }
    let resolved = resolved.map_err(|now| {
        let why = if direct {
            "cargo did not use it".to_string()
        } else {
            format!(
                "wsbench uses {crate_name} only through other crates, and their requirements do not accept this version"
            )
        };
        anyhow::anyhow!(
            "{role}: {version} did not replace {crate_name}: the build still has {now} ({why}; {} has cargo's messages)",
            logs.join(format!("cargo-{role}.log")).display()
        )
    })?;
    Ok((after, resolved))
}

/// What `crate_name` resolved to in `meta`, if it is what `version` asked
/// for; otherwise what it is instead.
fn resolution(meta: &Metadata, crate_name: &str, version: &Version) -> Result<Resolved, String> {
    let found = meta.named(crate_name);
    let [p] = found.as_slice() else {
        let versions: Vec<String> = found.iter().map(|p| p.version.clone()).collect();
        return Err(format!(
            "{} versions of it ({})",
            found.len(),
            versions.join(", ")
        ));
    };
    let dir = p.manifest_path.parent().map(Path::to_path_buf);
    let source = p.source.as_deref().unwrap_or("");
    let wanted = match version {
        Version::Crate(v) => &p.version == v && source.starts_with("registry+"),
        Version::Path(want) => p.source.is_none() && dir.as_deref() == Some(want.as_path()),
        Version::Git { url, .. } => {
            source.starts_with("git+")
                && git_url(source).trim_end_matches(".git") == url.trim_end_matches(".git")
        }
    };
    let resolved = Resolved {
        asked: version.to_string(),
        version: p.version.clone(),
        source: p.source.clone(),
        path: if p.source.is_none() { dir } else { None },
        commit: source
            .starts_with("git+")
            .then(|| source.rsplit_once('#').map(|(_, c)| c.to_string()))
            .flatten(),
    };
    if wanted {
        Ok(resolved)
    } else {
        Err(resolved.describe())
    }
}

/// Sets the version requirement of the dependency `name` in `[dependencies]`,
/// whether it is written as a string or a table.
fn set_requirement(manifest: &mut toml_edit::DocumentMut, name: &str, requirement: &str) {
    let dep = &mut manifest["dependencies"][name];
    if let Some(t) = dep.as_inline_table_mut() {
        t.insert("version", requirement.into());
    } else if let Some(t) = dep.as_table_mut() {
        t["version"] = toml_edit::value(requirement);
    } else {
        *dep = toml_edit::value(requirement);
    }
}

/// Adds `[patch.crates-io] name = { key = value, ... }`.
fn add_patch<'a>(
    manifest: &mut toml_edit::DocumentMut,
    name: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<()> {
    let patch = manifest
        .entry("patch")
        .or_insert_with(toml_edit::table)
        .as_table_mut()
        .context("[patch] in Cargo.toml is not a table")?;
    patch.set_implicit(true);
    let registry = patch
        .entry("crates-io")
        .or_insert_with(toml_edit::table)
        .as_table_mut()
        .context("[patch.crates-io] in Cargo.toml is not a table")?;
    anyhow::ensure!(
        !registry.contains_key(name),
        "wsbench's Cargo.toml already patches {name}"
    );
    let mut entry = toml_edit::InlineTable::new();
    for (k, v) in fields {
        entry.insert(k, v.into());
    }
    registry.insert(name, toml_edit::value(entry));
    Ok(())
}

/// The version of an unused patch of `name` that cargo recorded in
/// Cargo.lock (`[[patch.unused]]`).
fn unused_patch(tree: &Path, name: &str) -> anyhow::Result<Option<String>> {
    let lock: toml_edit::DocumentMut = std::fs::read_to_string(tree.join("Cargo.lock"))?
        .parse()
        .context("reading Cargo.lock")?;
    let unused = lock
        .get("patch")
        .and_then(|p| p.get("unused"))
        .and_then(|u| u.as_array_of_tables());
    Ok(unused.and_then(|tables| {
        tables
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
            .and_then(|t| t.get("version").and_then(|v| v.as_str()))
            .map(str::to_string)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_print_back() {
        for s in [
            "crate:0.13.3",
            "path:../my-fork",
            "git:https://github.com/x/y#abc123",
            "git:https://github.com/x/y",
        ] {
            assert_eq!(Version::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Version::parse("git:https://h/r.git#v1").unwrap(),
            Version::Git {
                url: "https://h/r.git".into(),
                rev: Some("v1".into())
            }
        );
        for bad in ["0.13.3", "crate:", "svn:x", "path: "] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Version::parse("path:/a/my fork").unwrap().label(),
            "path-my_fork"
        );
    }

    #[test]
    fn the_same_code_is_one_version_commit_or_directory() {
        let registry = |v: &str| Resolved {
            asked: format!("crate:{v}"),
            version: v.into(),
            source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
            path: None,
            commit: None,
        };
        let git = |rev: &str, commit: &str| Resolved {
            asked: format!("git:https://h/r#{rev}"),
            version: "1.0.0".into(),
            source: Some(format!("git+https://h/r?rev={rev}#{commit}")),
            path: None,
            commit: Some(commit.into()),
        };
        let dir = |p: &str| Resolved {
            asked: format!("path:{p}"),
            version: "1.0.0".into(),
            source: None,
            path: Some(p.into()),
            commit: None,
        };
        assert!(registry("1.0.0").same_code(&registry("1.0.0")));
        assert!(!registry("1.0.0").same_code(&registry("1.0.1")));
        assert!(git("main", "abc").same_code(&git("abc", "abc")));
        assert!(!git("main", "abc").same_code(&git("main", "def")));
        assert!(dir("/a").same_code(&dir("/a")));
        assert!(!dir("/a").same_code(&dir("/b")));
        assert!(!dir("/a").same_code(&registry("1.0.0")));
        assert_eq!(registry("1.0.0").describe(), "1.0.0 from crates.io");
        assert_eq!(
            git("main", "abcdef0123456789").describe(),
            "1.0.0 from https://h/r at abcdef0123"
        );
    }

    #[test]
    fn a_stack_depends_on_what_its_package_or_runtime_reaches() {
        // w (the root) uses a (a stack's package) and t (its runtime); a
        // uses b, and c only to build; t uses d; e is no one's.
        let node = |id: &str, deps: &[(&str, Option<&str>)]| {
            let deps: Vec<String> = deps
                .iter()
                .map(|(pkg, kind)| {
                    let kind = kind.map(|k| format!("\"{k}\"")).unwrap_or("null".into());
                    format!("{{\"pkg\": \"{pkg}\", \"dep_kinds\": [{{\"kind\": {kind}}}]}}")
                })
                .collect();
            format!("{{\"id\": \"{id}\", \"deps\": [{}]}}", deps.join(","))
        };
        let package = |id: &str| {
            format!("{{\"id\": \"{id}\", \"name\": \"{id}\", \"version\": \"1.0.0\", \"source\": null, \"manifest_path\": \"/{id}/Cargo.toml\"}}")
        };
        let ids = ["w", "a", "b", "c", "t", "d", "e"];
        let packages: Vec<String> = ids.iter().map(|id| package(id)).collect();
        let nodes = [
            node("w", &[("a", None), ("t", None), ("e", Some("dev"))]),
            node("a", &[("b", None), ("c", Some("build"))]),
            node("b", &[]),
            node("c", &[]),
            node("t", &[("d", None)]),
            node("d", &[]),
            node("e", &[]),
        ];
        let json = format!(
            "{{\"packages\": [{}], \"resolve\": {{\"root\": \"w\", \"nodes\": [{}]}}}}",
            packages.join(","),
            nodes.join(",")
        );
        let meta: Metadata = serde_json::from_str(&json).unwrap();
        assert!(meta.depends_on(&["a"], "a"));
        assert!(meta.depends_on(&["a"], "b"));
        assert!(!meta.depends_on(&["a"], "c"), "a build dependency");
        assert!(!meta.depends_on(&["a"], "d"));
        assert!(meta.depends_on(&["a", "t"], "d"));
        assert!(
            !meta.depends_on(&["a", "t"], "e"),
            "the root's dev dependency"
        );
        assert!(
            !meta.depends_on(&["b"], "b"),
            "not a dependency of the root"
        );
        let other: Metadata = serde_json::from_str(&json.replace("\"b\"", "\"b2\"")).unwrap();
        assert_eq!(
            differences(&meta, &other),
            ["base: b 1.0.0 (/b)", "head: b2 1.0.0 (/b)"]
        );
    }

    #[test]
    fn the_patch_and_requirement_edits_keep_the_rest() {
        let mut doc: toml_edit::DocumentMut = "[package]\nname = \"w\"\n\n[dependencies]\n# why\na = { version = \"0.13\", default-features = false }\nb = \"1\"\n"
            .parse()
            .unwrap();
        set_requirement(&mut doc, "a", "=0.14.0");
        set_requirement(&mut doc, "b", "=1.2.0");
        add_patch(&mut doc, "a", [("path", "/x/a")]).unwrap();
        assert!(add_patch(&mut doc, "a", [("path", "/y")]).is_err());
        let text = doc.to_string();
        assert!(
            text.contains("# why\na = { version = \"=0.14.0\", default-features = false }"),
            "{text}"
        );
        assert!(text.contains("b = \"=1.2.0\""), "{text}");
        assert!(
            text.contains("[patch.crates-io]\na = { path = \"/x/a\" }"),
            "{text}"
        );
    }
}
