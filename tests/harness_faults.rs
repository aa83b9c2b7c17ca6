//! The harness under faults (issue 7): a server that crashes or stalls in
//! the middle of a run ends it with an error naming the stack within a
//! bounded time; results already written survive a failed write; and no
//! stack listens beyond 127.0.0.1 unless asked.
//!
//! The benches wrap these client errors with the benchmark's id
//! (`benches/common`'s `fail`); what is tested here is that the error
//! exists, comes in time and names the stack.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsbench::client::{
    self, Budget, ClientError, Connection, ErrorKind, MessageSpec, PayloadKind, Target,
};
use wsbench::placement::Placement;
use wsbench::results::{self, GroupResults, Measurement, ResultsFile, RunInfo};
use wsbench::settings::{Profile, ServerSettings};
use wsbench::stacks::{self, Host, Runtime, ServerHandle, StackInfo};

/// How long the client may wait for an echo in these tests.
const STALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long after a crash or stall the run must have ended: the stall
/// timeout plus a wide margin for a loaded machine.
const REPORT_WITHIN: Duration = Duration::from_secs(15);

/// How long the run goes on before the server crashes, so that the crash
/// comes in the middle of it.
const CRASH_AFTER: Duration = Duration::from_millis(500);

/// Connections and messages in flight on each: a windowed run, as the
/// throughput benchmark drives it.
const CONNS: usize = 4;
const SPEC: MessageSpec = MessageSpec {
    size_bytes: 32,
    kind: PayloadKind::Binary,
    window: 8,
};

