#!/usr/bin/env python3
"""Writes discussion.md from target-reports/results.json.

Usage, from the repository's root, after `cargo bench`, the flamegraph run
and `cargo run --release -- report`:

    python3 scripts/discussion.py > discussion.md

Every figure in the output comes from results.json (or, for the flamegraph
shares, from target-reports/flamegraphs/); the prose around them is
written here, and its comparisons (which stack led, which way a difference
went) are computed, so a new run cannot leave a stale claim behind.
tests/discussion.rs checks every figure against results.json.
"""
import json, re, html, os, sys
d = json.load(open('target-reports/results.json'))
G = d['groups']
ORDER = ["raw-tcp","tokio-tungstenite","axum","fastwebsockets","tokio-websockets","actix-ws","python-websockets","python-aiohttp"]
WS = ORDER[1:]
RUST_WS = ORDER[1:6]
def ms(group): return G.get(group, {}).get('measurements', [])
def get(group, stack, metric, **params):
    for m in ms(group):
        if m['stack']==stack and m['metric']==metric and all(m['params'].get(k)==v for k,v in params.items()):
            return m['value']
    return None
def us(x): return f"{x:,.1f} µs"
def ns(x): return f"{x:,.0f} ns"
def mibs(x): return f"{x:,.1f} MiB/s" if x < 100 else f"{x:,.0f} MiB/s"
def msgs(x): return f"{x:,.0f} msgs/s"
def b(x): return f"{x:,.0f} bytes"
def ratio(a, b_): return f"{a/b_:.2f}×"
out=[]; w=out.append
r0 = G['latency']['run']
# Runs before the setting was recorded have no field, or "unknown" once rewritten by wsbench.
cc = r0.get('tcp_congestion_control', 'unknown')
w("# Discussion\n")
w("What the reference run in `target-reports/` shows, and why. This file is written by")
w("`scripts/discussion.py` from `target-reports/results.json`: every figure below comes from")
w("that run and is checked against it by `tests/discussion.rs`; `target-reports/summary.md` has")
w("every table in full, with each stack's ratio to the fastest stack and to the raw-TCP floor.\n")
w("## The run\n")
w(f"- Machine: {r0['cpu']}, {r0['cpus']} CPUs, {r0['memory_bytes']/2**30:.0f} GiB, {r0['kernel']}, a nested virtual machine; {r0['rustc']}; TCP congestion control {cc if cc != 'unknown' else 'not recorded'}.")
w(f"- Placement `{r0['placement']}`: the client thread and the server's threads all on CPU 0; {r0['server_threads']} server worker thread, 1 client thread. Why this placement: see *Placement* below.")
def short(c): return c[:12] + ("-dirty" if c.endswith("-dirty") else "")
commits = sorted(set(short(g['run']['commit']) for g in G.values()))
w(f"- Commit{'s' if len(commits)>1 else ''}: " + ", ".join(f"`{c}`" for c in commits) + f"; run on {min(g['run']['date'] for g in G.values())[:10]}" + (", quick mode" if any(g['run']['quick'] for g in G.values()) else "") + ".")
w("- Versions: " + ", ".join(r0['versions'][s] for s in ORDER if s in r0['versions']) + ".")
w("\nTo reproduce: check out that commit and run `cargo bench`, then `cargo bench --bench latency -- --profile-time 5`")
w("for the flamegraphs, `cargo run --release -- report` and `python3 scripts/discussion.py > discussion.md`.")
w("Absolute figures move from run to run on this machine; the ratios within one run are what to read.\n")

# Latency
w("## Latency: one connection, one 32-byte message in flight\n")
w("| stack | mean | p50 | p99 | p99.9 | server CPU / msg | client CPU / msg |")
w("| --- | --- | --- | --- | --- | --- | --- |")
for s in ORDER:
    p = dict(kind='binary')
    vals = [get('latency', s, m, **p) for m in ['rtt_mean_us','rtt_p50_us','rtt_p99_us','rtt_p999_us','server_cpu_ns_per_msg','client_cpu_ns_per_msg']]
    if vals[0] is None: continue
    w(f"| {s} | {us(vals[0])} | {us(vals[1])} | {us(vals[2])} | {us(vals[3])} | {ns(vals[4])} | {ns(vals[5])} |")
