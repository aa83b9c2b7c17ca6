//! permessage-deflate (RFC 7692) for the client, without I/O: the server's
//! answer to the offer, and each message deflated before it is framed and
//! inflated after its frames are put together.
//!
//! The client offers `permessage-deflate; client_max_window_bits` (see
//! [`super::wire::Upgrade`]) and honours whatever the server answers: the
//! window the server allows the client, and each side's context takeover.

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

/// The bytes a sync flush ends with, which RFC 7692 removes from each
/// message and the receiver puts back before inflating.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest window RFC 7692 allows, and the default of both sides.
const MAX_WINDOW_BITS: u8 = 15;

/// What the server's `Sec-WebSocket-Extensions` answer agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The server starts each message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client must start each message with an empty window.
    pub client_no_context_takeover: bool,
    /// The window the server compresses with at most.
    pub server_max_window_bits: u8,
    /// The window the client may compress with at most.
    pub client_max_window_bits: u8,
}

impl Params {
    /// Parses the server's answer (`permessage-deflate; k=v; ...`); an
    /// unknown or malformed parameter is an error, as RFC 7692 asks of a
    /// client.
    pub fn parse(answer: &str) -> Result<Params, String> {
        let mut parts = answer.split(';').map(str::trim);
        if parts.next() != Some("permessage-deflate") {
            return Err(format!("not a permessage-deflate answer: {answer:?}"));
        }
        let mut params = Params {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        };
        for part in parts.filter(|p| !p.is_empty()) {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (part, None),
            };
            let bits = || -> Result<u8, String> {
                value
                    .and_then(|v| v.parse::<u8>().ok())
                    .filter(|b| (8..=MAX_WINDOW_BITS).contains(b))
                    .ok_or_else(|| format!("{name} needs a value from 8 to 15 in {answer:?}"))
            };
            match name {
                "server_no_context_takeover" => params.server_no_context_takeover = true,
                "client_no_context_takeover" => params.client_no_context_takeover = true,
                "server_max_window_bits" => params.server_max_window_bits = bits()?,
                "client_max_window_bits" => params.client_max_window_bits = bits()?,
                _ => return Err(format!("unknown parameter {name:?} in {answer:?}")),
            }
        }
        Ok(params)
    }
}

/// One connection's compressor and decompressor.
pub struct Codec {
    params: Params,
    compress: Compress,
    decompress: Decompress,
}

impl Codec {
    /// The codec the server's answer agreed: zlib's fastest level (1), so
    /// that the client's side of a compressed echo stays lighter than the
    /// servers', which deflate at their libraries' own levels (6 for most);
    /// the window the server allows (zlib makes raw windows of 9 bits at
    /// least, so a server asking for 8 gets 9, which RFC 7692 warns some
    /// servers cannot take), and always the largest window to inflate with,
    /// which takes any smaller one.
    pub fn new(params: Params) -> Codec {
        let bits = params.client_max_window_bits.max(9);
        Codec {
            params,
            compress: Compress::new_with_window_bits(flate2::Compression::fast(), false, bits),
            decompress: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
        }
    }

    pub fn params(&self) -> Params {
        self.params
    }

    /// Deflates one message onto `out`: the payload of its frame, which
    /// goes out with RSV1 set.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let mut consumed = 0;
        loop {
            out.reserve(message.len() / 2 + 64);
            let before = self.compress.total_in();
            self.compress
                .compress_vec(&message[consumed..], out, FlushCompress::Sync)
                .map_err(|e| format!("deflating a message: {e}"))?;
            consumed += (self.compress.total_in() - before) as usize;
            // The flush is complete once it leaves room in the output.
            if consumed == message.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !out[start..].ends_with(&SYNC_TAIL) {
            return Err("a sync flush did not end with 00 00 ff ff".into());
        }
        out.truncate(out.len() - SYNC_TAIL.len());
        if self.params.client_no_context_takeover {
            self.compress.reset();
        }
        Ok(())
    }

