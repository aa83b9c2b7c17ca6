//! Client and server on two hosts: `wsbench serve` in one network namespace,
//! `wsbench run --url` in another, joined by a veth pair that each test
//! creates for itself (and deletes again, also when it fails); and two
//! clients on two hosts whose shares `wsbench merge` adds up.
//!
//! Needs root and `ip` (iproute2). Where namespaces cannot be created, every
//! test prints `SKIPPED: <reason>` and passes, unless
//! `WSBENCH_REQUIRE_NETNS=1` (as in CI), which turns the reason into a
//! failure. Traffic goes only to the addresses of the namespaces a test
//! created. Every wait has a deadline that only guards against a hang;
//! nothing here is timed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const WSBENCH: &str = env!("CARGO_BIN_EXE_wsbench");

/// Port the server listens on inside namespace A.
const PORT: u16 = 9001;

/// For one `ip` command.
const IP_DEADLINE: Duration = Duration::from_secs(10);
/// From spawning `serve` to its "serving" line (a debug build, a loaded
/// machine).
const SERVE_DEADLINE: Duration = Duration::from_secs(30);
/// For a one-second `run` (connect, warm-up, measure, close).
const RUN_DEADLINE: Duration = Duration::from_secs(60);
/// From SIGINT to the server's exit.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// For a client that cannot connect: the refusal should be immediate, and
/// even a silent drop ends at the client's 10 s connect timeout.
const REFUSED_DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn tokio_tungstenite_across_veth() {
    serve_and_run(0, "tokio-tungstenite", "ws");
}

#[test]
fn axum_across_veth() {
    serve_and_run(1, "axum", "ws");
}

#[test]
fn raw_tcp_across_veth() {
    serve_and_run(2, "raw-tcp", "tcp");
}

/// A client pointed at a port nobody listens on in namespace A fails with
/// a clear error and a non-zero exit, without hanging.
#[test]
fn closed_port_is_a_clear_error() {
    let Some(net) = HostPair::create_or_skip(3) else {
        return;
    };
    let addr = format!("{}:{}", net.addr_a, PORT + 1);
    let url = format!("ws://{addr}/");
    let started = Instant::now();
    let mut client = Proc::spawn(
        "client",
        net.exec(
            &net.ns_b,
            &[
                "run",
                "--stack",
                "tokio-tungstenite",
                "--url",
                &url,
                "--conns",
                "4",
                "--duration",
                "1",
            ],
        ),
    );
    let status = client.expect_failure(REFUSED_DEADLINE, "against a closed port");
    let took = started.elapsed();
    let err = &client.stderr;
    for needle in ["wsbench: error", "tokio-tungstenite", &addr, "refused"] {
        assert!(
            err.contains(needle),
            "client error does not mention {needle:?}{}",
            client.transcript()
        );
    }
    println!("closed port: {status} after {took:?}: {}", err.trim());
}