w("")
print("\n".join(out))
out=[]; w=out.append
lat = {s: get('latency', s, 'rtt_p50_us', kind='binary') for s in ORDER}
mean = {s: get('latency', s, 'rtt_mean_us', kind='binary') for s in ORDER}
scpu = {s: get('latency', s, 'server_cpu_ns_per_msg', kind='binary') for s in ORDER}
ccpu = {s: get('latency', s, 'client_cpu_ns_per_msg', kind='binary') for s in ORDER}
fastest = min(RUST_WS, key=lambda s: mean[s])
tt, ax = 'tokio-tungstenite', 'axum'
if mean[fastest] > mean['raw-tcp']:
    w(f"The floor, a plain TCP echo on a tokio runtime, takes {us(mean['raw-tcp'])} per round trip on average; "
      f"the fastest WebSocket stack, {fastest}, {us(mean[fastest])}. The WebSocket framing, masking and "
      f"message handling of the leanest stack thus make a round trip {ratio(mean[fastest], mean['raw-tcp'])} as long as the floor's, which is "
      "mostly two system calls and a context switch on each side.")
else:
    w(f"The floor, a plain TCP echo on a tokio runtime, takes {us(mean['raw-tcp'])} per round trip on average, and {fastest} took "
      f"{us(mean[fastest])}: at 32 bytes the WebSocket work (a 2-byte header, a 4-byte mask over 32 bytes) costs less than the differences between runtimes. "
      + ("The floor runs on a tokio multi-thread runtime with one worker, as the tokio-based stacks do; actix-web runs each worker on a single-threaded runtime of its own, "
         "whose wake-up path is likely the shorter one (the flamegraphs below show where each spends). " if fastest == 'actix-ws' else
         "The difference is within this machine's run-to-run noise at this size. ")
      + "The floor is the cost of loopback, system calls and a tokio runtime, not a bound no stack can pass.")
d_mean = mean[ax]-mean[tt]; d_cpu = scpu[ax]-scpu[tt]
w(f"\n**What axum adds on top of tokio-tungstenite.** Both run the same tokio-tungstenite version; axum adds hyper's "
  f"HTTP/1.1 upgrade, its `Router` and its `WebSocket` wrapper. Per round trip axum took {us(mean[ax])} against {us(mean[tt])} "
  f"and spent {ns(scpu[ax])} of server CPU per message against {ns(scpu[tt])}. "
  + ("After the upgrade axum's wrapper only forwards each message to tokio-tungstenite's stream, so the difference is the "
     "extra layer of `Upgraded` I/O (hyper's boxed upgraded connection) that every read and write goes through, and it is "
     "small next to the round trip." if scpu[ax] > 1.03 * scpu[tt] else
     "The two are within a few percent, inside this machine's run-to-run noise: after the upgrade axum's wrapper only forwards each message to "
     "tokio-tungstenite's stream, and the extra layer of `Upgraded` I/O (hyper's boxed upgraded connection) under every read and write costs too little to show at 32 bytes. "
     "The throughput table below shows the same pair with larger messages."))
py_ws, py_ah = 'python-websockets', 'python-aiohttp'
w(f"\n**The Python pair.** The original question: websockets took {us(mean[py_ws])} per round trip and aiohttp {us(mean[py_ah])}, "
  f"so {'aiohttp' if mean[py_ah]<mean[py_ws] else 'websockets'} is {ratio(max(mean[py_ws],mean[py_ah]), min(mean[py_ws],mean[py_ah]))} faster here; "
  f"the server spent {ns(scpu[py_ws])} and {ns(scpu[py_ah])} of CPU per message. "
  f"Measured by the same client, the Rust pair is {ratio(mean[py_ws], mean[tt])} (websockets vs tokio-tungstenite) and "
  f"{ratio(mean[py_ah], mean[ax])} (aiohttp vs axum) faster per round trip. "
  + ("The framework beat the dedicated library in Python, " if mean[py_ah] < mean[py_ws] else "The dedicated library beat the framework in Python, ")
  + ("and in Rust the pair is within 5% of each other." if abs(mean[ax] / mean[tt] - 1) < 0.05
     else "and in Rust the dedicated library is the faster of the pair." if mean[tt] < mean[ax] else "and in Rust the framework was faster too."))
