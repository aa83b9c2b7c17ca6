//! The broadcast workloads: one step of a room-size sweep ([`room_step`])
//! and the slow consumer ([`slow_consumer`]), with the server's CPU and
//! memory read around exactly their measured parts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::broadcast::{Broadcast, BroadcastRun, RoomClient};
use crate::client::ClientError;
use crate::measure::{self, Cpu};
use crate::metrics::{self, Metric, Source};
use crate::stacks::ServerHandle;

use super::Figures;

/// One measured broadcast run on a room and what it cost.
#[derive(Debug, Clone)]
pub struct RoomSample {
    pub run: BroadcastRun,
    pub cpu: Cpu,
    /// The server's memory with the room at work over its memory before
    /// the room opened, per member, and where it was read.
    pub bytes_per_member: Option<(f64, Source)>,
}

impl RoomSample {
    fn per_delivery(&self, ns: u64) -> f64 {
        ns as f64 / self.run.deliveries.max(1) as f64
    }

    fn core_share(&self, ns: u64) -> f64 {
        crate::measure::core_share(ns, self.run.elapsed)
    }

    /// Why the step's latency may be the client's rather than the
    /// server's: it came late to its sends, or it had no core left.
    pub fn client_limited(&self) -> Option<String> {
        let late_p99 = Duration::from_nanos(self.run.lateness.value_at_quantile(0.99));
        let share = self.core_share(self.cpu.client_ns);
        if late_p99 > crate::client::open_loop::LATENESS_BOUND {
            Some(format!(
                "the client sent 1% of its broadcasts {:.0} µs or more late",
                late_p99.as_secs_f64() * 1e6
            ))
        } else if share > CLIENT_BUSY_LIMIT {
            Some(format!("the client used {share:.2} of its core"))
        } else {
            None
        }
    }
}

/// Above this share of its core the client may be what holds a room back
/// (its receiving work is as large as the server's sending).
pub const CLIENT_BUSY_LIMIT: f64 = 0.75;

impl Figures for RoomSample {
    fn figure(&self, metric: &Metric) -> Option<(f64, Source)> {
        let m = metric.name;
        let run = &self.run;
        let us = |q: f64| {
            Some((
                run.latency.value_at_quantile(q) as f64 / 1e3,
                Source::Histogram,
            ))
        };
        if m == metrics::OFFERED_MSGS_PER_S.name {
            Some((run.spec.rate_per_s, Source::Harness))
        } else if m == metrics::DELIVERIES_PER_S.name {
            Some((run.deliveries_per_s(), Source::Wallclock))
        } else if m == metrics::CORRECTED_P50_US.name {
            us(0.5)
        } else if m == metrics::CORRECTED_P99_US.name {
            us(0.99)
        } else if m == metrics::CORRECTED_P999_US.name {
            us(0.999)
        } else if m == metrics::CORRECTED_MAX_US.name {
            Some((run.latency.max() as f64 / 1e3, Source::Histogram))
        } else if m == metrics::CLIENT_LATENESS_P99_US.name {
            Some((
                run.lateness.value_at_quantile(0.99) as f64 / 1e3,
                Source::Histogram,
            ))
        } else if m == metrics::SERVER_CPU_NS_PER_DELIVERY.name {
            Some((
                self.per_delivery(self.cpu.server_ns),
                self.cpu.server_source,
            ))
        } else if m == metrics::CLIENT_CPU_NS_PER_DELIVERY.name {
            Some((self.per_delivery(self.cpu.client_ns), Source::Schedstat))
        } else if m == metrics::CLIENT_CORE_SHARE.name {
            Some((self.core_share(self.cpu.client_ns), Source::Schedstat))
        } else if m == metrics::SERVER_CORE_SHARE.name {
            Some((self.core_share(self.cpu.server_ns), self.cpu.server_source))
        } else if m == metrics::SERVER_BYTES_PER_RECEIVER.name {
            self.bytes_per_member
        } else if m == metrics::DELIVERIES_VERIFIED.name {
            Some((run.deliveries as f64, Source::Client))
        } else {
            None
        }
    }
}

