//! How long does one round trip take? One connection, one 32-byte message
//! in flight, binary and text, per stack. criterion times the round trips;
//! the client's histogram gives the percentiles and the per-thread clocks
//! the CPU each side spent per message.

mod common;

use std::time::Duration;

use common::*;
use criterion::Throughput;
use wsbench::client::{MessageSpec, PayloadKind};
use wsbench::measure::alloc::CountingAlloc;
use wsbench::settings::Profile;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const SIZE_BYTES: usize = 32;

fn main() {
    CountingAlloc::mark_installed();
    let mode = Mode::from_env();
    let mut c = mode.criterion(Duration::from_secs(3), Duration::from_secs(1));
    let rt = client_runtime(&mode);
    let mut rec = Recorder::new("latency", &mode);
    let mut group = c.benchmark_group("latency");
    group.throughput(Throughput::Elements(1));

    for stack in stacks_to_measure() {
        let label = format!("latency/{}", stack.name);
        let server = start_server(stack, &mode.settings(Profile::Suite), &label);
        let mut conns = open_connections(&rt, &server, 1, &label);
        for kind in [PayloadKind::Binary, PayloadKind::Text] {
            let parameter = format!("{}/{}", kind.as_str(), size_label(SIZE_BYTES));
            let id = format!("latency/{}/{parameter}", stack.name);
            let spec = MessageSpec {
                size_bytes: SIZE_BYTES,
                kind,
                window: 1,
            };
            let acc = bench_round_trips(
                &mut group, &id, stack.name, &parameter, &rt, &mut conns, spec, &server,
            );
            let params = [
                ("size_bytes", v(SIZE_BYTES)),
                ("kind", v(kind.as_str())),
                ("conns", v(1)),
                ("window", v(1)),
            ];
            let rtt_mean_us = acc.elapsed.as_secs_f64() * 1e6 / acc.round_trips.max(1) as f64;
            rec.add(
                &id,
                stack,
                &params,
                "rtt_mean_us",
                rtt_mean_us,
                "us",
                "wallclock",
            );
            for (metric, q) in [
                ("rtt_p50_us", 0.5),
                ("rtt_p90_us", 0.9),
                ("rtt_p99_us", 0.99),
                ("rtt_p999_us", 0.999),
            ] {
                rec.add(
                    &id,
                    stack,
                    &params,
                    metric,
                    acc.quantile_us(q),
                    "us",
                    "histogram",
                );
            }
            rec.add(
                &id,
                stack,
                &params,
                "round_trips_per_s",
                1e6 / rtt_mean_us.max(1e-9),
                "msgs/s",
                "wallclock",
            );
            let src = cpu_source(stack);
            rec.add(
                &id,
                stack,
                &params,
                "server_cpu_ns_per_msg",
                acc.per_rtt(acc.cpu.server_ns),
                "ns",
                src,
            );
            rec.add(
                &id,
                stack,
                &params,
                "client_cpu_ns_per_msg",
                acc.per_rtt(acc.cpu.client_ns),
                "ns",
                "schedstat",
            );
            rec.add(
                &id,
                stack,
                &params,
                "round_trips_verified",
                acc.round_trips as f64,
                "msgs",
                "client",
            );
        }
        close_connections(&rt, conns, &label);
        stop_server(server);
        rec.flush();
    }
    group.finish();
    c.final_summary();
    rec.finish();
}