below = [s for s in ORDER if ccpu[s] < scpu[s]]
above = [s for s in ORDER if ccpu[s] >= scpu[s]]
w("\n**The client is not the bottleneck.** The client's CPU per message is the second CPU column. "
  + ("It is below the server's for every stack, the raw-TCP floor included. " if not above else
     "It is below the server's for " + ", ".join(below) + "; for " + ", ".join(above) + " it is not, so those rows measure the client as much as the server. ")
  + "With one connection the client waits for each echo in a blocking `read` (one `write` and one `read` per round trip, nothing else), "
  "while a server's runtime adds an `epoll_wait` and its scheduling; both sides pay the kernel's loopback path for what they send, "
  "which is most of a round trip at 32 bytes. That share is why every stack, the floor included, sits within a factor of two of the others.")
w("")

# Throughput
KI=1024; MI=1<<20
w("## Throughput: message size sweep, several messages in flight\n")
sizes=[16,128,KI,16*KI,128*KI,MI,16*MI]
def lab(x): return f"{x//MI} MiB" if x>=MI else (f"{x//KI} KiB" if x>=KI else f"{x} B")
w("| stack | " + " | ".join(lab(x) for x in sizes) + " | text 1 KiB | text 1 MiB |")
w("| --- |" + " --- |"*(len(sizes)+2))
for s in ORDER:
    row=[get('throughput', s, 'mib_per_s', size_bytes=x, kind='binary') for x in sizes]+[get('throughput', s, 'mib_per_s', size_bytes=KI, kind='text'), get('throughput', s, 'mib_per_s', size_bytes=MI, kind='text')]
    if all(v is None for v in row): continue
    w(f"| {s} | " + " | ".join(mibs(v) if v is not None else "–" for v in row) + " |")
w("\n(MiB/s of payload echoed; window 16 up to 128 KiB, 4 at 1 MiB, 2 at 16 MiB.)\n")
big = {s: get('throughput', s, 'mib_per_s', size_bytes=16*MI, kind='binary') for s in ORDER}
small = {s: get('throughput', s, 'mib_per_s', size_bytes=128, kind='binary') for s in ORDER}
best_big = max((s for s in RUST_WS if big[s]), key=lambda s: big[s])
best_small = max((s for s in RUST_WS if small[s]), key=lambda s: small[s])
w(f"Small messages are bound by per-message work and system calls: at 128 B the best WebSocket stack, {best_small}, echoed {mibs(small[best_small])} "
  f"against the floor's {mibs(small['raw-tcp'])}, which coalesces many messages into one read and one write because it knows no message boundaries. "
  f"Large messages are bound by copying and unmasking: at 16 MiB {best_big} led with {mibs(big[best_big])}, the floor reached {mibs(big['raw-tcp'])}. ")
others_small = sorted(small[s] for s in RUST_WS if s != best_small and small[s])
if others_small and small[best_small] > 2 * others_small[-1]:
    cpu_small = {s: get('throughput', s, 'server_cpu_ns_per_msg', size_bytes=128, kind='binary') for s in RUST_WS}
    rest = [s for s in RUST_WS if s != best_small and cpu_small[s]]
    w(f"\n**Why {best_small} leads with small messages.** At 128 B it echoed {mibs(small[best_small])} where the other Rust stacks echoed "
      f"{mibs(others_small[0])} to {mibs(others_small[-1])}, and its server spent {ns(cpu_small[best_small])} of CPU per message against "
      f"{ns(min(cpu_small[s] for s in rest))} to {ns(max(cpu_small[s] for s in rest))}. Its HTTP/1 dispatcher gathers what the handler sent during one pass into its write buffer "
      "and writes it with one system call, so the echoes of all the messages that arrived together leave in one `write`; our echo loops for the other stacks "
      "call each library's `send`, which flushes every echo with a system call of its own (`strace -c -f` on `wsbench run` with `--size 128 --window 16` shows the counts). "
      "A handler that queues several messages and flushes once would close much of the gap; the suite measures the pattern each library documents.")
bt = {s:get('throughput', s, 'mib_per_s', size_bytes=MI, kind='binary') for s in ORDER}
tx = {s:get('throughput', s, 'mib_per_s', size_bytes=MI, kind='text') for s in ORDER}
w("Text costs UTF-8 validation on the server: at 1 MiB, binary against text was " + "; ".join(f"{s} {mibs(bt[s])} vs {mibs(tx[s])}" for s in RUST_WS if bt[s] and tx[s]) + ".")
# The client's CPU per message against the server's, every throughput case.
tp_ratios=[]
for m in ms('throughput'):
    if m['metric']!='client_cpu_ns_per_msg': continue
    sv=get('throughput', m['stack'], 'server_cpu_ns_per_msg', **m['params'])
    if sv: tp_ratios.append((m['stack'], m['params'], m['value'], sv))
