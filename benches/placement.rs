//! Which placement gives stable numbers? The same round trips under each
//! placement (both sides on one core, split across cores, unpinned), for
//! the raw-TCP floor and tokio-tungstenite, in repeated rounds. The spread
//! of the rounds' means (coefficient of variation) is the stability; the
//! reference placement should be the one with the lowest.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wsbench::client::{Budget, Connection, MessageSpec, PayloadKind};
use wsbench::measure::Cpu;
use wsbench::metrics::{self, Source};
use wsbench::placement::{pin_current_thread, Placement};
use wsbench::settings::Profile;
use wsbench::stacks;
use wsbench::workload::{self, Sample};

// No counting allocator here: its few atomic additions per allocation
// would be charged to whichever stack allocates more, in the very figures
// that compare them. Allocation and heap figures come from the memory
// bench.

fn main() {
    let mode = Mode::from_env();
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("placement", &mode);
    let rounds: usize = if mode.records() { mode.pick(10, 5) } else { 2 };
    let round_time = if mode.records() {
        mode.pick(Duration::from_millis(300), Duration::from_millis(150))
    } else {
        Duration::from_millis(20)
    };
    let spec = MessageSpec {
        size_bytes: 32,
        kind: PayloadKind::Binary,
        window: 1,
    };

    for placement in Placement::ALL {
        pin_current_thread(placement.client_cpus().as_deref())
            .unwrap_or_else(|e| fail(&format!("placement {placement}: {e:#}")));
        for name in ["raw-tcp", "tokio-tungstenite"] {
            let stack = stacks::find(name).expect("in the table");
            let id = format!("placement/{name}/{placement}");
            let mut settings = mode.settings(Profile::Suite);
            settings.placement = placement;
            let server = start_server(stack, &settings, &id);
            let mut conns = open_connections(&rt, &server, 1, &id);
            let round = |conns: &mut [Connection]| {
                let budget = Budget::Until(Instant::now() + round_time);
                workload::round_trips(&rt, conns, spec, budget, server.pid, mode.driver)
                    .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")))
            };
            // The first round is a warm-up, unrecorded.
            round(&mut conns);
            let mut all = Sample::empty(spec, 1, Cpu::now(server.pid).server_source);
            let mut round_means_us = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let r = round(&mut conns);
                round_means_us.push(r.rtt_mean_us());
                all.add(&r);
            }
            close_connections(&rt, conns, &id);
            stop_server(server);

            let mean = round_means_us.iter().sum::<f64>() / rounds as f64;
            let var = round_means_us
                .iter()
                .map(|m| (m - mean).powi(2))
                .sum::<f64>()
                / (rounds.max(2) - 1) as f64;
            let cv = var.sqrt() / mean.max(1e-12);
            let params = params(&[("placement", v(placement.as_str())), ("rounds", v(rounds))]);
            rec.add(
                &id,
                stack,
                &params,
                &metrics::RTT_MEAN_US,
                mean,
                Source::Wallclock,
            );
            rec.add_sample(
                &id,
                stack,
                &params,
                &all,
                &[&metrics::RTT_P50_US, &metrics::RTT_P99_US],
            );
            rec.add(&id, stack, &params, &metrics::RTT_CV, cv, Source::Wallclock);
            eprintln!("wsbench: {id}: mean {mean:.1} us over {rounds} rounds, cv {cv:.3}");
        }
    }
    rec.flush();
    rec.finish();
}
