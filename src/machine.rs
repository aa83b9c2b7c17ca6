//! Facts about the machine, toolchain and commit, recorded beside every
//! result so that a figure can be traced to where it was measured.

use std::collections::BTreeMap;
use std::process::Command;

use crate::client::Driver;
use crate::placement::Placement;
use crate::results::RunInfo;
use crate::settings::EchoPolicy;
use crate::stacks::STACKS;

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git rev-parse HEAD` plus `-dirty` when tracked files that can change a
/// measurement differ (anything but documents, reports and scripts), or
/// "unknown" outside a git checkout.
pub fn commit() -> String {
    let Some(head) = command_line("git", &["rev-parse", "HEAD"]) else {
        return "unknown".into();
    };
    // The reports a run writes are tracked files, and the Markdown documents
    // and the scripts around a run (`wsbench report` writes discussion.md
    // from the results) are edited while it runs; none of
    // them is built into what measures, so none makes the code dirty.
    let dirty = command_line(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!target-reports",
            ":!regression-proofs",
            ":!scripts",
            ":!*.md",
        ],
    )
    .map(|s| !s.is_empty())
    .unwrap_or(false);
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// The current time as RFC 3339 UTC, without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The mmap threshold this process holds glibc's malloc at: its initial
/// value, where a fresh process starts.
pub const MALLOC_MMAP_THRESHOLD_BYTES: usize = 128 * 1024;

/// What [`fix_malloc`] did, for the run record; unset until it runs.
static MALLOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Holds glibc malloc's mmap threshold at [`MALLOC_MMAP_THRESHOLD_BYTES`]
/// for the rest of the process, and says so in every run record after.
/// Left to itself, glibc raises the threshold to the size of the largest
/// mapped block freed so far (up to 32 MiB), so whether a large message
/// buffer is a fresh mapping or reused heap depends on what the process
/// freed before, which differs between two processes of the same build:
/// it moved actix-ws's 16 MiB throughput by more than a third between two
/// full runs of one commit, while the rounds within each run agreed
/// (`regression-proofs/claims-second-run-53b307e.md`). Setting the
/// threshold turns that adjustment off. Child processes (Python, Node) get
/// the same setting through glibc's environment variable
/// ([`MALLOC_ENV`]).
pub fn fix_malloc() {
    MALLOC.get_or_init(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only sets a malloc parameter; it is called
            // before this process has served or sent anything.
            let ok = unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES as i32)
            };
            if ok == 1 {
                format!("glibc, mmap threshold fixed at {MALLOC_MMAP_THRESHOLD_BYTES} B")
            } else {
                "glibc, mallopt failed: thresholds dynamic".into()
            }
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        {
            "not glibc: the platform allocator's defaults".into()
        }
    });
}

/// The environment variable that gives a child process's glibc malloc
/// the same fixed threshold as [`fix_malloc`].
pub const MALLOC_ENV: &str = "MALLOC_MMAP_THRESHOLD_";

/// What the run record says of the allocator's setting.
pub fn malloc_setting() -> String {
    MALLOC
        .get()
        .cloned()
        .unwrap_or_else(|| "glibc defaults: thresholds dynamic".into())
}

/// Every stack's name mapped to "package version".
pub fn stack_versions() -> BTreeMap<String, String> {
    STACKS
        .iter()
        .map(|s| (s.name.to_string(), s.package_version()))
        .collect()
}

/// Collects the record for a run under `placement`.
pub fn run_info(
    placement: Placement,
    server_threads: usize,
    quick: bool,
    echo: EchoPolicy,
    client_driver: Driver,
) -> RunInfo {
    RunInfo {
        commit: commit(),
        date: now_rfc3339(),
        cpu: cpu_model(),
        cpus: crate::placement::online_cpus(),
        memory_bytes: memory_bytes(),
        kernel: command_line("uname", &["-sr"]).unwrap_or_else(|| "unknown".into()),
        rustc: env!("WSBENCH_RUSTC_VERSION").to_string(),
        placement: placement.to_string(),
        server_threads,
        client_threads: 1,
        quick,
        versions: stack_versions(),
        tcp_congestion_control: tcp_congestion_control(),
        echo: echo.as_str().to_string(),
        malloc: malloc_setting(),
        client_driver: client_driver.as_str().to_string(),
    }
}

/// The system's default TCP congestion control, e.g. "bbr" or "cubic".
pub fn tcp_congestion_control() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_run_record_says_the_threshold_is_fixed() {
        fix_malloc();
        let run = run_info(
            Placement::SameCore,
            1,
            true,
            EchoPolicy::FlushEach,
            Driver::Epoll,
        );
        assert_eq!(run.malloc, "glibc, mmap threshold fixed at 131072 B");
    }
}