ws_ratios=[r for r in tp_ratios if r[0]!='raw-tcp']
floor_ratios=[r for r in tp_ratios if r[0]=='raw-tcp']
above_ws=[r for r in ws_ratios if r[2]>=r[3]]
def case(st,p,c,sv): return f"{st} {p['kind']} {lab(p['size_bytes'])} ({ns(c)} against {ns(sv)}, {c/sv:.2f} of it)"
if not above_ws:
    w("\n**The client in this group.** Its CPU per message is below the server's in every throughput case of every WebSocket stack.")
else:
    smallest=min(p['size_bytes'] for _,p,_,_ in above_ws)
    w(f"\n**The client in this group.** Its CPU per message is below the server's in {len(ws_ratios)-len(above_ws)} of the {len(ws_ratios)} WebSocket cases; not in "
      + "; ".join(case(*r) for r in above_ws) + ". "
      + ((f"This is a message of {lab(smallest)}" if len(above_ws)==1 else f"All of these are messages of {lab(smallest)} or more") + ", where both sides do about the same work per byte: each copies every byte into the kernel and out of it once, "
         "the server also unmasks it and the client compares it with what it sent. What decides the split there is which thread the kernel charges for transmitting: "
         "it sends a socket's queued data from whichever thread happens to trigger it, so a reader's window update sends the peer's queued echoes, and TCP's pacing and small-queue timers run in whichever thread is on the core. "
         "(The client asks for a 32 MiB receive buffer so that its own window never closes; before that, its profiles showed it sending the servers' echoes.) "
         "At these sizes the figures measure both sides together, and a run can land on either side."
         if smallest >= 128*KI else "Those figures measure the client as much as the server."))
if floor_ratios:
    lo=min(c/sv for _,_,c,sv in floor_ratios); hi=max(c/sv for _,_,c,sv in floor_ratios)
    w(f" Against the raw-TCP floor the client's CPU per message is {lo:.2f} to {hi:.2f} of the server's across the sizes: parity, not below. "
      "That server does no work per message at all: it copies whatever bytes arrive back in one `read` and one `write`, and the client makes the same system calls for the same bytes "
      "(one `send` per batch of messages, one blocking `read`) and also checks every byte of every echo. "
      "No client that verifies its echoes can be cheaper than a byte copier; the floor's throughput figures are limited by both sides together, and the WebSocket stacks' ratios to the floor understate how close they come to it.")
act16 = big.get('actix-ws')
others16 = sorted(big[s] for s in RUST_WS if s != 'actix-ws' and big.get(s))
if act16 and others16 and act16 < 0.5 * others16[0]:
    w(f"\nactix-ws is the outlier above 1 KiB in this run ({mibs(act16)} at 16 MiB). Its session sends every message through a channel to the response stream and it makes several allocations per round trip (see *Memory*); "
      "whether that explains the whole gap, or whether its handling of several messages arriving in one read does, we have not established yet: treat this figure as a finding to check, not a verdict.")
w("")
print("\n".join(out))
out=[]; w=out.append
# Scaling
w("## Scaling: connections all active, one 32-byte message in flight on each\n")
counts=[1,10,100,1000,8192]
w("| stack | " + " | ".join(f"{c} conns" for c in counts) + " | p99 at 1000 | handshakes/s |")
w("| --- |" + " --- |"*(len(counts)+2))
for s in ORDER:
    row=[]
    for c in counts:
        v=get('scaling', s, 'msgs_per_s', conns=c)
        sk=get('scaling', s, 'skipped', conns=c)
        row.append(msgs(v) if v is not None else ("skipped" if sk is not None else "–"))
    p99=get('scaling', s, 'rtt_p99_us', conns=1000)
    hs=get('scaling', s, 'handshakes_per_s')
    w(f"| {s} | " + " | ".join(row) + f" | {us(p99) if p99 else '–'} | {f'{hs:,.0f} conns/s' if hs else '–'} |")
