//! The probe's cases: what each sends, what RFC 6455 expects and how the
//! server's answer is judged. Each case is one entry in [`CASES`].

use std::time::{Duration, Instant};

use super::raw::{valid_on_wire, End, Observation, RawConn, Received, SendError};
use crate::client::payload::{Bodies, Content};
use crate::client::secure::{Layers, SecureConnection};
use crate::client::wire::{self, client_frame, push_header};
use crate::client::{
    new_histogram, Budget, ClientError, Connection, MessageSpec, PayloadKind, Target,
};
use crate::settings::{Compression, Transport, MAX_MESSAGE_BYTES};
use crate::stacks::Protocol;

/// How long the probe waits for a server to react to bad input before it
/// records "kept open". A server that fails the connection does so at once;
/// this only bounds the wait on one that does not.
const REACTION_WAIT: Duration = Duration::from_secs(2);

/// How long a write of probe input may block before the server is said to
/// have stopped reading.
const WRITE_LIMIT: Duration = Duration::from_secs(5);

/// How long the slow reader leaves its echo unread.
const SLOW_READER_STALL: Duration = Duration::from_secs(2);

/// The slow reader's message: as large as the suite's largest message.
const SLOW_READER_MESSAGE_BYTES: usize = 16 << 20;

/// How long the slow reader waits for its whole echo once it reads.
const SLOW_READER_READ_LIMIT: Duration = Duration::from_secs(5);

/// Payload sent after an over-limit header before checking whether the
/// server refused it; the rest follows only if it did not.
const OVER_LIMIT_FIRST_BYTES: usize = 1 << 20;

/// A client frame header at its largest: 2 bytes, an 8-byte length, the
/// mask key.
const MAX_HEADER_BYTES: usize = 14;

/// What the still-serving check sends: small, so it fits any socket buffer.
const SERVE_CHECK_MESSAGE_BYTES: usize = 32;
const SERVE_CHECK_ROUND_TRIPS: u64 = 3;

/// Bounds the whole still-serving check (connect, echoes, close).
const SERVE_CHECK_LIMIT: Duration = Duration::from_secs(5);

/// How long the still-serving check waits for the close handshake; its
/// result does not count.
const SERVE_CHECK_CLOSE_LIMIT: Duration = Duration::from_secs(1);

/// Payload of the small bad frames.
const HELLO: &[u8] = b"hello";

/// The largest control-frame payload RFC 6455 5.5 allows.
const CONTROL_PAYLOAD_MAX_BYTES: usize = 125;

/// Opcode 0x3: reserved for future non-control frames (RFC 6455 5.2).
const OP_RESERVED_NON_CONTROL: u8 = 0x3;

/// RSV1: meaningful only under an extension (permessage-deflate), and none
/// was negotiated.
const RSV1_BIT: u8 = 0x40;

/// A close code below 1000: never valid (RFC 6455 7.4.2).
const INVALID_CLOSE_CODE: u16 = 999;

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;

/// One probe case.
pub(super) struct Case {
    pub name: &'static str,
    /// What RFC 6455 asks of the server, as the table shows it.
    pub expected: &'static str,
    how: How,
}

enum How {
    /// One bad frame on a fresh connection: the server must fail the
    /// connection, and a close frame, if it sends one, must carry `code`.
    BadFrame {
        frame: fn([u8; 4]) -> Vec<u8>,
        code: u16,
    },
    /// A header announcing one byte over the limit, then payload.
    OverLimit,
    /// Half a frame, then FIN.
    AbruptDisconnect,
    /// The connection opened before every other case and never written to.
    SilentPeer,
    /// A 16 MiB message whose echo is left unread for a while.
    SlowReader,
}