    /// Inflates one message's payload (its frames' payloads put together)
    /// onto `out`. More than `limit_bytes` of output is an error, so that a
    /// broken server cannot make the client allocate without bound.
    pub fn decompress(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        limit_bytes: usize,
    ) -> Result<(), String> {
        let start = out.len();
        for input in [payload, &SYNC_TAIL[..]] {
            let mut consumed = 0;
            loop {
                if out.len() - start > limit_bytes {
                    return Err(format!(
                        "a compressed message inflates past {limit_bytes} bytes"
                    ));
                }
                out.reserve((input.len() * 4).clamp(256, 1 << 20));
                let before = self.decompress.total_in();
                let status = self
                    .decompress
                    .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
                    .map_err(|e| format!("inflating a message: {e}"))?;
                consumed += (self.decompress.total_in() - before) as usize;
                if status == Status::StreamEnd {
                    return Err("a compressed message ended its DEFLATE stream".into());
                }
                if consumed == input.len() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        if out.len() - start > limit_bytes {
            return Err(format!(
                "a compressed message inflates past {limit_bytes} bytes"
            ));
        }
        if self.params.server_no_context_takeover {
            self.decompress.reset(false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_like(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0u64;
        while out.len() < n {
            out.extend_from_slice(
                format!(
                    "{{\"id\":{i},\"price\":{}.{:02},\"side\":\"buy\"}}",
                    100 + i % 7,
                    i % 100
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(n);
        out
    }

    #[test]
    fn the_answer_is_parsed_and_nonsense_refused() {
        let p = Params::parse("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10; client_no_context_takeover").unwrap();
        assert_eq!(p.server_max_window_bits, 12);
        assert_eq!(p.client_max_window_bits, 10);
        assert!(p.client_no_context_takeover && !p.server_no_context_takeover);
        let p = Params::parse("permessage-deflate").unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (15, 15)
        );
        assert!(Params::parse("permessage-deflate; client_max_window_bits=16").is_err());
        assert!(Params::parse("permessage-deflate; client_max_window_bits").is_err());
        assert!(Params::parse("permessage-deflate; mystery").is_err());
        assert!(Params::parse("x-webkit-deflate-frame").is_err());
    }

    /// What one side compresses, the other inflates: a codec talking to a
    /// mirror of itself, message after message (context kept or not).
    #[test]
    fn messages_survive_the_round_trip_with_and_without_context() {
        for takeover in [false, true] {
            let params = Params {
                server_no_context_takeover: takeover,
                client_no_context_takeover: takeover,
                server_max_window_bits: 15,
                client_max_window_bits: if takeover { 15 } else { 11 },
            };
            let (mut a, mut b) = (Codec::new(params), Codec::new(params));
            let mut sizes_out = Vec::new();
            for (seq, n) in [0usize, 1, 32, 1024, 70_000, 1 << 20]
                .into_iter()
                .enumerate()
            {
                let mut message = json_like(n);
                if let Some(b) = message.first_mut() {
                    *b = b'0' + seq as u8;
                }
                let mut wire = Vec::new();
                a.compress(&message, &mut wire).unwrap();
                let mut back = Vec::new();
                b.decompress(&wire, &mut back, n + 1).unwrap();
                assert_eq!(back, message, "size {n}, takeover {takeover}");
                sizes_out.push(wire.len());
            }
            // JSON-like text compresses.
            assert!(sizes_out[5] < (1 << 20) / 4, "{sizes_out:?}");
        }
    }

    #[test]
    fn corrupt_or_oversized_payloads_are_errors() {
        let params = Params::parse("permessage-deflate").unwrap();
        let mut wire = Vec::new();
        Codec::new(params)
            .compress(&json_like(4096), &mut wire)
            .unwrap();
        let mut out = Vec::new();
        let err = Codec::new(params)
            .decompress(&wire, &mut out, 1000)
            .unwrap_err();
        assert!(err.contains("inflates past 1000"), "{err}");
        let garbage = [0xffu8; 64];
        assert!(Codec::new(params)
            .decompress(&garbage, &mut Vec::new(), 1 << 20)
            .is_err());
    }
}
