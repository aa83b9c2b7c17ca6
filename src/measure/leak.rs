//! The leak check's cycles and readings, shared by `benches/leak.rs` (which
//! records the figures) and `tests/leak.rs` (which asserts them): many
//! cycles of connect, one verified echo and disconnect, half of them with
//! the close handshake and half abrupt (a TCP reset right after the echo,
//! or in the middle of a frame's header or payload); then the server's
//! memory must come back to where it stood before the cycles, within
//! [`tolerance_bytes`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::client::{
    self, wire, Budget, ClientError, Connection, MessageSpec, PayloadKind, Target,
};
use crate::metrics::Source;
use crate::stacks::{Protocol, Runtime, ServerHandle, StackInfo};

/// Connections opened, echoed on and dropped together: enough to keep the
/// loopback busy, and well below every stack's listen backlog. A reset
/// leaves no TIME_WAIT behind; a close leaves one (on the server's side,
/// which ends the TCP connection first, or for raw TCP on the client's),
/// so at most 5,000 per stack at 10,000 cycles, within the ephemeral port
/// range and reused on loopback anyway.
pub const CONNS_PER_BATCH: usize = 32;

/// Close handshakes left to finish in the background, at most this many:
/// a close is done when the server ends the TCP connection, which actix-web
/// does only after its client-disconnect timeout (1 s by default), so
/// waiting for each batch's closes would make that stack's cycles last
/// minutes.
pub const MAX_PENDING_CLOSES: usize = 8 * CONNS_PER_BATCH;

/// Cycles before the baseline is read: as many as the connections open at
/// the peak (a batch and the closes still pending), with every kind of
/// disconnect, so that whatever grows once to the peak number of
/// connections (the runtime's I/O registrations, connection tables, buffer
/// pools) has grown before the baseline.
pub const WARM_UP_CYCLES: usize = MAX_PENDING_CLOSES + CONNS_PER_BATCH;

/// How long the server gets to release what the connections held.
const SETTLE_WAIT: Duration = Duration::from_secs(3);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What may stay allocated after the cycles without being called a leak,
/// for a stack read through the counting allocator. The allocator counts
/// bytes the program holds, not the allocator's own free lists, and the
/// warm-up has already grown what grows with the peak concurrency; what is
/// left is state that grows in steps (a table's capacity doubling once
/// more, a runtime's cached task or timer slots). 64 KiB is far below
/// what a leak of anything per connection amounts to: at 10,000 cycles it
/// is 6.5 bytes a cycle, at the tests' 1,000 cycles 65 bytes, less than
/// any stack's per-connection state.
pub const ALLOCATOR_TOLERANCE_BYTES: i64 = 64 << 10;

/// The same for a child process read through its RSS. CPython keeps freed
/// objects in its own pools and frees a 1 MiB arena only when every object
/// in it is gone, and glibc returns heap to the system only from the top,
/// so the RSS of a Python server settles above where it started even when
/// nothing leaks. 8 MiB is a few arenas; a leak of one 1 KiB object per
/// connection would still exceed it at 10,000 cycles.
pub const RSS_TOLERANCE_BYTES: i64 = 8 << 20;

/// The same for the live heap a garbage-collected runtime reports after a
/// full collection. V8 keeps compiled code and type feedback in that heap,
/// and it grows once while the server's hot functions are optimised: for
/// node-ws, +0.42 MB after 2,000 cycles, +0.58 MB after 10,000 and
/// +0.43 MB after 40,000, a step rather than a growth. 1 MiB covers the
/// step; a leak of 128 bytes per connection exceeds it at the bench's
/// 10,000 cycles, and one of more than 1 KiB at the tests' 1,000.
pub const GC_HEAP_TOLERANCE_BYTES: i64 = 1 << 20;

/// The allowance for a stack, by where its memory is read.
pub fn tolerance_bytes(stack: &StackInfo) -> i64 {
    match source(stack) {
        Source::Rss => RSS_TOLERANCE_BYTES,
        Source::GcHeap => GC_HEAP_TOLERANCE_BYTES,
        _ => ALLOCATOR_TOLERANCE_BYTES,
    }
}

/// One 32-byte binary round trip per connection: enough to make every
/// stack build its per-connection state (buffers that grow on first use).
const SPEC: MessageSpec = MessageSpec {
    size_bytes: 32,
    kind: PayloadKind::Binary,
    window: 1,
};

/// How a cycle's connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disconnect {
    /// The close handshake (raw TCP: shut down writing, wait for the end).
    Close,
    /// A reset right after the echo.
    Reset,
    /// A reset after part of a frame header.
    ResetInHeader,
    /// A reset after a frame header announcing 4 KiB and 1 KiB of payload,
    /// so the server holds a message in progress.
    ResetInPayload,
}

impl Disconnect {
    /// Every other cycle closes; of the rest, half reset after the echo and
    /// a quarter each in a frame's header and payload.
    fn of_cycle(i: usize) -> Disconnect {
        match i % 8 {
            1 | 5 => Disconnect::Reset,
            3 => Disconnect::ResetInHeader,
            7 => Disconnect::ResetInPayload,
            _ => Disconnect::Close,
        }
    }
}

