//! Criterion's own files: the estimates of every benchmark's last run, and
//! the flamegraphs `--profile-time` leaves beside them.
//!
//! Criterion writes `<dir>/<group>/<function>/<value>/new/benchmark.json`
//! and `estimates.json` (each path part made file-name safe, so a `/`
//! inside a part becomes `_`). These files are criterion's, not ours: their
//! layout may change between criterion versions, so everything here is
//! read defensively, and a file that does not parse is skipped with a note
//! rather than failing the report.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// How deep below the criterion directory to look; criterion's own layout
/// is four levels deep, and the limit keeps a symlink loop or a stray deep
/// tree from stalling the report.
const MAX_DEPTH: usize = 8;

/// One benchmark's estimates, times in nanoseconds per iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// "latency/axum/binary/32B".
    pub full_id: String,
    pub group_id: String,
    pub function_id: Option<String>,
    pub value_str: Option<String>,
    /// Criterion's throughput declaration, e.g. ("bytes", 32).
    pub throughput: Option<(String, u64)>,
    pub mean_ns: f64,
    pub mean_lower_ns: f64,
    pub mean_upper_ns: f64,
    /// 0.95 unless the bench configured another level.
    pub confidence_level: f64,
    pub median_ns: f64,
}

/// A flamegraph and the benchmark it profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Flamegraph {
    pub path: PathBuf,
    pub group: String,
    pub stack: String,
    /// The benchmark id after `<group>/<stack>/`, e.g. "binary/32B"; may be empty.
    pub rest: String,
}

/// What the criterion directory holds.
#[derive(Debug, Default)]
pub struct CriterionScan {
    pub estimates: Vec<Estimate>,
    pub flamegraphs: Vec<Flamegraph>,
    /// Files that were skipped, and why.
    pub notes: Vec<String>,
    /// Whether `report/index.html` exists.
    pub html_report: bool,
}

/// Reads everything under `dir`; a missing directory is an empty scan.
/// `stacks` are the stack names to recognise in directory names.
pub fn scan(dir: &Path, stacks: &[String]) -> CriterionScan {
    let mut scan = CriterionScan {
        html_report: dir.join("report").join("index.html").is_file(),
        ..Default::default()
    };
    let mut bench_dirs = Vec::new();
    let mut flame_files = Vec::new();
    walk(dir, 0, &mut bench_dirs, &mut flame_files, &mut scan.notes);
    bench_dirs.sort();
    flame_files.sort();
    for bench_dir in bench_dirs {
        match read_estimate(&bench_dir.join("new")) {
            Ok(e) => scan.estimates.push(e),
            Err(why) => scan.notes.push(format!(
                "skipped {}: {why}",
                bench_dir.join("new").display()
            )),
        }
    }
    for path in flame_files {
        scan.flamegraphs
            .push(identify_flamegraph(dir, &path, stacks));
    }
    scan
}