/// Two clients, in namespaces B and C, drive one server in A at the same
/// time, each writing its share of the run; `wsbench merge` adds them up
/// exactly (every round trip of both in one histogram, the rates summed)
/// and refuses a share of another run.
#[test]
fn two_clients_on_two_hosts_merge_exactly() {
    let Some(mut net) = HostPair::create_or_skip(4) else {
        return;
    };
    let (ns_c, addr_from_c) = net
        .add_host()
        .unwrap_or_else(|e| panic!("a third namespace: {e}"));
    // Every address of namespace A: its loopback and its two veths.
    let listen = format!("0.0.0.0:{PORT}");
    let mut server = Proc::spawn(
        "server",
        net.exec(
            &net.ns_a,
            &["serve", "--stack", "tokio-tungstenite", "--addr", &listen],
        ),
    );
    server
        .wait_line("serving", SERVE_DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));

    let dir = std::env::temp_dir().join(format!("wsbench-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (share_b, share_c) = (dir.join("b.json"), dir.join("c.json"));
    let client = |ns: &str, addr: &str, share: &std::path::Path| {
        let url = format!("ws://{addr}:{PORT}/");
        net.exec(
            ns,
            &[
                "run",
                "--stack",
                "tokio-tungstenite",
                "--url",
                &url,
                "--conns",
                "2",
                "--duration",
                "2",
                "--histogram-out",
                share.to_str().unwrap(),
            ],
        )
    };
    let mut b = Proc::spawn("client b", client(&net.ns_b, &net.addr_a, &share_b));
    let mut c = Proc::spawn("client c", client(&ns_c, &addr_from_c, &share_c));
    for client in [&mut b, &mut c] {
        client.expect_success(RUN_DEADLINE, &server.transcript());
    }

    let parts = [&share_b, &share_c]
        .map(|p| wsbench::merge::read(p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display())));
    for part in &parts {
        assert!(part.round_trips > 0 && part.conns == 2, "{part:?}");
        // A share's histogram holds every round trip it verified.
        let rtt = wsbench::merge::decode(&part.histograms[wsbench::merge::RTT]).unwrap();
        assert_eq!(rtt.len(), part.round_trips);
    }
    let mut merge = Proc::spawn(
        "merge",
        cmd_wsbench(&["merge", "--json", path(&share_b), path(&share_c)]),
    );
    merge.expect_success(RUN_DEADLINE, "");
    let merged: serde_json::Value = serde_json::from_str(&merge.stdout)
        .unwrap_or_else(|e| panic!("merge --json: {e}{}", merge.transcript()));
    let measurements = merged["measurements"].as_array().expect("measurements");
    let figure = |metric: &str| {
        measurements
            .iter()
            .find(|m| m["metric"] == metric)
            .and_then(|m| m["value"].as_f64())
            .unwrap_or_else(|| panic!("no {metric} in{}", merge.transcript()))
    };
    let round_trips: u64 = parts.iter().map(|p| p.round_trips).sum();
    assert_eq!(figure("round_trips_verified"), round_trips as f64);
    let rate: f64 = parts.iter().map(|p| p.msgs_per_s()).sum();
    assert!((figure("msgs_per_s") - rate).abs() <= 1e-9 * rate);
    // A percentile of the two together lies between the two's own.
    let p99s: Vec<f64> = parts
        .iter()
        .map(|p| {
            let h = wsbench::merge::decode(&p.histograms[wsbench::merge::RTT]).unwrap();
            h.value_at_quantile(0.99) as f64 / 1e3
        })
        .collect();
    let p99 = figure("rtt_p99_us");
    assert!(
        p99 >= p99s[0].min(p99s[1]) && p99 <= p99s[0].max(p99s[1]),
        "merged p99 {p99} outside the shares' {p99s:?}"
    );
    for m in measurements {
        assert_eq!(m["group"], "merge");
        assert_eq!(m["params"]["conns"], 4);
        assert_eq!(m["params"]["parts"], 2);
    }

    // A share of another run (another message size) is refused, naming
    // what differs and both files.
    let mut other = parts[1].clone();
    other.params.insert("size_bytes".into(), 64.into());
    let odd = dir.join("odd.json");
    wsbench::merge::write(&odd, &other).unwrap();
    let mut refused = Proc::spawn("merge", cmd_wsbench(&["merge", path(&share_b), path(&odd)]));
    refused.expect_failure(RUN_DEADLINE, "merging another run's share");
    for needle in ["size_bytes 32 against 64", "b.json", "odd.json"] {
        assert!(
            refused.stderr.contains(needle),
            "no {needle:?} in the refusal{}",
            refused.transcript()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    server.stop();
}

/// `wsbench args...` here, outside the namespaces (merging reads files).
fn cmd_wsbench(args: &[&str]) -> Command {
    let mut cmd = Command::new(WSBENCH);
    cmd.args(args);
    cmd
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Serves `stack` in namespace A, drives it from namespace B through
/// `scheme://10.x.y.1:PORT`, checks the echoes crossed the veth, then
/// stops the server with SIGINT.
fn serve_and_run(index: u8, stack: &str, scheme: &str) {
    let Some(net) = HostPair::create_or_skip(index) else {
        return;
    };
    let addr = format!("{}:{PORT}", net.addr_a);
    let mut server = Proc::spawn(
        "server",
        net.exec(&net.ns_a, &["serve", "--stack", stack, "--addr", &addr]),
    );
    let serving = server
        .wait_line("serving", SERVE_DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        serving.contains(&format!("{scheme}://{addr}/")),
        "serving line does not name {scheme}://{addr}/: {serving}"
    );

    let url = match scheme {
        "tcp" => format!("tcp://{addr}"),
        _ => format!("{scheme}://{addr}/"),
    };
    let rx_before = net.rx_bytes_a();
    let mut client = Proc::spawn(
        "client",
        net.exec(
            &net.ns_b,
            &[
                "run",
                "--stack",
                stack,
                "--url",
                &url,
                "--conns",
                "4",
                "--duration",
                "1",
            ],
        ),
    );
    client.expect_success(RUN_DEADLINE, &server.transcript());
    let round_trips = verified_round_trips(&client.stdout)
        .unwrap_or_else(|| panic!("no \"N verified round trips\" line{}", client.transcript()));
    assert!(
        round_trips > 0,
        "0 verified round trips{}",
        client.transcript()
    );
    assert!(
        client.stdout.contains(&format!("stack {stack} conns 4 ")),
        "result line does not name stack {stack} with 4 connections{}",
        client.transcript()
    );
    // Namespace B has no route but the veth, so the messages crossed it;
    // at least their payloads (32 B each) arrived on A's end.
    let rx = net.rx_bytes_a() - rx_before;
    assert!(
        rx >= round_trips * 32,
        "{rx} bytes received on {} for {round_trips} round trips",
        net.veth_a
    );
    println!(
        "{stack}: {round_trips} verified round trips across the veth ({rx} bytes in)\n{}",
        client.stdout.trim_end()
    );

    // The server outlives its client and stops on Ctrl-C.
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "server exited after the run{}",
        server.transcript()
    );
    server.stop();
    assert!(
        server.stdout.contains("stopping"),
        "server did not say it was stopping{}",
        server.transcript()
    );
}

/// The count in "... : N verified round trips in T s".
fn verified_round_trips(stdout: &str) -> Option<u64> {
    let line = stdout
        .lines()
        .find(|l| l.contains("verified round trips"))?;
    let before = line.split(" verified round trips").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

/// Two network namespaces joined by a veth pair: A holds `addr_a`
/// (10.x.y.1/30), B `addr_b` (.2); [`HostPair::add_host`] joins a third
/// to A. Dropping it kills whatever still runs in them and deletes them
/// (which deletes the veth pairs).
struct HostPair {
    index: u8,
    ns_a: String,
    ns_b: String,
    veth_a: String,
    addr_a: String,
    created: Vec<String>,
    veths: Vec<String>,
}

impl HostPair {
    /// The pair for test `index`, or `None` after printing why namespaces
    /// cannot be had here; fails instead when `WSBENCH_REQUIRE_NETNS=1`.
    fn create_or_skip(index: u8) -> Option<HostPair> {
        match HostPair::create(index) {
            Ok(pair) => Some(pair),
            Err(why) => {
                if std::env::var("WSBENCH_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
                    panic!("network namespaces unavailable: {why} (and WSBENCH_REQUIRE_NETNS=1)");
                }
                println!("SKIPPED: network namespaces unavailable: {why}");
                None
            }
        }
    }

    fn create(index: u8) -> Result<HostPair, String> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(format!("not root (euid {euid})"));
        }
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(format!("`ip -V` exited {}", o.status)),
            Err(e) => return Err(format!("`ip` (iproute2) not runnable: {e}")),
        }
        remove_stale_namespaces();
        let pid = std::process::id();
        // Interface names are at most 15 bytes and share the root
        // namespace until moved: "wsb" + pid (at most 7 digits) + 2.
        let mut pair = HostPair {
            index,
            ns_a: format!("wsbench-{pid}-{index}-a"),
            ns_b: format!("wsbench-{pid}-{index}-b"),
            veth_a: format!("wsb{pid}{index}a"),
            addr_a: format!("10.213.{index}.1"),
            created: Vec::new(),
            veths: Vec::new(),
        };
        let addr_b = format!("10.213.{index}.2");
        // Until they are moved, the veth ends live in the root namespace;
        // `Drop` deletes them there too if setup stops in between.
        let (a, b) = (pair.ns_a.clone(), pair.ns_b.clone());
        let (va, vb) = (pair.veth_a.clone(), format!("wsb{pid}{index}b"));
        pair.veths = vec![va.clone(), vb.clone()];
        ip(&["netns", "add", &a])?;
        pair.created.push(a.clone());
        ip(&["netns", "add", &b])?;
        pair.created.push(b.clone());
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &a])?;
        ip(&["link", "set", &vb, "netns", &b])?;
        let cidr_a = format!("{}/30", pair.addr_a);
        let cidr_b = format!("{addr_b}/30");
        ip(&["-n", &a, "addr", "add", &cidr_a, "dev", &va])?;
        ip(&["-n", &b, "addr", "add", &cidr_b, "dev", &vb])?;
        for (ns, veth) in [(&a, &va), (&b, &vb)] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", veth, "up"])?;
        }
        Ok(pair)
    }

    /// A third host, C, joined to A by a veth pair of its own: returns C's
    /// namespace and the address by which C reaches A (10.214.x.1, C being
    /// .2).
    fn add_host(&mut self) -> Result<(String, String), String> {
        let (pid, index) = (std::process::id(), self.index);
        let c = format!("wsbench-{pid}-{index}-c");
        let (vac, vc) = (format!("wsb{pid}{index}c"), format!("wsb{pid}{index}d"));
        let (addr_ac, addr_c) = (format!("10.214.{index}.1"), format!("10.214.{index}.2"));
        ip(&["netns", "add", &c])?;
        self.created.push(c.clone());
        ip(&["link", "add", &vac, "type", "veth", "peer", "name", &vc])?;
        self.veths.extend([vac.clone(), vc.clone()]);
        ip(&["link", "set", &vac, "netns", &self.ns_a])?;
        ip(&["link", "set", &vc, "netns", &c])?;
        ip(&[
            "-n",
            &self.ns_a,
            "addr",
            "add",
            &format!("{addr_ac}/30"),
            "dev",
            &vac,
        ])?;
        ip(&["-n", &c, "addr", "add", &format!("{addr_c}/30"), "dev", &vc])?;
        ip(&["-n", &c, "link", "set", "lo", "up"])?;
        ip(&["-n", &c, "link", "set", &vc, "up"])?;
        ip(&["-n", &self.ns_a, "link", "set", &vac, "up"])?;
        Ok((c, addr_ac))
    }

    /// `wsbench args...` inside namespace `ns`. `ip netns exec` execs the
    /// command, so the child's pid is wsbench's own and SIGINT reaches it.
    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, WSBENCH]).args(args);
        cmd
    }

    /// Bytes received on A's end of the veth.
    fn rx_bytes_a(&self) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/rx_bytes", self.veth_a);
        let out = ip_output(&["netns", "exec", &self.ns_a, "cat", &path])
            .unwrap_or_else(|e| panic!("reading {path} in {}: {e}", self.ns_a));
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path} in {}: {out:?}: {e}", self.ns_a))
    }
}