/// The bytes a mid-frame reset leaves behind: the server gets them, then
/// the reset. (The reset may overtake them in the server's reads; either
/// way the server sees a connection end in the middle of a frame.)
fn partial_frame(protocol: Protocol, how: Disconnect) -> Vec<u8> {
    const ANNOUNCED: usize = 4 << 10;
    const SENT: usize = 1 << 10;
    match (protocol, how) {
        // FIN + binary, masked, 16-bit length follows: one byte of it.
        (Protocol::WebSocket, Disconnect::ResetInHeader) => vec![0x82, 0xFE, 0x10],
        (Protocol::WebSocket, _) => {
            let frame = wire::client_frame(
                true,
                wire::OP_BINARY,
                &[0x5a; ANNOUNCED],
                wire::random_mask(),
            );
            frame[..frame.len() - (ANNOUNCED - SENT)].to_vec()
        }
        // Three of the eight bytes of the length prefix.
        (Protocol::RawTcp, Disconnect::ResetInHeader) => vec![0x00, 0x10, 0x00],
        (Protocol::RawTcp, _) => {
            let mut out = (ANNOUNCED as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&[0x5a; SENT]);
            out
        }
    }
}

/// A reset, after part of a frame for the mid-frame kinds.
async fn reset(
    mut conn: Connection,
    protocol: Protocol,
    how: Disconnect,
) -> Result<(), ClientError> {
    if how != Disconnect::Reset {
        conn.send_raw(&partial_frame(protocol, how)).await?;
    }
    conn.abort();
    Ok(())
}

type PendingClose = (usize, tokio::task::JoinHandle<Result<(), ClientError>>);

async fn finish_close(target: &Target, (cycle, close): PendingClose) -> Result<(), ClientError> {
    let r = close.await.unwrap_or_else(|e| {
        Err(ClientError::new(
            &target.stack,
            format!("close task failed: {e}"),
        ))
    });
    r.map_err(|e| {
        ClientError::new(
            &target.stack,
            format!("cycle {cycle} (close): {}", e.what()),
        )
    })
}

/// Runs `n` cycles: opens [`CONNS_PER_BATCH`] connections at a time,
/// echoes once on each, verified, and ends each as
/// [`Disconnect::of_cycle`] says. Returns once every connection has ended.
pub async fn cycles(target: &Target, n: usize) -> Result<(), ClientError> {
    let mut closing: VecDeque<PendingClose> = VecDeque::new();
    let mut done = 0;
    while done < n {
        let batch = CONNS_PER_BATCH.min(n - done);
        let mut conns = Vec::with_capacity(batch);
        let opened = join_all((0..batch).map(|_| Connection::open(target))).await;
        for (cycle, c) in (done..).zip(opened) {
            conns.push(c.map_err(|e| {
                ClientError::new(&target.stack, format!("cycle {cycle}: {}", e.what()))
            })?);
        }
        client::drive(
            &mut conns,
            SPEC,
            Budget::Count(1),
            &mut client::new_histogram(),
        )
        .await?;
        for (cycle, conn) in (done..).zip(conns) {
            match Disconnect::of_cycle(cycle) {
                Disconnect::Close => closing.push_back((cycle, tokio::spawn(conn.close()))),
                how => reset(conn, target.protocol, how).await.map_err(|e| {
                    ClientError::new(
                        &target.stack,
                        format!("cycle {cycle} ({how:?}): {}", e.what()),
                    )
                })?,
            }
        }
        while closing.len() > MAX_PENDING_CLOSES {
            finish_close(target, closing.pop_front().expect("not empty")).await?;
        }
        done += batch;
    }
    for close in closing {
        finish_close(target, close).await?;
    }
    Ok(())
}

/// The server's live heap (allocator), the live heap its runtime reports
/// after a full collection (Node), or its resident set after a collection
/// (Python): see [`source`].
pub fn server_bytes(server: &ServerHandle) -> anyhow::Result<i64> {
    if let Some(live) = server.collect_garbage()? {
        return Ok(live);
    }
    super::server_memory(server.pid)
        .ok_or_else(|| anyhow::anyhow!("stack {}: its process is gone", server.stack))
}

/// Where the leak check reads a stack's memory. V8 keeps the heap pages it
/// grew for thousands of connections after a full collection has emptied
/// them, so a Node server's resident set stays tens of MiB up with nothing
/// leaked; its live heap after the collection is what it still holds, the
/// counterpart of the allocator's count. CPython returns what it frees to
/// its own pools and counts no live heap, so Python servers are read
/// through their resident set.
pub fn source(stack: &StackInfo) -> Source {
    match stack.runtime {
        Runtime::Native => Source::Allocator,
        Runtime::Python => Source::Rss,
        Runtime::Node => Source::GcHeap,
    }
}

/// The reading once it has stopped moving (two polls alike), or the last
/// one after [`SETTLE_WAIT`].
pub fn settled_bytes(server: &ServerHandle) -> anyhow::Result<i64> {
    let deadline = Instant::now() + SETTLE_WAIT;
    let mut last = server_bytes(server)?;
    loop {
        std::thread::sleep(POLL_INTERVAL);
        let now = server_bytes(server)?;
        if now == last || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// The lowest reading until it is back at `baseline` or [`SETTLE_WAIT`]
/// has passed: memory the server held for a moment and then gave back is
/// not kept.
pub fn returned_bytes(server: &ServerHandle, baseline: i64) -> anyhow::Result<i64> {
    let deadline = Instant::now() + SETTLE_WAIT;
    let mut lowest = server_bytes(server)?;
    while lowest > baseline && Instant::now() < deadline {
        std::thread::sleep(POLL_INTERVAL);
        lowest = lowest.min(server_bytes(server)?);
    }
    Ok(lowest)
}