w("")
bigc=max(c for c in counts if any(get('scaling', s, 'msgs_per_s', conns=c) for s in ORDER))
tp={s:get('scaling', s, 'msgs_per_s', conns=bigc) for s in RUST_WS}
tp={k:v for k,v in tp.items() if v}
if tp:
    best=max(tp,key=tp.get); worst=min(tp,key=tp.get)
    w(f"With one core shared by client and server, aggregate throughput cannot grow with connections; what the table shows is how much each stack's per-connection "
      f"overhead (task wake-ups, buffers, timers) costs as the working set outgrows the caches. At {bigc:,} connections {best} kept {msgs(tp[best])} and {worst} {msgs(tp[worst])}. "
      "Latency under load is the queue: with every connection waiting its turn on one core, p99 grows with the connection count for every stack alike, so compare p99 between stacks at the same count, not across counts.")
    pk={s:get('scaling', s, 'peak_live_bytes', conns=bigc) for s in ORDER}
    pk={k:v for k,v in pk.items() if v}
    if pk:
        w(f"\nPeak server heap at {bigc:,} connections: " + "; ".join(f"{s} {v/2**20:,.1f} MiB" for s,v in pk.items()) + " (allocator, server threads only; RSS for Python).")
py_skip=[s for s in ORDER if get('scaling', s, 'skipped', conns=8192) is not None]
if py_skip:
    w(f"\n{', '.join(py_skip)} stop at 1,000 connections: at a few thousand round trips per second the largest point alone would take minutes, beyond the suite's time budget (the skip and its reason are recorded in the results).")
w("")
# Memory
w("## Memory\n")
w("Live heap per idle connection (each connection has completed the handshake and echoed one 32-byte message), by profile:\n")
profs=['defaults','suite','small-buffers','defaults-deflate-offered']
w("| stack | " + " | ".join(profs) + " | after close (delta) |")
w("| --- |" + " --- |"*(len(profs)+1))
for s in ORDER:
    row=[get('memory', s, 'live_bytes_per_idle_conn', profile=p) for p in profs]
    ac=get('memory', s, 'live_bytes_after_close_delta', profile='suite')
    if all(v is None for v in row): continue
    src='rss' if s.startswith('python') else 'allocator'
    w(f"| {s} ({src}) | " + " | ".join(b(v) if v is not None else "–" for v in row) + f" | {b(ac) if ac is not None else '–'} |")
w("\n(`defaults-deflate-offered`: the stack's defaults, and a client that offers permessage-deflate as browsers do; those connections only complete the handshake.)\n")
tti=get('memory','tokio-tungstenite','live_bytes_per_idle_conn',profile='suite'); tts=get('memory','tokio-tungstenite','live_bytes_per_idle_conn',profile='small-buffers')
if tti and tts:
    w(f"**Buffer defaults.** tokio-tungstenite allocates its 128 KiB read buffer when a connection opens, so an idle connection costs {b(tti)} with the defaults and the suite's settings alike; "
      f"with `read_buffer_size` at 4 KiB it costs {b(tts)}, {tti/tts:.0f} times less. axum inherits the same default "
      f"({b(get('memory','axum','live_bytes_per_idle_conn',profile='suite'))}, or {b(get('memory','axum','live_bytes_per_idle_conn',profile='small-buffers'))} with the small buffer). "
      f"fastwebsockets ({b(get('memory','fastwebsockets','live_bytes_per_idle_conn',profile='suite'))}) and tokio-websockets ({b(get('memory','tokio-websockets','live_bytes_per_idle_conn',profile='suite'))}) grow their buffers on demand and need no tuning. "
      f"The raw-TCP floor's {b(get('memory','raw-tcp','live_bytes_per_idle_conn',profile='suite'))} is its fixed 64 KiB copy buffer.")
pw=get('memory','python-websockets','live_bytes_per_idle_conn',profile='defaults'); pwd=get('memory','python-websockets','live_bytes_per_idle_conn',profile='defaults-deflate-offered')
if pw and pwd:
    w(f"\n**Compression.** websockets turns permessage-deflate on by default; when the client offers it, an idle connection's resident memory grew by {b(pwd)} instead of {b(pw)}: "
      "the zlib compressor and decompressor it creates per connection. aiohttp also accepted compression, "
      f"but its idle cost stayed at {b(get('memory','python-aiohttp','live_bytes_per_idle_conn',profile='defaults-deflate-offered'))}: it builds its zlib objects on the first message. None of the Rust stacks here negotiates compression.")
w("\nAllocations per round trip on the server side (binary):\n")
asz=[128,16*KI,MI]
w("| stack | " + " | ".join(f"{lab(x)}: allocs" for x in asz) + " | " + " | ".join(f"{lab(x)}: bytes" for x in asz) + " |")
w("| --- |" + " --- |"*(2*len(asz)))
for s in ORDER[:6]:
    a=[get('memory', s, 'server_allocs_per_rtt', size_bytes=x) for x in asz]
    by=[get('memory', s, 'server_alloc_bytes_per_rtt', size_bytes=x) for x in asz]
    if all(v is None for v in a): continue
    w(f"| {s} | " + " | ".join(f"{v:.1f} allocs" if v is not None else "–" for v in a) + " | " + " | ".join(b(v) if v is not None else "–" for v in by) + " |")