fn settings() -> ServerSettings {
    ServerSettings {
        placement: Placement::Unpinned,
        profile: Profile::Suite,
        ..ServerSettings::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// True when `stack` can run here; otherwise prints why and returns false,
/// or fails when CI requires its runtime.
fn available_or_skip(stack: &StackInfo) -> bool {
    match stack.availability() {
        Ok(()) => true,
        Err(why) => {
            let required = match stack.runtime {
                Runtime::Native => None,
                Runtime::Python => Some("WSBENCH_REQUIRE_PYTHON"),
                Runtime::Node => Some("WSBENCH_REQUIRE_NODE"),
            };
            if let Some(var) = required.filter(|v| std::env::var(v).is_ok_and(|v| v == "1")) {
                panic!("{}: unavailable: {why} (and {var}=1)", stack.name);
            }
            println!("SKIPPED {}: {why}", stack.name);
            false
        }
    }
}

/// Opens [`CONNS`] connections to `target` with the short stall timeout.
async fn open(target: &Target) -> Vec<Connection> {
    let mut conns = client::connect_many(target, CONNS).await.unwrap();
    for c in &mut conns {
        c.set_stall_timeout(STALL_TIMEOUT);
    }
    conns
}

/// Drives `conns` for far longer than the test may take; returns the error
/// that ends the run, when it came and how many round trips were verified
/// before it (from the histogram, which keeps them on error). Panics if the
/// run ends without an error or does not end within 60 s.
async fn run_until_error(conns: &mut [Connection]) -> (ClientError, Instant, u64) {
    let mut hist = client::new_histogram();
    let run = client::drive(
        conns,
        SPEC,
        Budget::Until(Instant::now() + Duration::from_secs(120)),
        &mut hist,
    );
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the client must give up on its own, well within 60 s");
    let err = result.expect_err("the run must fail when its server fails");
    (err, Instant::now(), hist.len())
}

/// Starts `stack`, drives it and, [`CRASH_AFTER`] into the run, hands the
/// server to `crash` on another thread. Checks that the run ends with an
/// error naming the stack within [`REPORT_WITHIN`] of the crash, after
/// round trips were verified; returns the error and what `crash` returned.
fn crash_mid_run<T: Send + 'static>(
    stack: &StackInfo,
    crash: impl FnOnce(ServerHandle) -> T + Send + 'static,
) -> (ClientError, T) {
    let server = stack.start(&settings()).unwrap();
    let target = Target::of(&server);
    let rt = runtime();
    let mut conns = rt.block_on(open(&target));
    let crasher = std::thread::spawn(move || {
        std::thread::sleep(CRASH_AFTER);
        let at = Instant::now();
        (at, crash(server))
    });
    let (err, ended, verified) = rt.block_on(run_until_error(&mut conns));
    let (crashed_at, out) = crasher.join().unwrap();
    assert!(
        ended >= crashed_at,
        "{}: the run failed before the crash: {err}",
        stack.name
    );
    assert!(
        ended - crashed_at < REPORT_WITHIN,
        "{}: the error came {:.1} s after the crash: {err}",
        stack.name,
        (ended - crashed_at).as_secs_f64()
    );
    assert!(
        verified > 0,
        "{}: nothing was verified before the crash, so it was not mid-run",
        stack.name
    );
    assert_eq!(err.stack, stack.name, "the error names the stack: {err}");
    assert!(
        err.to_string()
            .starts_with(&format!("stack {}: ", stack.name)),
        "the message names the stack: {err}"
    );
    assert!(
        err.kind.is_disconnect() || matches!(err.kind, ErrorKind::Stalled { .. }),
        "the error says the server went away: {err}"
    );
    println!(
        "{}: error {:.2} s after the crash, {verified} round trips verified before: {err}",
        stack.name,
        (ended - crashed_at).as_secs_f64()
    );
    (err, out)
}

/// An in-process server shut down from another thread in the middle of a
/// windowed run: every connection drops at once.
#[test]
fn in_process_server_stopped_mid_run_ends_the_run_naming_the_stack() {
    for stack in stacks::in_process() {
        let (_, stopped) = crash_mid_run(stack, |server| server.shutdown());
        stopped.unwrap();
    }
}

/// A child-process server (Python's, Node's) killed with SIGKILL in the
/// middle of a windowed run. Its handle then reports that it had died,
/// naming the stack.
#[test]
fn child_server_killed_mid_run_ends_the_run_naming_the_stack() {
    let children = stacks::STACKS
        .iter()
        .filter(|s| s.host() == Host::ChildProcess && available_or_skip(s));
    for stack in children {
        let (_, stopped) = crash_mid_run(stack, |server| {
            let pid = server.pid.expect("a child process") as libc::pid_t;
            // SAFETY: kill has no memory effects; the child is not reaped
            // before its handle shuts down, so the pid is still its own.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            // Dead once the kernel has made it a zombie, as a server that
            // crashed mid-run is by the time its handle shuts it down.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !is_zombie(pid) {
                assert!(Instant::now() < deadline, "pid {pid} outlived SIGKILL");
                std::thread::sleep(Duration::from_millis(10));
            }
            server.shutdown()
        });
        let why = stopped.expect_err("a killed server cannot stop cleanly");
        let why = format!("{why:#}");
        assert!(why.contains(stack.name), "{why}");
        // The handle may find the child already reaped-ready ("already
        // exited") or see the SIGKILL while stopping it; either way it must
        // say that the process died, not that it stopped cleanly.
        assert!(
            why.contains("already exited") || why.contains("SIGKILL"),
            "{why}"
        );
    }
}

