//! What can go wrong between the client and a server, as types that
//! callers and tests match on. Every error names the stack it came from.

use std::fmt;
use std::io;
use std::time::Duration;

/// A failure of the client or of the server it drives, naming the stack.
#[derive(Debug)]
pub struct ClientError {
    pub stack: String,
    /// Where the error happened, when the caller added it (for example
    /// "connection 3 of 64"); printed before the kind.
    pub context: Option<String>,
    pub kind: ErrorKind,
}

impl ClientError {
    /// An error described only in words, for callers outside the client
    /// that wrap or make their own.
    pub fn new(stack: &str, what: String) -> ClientError {
        ClientError::of(stack, ErrorKind::Other(what))
    }

    pub fn of(stack: &str, kind: ErrorKind) -> ClientError {
        ClientError {
            stack: stack.to_string(),
            context: None,
            kind,
        }
    }

    /// The same error, with `context` put in front of any it had.
    pub fn context(mut self, context: impl Into<String>) -> ClientError {
        let context = context.into();
        self.context = Some(match self.context.take() {
            Some(inner) => format!("{context}: {inner}"),
            None => context,
        });
        self
    }

    /// The message without the stack's name, for callers that wrap it.
    pub fn what(&self) -> String {
        match &self.context {
            Some(c) => format!("{c}: {}", self.kind),
            None => self.kind.to_string(),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stack {}: {}", self.stack, self.what())
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// Setting up the socket failed (creating it, its options, its mode).
    #[error("{during}: {source}")]
    Socket {
        during: &'static str,
        source: io::Error,
    },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("no connection within {} s", .after.as_secs())]
    ConnectTimeout { after: Duration },
    #[error("handshake: {0}")]
    Handshake(String),
    /// The TLS handshake or a TLS record failed (a certificate the client
    /// does not trust among them).
    #[error("TLS: {0}")]
    Tls(String),
    /// A compressed echo that does not inflate, or a compressed frame
    /// where none was agreed.
    #[error("permessage-deflate: {0}")]
    Deflate(String),
    /// The server accepted permessage-deflate, which the client cannot
    /// measure.
    #[error("compression was negotiated; this client only sends uncompressed messages")]
    Compressed,

    /// The server ended the TCP stream.
    #[error("the server closed the connection")]
    Closed,
    /// The server sent a close frame while an echo was awaited.
    #[error("the server closed the connection (close code {code:?}) while message {awaited} was awaited")]
    CloseFrame { code: Option<u16>, awaited: u64 },
    /// The server reset the connection under a read.
    #[error("reading: {0}")]
    Reset(io::Error),
    #[error("reading: {0}")]
    Read(io::Error),
    /// A send failed; `seq` is the last message being sent, if any.
    #[error("sending{}: {source}", .seq.map(|s| format!(" message {s}")).unwrap_or_default())]
    Send { seq: Option<u64>, source: io::Error },
    /// No echo arrived for the stall timeout; the watchdog shut the socket
    /// down.
    #[error("no echo for {:.1} s after {after} verified round trips: the server stalled or died", .timeout.as_secs_f64())]
    Stalled { after: u64, timeout: Duration },
    #[error("send blocked for {:.1} s", .after.as_secs_f64())]
    SendBlocked { after: Duration },
    #[error("nothing received for {:.1} s", .after.as_secs_f64())]
    NothingReceived { after: Duration },

    /// The echo of message `seq` is longer or shorter than the message.
    #[error("echo of message {seq} has {got_bytes} bytes, sent {sent_bytes}")]
    Length {
        seq: u64,
        got_bytes: u64,
        sent_bytes: u64,
    },
    /// A byte of the echo differs from the message.
    #[error("echo of message {seq} differs from what was sent at byte {at_byte}")]
    Differs { seq: u64, at_byte: usize },
    /// Another message's echo came in place of message `seq`'s.
    #[error("expected the echo of message {seq} but got one numbered {got:?} (dropped, repeated or reordered)")]
    OutOfOrder { seq: u64, got: String },
    /// A binary message came back as text, or the other way round.
    #[error("echo of message {seq} came back as opcode {got_opcode:#x}, sent {sent_opcode:#x}")]
    WrongKind {
        seq: u64,
        got_opcode: u8,
        sent_opcode: u8,
    },
    /// A frame that has no place here; `awaited` is the message whose
    /// echo was expected, if any.
    #[error("unexpected frame with opcode {opcode:#x}{}", .awaited.map(|s| format!(" while message {s} was awaited")).unwrap_or_default())]
    UnexpectedFrame { opcode: u8, awaited: Option<u64> },
    #[error("the server sent a masked frame (RFC 6455 5.1 forbids it)")]
    MaskedFrame,
    #[error("the server set reserved bits although no extension was agreed")]
    ReservedBits,

    #[error("expected a pong, got opcode {opcode:#x}")]
    NotPong { opcode: u8 },
    #[error("pong payload differs from the ping's")]
    PongPayload,
    #[error("server answered close with code {code}")]
    CloseCode { code: u16 },
    #[error("data after the close handshake")]
    DataAfterClose,
    #[error("server did not close the TCP connection after the close handshake")]
    NoTcpClose,

    /// An open-loop run ended with echoes owed: none came for `waited`.
    #[error("{missing} echoes missing (message {first} the first) after {:.1} s without any: dropped, or the server stalled or died", .waited.as_secs_f64())]
    MissingEchoes {
        missing: u64,
        waited: Duration,
        first: u64,
    },
    /// A broadcast delivery out of its sender's order.
    #[error("message {got} of {sender} arrived where message {expected} was due: {}", if .got < .expected { "a repeated or reordered delivery" } else { "a dropped or reordered delivery" })]
    Delivery {
        sender: String,
        got: u32,
        expected: u32,
    },
    /// A broadcast run ended with deliveries owed: none came for `waited`.
    #[error("{missing} broadcast deliveries missing (message {first} of sender {sender} the first) after {:.1} s without any: dropped, or the server stalled or died", .waited.as_secs_f64())]
    MissingDeliveries {
        missing: u64,
        waited: Duration,
        sender: usize,
        first: u32,
    },
    /// A counted run verified fewer (or more) round trips than asked.
    #[error("{verified} round trips verified, {expected} expected")]
    RoundTrips { verified: u64, expected: u64 },
    /// Made by a caller outside the client ([`ClientError::new`]).
    #[error("{0}")]
    Other(String),
}

impl ErrorKind {
    /// A failed read, a reset told apart.
    pub(super) fn read(e: io::Error) -> ErrorKind {
        match e.kind() {
            io::ErrorKind::ConnectionReset => ErrorKind::Reset(e),
            _ => ErrorKind::Read(e),
        }
    }

    /// Whether the server went away: it closed or reset the connection, or
    /// a send to it failed.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            ErrorKind::Closed
                | ErrorKind::CloseFrame { .. }
                | ErrorKind::Reset(_)
                | ErrorKind::Send { .. }
        )
    }
}