zero=[s for s in ORDER[:6] if get('memory', s, 'server_allocs_per_rtt', size_bytes=128) == 0]
if zero: w(f"\n{', '.join(zero)} echo a small message without touching the allocator once their buffers have grown; "
  + ", ".join(f"{s} makes {get('memory', s, 'server_allocs_per_rtt', size_bytes=128):.1f} allocs" for s in ORDER[:6] if s not in zero and get('memory', s, 'server_allocs_per_rtt', size_bytes=128) is not None)
  + " per 128-byte round trip. The client makes none per message (its figures are in `summary.md`).")
# Leak
lk=[(s, get('leak', s, 'live_bytes_after_cycles_delta')) for s in ORDER]
lk=[(s,v) for s,v in lk if v is not None]
if lk:
    cyc=next((m['params'].get('cycles') for m in ms('leak')), None)
    leaking=[s for s,v in lk if v > get('leak', s, 'live_bytes_tolerance')]
    w(f"\n**Leaks.** After {cyc:,} connect, echo and disconnect cycles (graceful closes, resets, resets mid-frame), the server's heap moved by: " + "; ".join(f"{s} {b(v)}" for s,v in lk) + ". "
      + ("Every stack stayed within its tolerance (the allocator's step-wise growth of tables and pools for the Rust stacks; a few CPython arenas for the Python ones, whose figures are RSS, which CPython and glibc do not give back to the system)."
         if not leaking else "Over the tolerance: " + ", ".join(leaking) + ". A steady growth per cycle is a leak; the Python figures are RSS, which CPython and glibc do not give back to the system."))
w("")
print("\n".join(out))
out=[]; w=out.append
# Conformance
w("## Bad input: the RFC 6455 probe\n")
cases=[]
for m in ms('conformance'):
    if m['metric'] not in cases: cases.append(m['metric'])
stk=[s for s in WS if any(m['stack']==s for m in ms('conformance'))]
w("| case | " + " | ".join(stk) + " |")
w("| --- |" + " --- |"*len(stk))
def cell(s,c):
    for m in ms('conformance'):
        if m['stack']==s and m['metric']==c: return "✓" if m['value']==1.0 else "✗"
    return "–"
for c in cases:
    w(f"| {c} | " + " | ".join(cell(s,c) for s in stk) + " |")
w("\n✓: the stack did what the RFC asks (closed the connection, with the right close code where it sent one); ✗: it did not. "
  "Every stack kept serving fresh connections after every case (the tests assert this). The outcome of each case, in words, is in `summary.md`.\n")
fails={}
for m in ms('conformance'):
    if m['value']==0.0: fails.setdefault(m['metric'],[]).append(m['stack'])
if fails:
    w("Departures from the RFC: " + "; ".join(f"`{c}`: {', '.join(ss)}" for c,ss in fails.items()) + ". "
      "Accepting an unmasked client frame breaks a MUST of section 5.1 (a server must close the connection); it matters for a server reachable from browsers only in that a non-conforming client goes unnoticed. "
      "The Rust stacks mostly end a bad connection by closing TCP without a close frame, which the RFC allows (the close frame is a SHOULD); python-websockets sends the exact close code every time. "
      "actix-ws waits about one second before closing TCP after a protocol error or a close handshake (actix-web's `client_disconnect_timeout`), and it checks the message limit only after the whole oversize message has arrived.\n")
# Placement
w("## Placement: where the threads run\n")
w("| stack | placement | mean | p50 | p99 | spread of rounds (cv) |")
w("| --- | --- | --- | --- | --- | --- |")
pl=[]
for s in ['raw-tcp','tokio-tungstenite']:
    for p in ['same-core','split-cores','unpinned']:
        v=[get('placement', s, mm, placement=p) for mm in ['rtt_mean_us','rtt_p50_us','rtt_p99_us','rtt_cv']]
        if v[0] is None: continue
        pl.append((s,p,v[3]))
        w(f"| {s} | {p} | {us(v[0])} | {us(v[1])} | {us(v[2])} | {v[3]:.3f} |")