impl Drop for HostPair {
    fn drop(&mut self) {
        for ns in &self.created {
            kill_all_in(ns);
        }
        for ns in &self.created {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("two_hosts: cleanup: {e}");
            }
        }
        // Left in the root namespace only when setup stopped before the
        // move; deleting one end deletes both. Quiet when already gone.
        for veth in &self.veths {
            if ip(&["link", "show", "dev", veth]).is_ok() {
                let _ = ip(&["link", "del", "dev", veth]);
            }
        }
    }
}

/// SIGKILLs every process in namespace `ns` and waits (bounded) until none
/// is left, so that deleting the namespace frees it and its veth.
fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<i32> = ip_output(&["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions; the pid is
            // one that iproute2 found inside our own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes `wsbench-<pid>-*` namespaces whose test process no longer
/// exists (left behind by a run that was SIGKILLed before its guards ran).
fn remove_stale_namespaces() {
    let Ok(list) = ip_output(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix("wsbench-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Runs `ip args...` within [`IP_DEADLINE`]; the error quotes its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    ip_output(args).map(drop)
}

fn ip_output(args: &[&str]) -> Result<String, String> {
    let shown = format!("`ip {}`", args.join(" "));
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    let out = read_in_thread(child.stdout.take().unwrap());
    let err = read_in_thread(child.stderr.take().unwrap());
    let status = wait_until(&mut child, Instant::now() + IP_DEADLINE)
        .ok_or_else(|| format!("{shown}: no exit within {IP_DEADLINE:?}"))?;
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{shown} failed ({status}): {}", err.trim()))
    }
}

fn read_in_thread(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Polls `child` until it exits or `deadline` passes; then kills it and
/// returns `None`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// A wsbench child with its output read line by line in two threads.
/// Dropping it kills the child if it still runs.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Receiver<(Stream, String)>,
    stdout: String,
    stderr: String,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} {cmd:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (stream, pipe) in [
            (Stream::Out, Box::new(out) as Box<dyn Read + Send>),
            (Stream::Err, Box::new(err)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    if tx.send((stream, line)).is_err() {
                        return;
                    }
                }
            });
        }
        Proc {
            name,
            child,
            lines,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    fn keep(&mut self, stream: Stream, line: &str) {
        let buf = match stream {
            Stream::Out => &mut self.stdout,
            Stream::Err => &mut self.stderr,
        };
        buf.push_str(line);
        buf.push('\n');
    }

    /// Waits for a stdout line containing `needle`.
    fn wait_line(&mut self, needle: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => {
                    self.keep(stream, &line);
                    if matches!(stream, Stream::Out) && line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} printed no {needle:?} line within {within:?}{}",
                        self.name,
                        self.transcript()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = match wait_until(&mut self.child, Instant::now() + STOP_DEADLINE) {
                        Some(status) => status.to_string(),
                        None => {
                            format!("closed its output, no exit within {STOP_DEADLINE:?}; killed")
                        }
                    };
                    return Err(format!(
                        "{} exited ({status}) before printing {needle:?}{}",
                        self.name,
                        self.transcript()
                    ));
                }
            }
        }
    }

    /// Waits for the child to exit and for the rest of its output.
    fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + within;
        let status = loop {
            while let Ok((stream, line)) = self.lines.try_recv() {
                self.keep(stream, &line);
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close with the process; a short grace for the readers.
        let drain_until = Instant::now() + Duration::from_secs(2);
        loop {
            let left = drain_until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => self.keep(stream, &line),
                Err(_) => break,
            }
        }
        status.ok_or_else(|| {
            format!(
                "{} did not exit within {within:?}; killed{}",
                self.name,
                self.transcript()
            )
        })
    }

    /// Ctrl-C.
    fn interrupt(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // own child, not yet reaped.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGINT) },
            0,
            "SIGINT to {pid}"
        );
    }

    /// Ctrl-C, and a clean exit within [`STOP_DEADLINE`].
    fn stop(&mut self) {
        self.interrupt();
        self.expect_success(STOP_DEADLINE, "\n(after SIGINT)");
    }

    /// Waits (bounded) for the child to exit and asserts that it exited 0;
    /// a failure shows its transcript, then `context` (the server's, say).
    fn expect_success(&mut self, within: Duration, context: &str) {
        let status = self
            .wait_exit(within)
            .unwrap_or_else(|e| panic!("{e}{context}"));
        assert!(
            status.success(),
            "{} exited {status}{}{context}",
            self.name,
            self.transcript()
        );
    }

    /// Waits (bounded) for the child to exit and asserts that it failed
    /// (`doing` what should fail); returns how.
    fn expect_failure(&mut self, within: Duration, doing: &str) -> ExitStatus {
        let status = self.wait_exit(within).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !status.success(),
            "{} exited {status} {doing}{}",
            self.name,
            self.transcript()
        );
        status
    }

    /// Everything the child printed so far, for failure messages.
    fn transcript(&self) -> String {
        format!(
            "\n--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.name, self.stdout, self.name, self.stderr
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