/// Every case, in the order the table lists them.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "unmasked-client-frame",
        expected: "close 1002",
        how: How::BadFrame {
            frame: unmasked_binary,
            code: CLOSE_PROTOCOL_ERROR,
        },
    },
    Case {
        name: "reserved-bits-set",
        expected: "close 1002",
        how: How::BadFrame {
            frame: rsv1_binary,
            code: CLOSE_PROTOCOL_ERROR,
        },
    },
    Case {
        name: "unknown-opcode",
        expected: "close 1002",
        how: How::BadFrame {
            frame: reserved_opcode,
            code: CLOSE_PROTOCOL_ERROR,
        },
    },
    Case {
        name: "control-frame-over-125-bytes",
        expected: "close 1002",
        how: How::BadFrame {
            frame: oversized_ping,
            code: CLOSE_PROTOCOL_ERROR,
        },
    },
    Case {
        name: "fragmented-control-frame",
        expected: "close 1002",
        how: How::BadFrame {
            frame: fragmented_ping,
            code: CLOSE_PROTOCOL_ERROR,
        },
    },
    Case {
        name: "invalid-utf8-text",
        expected: "close 1007",
        how: How::BadFrame {
            frame: invalid_utf8_text,
            code: CLOSE_INVALID_DATA,
        },
    },
    Case {
        name: "continuation-without-start",
        expected: "close 1002",
        how: How::BadFrame {
            frame: lone_continuation,
            code: CLOSE_PROTOCOL_ERROR,
        },
    },
    Case {
        name: "message-over-limit",
        expected: "close 1009 (any close will do)",
        how: How::OverLimit,
    },
    Case {
        name: "close-invalid-code",
        expected: "close 1002",
        how: How::BadFrame {
            frame: close_999,
            code: CLOSE_PROTOCOL_ERROR,
        },
    },
    Case {
        name: "abrupt-disconnect-mid-frame",
        expected: "close TCP",
        how: How::AbruptDisconnect,
    },
    Case {
        name: "half-open-peer-silent",
        expected: "nothing (may stay open)",
        how: How::SilentPeer,
    },
    Case {
        name: "slow-reader",
        expected: "echo intact; others served",
        how: How::SlowReader,
    },
];

fn unmasked_binary(_mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::new();
    push_header(&mut frame, true, wire::OP_BINARY, HELLO.len(), None);
    frame.extend_from_slice(HELLO);
    frame
}

fn rsv1_binary(mask: [u8; 4]) -> Vec<u8> {
    let mut frame = client_frame(true, wire::OP_BINARY, HELLO, mask);
    frame[0] |= RSV1_BIT;
    frame
}

fn reserved_opcode(mask: [u8; 4]) -> Vec<u8> {
    client_frame(true, OP_RESERVED_NON_CONTROL, HELLO, mask)
}

fn oversized_ping(mask: [u8; 4]) -> Vec<u8> {
    client_frame(
        true,
        wire::OP_PING,
        &[b'p'; CONTROL_PAYLOAD_MAX_BYTES + 1],
        mask,
    )
}

fn fragmented_ping(mask: [u8; 4]) -> Vec<u8> {
    client_frame(false, wire::OP_PING, HELLO, mask)
}

fn invalid_utf8_text(mask: [u8; 4]) -> Vec<u8> {
    // 0xC3 starts a two-byte sequence; 0x28 ('(') cannot continue it.
    client_frame(true, wire::OP_TEXT, &[0xC3, 0x28], mask)
}

fn lone_continuation(mask: [u8; 4]) -> Vec<u8> {
    client_frame(true, wire::OP_CONTINUATION, HELLO, mask)
}

fn close_999(mask: [u8; 4]) -> Vec<u8> {
    client_frame(
        true,
        wire::OP_CLOSE,
        &INVALID_CLOSE_CODE.to_be_bytes(),
        mask,
    )
}

/// What one case found.
pub(super) struct Verdict {
    pub outcome: String,
    pub conforms: bool,
}

impl Verdict {
    fn new(outcome: impl Into<String>, conforms: bool) -> Verdict {
        Verdict {
            outcome: outcome.into(),
            conforms,
        }
    }
}

/// The state that outlives one case: the silent connection and the ones
/// left dangling, so that every later case runs with them open.
pub(super) struct Probe<'a> {
    target: &'a Target,
    silent: Result<(RawConn, Instant), String>,
    dangling: Vec<RawConn>,
}