if pl:
    avg={p: sum(c for s,pp,c in pl if pp==p)/max(1,sum(1 for s,pp,c in pl if pp==p)) for p in ['same-core','split-cores','unpinned']}
    best=min(avg,key=avg.get)
    w(f"\nThe coefficient of variation is the standard deviation of ten rounds' mean round trip over their mean: lower is more repeatable. "
      f"Averaged over the two stacks it was {', '.join(f'{p} {avg[p]:.3f}' for p in avg)}; "
      + (f"`same-core` is the reference placement because it was the most stable. " if best=='same-core' else
         (f"`{best}` and `same-core` were equally stable in this run (within a tenth of each other), and `same-core` stays the reference: with the same relative spread, its round trips are "
          f"{sum(get('placement', st, 'rtt_mean_us', placement=best) for st in ['raw-tcp','tokio-tungstenite']) / sum(get('placement', st, 'rtt_mean_us', placement='same-core') for st in ['raw-tcp','tokio-tungstenite']):.1f} times shorter, "
          "so its spread in microseconds, which is what hides a regression, is that much smaller. "
          if avg[best] >= 0.9 * avg['same-core'] else
          f"in this run `{best}` was the most stable, so the reference placement, `same-core`, should be reconsidered on this machine. "))
      + "On one core the client and the server take turns, so a round trip includes two context switches but never a cross-core wake-up, which on this nested virtual machine is the largest and least predictable cost; "
      "on real hardware a cross-core wake-up costs a few microseconds, and `split-cores` would be the placement that resembles production.\n")
# Flamegraphs
def hot(stack):
    path=f"target-reports/flamegraphs/{stack}.svg"
    if not os.path.exists(path): return None
    s=open(path).read()
    items=re.findall(r'<title>([^<]*) \((\d[\d,]*) samples, ([\d.]+)%\)</title>', s)
    tot=None; srv=None
    for t,n,p in items:
        t=html.unescape(t)
        if t=='all': tot=float(p)
        if t.startswith('srv-'): srv=float(p)
    kern=0.0
    for t,n,p in items:
        t=html.unescape(t)
        if t in ('__send','__libc_send','send','sendto','__GI___send','__recv','recv','recvfrom','__libc_recv','epoll_wait','__GI_epoll_wait','__libc_sendto','__libc_recvfrom'):
            kern+=float(p)
    return srv, kern
w("## Flamegraphs\n")
w("`target-reports/flamegraphs/<stack>.svg` is the latency benchmark (32 B binary) of each stack, sampled by pprof; the root of each tower is the thread, `client` or `srv-<stack>`.")
rows=[(s,hot(s)) for s in ORDER]
rows=[(s,h) for s,h in rows if h and h[0] is not None]
if rows:
    w(" Share of samples in the server's threads: " + "; ".join(f"{s} {h[0]:.0f}%" for s,h in rows) + ".")
w(" In every Rust stack the widest towers are the system calls that move the bytes, sends above all (on loopback a send also runs the receiving socket's TCP path and wakes its reader, "
  "so the sender pays for both), then the reads; `epoll_wait`, the runtimes' scheduling and the WebSocket work proper (header parsing, unmasking, UTF-8 validation, the client's comparison) are thin slices at 32 bytes. That is why the stacks are within a few microseconds of each other and of the floor at this size, "
  "and why the differences grow with message size, where unmasking and copying become the tower.\n")
print("\n".join(out))
out=[]; w=out.append
w("## Conclusion: what to pick\n")
lowlat=min(RUST_WS,key=lambda s: mean[s])
idle={s:get('memory',s,'live_bytes_per_idle_conn',profile='suite') for s in RUST_WS}
idle={k:v for k,v in idle.items() if v}
lowmem=min(idle,key=idle.get) if idle else None
bigs={s:big[s] for s in RUST_WS if big.get(s)}
bigbest=max(bigs,key=bigs.get) if bigs else None
w(f"- **Low latency**: {lowlat} had the lowest mean round trip ({us(mean[lowlat])}); but every Rust stack is within a few microseconds of it and of the floor at small sizes, so pick on the other criteria unless microseconds matter.")
if lowmem:
    if all(idle.get(k) for k in ['tokio-tungstenite','axum']) and get('memory','tokio-tungstenite','live_bytes_per_idle_conn',profile='small-buffers'):
        w(f"- **Many idle connections**: {lowmem} held an idle connection in {b(idle[lowmem])}. tokio-tungstenite and axum cost {b(idle['tokio-tungstenite'])} and {b(idle['axum'])} with their default 128 KiB read buffer; set `read_buffer_size` (4 KiB: {b(get('memory','tokio-tungstenite','live_bytes_per_idle_conn',profile='small-buffers'))}) if you hold many connections on them.")
