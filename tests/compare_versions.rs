//! `wsbench compare` of two versions of one crate, end to end. The crate
//! is tokio-websockets: the version in Cargo.lock against copies of it made
//! here from cargo's registry cache, so nothing is fetched beyond the
//! registry:
//!
//! - an unchanged copy, through `path:`: no regression;
//! - a copy whose stream sleeps 500 µs before it hands over each message:
//!   flagged, with tokio-websockets the only stack measured;
//! - a copy that does not compile: exit 2 with the compiler's message;
//! - and the errors found before anything is built.
//!
//! Both sides are built with cargo's dev profile (`--build-profile dev`):
//! a release build of every stack's dependencies takes five minutes, more
//! than CI can spare, while a dev build takes a minute and a half, and the
//! tenfold slowdown asserted here shows unoptimised as well. Comparing
//! release builds is the default, and README's "For library maintainers".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use wsbench::compare::stats::Verdict;
use wsbench::compare::CompareReport;

const CRATE: &str = "tokio-websockets";

/// Where the slow copy sleeps: the line of `WebSocketStream::poll_next`
/// (src/proto/stream.rs) that returns a whole unfragmented message.
const ANCHOR: &str = "return Poll::Ready(Some(Ok(Message { opcode, payload })));";

/// Comparisons share one directory of worktrees and builds: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Fixture {
    /// The version in Cargo.lock.
    version: String,
    unchanged: PathBuf,
    slow: PathBuf,
    broken: PathBuf,
    /// A crate of another name.
    other: PathBuf,
}

/// The copies, made once per test run under the target directory
/// (replacing an earlier run's).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (version, source) = locked_source(CRATE);
        let root = std::path::absolute(
            wsbench::results::target_dir()
                .join("wsbench")
                .join("compare-fixtures"),
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&root);
        let copy = |name: &str| {
            let dir = root.join(format!("{CRATE}-{name}"));
            copy_dir(&source, &dir);
            dir
        };
        let unchanged = copy("unchanged");

        let slow = copy("slow");
        let stream = slow.join("src/proto/stream.rs");
        let text = std::fs::read_to_string(&stream).unwrap();
        assert_eq!(
            text.matches(ANCHOR).count(),
            1,
            "{CRATE} {version}'s {} no longer has the line the slow copy sleeps before: update ANCHOR",
            stream.display()
        );
        let delayed = format!(
            "std::thread::sleep(std::time::Duration::from_micros(500)); // wsbench fixture\n{ANCHOR}"
        );
        std::fs::write(&stream, text.replace(ANCHOR, &delayed)).unwrap();

        let broken = copy("broken");
        let lib = broken.join("src/lib.rs");
        let mut text = std::fs::read_to_string(&lib).unwrap();
        text.push_str("\ncompile_error!(\"wsbench fixture: broken on purpose\");\n");
        std::fs::write(&lib, text).unwrap();

        let other = root.join("other");
        std::fs::create_dir_all(other.join("src")).unwrap();
        std::fs::write(
            other.join("Cargo.toml"),
            "[package]\nname = \"not-tokio-websockets\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(other.join("src/lib.rs"), "").unwrap();
        Fixture {
            version,
            unchanged,
            slow,
            broken,
            other,
        }
    })
}