impl<'a> Probe<'a> {
    /// Opens the silent connection first, so that it is idle through every
    /// case that follows.
    pub async fn new(target: &'a Target) -> Probe<'a> {
        let silent = RawConn::open(target)
            .await
            .map(|conn| (conn, Instant::now()));
        Probe {
            target,
            silent,
            dangling: Vec::new(),
        }
    }

    pub async fn run(&mut self, case: &Case) -> Verdict {
        match case.how {
            How::BadFrame { frame, code } => self.bad_frame(frame, code).await,
            How::OverLimit => self.over_limit().await,
            How::AbruptDisconnect => self.abrupt_disconnect().await,
            How::SilentPeer => self.silent_peer().await,
            How::SlowReader => self.slow_reader().await,
        }
    }

    async fn bad_frame(&mut self, frame: fn([u8; 4]) -> Vec<u8>, code: u16) -> Verdict {
        let mut conn = match RawConn::open(self.target).await {
            Ok(conn) => conn,
            Err(e) => return could_not_open(e),
        };
        // A failed write is not the finding: the read side shows why.
        let _ = conn.send(&frame(conn.mask), WRITE_LIMIT).await;
        let seen = conn.observe(REACTION_WAIT).await;
        let conforms = failed_the_connection(&seen, Some(code));
        Verdict::new(seen.describe(), conforms)
    }

    /// Announces `MAX_MESSAGE_BYTES + 1` bytes. A server that checks the
    /// length in the header refuses after the first MiB; one that counts as
    /// it reads gets the rest (32 MiB over loopback takes milliseconds), so
    /// that a limit enforced late is told apart from no limit at all.
    async fn over_limit(&mut self) -> Verdict {
        let mut conn = match RawConn::open(self.target).await {
            Ok(conn) => conn,
            Err(e) => return could_not_open(e),
        };
        let announced_bytes = MAX_MESSAGE_BYTES + 1;
        let mut chunk = vec![0u8; OVER_LIMIT_FIRST_BYTES];
        // Every chunk starts at a multiple of 4 in the payload, so one
        // masked chunk serves for all of them.
        wire::apply_mask(&mut chunk, conn.mask, 0);
        let mut first = Vec::with_capacity(MAX_HEADER_BYTES + OVER_LIMIT_FIRST_BYTES);
        push_header(
            &mut first,
            true,
            wire::OP_BINARY,
            announced_bytes,
            Some(conn.mask),
        );
        first.extend_from_slice(&chunk);

        let blocked = matches!(
            conn.send(&first, WRITE_LIMIT).await,
            Err(SendError::Blocked)
        );
        let seen = conn.observe(REACTION_WAIT).await;
        if seen.end != End::Open || seen.answered() || blocked {
            let outcome = format!(
                "header and 1 MiB sent: {}{}",
                if blocked { "stopped reading, " } else { "" },
                seen.describe()
            );
            return Verdict::new(outcome, failed_the_connection(&seen, None));
        }

        let write_rest = async {
            let mut left_bytes = announced_bytes - OVER_LIMIT_FIRST_BYTES;
            while left_bytes > 0 {
                let n = left_bytes.min(chunk.len());
                conn.send(&chunk[..n], WRITE_LIMIT).await?;
                left_bytes -= n;
            }
            Ok::<(), SendError>(())
        };
        let blocked = matches!(write_rest.await, Err(SendError::Blocked));
        let seen = conn.observe(REACTION_WAIT).await;
        let outcome = format!(
            "all {announced_bytes} B sent: {}{}",
            if blocked { "stopped reading, " } else { "" },
            seen.describe()
        );
        Verdict::new(outcome, failed_the_connection(&seen, None))
    }

    /// Half of a 1000-byte frame, then FIN: what the server sees when a
    /// client vanishes mid-message. The connection is then left as it is.
    async fn abrupt_disconnect(&mut self) -> Verdict {
        let mut conn = match RawConn::open(self.target).await {
            Ok(conn) => conn,
            Err(e) => return could_not_open(e),
        };
        let announced_bytes = 1000;
        let mut part = Vec::new();
        push_header(
            &mut part,
            true,
            wire::OP_BINARY,
            announced_bytes,
            Some(conn.mask),
        );
        let mut payload = vec![b'x'; 10];
        wire::apply_mask(&mut payload, conn.mask, 0);
        part.extend_from_slice(&payload);
        let _ = conn.send(&part, WRITE_LIMIT).await;
        conn.shut_down_writing(WRITE_LIMIT).await;
        let seen = conn.observe(REACTION_WAIT).await;
        let conforms = failed_the_connection(&seen, None);
        self.dangling.push(conn);
        Verdict::new(seen.describe(), conforms)
    }

    /// The connection opened before the first case, never written to. A
    /// server may close idle connections or keep them; either conforms.
    async fn silent_peer(&mut self) -> Verdict {
        let (conn, opened_at) = match &mut self.silent {
            Ok(silent) => silent,
            Err(e) => return could_not_open(e.clone()),
        };
        let seen = conn.observe(REACTION_WAIT).await;
        let silent_s = opened_at.elapsed().as_secs_f64();
        let outcome = match seen.end {
            End::Open => format!("{} ({silent_s:.1} s silent)", seen.describe()),
            _ => format!("{} (within {silent_s:.1} s of silence)", seen.describe()),
        };
        let conforms = !seen.answered()
            && match seen.end {
                End::Close(Some(code)) => valid_on_wire(code),
                End::Error(_) | End::Malformed(_) => false,
                _ => true,
            };
        Verdict::new(outcome, conforms)
    }

    /// Sends a 16 MiB message and leaves the echo unread for a while: the
    /// server's write to this client blocks, and its other clients must not
    /// notice. Then the echo must arrive whole.
    async fn slow_reader(&mut self) -> Verdict {
        let mut conn = match RawConn::open(self.target).await {
            Ok(conn) => conn,
            Err(e) => return could_not_open(e),
        };
        let frame = client_frame(
            true,
            wire::OP_BINARY,
            &pattern(SLOW_READER_MESSAGE_BYTES),
            conn.mask,
        );
        match conn.send(&frame, WRITE_LIMIT).await {
            Ok(()) => {}
            Err(SendError::Blocked) => {
                return Verdict::new(
                    format!(
                        "stopped reading our 16 MiB (write blocked {} s)",
                        WRITE_LIMIT.as_secs()
                    ),
                    false,
                )
            }
            Err(SendError::Failed) => {
                let seen = conn.observe(REACTION_WAIT).await;
                return Verdict::new(format!("{} while we sent 16 MiB", seen.describe()), false);
            }
        }
        drop(frame);
        tokio::time::sleep(SLOW_READER_STALL).await;
        let others = match check_serving(self.target).await {
            Ok(()) => "others served during the stall".to_string(),
            Err(e) => format!("others NOT served during the stall ({e})"),
        };
        let others_served = others.starts_with("others served");
        let echo = read_message(&mut conn, Instant::now() + SLOW_READER_READ_LIMIT).await;
        let (echo_text, echo_ok) = match echo {
            Ok((wire::OP_BINARY, message)) => match verify_pattern(&message) {
                Ok(()) => ("echoed it (16 MiB verified)".to_string(), true),
                Err(e) => (format!("echo wrong: {e}"), false),
            },
            Ok((opcode, _)) => (format!("echoed it as opcode {opcode:#x}"), false),
            Err(e) => (format!("{e} instead of the echo"), false),
        };
        Verdict::new(format!("{echo_text}; {others}"), echo_ok && others_served)
    }
}

/// The row of a case whose connection could not even be opened: the server
/// has stopped accepting or upgrading, which is a finding.
fn could_not_open(e: String) -> Verdict {
    Verdict::new(format!("could not connect ({e})"), false)
}

/// Whether the server failed the connection as RFC 6455 7.1.7 asks: it
/// must close, answering nothing; the close frame is a SHOULD, so closing
/// without one (or a reset) conforms, but a close frame that is sent must
/// carry `code` (any code valid on the wire when `code` is `None`).
fn failed_the_connection(seen: &Observation, code: Option<u16>) -> bool {
    if seen.answered() {
        return false;
    }
    match seen.end {
        End::Close(Some(got)) => match code {
            Some(want) => got == want,
            None => valid_on_wire(got),
        },
        ref end => end.closed(),
    }
}

/// Reads one whole data message (fragments joined), skipping control
/// frames; `Err` says how the connection ended instead.
async fn read_message(conn: &mut RawConn, deadline: Instant) -> Result<(u8, Vec<u8>), String> {
    let mut started: Option<(u8, Vec<u8>)> = None;
    loop {
        let (header, payload) = match conn.read_frame(deadline).await {
            Received::Frame { header, payload } => (header, payload),
            Received::Eof => return Err(End::Eof.describe()),
            Received::Reset => return Err(End::Reset.describe()),
            Received::Error(e) => return Err(End::Error(e).describe()),
            Received::TimedOut => {
                return Err(format!(
                    "nothing whole within {} s",
                    SLOW_READER_READ_LIMIT.as_secs()
                ))
            }
            Received::Malformed(what) => return Err(End::Malformed(what).describe()),
        };
        match (header.opcode, &mut started) {
            (wire::OP_CLOSE, _) => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                return Err(End::Close(code).describe());
            }
            (wire::OP_PING | wire::OP_PONG, _) => {}
            (wire::OP_TEXT | wire::OP_BINARY, None) => {
                if header.fin {
                    return Ok((header.opcode, payload));
                }
                started = Some((header.opcode, payload));
            }
            (wire::OP_CONTINUATION, Some((_, message))) => {
                message.extend_from_slice(&payload);
                if header.fin {
                    return Ok(started.take().expect("message started"));
                }
            }
            (opcode, _) => return Err(format!("sent opcode {opcode:#x} out of place")),
        }
    }
}

