//! Where the client and the server threads run.
//!
//! On the 2-core nested VM this suite was built on, a wake-up that crosses
//! cores costs about 100 µs, several times the whole software path of a
//! round trip, so placement decides both a figure and its noise. It is a
//! setting (`WSBENCH_PLACEMENT` or `--placement`) and recorded beside every
//! result.

use std::fmt;

/// Environment variable that selects the placement.
pub const PLACEMENT_ENV: &str = "WSBENCH_PLACEMENT";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Placement {
    /// Client and server threads all pinned to CPU 0: no cross-core
    /// wake-ups; client and server share one core's time. The reference
    /// placement, chosen because it gave the most stable round trips (the
    /// `placement` benchmark measures this on every full run).
    #[default]
    #[value(help = "client and server threads all on CPU 0 (the reference)")]
    SameCore,
    /// Client threads on CPU 0, server threads on CPU 1.
    #[value(help = "client threads on CPU 0, server threads on CPU 1")]
    SplitCores,
    /// No pinning: the scheduler decides.
    #[value(help = "no pinning: the scheduler decides")]
    Unpinned,
}

impl Placement {
    pub const ALL: [Placement; 3] = [
        Placement::SameCore,
        Placement::SplitCores,
        Placement::Unpinned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Placement::SameCore => "same-core",
            Placement::SplitCores => "split-cores",
            Placement::Unpinned => "unpinned",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Placement> {
        Placement::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown placement {s:?}: expected same-core, split-cores or unpinned"
                )
            })
    }

    /// The placement named by `WSBENCH_PLACEMENT`, or the reference one.
    pub fn from_env() -> anyhow::Result<Placement> {
        Placement::from_env_or(Placement::default())
    }

    /// The placement named by `WSBENCH_PLACEMENT`, or `default`.
    pub fn from_env_or(default: Placement) -> anyhow::Result<Placement> {
        match std::env::var(PLACEMENT_ENV) {
            Ok(s) => {
                Placement::parse(s.trim()).map_err(|e| anyhow::anyhow!("{PLACEMENT_ENV}: {e}"))
            }
            Err(_) => Ok(default),
        }
    }

    /// CPUs for the client's threads, or `None` for no pinning.
    pub fn client_cpus(self) -> Option<Vec<usize>> {
        match self {
            Placement::SameCore | Placement::SplitCores => Some(vec![0]),
            Placement::Unpinned => None,
        }
    }

    /// CPUs for the server's threads, or `None` for no pinning. With one CPU
    /// only, split-cores falls back to CPU 0 (and says so in the name of
    /// nothing: the machine record shows the CPU count).
    pub fn server_cpus(self) -> Option<Vec<usize>> {
        match self {
            Placement::SameCore => Some(vec![0]),
            Placement::SplitCores => Some(vec![if online_cpus() > 1 { 1 } else { 0 }]),
            Placement::Unpinned => None,
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of CPUs online, from `/sys/devices/system/cpu/online` (e.g.
/// "0-1"). Not `available_parallelism` nor glibc's `sysconf`, which both
/// count only the CPUs the calling thread may use, and shrink to one once
/// it is pinned.
pub fn online_cpus() -> usize {
    let Ok(list) = std::fs::read_to_string("/sys/devices/system/cpu/online") else {
        return std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
    };
    let count: usize = list
        .trim()
        .split(',')
        .filter_map(|range| match range.split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
            None => range.parse::<usize>().ok().map(|_| 1),
        })
        .sum();
    count.max(1)
}

/// Pins the calling thread to `cpus`; `None` lets it run on every CPU
/// again (a bench switches placements on one thread).
pub fn pin_current_thread(cpus: Option<&[usize]>) -> anyhow::Result<()> {
    match cpus {
        Some(cpus) => pin_pid(0, cpus),
        None => pin_pid(0, &(0..online_cpus()).collect::<Vec<_>>()),
    }
}

/// Pins a thread or process by id (0 = the calling thread).
pub fn pin_pid(pid: libc::pid_t, cpus: &[usize]) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only touch the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!(
                "sched_setaffinity({pid}, {cpus:?}) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// The cores group's CPUs: the client on the first half of the online
/// CPUs (at least one), the server on the rest; each server thread count
/// runs on that many of the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreSplit {
    pub client: Vec<usize>,
    pub server: Vec<usize>,
    pub online: usize,
}

impl CoreSplit {
    /// The split of CPUs `0..online`.
    pub fn of(online: usize) -> CoreSplit {
        let client = (online / 2).max(1);
        CoreSplit {
            client: (0..client).collect(),
            server: (client..online.max(client)).collect(),
            online,
        }
    }

    /// The thread counts that can be placed (1, 2, 4, ... up to the
    /// server's CPUs), and the first that cannot.
    pub fn thread_counts(&self) -> (Vec<usize>, usize) {
        let mut placed = Vec::new();
        let mut t = 1;
        while t <= self.server.len() {
            placed.push(t);
            t *= 2;
        }
        (placed, t)
    }

    /// Why `threads` server threads cannot be placed here.
    pub fn too_few(&self, threads: usize) -> String {
        format!(
            "{threads} server thread(s) need as many CPUs beside the client's {}; this machine has {} CPU(s) online, so the curve has {} point(s) here",
            self.client.len(),
            self.online,
            self.thread_counts().0.len()
        )
    }
}

/// A CPU list as results name it: "1", "0-3"; "any" unpinned.
pub fn cpu_list(cpus: Option<&[usize]>) -> String {
    match cpus {
        None => "any".to_string(),
        Some([]) => "none".to_string(),
        Some([one]) => one.to_string(),
        Some([first, .., last]) => format!("{first}-{last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_does_not_change_the_cpu_count_and_can_be_undone() {
        let before = online_cpus();
        std::thread::spawn(move || {
            pin_current_thread(Some(&[0])).unwrap();
            assert_eq!(online_cpus(), before);
            assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
            pin_current_thread(None).unwrap();
            assert_eq!(std::thread::available_parallelism().unwrap().get(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn cores_split_the_machine_between_client_and_server() {
        // Here: one point, and why there is no second.
        let two = CoreSplit::of(2);
        assert_eq!((two.client.clone(), two.server.clone()), (vec![0], vec![1]));
        assert_eq!(two.thread_counts(), (vec![1], 2));
        assert!(two.too_few(2).contains("1 point(s)"), "{}", two.too_few(2));
        // A larger machine: a curve, unchanged code.
        let sixteen = CoreSplit::of(16);
        assert_eq!(sixteen.client, (0..8).collect::<Vec<_>>());
        assert_eq!(sixteen.server, (8..16).collect::<Vec<_>>());
        assert_eq!(sixteen.thread_counts(), (vec![1, 2, 4, 8], 16));
        let twelve = CoreSplit::of(12);
        assert_eq!(twelve.thread_counts(), (vec![1, 2, 4], 8));
        // One CPU: nothing for the server.
        let one = CoreSplit::of(1);
        assert!(one.server.is_empty());
        assert_eq!(one.thread_counts(), (vec![], 1));
        assert_eq!(cpu_list(Some(&sixteen.server[..4])), "8-11");
        assert_eq!(cpu_list(Some(&[1])), "1");
        assert_eq!(cpu_list(None), "any");
    }

    #[test]
    fn placements_parse_by_name() {
        for p in Placement::ALL {
            assert_eq!(Placement::parse(p.as_str()).unwrap(), p);
        }
        assert!(Placement::parse("both")
            .unwrap_err()
            .to_string()
            .contains("same-core"));
    }

    #[test]
    fn command_line_names_are_the_parse_names() {
        use clap::ValueEnum;
        for p in Placement::ALL {
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.as_str());
        }
        assert_eq!(Placement::value_variants(), &Placement::ALL[..]);
    }
}
