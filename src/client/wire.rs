//! The bytes on the wire: the WebSocket opening handshake, client frames
//! (masked, as RFC 6455 requires of a client) and server frames.
//!
//! The client writes its own framing instead of using a library because it
//! must never be the bottleneck: a frame is prepared once, masked once, and
//! per message only the 16 sequence-number bytes are re-masked. The probe
//! (`crate::probe`) reuses the handshake and frame helpers to send
//! malformed input.

use std::hash::{BuildHasher, Hasher};

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// RFC 6455 section 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest handshake response the client reads before giving up.
const MAX_HANDSHAKE_RESPONSE_BYTES: usize = 16 << 10;

/// 64 random bits from the standard library's per-process random keys;
/// good enough for handshake keys and mask keys, with no extra crate.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

/// A fresh, non-zero masking key.
pub fn random_mask() -> [u8; 4] {
    let k = (random_u64() as u32).max(1);
    k.to_be_bytes()
}

/// What the server must answer to `key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Performs the opening handshake on `stream`. Returns any bytes the server
/// sent after its response (they belong to the first frame).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> Result<Vec<u8>, String> {
    handshake_with(stream, host, path, false)
        .await
        .map(|(leftover, _)| leftover)
}

/// The opening handshake, optionally offering permessage-deflate (RFC 7692)
/// as browsers do. Returns the leftover bytes and whether the server
/// accepted compression.
pub async fn handshake_with<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
    offer_deflate: bool,
) -> Result<(Vec<u8>, bool), String> {
    let upgrade = Upgrade::new(host, path, offer_deflate);
    stream
        .write_all(upgrade.request.as_bytes())
        .await
        .map_err(|e| format!("sending the upgrade request: {e}"))?;

    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some(response) = upgrade.response(&buf)? {
            return Ok((
                buf[response.header_bytes..].to_vec(),
                response.extension.is_some(),
            ));
        }
        let mut chunk = [0u8; 2048];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the handshake response: {e}"))?;
        if n == 0 {
            return Err("server closed the connection during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The client's side of the opening handshake without I/O: the request to
/// send, and the check of the response.
pub struct Upgrade {
    /// The HTTP request, headers and blank line included.
    pub request: String,
    key: String,
    offer_deflate: bool,
}

/// A server's accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Bytes of the response; whatever follows belongs to the first frame.
    pub header_bytes: usize,
    /// The `Sec-WebSocket-Extensions` value the server answered with
    /// (only ever permessage-deflate, and only when it was offered).
    pub extension: Option<String>,
}

impl Upgrade {
    /// A request for `path` on `host` with a fresh key, offering
    /// permessage-deflate (with `client_max_window_bits`, as browsers do)
    /// if `offer_deflate`.
    pub fn new(host: &str, path: &str, offer_deflate: bool) -> Upgrade {
        let key_bytes = [random_u64().to_le_bytes(), random_u64().to_le_bytes()].concat();
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let extensions = if offer_deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        );
        Upgrade {
            request,
            key,
            offer_deflate,
        }
    }

    /// Checks the response in `buf`: `Ok(None)` while its headers are
    /// incomplete, the accepted upgrade once they are, or why it is refused
    /// (a status other than 101, a wrong accept key, an extension that was
    /// not offered, a response over 16 KiB).
    pub fn response(&self, buf: &[u8]) -> Result<Option<Accepted>, String> {
        let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > MAX_HANDSHAKE_RESPONSE_BYTES {
                return Err("handshake response larger than 16 KiB".into());
            }
            return Ok(None);
        };
        let header_bytes = pos + 4;
        let head = String::from_utf8_lossy(&buf[..header_bytes]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            return Err(format!("upgrade refused: {status:?}"));
        }
        let mut accept = None;
        let mut extension = None;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "sec-websocket-accept" {
                    accept = Some(value.trim().to_string());
                } else if name == "sec-websocket-extensions" {
                    let value = value.trim();
                    if !(self.offer_deflate && value.starts_with("permessage-deflate")) {
                        return Err(format!(
                            "server turned on an extension we did not ask for: {value}"
                        ));
                    }
                    extension = Some(value.to_string());
                }
            }
        }
        match accept {
            Some(a) if a == accept_key(&self.key) => Ok(Some(Accepted {
                header_bytes,
                extension,
            })),
            Some(a) => Err(format!("wrong Sec-WebSocket-Accept {a:?}")),
            None => Err("no Sec-WebSocket-Accept header in the response".into()),
        }
    }
}

/// Appends a frame header to `out`: FIN set, `opcode`, the payload length,
/// and the mask key when `mask` is given.
pub fn push_header(out: &mut Vec<u8>, fin: bool, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// XORs `data` with the mask, as if `data` started at payload offset
/// `offset` (the mask key repeats every 4 bytes).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}

/// A whole masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    push_header(&mut out, fin, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
    out
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// The three reserved bits, as the top bits of the first byte.
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload_len: u64,
    /// Bytes of header, mask key included.
    pub header_len: usize,
}

/// Parses a frame header from the start of `buf`; `None` when more bytes
/// are needed.
pub fn parse_header(buf: &[u8]) -> Option<FrameHeader> {
    if buf.len() < 2 {
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut header_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            (u64::from_be_bytes(buf[2..10].try_into().ok()?), 10)
        }
        n => (n as u64, 2),
    };
    if masked {
        header_len += 4;
    }
    if buf.len() < header_len {
        return None;
    }
    Some(FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0F,
        masked,
        payload_len,
        header_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn headers_round_trip_at_length_boundaries() {
        for len in [0usize, 125, 126, 65535, 65536, 16 << 20] {
            let mut out = Vec::new();
            push_header(&mut out, true, OP_BINARY, len, Some([1, 2, 3, 4]));
            let h = parse_header(&out).unwrap();
            assert_eq!(h.payload_len, len as u64);
            assert_eq!(h.header_len, out.len());
            assert!(h.masked && h.fin);
            assert_eq!(h.opcode, OP_BINARY);
            assert!(parse_header(&out[..out.len() - 1]).is_none());
        }
    }

    #[test]
    fn masking_twice_restores_the_payload() {
        let mut data = b"hello websocket".to_vec();
        apply_mask(&mut data, [9, 8, 7, 6], 0);
        assert_ne!(&data, b"hello websocket");
        apply_mask(&mut data, [9, 8, 7, 6], 0);
        assert_eq!(&data, b"hello websocket");
    }
}
