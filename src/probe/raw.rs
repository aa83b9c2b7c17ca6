//! A bare WebSocket connection: sends what a well-behaved client never
//! would and reads whatever the server answers, without judging it.
//!
//! The load client (`crate::client::Connection`) turns anything unexpected
//! into an error; the probe needs the opposite, a record of what came back
//! (frames, a close code, the end of the stream, a reset or silence).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use rustls::pki_types::ServerName;

use crate::client::wire::{self, FrameHeader};
use crate::client::Target;
use crate::settings::Transport;
use crate::settings::MAX_MESSAGE_BYTES;

/// How long TCP connect plus the opening handshake may take. Shorter than
/// the load client's: the server is local and idle, and a slow handshake
/// here would stretch every case.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// The largest frame a server may send us before we call it malformed: the
/// largest legitimate one is the echo of an over-limit message (a server
/// that enforces no limit), one byte over [`MAX_MESSAGE_BYTES`].
const MAX_SERVER_FRAME_BYTES: u64 = 2 * MAX_MESSAGE_BYTES as u64;

/// How many replies an outcome lists before it abbreviates.
const LISTED_REPLIES: usize = 3;

/// A reaction slower than this is named in the outcome: over loopback a
/// server reacts within a millisecond unless it waits on purpose (a linger
/// or shutdown timer), and that wait is worth knowing.
const NOTICEABLE_DELAY: Duration = Duration::from_millis(100);

/// The probe's end of a connection: TCP, or TLS over it.
type ProbeStream =
    tokio_util::either::Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// One upgraded connection and the server's unread bytes.
pub(super) struct RawConn {
    stream: ProbeStream,
    unread: Vec<u8>,
    pub mask: [u8; 4],
}

/// What one read from the server produced.
pub(super) enum Received {
    /// A whole frame, payload as sent (servers do not mask).
    Frame {
        header: FrameHeader,
        payload: Vec<u8>,
    },
    /// The server closed its side of the TCP connection.
    Eof,
    Reset,
    Error(String),
    /// Nothing (or no whole frame) before the deadline.
    TimedOut,
    /// A frame RFC 6455 forbids a server to send.
    Malformed(String),
}

/// How a write ended when it did not complete.
pub(super) enum SendError {
    /// The server stopped reading: the socket buffers filled and stayed full.
    Blocked,
    /// The connection is gone (reset, broken pipe); the read side says how.
    Failed,
}

impl RawConn {
    /// TCP connect, the TLS handshake for a TLS target (verified against
    /// the CA [`crate::tls`] made), and the opening handshake.
    pub async fn open(target: &Target) -> Result<RawConn, String> {
        let connect = async {
            let tcp = TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("connecting to {}: {e}", target.addr))?;
            tcp.set_nodelay(true)
                .map_err(|e| format!("TCP_NODELAY: {e}"))?;
            let mut stream = match target.transport {
                Transport::Plain => ProbeStream::Left(tcp),
                Transport::Tls => {
                    let config = crate::tls::client_config(None).map_err(|e| format!("{e:#}"))?;
                    let name = ServerName::try_from(target.addr.ip().to_string())
                        .map_err(|e| format!("server name: {e}"))?;
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake: {e}"))?;
                    ProbeStream::Right(Box::new(tls))
                }
            };
            let leftover = wire::handshake(&mut stream, &target.host, &target.path)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            Ok::<_, String>((stream, leftover))
        };
        let (stream, unread) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| format!("no connection within {} s", CONNECT_TIMEOUT.as_secs_f64()))??;
        Ok(RawConn {
            stream,
            unread,
            mask: wire::random_mask(),
        })
    }

    /// Writes `bytes` as they are, giving up after `limit`.
    pub async fn send(&mut self, bytes: &[u8], limit: Duration) -> Result<(), SendError> {
        match tokio::time::timeout(limit, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SendError::Failed),
            Err(_) => Err(SendError::Blocked),
        }
    }

    /// Sends FIN: from the server's side the same as our dropping the
    /// socket, but we can still read what it does about it.
    pub async fn shut_down_writing(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }

    /// Reads the next whole frame, or how the stream ended, by `deadline`.
    pub async fn read_frame(&mut self, deadline: Instant) -> Received {
        loop {
            if let Some(header) = wire::parse_header(&self.unread) {
                if header.masked {
                    return Received::Malformed("a masked frame".into());
                }
                if header.rsv != 0 {
                    return Received::Malformed("reserved bits set".into());
                }
                if header.payload_len > MAX_SERVER_FRAME_BYTES {
                    return Received::Malformed(format!(
                        "a frame announcing {} bytes",
                        header.payload_len
                    ));
                }
                let frame_bytes = header.header_len + header.payload_len as usize;
                if self.unread.len() >= frame_bytes {
                    let payload = self.unread[header.header_len..frame_bytes].to_vec();
                    self.unread.drain(..frame_bytes);
                    return Received::Frame { header, payload };
                }
                self.unread.reserve(frame_bytes - self.unread.len());
            }
            let have = self.unread.len();
            self.unread.resize(have + READ_CHUNK_BYTES, 0);
            let read = tokio::time::timeout_at(
                deadline.into(),
                self.stream.read(&mut self.unread[have..]),
            )
            .await;
            let got = match read {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    self.unread.truncate(have);
                    return match e.kind() {
                        ErrorKind::ConnectionReset => Received::Reset,
                        // A TLS peer that closed TCP without close_notify
                        // (rustls reports it as an error): a TCP close,
                        // which is what the cases judge.
                        ErrorKind::UnexpectedEof => Received::Eof,
                        _ => Received::Error(e.to_string()),
                    };
                }
                Err(_) => {
                    self.unread.truncate(have);
                    return Received::TimedOut;
                }
            };
            self.unread.truncate(have + got);
            if got == 0 {
                return Received::Eof;
            }
        }
    }

    /// Reads until the connection ends or `wait` passes, keeping every
    /// frame that came before the end.
    pub async fn observe(&mut self, wait: Duration) -> Observation {
        let started = Instant::now();
        let deadline = started + wait;
        let mut replies = Vec::new();
        let end = loop {
            match self.read_frame(deadline).await {
                Received::Frame { header, payload } => match header.opcode {
                    wire::OP_CLOSE => break close_end(&payload),
                    wire::OP_PING => replies.push(Reply::Ping),
                    wire::OP_PONG => replies.push(Reply::Pong {
                        bytes: payload.len(),
                    }),
                    opcode => replies.push(Reply::Data {
                        opcode,
                        bytes: payload.len(),
                    }),
                },
                Received::Eof => break End::Eof,
                Received::Reset => break End::Reset,
                Received::Error(e) => break End::Error(e),
                Received::TimedOut => break End::Open,
                Received::Malformed(what) => break End::Malformed(what),
            }
        };
        Observation {
            replies,
            end,
            end_after: started.elapsed(),
        }
    }
}