/// Whether a child process has died and waits to be reaped (state `Z` in
/// `/proc/<pid>/stat`, after the parenthesised command name).
fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat[stat.rfind(')')? + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Forwards each connection to `upstream`, passing at most `limit` bytes
/// from the server back to the client, then holds both connections open
/// and silent: a server that stalls in the middle of a message.
async fn stalling_proxy(upstream: SocketAddr, limit: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_rd, mut client_wr) = client.into_split();
                let (mut server_rd, mut server_wr) = server.into_split();
                let up = tokio::io::copy(&mut client_rd, &mut server_wr);
                let down = async {
                    let mut passed = 0;
                    let mut buf = [0u8; 4096];
                    while passed < limit {
                        let want = (limit - passed).min(buf.len());
                        let n = server_rd.read(&mut buf[..want]).await?;
                        if n == 0 {
                            return Ok(());
                        }
                        client_wr.write_all(&buf[..n]).await?;
                        passed += n;
                    }
                    std::future::pending::<std::io::Result<()>>().await
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    addr
}

/// Bytes passed back before the stall: the handshake and about a hundred
/// 32-byte echoes, cut in the middle of one.
const STALL_AFTER_BYTES: usize = 4001;

/// Every in-process stack behind a proxy that stops passing its echoes on:
/// the run ends with an error naming the stack and saying it stalled.
#[test]
fn server_stalling_mid_run_ends_the_run_naming_the_stack() {
    for stack in stacks::in_process() {
        let server = stack.start(&settings()).unwrap();
        let rt = runtime();
        let (err, stalled_for) = rt.block_on(async {
            let proxy = stalling_proxy(server.addr, STALL_AFTER_BYTES).await;
            let target = Target {
                addr: proxy,
                host: proxy.to_string(),
                ..Target::of(&server)
            };
            let mut conns = open(&target).await;
            let started = Instant::now();
            let (err, ended, verified) = run_until_error(&mut conns).await;
            // Each connection gets about a hundred echoes through.
            assert!(
                verified >= CONNS as u64,
                "{}: the stall came before the echoes: {err}",
                stack.name
            );
            (err, ended - started)
        });
        println!(
            "{}: error after {:.2} s: {err}",
            stack.name,
            stalled_for.as_secs_f64()
        );
        assert_eq!(err.stack, stack.name, "the error names the stack: {err}");
        assert!(
            matches!(err.kind, ErrorKind::Stalled { .. }),
            "the error says it stalled: {err}"
        );
        assert!(
            stalled_for < REPORT_WITHIN,
            "{}: the stall was reported after {:.1} s",
            stack.name,
            stalled_for.as_secs_f64()
        );
        drop(rt);
        server.shutdown().unwrap();
    }
}

/// `/proc/net/tcp` writes 127.0.0.1 as the bytes of the address in host
/// (little-endian) order.
const LOOPBACK_HEX: &str = "0100007F";

/// The local addresses (`ADDR:PORT` in hex) of sockets listening on `port`
/// in a `/proc/net/tcp`-style table.
fn listening_on(table: &str, port: u16) -> Vec<String> {
    let port_hex = format!(":{port:04X}");
    let Ok(text) = std::fs::read_to_string(table) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            // 0A is TCP_LISTEN.
            (local.ends_with(&port_hex) && *state == "0A").then(|| local.to_string())
        })
        .collect()
}

