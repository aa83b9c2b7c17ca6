//! CPU time and memory of a server in another process (the Python stacks),
//! read from `/proc/<pid>`. These figures are marked `source: "rss"` /
//! `"proc"` in the results, apart from the allocator's.

/// CPU time of a whole process in nanoseconds (user + system, all threads),
/// summed from each thread's schedstat, which counts nanoseconds; the
/// tick-based utime/stime of `/proc/<pid>/stat` is the fallback.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let path = t.path().join("schedstat");
            if let Some(ns) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
    }
    if any {
        return Some(total);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((utime + stime) * 1_000_000_000 / ticks)
}

/// Resident set size of a process in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// The peak resident set size of a process in bytes (`VmHWM`), since it
/// started or since [`reset_peak_rss`].
pub fn process_peak_rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// Starts a process's peak resident set afresh from its current one
/// (writing 5 to `/proc/<pid>/clear_refs`, Linux 4.0 and later).
pub fn reset_peak_rss(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_resident_set_resets_to_the_current_one() {
        let me = std::process::id();
        // Touch some pages so there is a peak above what stays resident.
        let block = vec![1u8; 64 << 20];
        assert!(block.iter().map(|&b| b as u64).sum::<u64>() > 0);
        let peak_before = process_peak_rss_bytes(me).expect("VmHWM");
        drop(block);
        reset_peak_rss(me).expect("clear_refs");
        let peak_after = process_peak_rss_bytes(me).expect("VmHWM");
        let rss = process_rss_bytes(me).expect("VmRSS");
        assert!(peak_after < peak_before, "{peak_after} !< {peak_before}");
        assert!(
            peak_after >= rss / 2 && rss > 0,
            "peak {peak_after}, rss {rss}"
        );
    }
}