if bigbest:
    bigworst=min(bigs,key=bigs.get)
    w(f"- **Large messages**: {bigbest} echoed 16 MiB messages fastest ({mibs(bigs[bigbest])}); {bigworst} was the slowest Rust stack there ({mibs(bigs[bigworst])}, with {ns(get('throughput', bigworst, 'server_cpu_ns_per_msg', size_bytes=16*MI, kind='binary'))} of server CPU per message against {ns(get('throughput', bigbest, 'server_cpu_ns_per_msg', size_bytes=16*MI, kind='binary'))}).")
w(f"- **A framework with routing**: axum costs little over tokio-tungstenite, the library it wraps ({us(mean['axum'])} against {us(mean['tokio-tungstenite'])} per round trip), and gives you routing, extractors and the rest of the HTTP stack; actix-ws is the alternative in the actix world, with more allocations per message and a one-second linger on close by default.")
w(f"- **Python**: between the original pair, {'aiohttp' if mean[py_ah]<mean[py_ws] else 'websockets'} was faster per round trip here; websockets conforms more strictly to the RFC (it rejects unmasked frames and always sends close codes) and its default compression costs memory per connection when clients ask for it.")
w("")
w("## Bias and limits\n")
w("In the spirit of rebar's BIAS document, what could tilt these results:\n")
w("- **Loopback only, one small machine.** Two cores of a nested virtual machine. No network latency, no packet loss, no NIC: what is measured is software cost. A cross-core wake-up here costs far more than on real hardware, which is why the reference placement puts everything on one core; on real hardware, split cores would be the realistic setting and the figures would be lower across the board.")
w("- **Client and server share one core and one process.** Under `same-core`, throughput figures are the sum of both sides' costs. The client is one thread: a current-thread tokio runtime for many connections, plain system calls for one connection (writes that never block, a blocking `read`, a `poll` only while part of a large message is unsent); the Rust servers run in the same process (on their own threads and runtime), the Python servers in a child process. The client's own CPU per message is measured and reported beside the server's.")
w("- **Our client.** It writes its own framing: frames are prepared and masked once, with only a 16-byte sequence number re-masked per message, several small frames in flight go out in one write, and large messages go out in 64 KiB pieces and are checked piece by piece as they arrive. It asks for a 32 MiB receive buffer on its sockets (the servers keep theirs), so that its receive window never holds a server's echoes back: when it did, the client's reads transmitted them and the client paid for the server's sending. A client library would cost more per message; the servers see the same bytes either way. It verifies every echo, which costs a memory comparison per message on the client.")
w("- **Same settings for all.** TCP_NODELAY on, compression off, 32 MiB limits, one server worker thread; each stack's deviations are in its `notes` in `src/stacks/`. tokio-websockets is set to send a whole message as one frame (it splits at 4 MiB by default). Stacks that would do better with more threads, or with their own tuning, are not shown at their best.")
w("- **Our echo loops.** Each stack's echo handler is ours, written as the stack's documentation suggests: it sends each echo with the library's `send`, which flushes it at once, so stacks that batch writes only inside their own framework (actix-web's dispatcher) gain with many small messages in flight. A handler that returns on the first error may drop a close frame the library had queued, which affects the conformance table's close-code column.")
if cc != 'unknown':
    w(f"- **The machine's TCP congestion control: {cc}.** Client and servers use the system's default. "
      + ("BBR paces each socket's sending with timers of the kernel's own (loopback has no `fq` qdisc to do it), and the profiles show that timer work in both threads, charged to whichever one is on the core; "
         "cubic does not pace, and large messages move faster on loopback with it. " if cc == 'bbr' else "")
      + "Large-message throughput depends on this setting: compare runs made with the same one (every run records it).")
w("- **Python by RSS, Rust by allocator.** Memory figures for the two are not comparable in absolute terms: RSS counts the interpreter's pools and is never given back; the allocator counts live Rust heap charged to server threads.")
w("- **Noise.** Each figure is from one run; criterion's confidence intervals for the timings are in its HTML report. Differences of a few percent between stacks are within this machine's run-to-run variation; to tell whether a change to one stack moved it, use `wsbench compare`, which interleaves the two builds (README, *Regression checks*).")
w("")
print("\n".join(out))
