//! Which placement gives stable numbers? The same round trips under each
//! placement (both sides on one core, split across cores, unpinned), for
//! the raw-TCP floor and tokio-tungstenite, in repeated rounds. The spread
//! of the rounds' means (coefficient of variation) is the stability; the
//! reference placement should be the one with the lowest.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wsbench::client::{self, Budget, MessageSpec, PayloadKind};
use wsbench::measure::alloc::CountingAlloc;
use wsbench::placement::{pin_current_thread, Placement};
use wsbench::settings::Profile;
use wsbench::stacks;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    CountingAlloc::mark_installed();
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
            let mut hist = client::new_histogram();
            rt.block_on(client::drive(
                &mut conns,
                spec,
                Budget::Until(Instant::now() + round_time),
                &mut client::new_histogram(),
            ))
            .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
            let mut round_means_us = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let stats = rt
                    .block_on(client::drive(
                        &mut conns,
                        spec,
                        Budget::Until(Instant::now() + round_time),
                        &mut hist,
                    ))
                    .unwrap_or_else(|e| fail(&format!("benchmark {id}: {e}")));
                round_means_us
                    .push(stats.elapsed.as_secs_f64() * 1e6 / stats.round_trips.max(1) as f64);
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
            let params = [("placement", v(placement.as_str())), ("rounds", v(rounds))];
            rec.add(&id, stack, &params, "rtt_mean_us", mean, "us", "wallclock");
            rec.add(
                &id,
                stack,
                &params,
                "rtt_p50_us",
                hist.value_at_quantile(0.5) as f64 / 1000.0,
                "us",
                "histogram",
            );
            rec.add(
                &id,
                stack,
                &params,
                "rtt_p99_us",
                hist.value_at_quantile(0.99) as f64 / 1000.0,
                "us",
                "histogram",
            );
            rec.add(&id, stack, &params, "rtt_cv", cv, "ratio", "wallclock");
            eprintln!("wsbench: {id}: mean {mean:.1} us over {rounds} rounds, cv {cv:.3}");
        }
    }
    rec.flush();
    rec.finish();
}