/// The end of a close frame's story: its code, if it carries a valid one.
fn close_end(payload: &[u8]) -> End {
    match payload.len() {
        0 => End::Close(None),
        1 => End::Malformed("a close frame with a 1-byte payload".into()),
        _ => End::Close(Some(u16::from_be_bytes([payload[0], payload[1]]))),
    }
}

/// What the server did after the probe's input, in order.
#[derive(Debug)]
pub(super) struct Observation {
    /// Frames before the end (or before the wait ran out).
    pub replies: Vec<Reply>,
    pub end: End,
    /// From the start of the observation to the end (or to the deadline).
    pub end_after: Duration,
}

/// A frame the server sent that did not end the connection.
#[derive(Debug)]
pub(super) enum Reply {
    /// A text, binary, continuation or unknown-opcode frame.
    Data {
        opcode: u8,
        bytes: usize,
    },
    Pong {
        bytes: usize,
    },
    Ping,
}

/// How a connection ended, or that it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// A close frame, with its status code if it had one.
    Close(Option<u16>),
    /// TCP closed without a close frame.
    Eof,
    Reset,
    Error(String),
    /// Still open when the wait ran out.
    Open,
    Malformed(String),
}

impl Observation {
    /// True when the server answered with data or a pong; a ping of its
    /// own (keepalive) is allowed at any time and not an answer.
    pub fn answered(&self) -> bool {
        self.replies.iter().any(|r| !matches!(r, Reply::Ping))
    }

    /// "closed with 1002", "echoed it (5 B binary), then kept open", ...
    pub fn describe(&self) -> String {
        let mut end = self.end.describe();
        if self.end != End::Open && self.end_after >= NOTICEABLE_DELAY {
            end += &format!(" after {:.1} s", self.end_after.as_secs_f64());
        }
        if self.replies.is_empty() {
            return end;
        }
        let mut listed: Vec<String> = self
            .replies
            .iter()
            .take(LISTED_REPLIES)
            .map(Reply::describe)
            .collect();
        if self.replies.len() > LISTED_REPLIES {
            listed.push(format!(
                "{} more frames",
                self.replies.len() - LISTED_REPLIES
            ));
        }
        format!("{}, then {end}", listed.join(", "))
    }
}

impl Reply {
    fn describe(&self) -> String {
        match *self {
            Reply::Data { opcode, bytes } => match opcode {
                wire::OP_BINARY => format!("echoed it ({bytes} B binary)"),
                wire::OP_TEXT => format!("echoed it ({bytes} B text)"),
                wire::OP_CONTINUATION => format!("sent a continuation ({bytes} B)"),
                op => format!("sent opcode {op:#x} ({bytes} B)"),
            },
            Reply::Pong { bytes } => format!("answered with a pong ({bytes} B)"),
            Reply::Ping => "pinged us".into(),
        }
    }
}

impl End {
    pub fn describe(&self) -> String {
        match self {
            End::Close(Some(code)) => format!("closed with {code}"),
            End::Close(None) => "closed with an empty close frame".into(),
            End::Eof => "closed without close frame".into(),
            End::Reset => "TCP reset".into(),
            End::Error(e) => format!("read error: {e}"),
            End::Open => "kept open".into(),
            End::Malformed(what) => format!("sent a malformed frame: {what}"),
        }
    }

    /// The server ended the connection (any way).
    pub fn closed(&self) -> bool {
        matches!(self, End::Close(_) | End::Eof | End::Reset)
    }
}

/// Close codes a peer may put on the wire (RFC 6455 7.4.1 and the IANA
/// registry): 1004-1006 and 1015 are reserved for reporting, never sent.
pub(super) fn valid_on_wire(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