/// Collects benchmark directories (those with `new/benchmark.json`) and
/// flamegraphs (`profile/flamegraph.svg`). Symlinked directories are not
/// followed, so a link loop cannot trap the walk.
fn walk(
    dir: &Path,
    depth: usize,
    benches: &mut Vec<PathBuf>,
    flames: &mut Vec<PathBuf>,
    notes: &mut Vec<String>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            notes.push(format!("could not read {}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() {
            if name == "new" && path.join("benchmark.json").is_file() {
                benches.push(dir.to_path_buf());
            }
            walk(&path, depth + 1, benches, flames, notes);
        } else if name == "flamegraph.svg"
            && dir.file_name().is_some_and(|d| d == "profile")
            && path.is_file()
        {
            flames.push(path);
        }
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", file_name(path)))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn number(v: &Value, pointer: &str, file: &str) -> Result<f64, String> {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{file} has no number at {pointer}"))
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Reads `benchmark.json` and `estimates.json` from one `new` directory.
fn read_estimate(new_dir: &Path) -> Result<Estimate, String> {
    let bench = read_json(&new_dir.join("benchmark.json"))?;
    let est = read_json(&new_dir.join("estimates.json"))?;
    let group_id = text(&bench, "group_id").ok_or("benchmark.json has no group_id")?;
    let function_id = text(&bench, "function_id");
    let value_str = text(&bench, "value_str");
    let full_id = text(&bench, "full_id").unwrap_or_else(|| {
        [
            Some(group_id.clone()),
            function_id.clone(),
            value_str.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
    });
    // Serialized as {"Bytes": 32}, {"Elements": 1}, ...
    let throughput = bench
        .get("throughput")
        .and_then(Value::as_object)
        .and_then(|o| {
            o.iter()
                .next()
                .and_then(|(kind, n)| n.as_u64().map(|n| (kind.to_lowercase(), n)))
        });
    let file = "estimates.json";
    Ok(Estimate {
        full_id,
        group_id,
        function_id,
        value_str,
        throughput,
        mean_ns: number(&est, "/mean/point_estimate", file)?,
        mean_lower_ns: number(&est, "/mean/confidence_interval/lower_bound", file)?,
        mean_upper_ns: number(&est, "/mean/confidence_interval/upper_bound", file)?,
        confidence_level: number(&est, "/mean/confidence_interval/confidence_level", file)
            .unwrap_or(0.95),
        median_ns: number(&est, "/median/point_estimate", file)?,
    })
}

/// Splits a benchmark id into group, stack and the rest. The stack is the
/// first part that names a known stack; without one, the second part.
pub fn split_id(id: &str, stacks: &[String]) -> (String, String, String) {
    let parts: Vec<&str> = id.split('/').filter(|p| !p.is_empty()).collect();
    let at = parts
        .iter()
        .position(|p| stacks.iter().any(|s| s == p))
        .unwrap_or(if parts.len() > 1 { 1 } else { parts.len() });
    let group = if at == 0 {
        String::new()
    } else {
        parts[..at].join("/")
    };
    let stack = parts.get(at).map(|s| s.to_string()).unwrap_or_default();
    let rest = parts.get(at + 1..).map(|r| r.join("/")).unwrap_or_default();
    (group, stack, rest)
}

/// Names the benchmark a flamegraph profiles: from criterion's
/// `benchmark.json` beside it when a measured run left one (its `full_id`
/// keeps the slashes that directory names lose), else from the path.
fn identify_flamegraph(root: &Path, path: &Path, stacks: &[String]) -> Flamegraph {
    let bench_dir = path.parent().and_then(Path::parent).unwrap_or(root);
    let from_json = read_json(&bench_dir.join("new").join("benchmark.json"))
        .ok()
        .and_then(|v| text(&v, "full_id"));
    let id = from_json.unwrap_or_else(|| {
        let rel = bench_dir.strip_prefix(root).unwrap_or(bench_dir);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    });
    let (group, stack, rest) = split_id(&id, stacks);
    let (group, stack, rest) = if stacks.contains(&stack) {
        (group, stack, rest)
    } else {
        // Criterion turns a '/' inside one id part into '_': look for a
        // known stack between underscores ("latency_axum_binary_32B").
        split_underscored(&id, stacks).unwrap_or((group, stack, rest))
    };
    Flamegraph {
        path: path.to_path_buf(),
        group,
        stack,
        rest,
    }
}

fn split_underscored(id: &str, stacks: &[String]) -> Option<(String, String, String)> {
    let flat = id.replace('/', "_");
    let mut longest_first: Vec<&String> = stacks.iter().collect();
    longest_first.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for stack in longest_first {
        let mut from = 0;
        while let Some(i) = flat[from..].find(stack.as_str()).map(|i| i + from) {
            let end = i + stack.len();
            let starts = i == 0 || flat.as_bytes()[i - 1] == b'_';
            let ends = end == flat.len() || flat.as_bytes()[end] == b'_';
            if starts && ends {
                let group = flat[..i].trim_end_matches('_').to_string();
                let rest = flat[end..].trim_start_matches('_').to_string();
                return Some((group, stack.clone(), rest));
            }
            from = i + 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stacks() -> Vec<String> {
        ["raw-tcp", "axum", "python-websockets"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn ids_split_at_the_stack() {
        let s = stacks();
        assert_eq!(
            split_id("latency/axum/binary/32B", &s),
            ("latency".into(), "axum".into(), "binary/32B".into())
        );
        assert_eq!(
            split_id("connect/axum", &s),
            ("connect".into(), "axum".into(), String::new())
        );
        assert_eq!(
            split_id("foo/bar/baz", &s),
            ("foo".into(), "bar".into(), "baz".into())
        );
        assert_eq!(
            split_underscored("latency_python-websockets_binary_32B", &s),
            Some((
                "latency".into(),
                "python-websockets".into(),
                "binary_32B".into()
            ))
        );
    }
}