/// An IPv4 address of this machine other than loopback, if it has one.
fn non_loopback_ipv4() -> Option<Ipv4Addr> {
    let mut found = None;
    // SAFETY: getifaddrs fills a list that is read only before
    // freeifaddrs releases it; every pointer is checked for null.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let sin = &*(addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() && !ip.is_unspecified() {
                    found = Some(ip);
                    break;
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// Every stack, started with the default settings, listens on 127.0.0.1
/// only: its address says so, the kernel's socket table says so, and a
/// connection to the machine's other address is refused.
#[test]
fn every_stack_binds_loopback_only_by_default() {
    let other = non_loopback_ipv4();
    if other.is_none() {
        println!("SKIPPED the connect check: this machine has no IPv4 address besides loopback");
    }
    for stack in stacks::STACKS {
        if !available_or_skip(stack) {
            continue;
        }
        let server = stack.start(&ServerSettings::default()).unwrap();
        let port = server.addr.port();
        assert_eq!(
            server.addr.ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "{}",
            stack.name
        );
        let v4 = listening_on("/proc/net/tcp", port);
        assert_eq!(
            v4,
            vec![format!("{LOOPBACK_HEX}:{port:04X}")],
            "{}: the listening sockets on port {port}",
            stack.name
        );
        let v6 = listening_on("/proc/net/tcp6", port);
        assert!(v6.is_empty(), "{}: listens on IPv6 too: {v6:?}", stack.name);
        if let Some(ip) = other {
            let r = StdTcpStream::connect_timeout(&SocketAddr::new(ip.into(), port), STALL_TIMEOUT);
            assert!(
                r.is_err(),
                "{}: reachable through {ip}:{port}, not only through loopback",
                stack.name
            );
        }
        println!("{}: listens on 127.0.0.1:{port} only", stack.name);
        server.shutdown().unwrap();
    }
}

fn run_info() -> RunInfo {
    RunInfo {
        commit: "0000000".into(),
        date: "2025-01-01T00:00:00Z".into(),
        cpu: "test cpu".into(),
        cpus: 2,
        memory_bytes: 1 << 30,
        kernel: "Linux test".into(),
        rustc: "rustc test".into(),
        placement: "shared-core".into(),
        server_threads: 1,
        client_threads: 1,
        quick: false,
        versions: BTreeMap::new(),
        tcp_congestion_control: "cubic".into(),
        echo: "flush-each".into(),
        malloc: "glibc, mmap threshold fixed at 131072 B".into(),
        client_driver: "io_uring".into(),
    }
}

fn group(name: &str, value: f64) -> GroupResults {
    GroupResults {
        run: run_info(),
        pair_run: None,
        measurements: vec![Measurement {
            group: name.into(),
            bench: format!("{name}/raw-tcp"),
            stack: "raw-tcp".into(),
            stack_version: "tokio test".into(),
            params: BTreeMap::new(),
            metric: "value".into(),
            value,
            unit: "us".into(),
            source: "wallclock".into(),
            placement: "shared-core".into(),
            detail: None,
            rounds: None,
        }],
    }
}

fn values(path: &Path) -> BTreeMap<String, f64> {
    ResultsFile::load(path)
        .unwrap()
        .groups
        .into_iter()
        .map(|(name, g)| (name, g.measurements[0].value))
        .collect()
}

/// A bench writes its group after every stack (`Recorder::flush`), each
/// write merged into the file; a write that fails, as a run that fails
/// midway might, leaves what was written before whole and readable.
#[test]
fn a_failed_write_keeps_the_results_already_written() {
    let dir = std::env::temp_dir().join(format!("wsbench-harness-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("results.json");

    results::merge_group(&path, "latency", group("latency", 1.0)).unwrap();
    results::merge_group(&path, "throughput", group("throughput", 2.0)).unwrap();
    // A later flush of the same group replaces it and keeps the other.
    results::merge_group(&path, "latency", group("latency", 3.0)).unwrap();
    let expected = BTreeMap::from([
        ("latency".to_string(), 3.0),
        ("throughput".to_string(), 2.0),
    ]);
    assert_eq!(values(&path), expected);
    let written = std::fs::read(&path).unwrap();

    // The file cannot be replaced: the temporary file it is written
    // through is taken by a directory.
    let tmp = dir.join(format!(".results.json.tmp-{}", std::process::id()));
    std::fs::create_dir(&tmp).unwrap();
    let err = results::merge_group(&path, "memory", group("memory", 4.0)).unwrap_err();
    println!("failed write: {err:#}");
    assert_eq!(std::fs::read(&path).unwrap(), written, "{err:#}");
    assert_eq!(values(&path), expected);
    std::fs::remove_dir(&tmp).unwrap();

    // The results directory is a file.
    let blocked = dir.join("not-a-dir");
    std::fs::write(&blocked, b"x").unwrap();
    let err = results::merge_group(
        &blocked.join("results.json"),
        "memory",
        group("memory", 4.0),
    )
    .unwrap_err();
    println!("failed write: {err:#}");
    assert_eq!(values(&path), expected);

    // Once writing works again, the next flush adds to what was kept.
    results::merge_group(&path, "memory", group("memory", 4.0)).unwrap();
    assert_eq!(values(&path).len(), 3);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