/// What a room step records, in the order reports list it.
pub const ROOM_FIGURES: &[&Metric] = &[
    &metrics::OFFERED_MSGS_PER_S,
    &metrics::DELIVERIES_PER_S,
    &metrics::CORRECTED_P50_US,
    &metrics::CORRECTED_P99_US,
    &metrics::CORRECTED_P999_US,
    &metrics::CORRECTED_MAX_US,
    &metrics::SERVER_CPU_NS_PER_DELIVERY,
    &metrics::CLIENT_CPU_NS_PER_DELIVERY,
    &metrics::SERVER_CORE_SHARE,
    &metrics::CLIENT_CORE_SHARE,
    &metrics::CLIENT_LATENESS_P99_US,
    &metrics::SERVER_BYTES_PER_RECEIVER,
    &metrics::DELIVERIES_VERIFIED,
];

/// The server's memory now (its collector run first, where it has one):
/// what [`room_step`]'s per-member figure is measured against, read before
/// the room opens.
pub fn server_memory(server: &ServerHandle) -> anyhow::Result<i64> {
    server.collect_garbage()?;
    measure::server_memory(server.pid)
        .ok_or_else(|| anyhow::anyhow!("stack {}: its process is gone", server.stack))
}

/// A warm-up run of `warm_up` on the synchronised `room` (every delivery
/// verified, none timed), then the measured run of `spec`, the server's
/// and the client's CPU read around it alone, then the server's memory
/// against `memory_before` (see [`server_memory`]). Call it outside
/// the runtime.
pub fn room_step(
    room: &mut RoomClient,
    spec: Broadcast,
    warm_up: Duration,
    server: &ServerHandle,
    memory_before: i64,
) -> anyhow::Result<RoomSample> {
    if !warm_up.is_zero() {
        room.run(Broadcast {
            duration: warm_up,
            ..spec
        })?;
    }
    let before = Cpu::now(server.pid);
    let run = room.run(spec)?;
    let cpu = Cpu::now(server.pid)
        .since(before)
        .less_client(run.harness_cpu);
    let source = measure::memory_source(server.pid);
    let now = server_memory(server)?;
    let bytes_per_member = Some(((now - memory_before) as f64 / room.len() as f64, source));
    Ok(RoomSample {
        run,
        cpu,
        bytes_per_member,
    })
}

/// The slow-consumer run and the server's memory over it.
#[derive(Debug, Clone)]
pub struct SlowSample {
    pub run: BroadcastRun,
    /// The server's memory every [`MEMORY_EVERY`], from the run's start:
    /// seconds and bytes.
    pub memory: Vec<(f64, i64)>,
    pub memory_source: Source,
}

/// How often the slow consumer's run reads the server's memory.
pub const MEMORY_EVERY: Duration = Duration::from_millis(50);

impl SlowSample {
    /// The readings within the pause.
    fn in_pause(&self) -> Vec<(f64, i64)> {
        let p = self
            .run
            .spec
            .pause
            .expect("a slow-consumer run has a pause");
        let (from, to) = (p.after.as_secs_f64(), (p.after + p.length).as_secs_f64());
        self.memory
            .iter()
            .copied()
            .filter(|&(t, _)| t >= from && t <= to)
            .collect()
    }

    /// The peak within the pause over the first reading in it.
    pub fn growth_bytes(&self) -> f64 {
        let pause = self.in_pause();
        let Some(&(_, first)) = pause.first() else {
            return 0.0;
        };
        pause.iter().map(|&(_, b)| b - first).max().unwrap_or(0) as f64
    }

    /// The least-squares slope of the readings within the pause.
    pub fn slope_bytes_per_s(&self) -> f64 {
        let pause = self.in_pause();
        let n = pause.len() as f64;
        if pause.len() < 2 {
            return 0.0;
        }
        let mean_t = pause.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_b = pause.iter().map(|p| p.1 as f64).sum::<f64>() / n;
        let cov: f64 = pause
            .iter()
            .map(|&(t, b)| (t - mean_t) * (b as f64 - mean_b))
            .sum();
        let var: f64 = pause.iter().map(|&(t, _)| (t - mean_t).powi(2)).sum();
        if var == 0.0 {
            0.0
        } else {
            cov / var
        }
    }