/// Payload bytes that differ from their neighbours, so that a shifted,
/// truncated or reordered echo is caught.
fn pattern(len_bytes: usize) -> Vec<u8> {
    (0..len_bytes).map(|i| (i % 251) as u8).collect()
}

fn verify_pattern(message: &[u8]) -> Result<(), String> {
    if message.len() != SLOW_READER_MESSAGE_BYTES {
        return Err(format!(
            "{} B back, {SLOW_READER_MESSAGE_BYTES} B sent",
            message.len()
        ));
    }
    match message
        .iter()
        .enumerate()
        .position(|(i, &b)| b != (i % 251) as u8)
    {
        Some(at) => Err(format!("first wrong byte at offset {at}")),
        None => Ok(()),
    }
}

/// Whether the server still serves a newcomer: a fresh connection, a few
/// small echoes verified by the load client, and a close.
pub(super) async fn check_serving(target: &Target) -> Result<(), String> {
    if target.transport == Transport::Tls {
        return check_serving_tls(target);
    }
    let check = async {
        let mut conn = Connection::open(target).await.map_err(|e| e.what())?;
        conn.set_stall_timeout(SERVE_CHECK_LIMIT);
        let spec = MessageSpec {
            size_bytes: SERVE_CHECK_MESSAGE_BYTES,
            kind: PayloadKind::Binary,
            window: 1,
        };
        let round_trips = conn
            .run(
                spec,
                Budget::Count(SERVE_CHECK_ROUND_TRIPS),
                &mut new_histogram(),
            )
            .await
            .map_err(|e| e.what())?;
        if round_trips != SERVE_CHECK_ROUND_TRIPS {
            return Err(format!(
                "{round_trips} of {SERVE_CHECK_ROUND_TRIPS} echoes verified"
            ));
        }
        // The echoes are the proof. The close handshake is completed so
        // that the server sees a polite client, but its TCP close is not
        // waited for: some servers linger a second before it.
        let _ = tokio::time::timeout(SERVE_CHECK_CLOSE_LIMIT, async {
            match target.protocol {
                Protocol::WebSocket => {
                    conn.send_frame(true, wire::OP_CLOSE, &CLOSE_NORMAL.to_be_bytes())
                        .await?;
                    while conn.recv_frame().await?.0 != wire::OP_CLOSE {}
                    Ok::<(), ClientError>(())
                }
                Protocol::RawTcp => conn.close().await,
            }
        })
        .await;
        Ok(())
    };
    tokio::time::timeout(SERVE_CHECK_LIMIT + SERVE_CHECK_CLOSE_LIMIT, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no verified echo within {} s",
                SERVE_CHECK_LIMIT.as_secs()
            ))
        })
}

/// [`check_serving`] over TLS, through the client's TLS driver. It blocks
/// the probe's thread, which runs nothing else (every server runs on its
/// own threads), and every wait in it has its deadline.
fn check_serving_tls(target: &Target) -> Result<(), String> {
    let layers =
        Layers::new(Transport::Tls, Compression::Off, None).map_err(|e| format!("{e:#}"))?;
    let mut conn = SecureConnection::open(target, &layers).map_err(|e| e.what())?;
    conn.set_stall_timeout(SERVE_CHECK_LIMIT);
    let bodies = Bodies::new(Content::Random, SERVE_CHECK_MESSAGE_BYTES)?;
    let run = conn
        .run(
            &bodies,
            1,
            Budget::Count(SERVE_CHECK_ROUND_TRIPS),
            &mut new_histogram(),
        )
        .map_err(|e| e.what())?;
    if run.round_trips != SERVE_CHECK_ROUND_TRIPS {
        return Err(format!(
            "{} of {SERVE_CHECK_ROUND_TRIPS} echoes verified",
            run.round_trips
        ));
    }
    // The echoes are the proof; the close is polite, not checked.
    conn.set_stall_timeout(SERVE_CHECK_CLOSE_LIMIT);
    let _ = conn.close();
    Ok(())
}