/// The locked version of `name` and where cargo unpacked its sources.
fn locked_source(name: &str) -> (String, PathBuf) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in wsbench's build"));
    let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
    (
        package["version"].as_str().unwrap().to_string(),
        manifest.parent().unwrap().to_path_buf(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

struct Run {
    code: Option<i32>,
    stderr: String,
}

/// `wsbench compare --stack tokio-websockets` with a short, dev-built
/// measurement: 6 rounds (the fewest that give an interval) of 4 windows
/// of 50 ms per phase, and a 50% threshold, far beyond a dev build's noise
/// and far below the slow copy's tenfold slowdown.
fn compare(base: &str, head: &str) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_wsbench"))
        .args(["compare", "--stack", CRATE, "--base", base, "--head", head])
        .args(["--build-profile", "dev", "--rounds", "6", "--windows", "4"])
        .args(["--window-ms", "50", "--threshold", "0.5"])
        .args(["--build-timeout-s", "900", "--round-timeout-s", "120"])
        // Neither changes the code built: no debug info and no incremental
        // state, which a build used once does not need.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("{}", run.stderr);
    run
}

/// The JSON report of a comparison of the locked version with `head`.
fn report(version: &str, head: &Path) -> CompareReport {
    let label = head.file_name().unwrap().to_string_lossy();
    let path = wsbench::results::target_dir()
        .join("wsbench")
        .join("compare")
        .join(format!("{CRATE}-{version}-path-{label}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn path(dir: &Path) -> String {
    format!("path:{}", dir.display())
}

/// Compares the locked version with `head`, expecting exit code `code`,
/// and checks what both comparisons that measure share: one stack
/// measured, both versions named in the report, the dev profile recorded.
fn compare_with_locked(f: &Fixture, head: &Path, code: i32) -> CompareReport {
    let run = compare(&format!("crate:{}", f.version), &path(head));
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    let r = report(&f.version, head);
    assert_eq!(r.stacks, [CRATE]);
    assert!(r.rows.iter().all(|row| row.stack == CRATE));
    assert!(r.rows.len() >= 8, "{} rows", r.rows.len());
    assert_eq!(r.build_profile, "dev");
    let swap = r.swap.as_ref().expect("a comparison of two versions");
    assert_eq!(swap.crate_name, CRATE);
    assert_eq!(swap.dependents, [CRATE]);
    assert_eq!(
        swap.base.describe(),
        format!("{} from crates.io", f.version)
    );
    assert_eq!(swap.head.path.as_deref(), Some(head));
    assert!(
        swap.differences
            .iter()
            .any(|d| d.starts_with("head: tokio-websockets ")
                && d.contains(&*head.to_string_lossy())),
        "{:?}",
        swap.differences
    );
    r
}

#[test]
fn an_unchanged_copy_of_the_locked_version_is_no_regression() {
    let _one = serial();
    let f = fixture();
    let r = compare_with_locked(f, &f.unchanged, 0);
    assert_eq!(r.regressions, 0);
    for row in &r.rows {
        assert_ne!(row.verdict, Verdict::Regression, "{row:?}");
        assert_ne!(row.verdict, Verdict::Improvement, "{row:?}");
    }
}

#[test]
fn a_copy_that_sleeps_before_each_message_is_flagged() {
    let _one = serial();
    let f = fixture();
    let r = compare_with_locked(f, &f.slow, 1);
    let flagged: Vec<&str> = r
        .rows
        .iter()
        .filter(|row| row.verdict == Verdict::Regression)
        .map(|row| row.metric.as_str())
        .collect();
    for metric in ["rtt_p50_us", "rtt_mean_us", "msgs_per_s"] {
        assert!(flagged.contains(&metric), "{metric} not in {flagged:?}");
    }
    assert_eq!(r.regressions, flagged.len());
}

#[test]
fn a_version_that_does_not_compile_exits_2_with_the_compilers_message() {
    let _one = serial();
    let f = fixture();
    // As the base, which is built first: the failure comes before any
    // other build.
    let run = compare(&path(&f.broken), &format!("crate:{}", f.version));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("the compiler says"), "{}", run.stderr);
    assert!(
        run.stderr.contains("wsbench fixture: broken on purpose"),
        "{}",
        run.stderr
    );
}

#[test]
fn what_cannot_be_compared_is_refused_before_anything_is_built() {
    let _one = serial();
    let f = fixture();
    let locked = format!("crate:{}", f.version);
    let cases = [
        (
            locked.clone(),
            locked.clone(),
            "there is nothing to compare",
        ),
        (
            locked.clone(),
            path(&f.other),
            "is not the crate tokio-websockets: it holds not-tokio-websockets",
        ),
        (
            locked.clone(),
            "path:/no/such/directory".to_string(),
            "no such directory",
        ),
        (
            locked.clone(),
            "svn:x".to_string(),
            "expected crate:VERSION",
        ),
    ];
    for (base, head, says) in cases {
        let run = compare(&base, &head);
        assert_eq!(run.code, Some(2), "{base} {head}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{base} {head}: {}", run.stderr);
        assert!(!run.stderr.contains("building"), "{}", run.stderr);
    }
    let python = Command::new(env!("CARGO_BIN_EXE_wsbench"))
        .args(["compare", "--stack", "python-aiohttp"])
        .args(["--base", &locked, "--head", &path(&f.unchanged)])
        .output()
        .unwrap();
    assert_eq!(python.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&python.stderr).contains("is not a Rust crate"));
}