    /// What the server did about the member that stopped reading, in words.
    pub fn finding(&self) -> String {
        let run = &self.run;
        let slow = run.slow.clone().unwrap_or_default();
        let pause = run.spec.pause.expect("a pause").length;
        let mut out = match (&slow.disconnected, slow.dropped) {
            (Some(why), _) => format!(
                "disconnected it after {} of {} broadcasts ({why})",
                slow.delivered, run.broadcasts
            ),
            (None, 0) => format!(
                "buffered for it: all {} broadcasts delivered after the pause{}",
                slow.delivered,
                slow.caught_up_after
                    .map(|d| format!(", caught up {:.0} ms after it", d.as_secs_f64() * 1e3))
                    .unwrap_or_default()
            ),
            (None, dropped) => format!(
                "dropped {dropped} of {} broadcasts for it and kept it open",
                run.broadcasts
            ),
        };
        let in_pause_p99 = Duration::from_nanos(run.latency_in_pause.value_at_quantile(0.99));
        if in_pause_p99 > pause / 2 {
            out.push_str(&format!(
                "; everyone else stalled with it (their p99 during the pause {:.0} ms)",
                in_pause_p99.as_secs_f64() * 1e3
            ));
        }
        if run.dropped_others > 0 || run.disconnected_others > 0 {
            out.push_str(&format!(
                "; the others lost {} deliveries and {} connections",
                run.dropped_others, run.disconnected_others
            ));
        }
        out
    }
}

impl Figures for SlowSample {
    fn figure(&self, metric: &Metric) -> Option<(f64, Source)> {
        let m = metric.name;
        let run = &self.run;
        let slow = run.slow.clone().unwrap_or_default();
        let p99 = |h: &hdrhistogram::Histogram<u64>| {
            Some((h.value_at_quantile(0.99) as f64 / 1e3, Source::Histogram))
        };
        if m == metrics::SLOW_HEAP_GROWTH_BYTES.name {
            Some((self.growth_bytes(), self.memory_source))
        } else if m == metrics::SLOW_HEAP_SLOPE_BYTES_PER_S.name {
            Some((self.slope_bytes_per_s(), self.memory_source))
        } else if m == metrics::SLOW_DELIVERED_MSGS.name {
            Some((slow.delivered as f64, Source::Client))
        } else if m == metrics::SLOW_DROPPED_MSGS.name {
            Some((slow.dropped as f64, Source::Client))
        } else if m == metrics::SLOW_DISCONNECTED.name {
            Some((
                f64::from(u8::from(slow.disconnected.is_some())),
                Source::Client,
            ))
        } else if m == metrics::OTHERS_P99_BEFORE_PAUSE_US.name {
            p99(&run.latency_before_pause)
        } else if m == metrics::OTHERS_P99_IN_PAUSE_US.name {
            p99(&run.latency_in_pause)
        } else if m == metrics::DELIVERIES_VERIFIED.name {
            Some((run.deliveries as f64, Source::Client))
        } else {
            None
        }
    }
}

/// What the slow-consumer case records, in the order reports list it;
/// [`metrics::SLOW_DISCONNECTED`] carries [`SlowSample::finding`].
pub const SLOW_FIGURES: &[&Metric] = &[
    &metrics::SLOW_DISCONNECTED,
    &metrics::SLOW_DELIVERED_MSGS,
    &metrics::SLOW_DROPPED_MSGS,
    &metrics::SLOW_HEAP_GROWTH_BYTES,
    &metrics::SLOW_HEAP_SLOPE_BYTES_PER_S,
    &metrics::OTHERS_P99_BEFORE_PAUSE_US,
    &metrics::OTHERS_P99_IN_PAUSE_US,
    &metrics::DELIVERIES_VERIFIED,
];

/// Runs `spec` (which has a pause) on the synchronised `room`, reading the
/// server's memory every [`MEMORY_EVERY`] from another thread meanwhile.
pub fn slow_consumer(
    room: &mut RoomClient,
    spec: Broadcast,
    server: &ServerHandle,
) -> Result<SlowSample, ClientError> {
    let pid = server.pid;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sampler = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("memory-sampler".into())
            .spawn(move || {
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(b) = measure::server_memory(pid) {
                        out.push((start.elapsed().as_secs_f64(), b));
                    }
                    std::thread::sleep(MEMORY_EVERY);
                }
                out
            })
            .expect("spawning the memory sampler")
    };
    let run = room.run(spec);
    stop.store(true, Ordering::Relaxed);
    let memory = sampler.join().unwrap_or_default();
    Ok(SlowSample {
        run: run?,
        memory,
        memory_source: measure::memory_source(pid),
    })
}
