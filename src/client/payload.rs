//! The messages the client sends, and how an echo is checked.
//!
//! Every message carries its sequence number, so a dropped, repeated,
//! reordered or corrupted echo is caught:
//!
//! - from 16 bytes up, the first 16 bytes are the sequence number in hex
//!   and the rest is a fixed printable pattern, so checking the body is a
//!   `memcmp` of each 4 KiB against a block of the pattern made once;
//! - below 16 bytes, every byte is derived from the sequence number.
//!
//! All bytes are ASCII, so the same payload is valid as a text message.

use super::error::ErrorKind;

/// Bytes that hold the sequence number at the start of a message.
pub const SEQ_BYTES: usize = 16;

const PATTERN: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";

/// Bytes of an echo compared at once against [`Template::period`]: a
/// multiple of the pattern's length, small enough for the block to stay in
/// the L1 cache. Comparing a large echo against a block that stays in
/// cache reads the echo alone from memory, where comparing it against a
/// whole template would read the template too: at 16 MiB, that second
/// stream made the client's check cost as much as the fastest server's
/// whole echo.
const CHECK_CHUNK_BYTES: usize = 64 * PATTERN.len();

/// Bytes after the sequence number repeat with this period (a multiple of
/// the pattern's length and of the 4-byte WebSocket mask).
pub const BODY_PERIOD_BYTES: usize = 4 * PATTERN.len();

/// The fixed pattern of every message from its start, `n` bytes long: the
/// bytes of every message but its sequence number.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| PATTERN[i % PATTERN.len()]).collect()
}

/// The fixed part of every message of one size.
#[derive(Debug, Clone)]
pub struct Template {
    body: Vec<u8>,
    /// The pattern from its start, [`CHECK_CHUNK_BYTES`] plus one period
    /// long, so that a chunk starting at any phase of the pattern has its
    /// expected bytes at `period[phase..]`.
    period: Vec<u8>,
}

impl Template {
    pub fn new(size_bytes: usize) -> Template {
        Template {
            body: pattern(size_bytes),
            period: pattern(CHECK_CHUNK_BYTES + PATTERN.len()),
        }
    }

    /// Whether `part`, found at byte `offset` of a message, is the pattern
    /// at those offsets.
    fn pattern_matches(&self, part: &[u8], offset: usize) -> bool {
        let mut i = 0;
        while i < part.len() {
            let n = CHECK_CHUNK_BYTES.min(part.len() - i);
            let phase = (offset + i) % PATTERN.len();
            if part[i..i + n] != self.period[phase..phase + n] {
                return false;
            }
            i += n;
        }
        true
    }

    pub fn size_bytes(&self) -> usize {
        self.body.len()
    }

    /// Writes message `seq` into `out` (which must be `size_bytes` long).
    /// Only the sequence-dependent bytes are written when `out` already
    /// holds the template, which is how the framed send buffers use it.
    pub fn write_seq(&self, seq: u64, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.body.len());
        if self.body.len() >= SEQ_BYTES {
            out[..SEQ_BYTES].copy_from_slice(&seq_hex(seq));
        } else {
            for (i, b) in out.iter_mut().enumerate() {
                *b = small_byte(seq, i);
            }
        }
    }

    /// The sequence-dependent first bytes of message `seq`: the first
    /// `min(size, 16)` bytes of the message, the only ones that change.
    pub fn seq_prefix(&self, seq: u64) -> ([u8; SEQ_BYTES], usize) {
        let n = self.body.len().min(SEQ_BYTES);
        let mut out = [0u8; SEQ_BYTES];
        if self.body.len() >= SEQ_BYTES {
            out = seq_hex(seq);
        } else {
            for (i, b) in out[..n].iter_mut().enumerate() {
                *b = small_byte(seq, i);
            }
        }
        (out, n)
    }

    /// The whole message `seq`, for callers that do not keep a buffer.
    pub fn message(&self, seq: u64) -> Vec<u8> {
        let mut out = self.body.clone();
        self.write_seq(seq, &mut out);
        out
    }

    /// Checks that `got` is exactly message `seq`; the error says what
    /// differs and where.
    pub fn verify(&self, seq: u64, got: &[u8]) -> Result<(), ErrorKind> {
        let want_len = self.body.len();
        if got.len() != want_len {
            return Err(ErrorKind::Length {
                seq,
                got_bytes: got.len() as u64,
                sent_bytes: want_len as u64,
            });
        }
        self.verify_part(seq, 0, got)
    }

    /// Checks that `part` is bytes `offset..offset + part.len()` of message
    /// `seq`, so that a large echo can be checked piece by piece as it
    /// arrives; the caller checks the length.
    pub fn verify_part(&self, seq: u64, offset: usize, part: &[u8]) -> Result<(), ErrorKind> {
        let differs = |at_byte: usize| ErrorKind::Differs { seq, at_byte };
        if self.body.len() < SEQ_BYTES {
            return match (0..part.len()).find(|&i| part[i] != small_byte(seq, offset + i)) {
                Some(i) => Err(differs(offset + i)),
                None => Ok(()),
            };
        }
        // The part of the sequence number in this piece, then the pattern.
        let numbered = SEQ_BYTES.saturating_sub(offset).min(part.len());
        let seq_matches = match numbered {
            0 => true,
            // A whole number, the common case: compared as one 16-byte
            // value rather than through a call to `memcmp`.
            SEQ_BYTES => <[u8; SEQ_BYTES]>::try_from(&part[..SEQ_BYTES]).ok() == Some(seq_hex(seq)),
            _ => part[..numbered] == seq_hex(seq)[offset..offset + numbered],
        };
        if !seq_matches {
            return Err(ErrorKind::OutOfOrder {
                seq,
                got: String::from_utf8_lossy(&part[..numbered]).into_owned(),
            });
        }
        let (rest, rest_offset) = (&part[numbered..], offset + numbered);
        if !self.pattern_matches(rest, rest_offset) {
            let want = &self.body[rest_offset..rest_offset + rest.len()];
            return Err(differs(rest_offset + first_difference(rest, want)));
        }
        Ok(())
    }
}

/// What fills a message after its sequence number where the bytes
/// themselves change the cost (compression): text that compresses as
/// real traffic does, or bytes that do not compress at all.
///
/// Consecutive messages carry consecutive stretches of one long stream
/// of such content ([`POOL_BYTES`]), never the same bytes again within
/// DEFLATE's 32 KiB window: a compressor that keeps its context between
/// messages (as permessage-deflate does by default) would otherwise find
/// each message in the previous one and send a back-reference, which is
/// no workload at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Content {
    /// JSON-like text, as a market-data or chat feed sends: records of a
    /// few fields whose values come from a fixed seed. Sent as text.
    Json,
    /// Bytes from a fixed seed, which DEFLATE cannot shrink. Sent as
    /// binary.
    Random,
}

/// The length of each content's stream before it repeats: far beyond
/// DEFLATE's window, so a repeat is never within reach of a back-reference.
pub const POOL_BYTES: usize = 8 << 20;

/// Messages up to this size read the shared stream; larger ones make a
/// stream of their own.
const SHARED_MAX_MESSAGE_BYTES: usize = 1 << 20;

impl Content {
    pub const ALL: [Content; 2] = [Content::Json, Content::Random];

    pub fn as_str(self) -> &'static str {
        match self {
            Content::Json => "json",
            Content::Random => "random",
        }
    }

    /// The message kind it is sent as.
    pub fn kind(self) -> super::PayloadKind {
        match self {
            Content::Json => super::PayloadKind::Text,
            Content::Random => super::PayloadKind::Binary,
        }
    }

    /// `n` bytes of its stream, the same on every run.
    fn stream(self, n: usize) -> Vec<u8> {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::with_capacity(n + 128);
        match self {
            Content::Random => {
                while out.len() < n {
                    out.extend_from_slice(&rng.next().to_le_bytes());
                }
            }
            Content::Json => {
                const SYMBOLS: [&str; 8] = [
                    "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD",
                ];
                let mut id = 0u64;
                while out.len() < n {
                    let r = rng.next();
                    let record = format!(
                        "{{\"id\":{id},\"symbol\":\"{}\",\"price\":{}.{:02},\"qty\":{},\"side\":\"{}\",\"ts\":{}}},",
                        SYMBOLS[(r % 8) as usize],
                        100 + (r >> 8) % 400,
                        (r >> 20) % 100,
                        (r >> 28) % 1000 + 1,
                        if r >> 40 & 1 == 0 { "buy" } else { "sell" },
                        1_733_380_000_000 + id * 7 + (r >> 48) % 5,
                    );
                    out.extend_from_slice(record.as_bytes());
                    id += 1;
                }
            }
        }
        out.truncate(n);
        out
    }

    /// The stream, [`POOL_BYTES`] long and then its first `tail_bytes`
    /// again, so that any message-sized stretch from any offset below
    /// [`POOL_BYTES`] is one slice.
    fn pool(self, tail_bytes: usize) -> Vec<u8> {
        let mut pool = self.stream(POOL_BYTES);
        let tail: Vec<u8> = pool.iter().cycle().take(tail_bytes).copied().collect();
        pool.extend_from_slice(&tail);
        pool
    }

    /// The pool every message up to [`SHARED_MAX_MESSAGE_BYTES`] reads,
    /// made once per process.
    fn shared_pool(self) -> &'static [u8] {
        static POOLS: [std::sync::OnceLock<Vec<u8>>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        POOLS[self as usize].get_or_init(|| self.pool(SHARED_MAX_MESSAGE_BYTES))
    }
}

/// A fixed-seed generator for [`Content::stream`]: no need for quality,
/// only for the same bytes on every run and every machine.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Where a [`Bodies`]'s stream lives.
#[derive(Debug, Clone)]
enum Pool {
    Shared(&'static [u8]),
    Own(Vec<u8>),
}

/// Messages of one size filled with a [`Content`]: message `seq` is the
/// stretch of the content's stream after message `seq - 1`'s, with its
/// sequence number in hex over its first 16 bytes.
#[derive(Debug, Clone)]
pub struct Bodies {
    content: Content,
    size_bytes: usize,
    pool: Pool,
}

impl Bodies {
    /// Messages of `size_bytes`, at least [`SEQ_BYTES`] so that each
    /// carries its number.
    pub fn new(content: Content, size_bytes: usize) -> Result<Bodies, String> {
        if size_bytes < SEQ_BYTES {
            return Err(format!(
                "{} messages must be at least {SEQ_BYTES} bytes, to carry their sequence number",
                content.as_str()
            ));
        }
        let pool = if size_bytes <= SHARED_MAX_MESSAGE_BYTES {
            Pool::Shared(content.shared_pool())
        } else {
            Pool::Own(content.pool(size_bytes))
        };
        Ok(Bodies {
            content,
            size_bytes,
            pool,
        })
    }

    pub fn content(&self) -> Content {
        self.content
    }

    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// The stretch of the stream message `seq` carries.
    fn body(&self, seq: u64) -> &[u8] {
        let pool = match &self.pool {
            Pool::Shared(p) => p,
            Pool::Own(p) => p.as_slice(),
        };
        let offset = (u128::from(seq) * self.size_bytes as u128 % POOL_BYTES as u128) as usize;
        &pool[offset..offset + self.size_bytes]
    }

    /// Message `seq` into `out`, replacing what it held.
    pub fn message_into(&self, seq: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.body(seq));
        out[..SEQ_BYTES].copy_from_slice(&seq_hex(seq));
    }

    /// Checks that `got` is exactly message `seq`.
    pub fn verify(&self, seq: u64, got: &[u8]) -> Result<(), ErrorKind> {
        if got.len() != self.size_bytes {
            return Err(ErrorKind::Length {
                seq,
                got_bytes: got.len() as u64,
                sent_bytes: self.size_bytes as u64,
            });
        }
        if got[..SEQ_BYTES] != seq_hex(seq) {
            return Err(ErrorKind::OutOfOrder {
                seq,
                got: String::from_utf8_lossy(&got[..SEQ_BYTES]).into_owned(),
            });
        }
        let want = &self.body(seq)[SEQ_BYTES..];
        if got[SEQ_BYTES..] != *want {
            let at = SEQ_BYTES + first_difference(&got[SEQ_BYTES..], want);
            return Err(ErrorKind::Differs { seq, at_byte: at });
        }
        Ok(())
    }
}

/// `seq` as 16 lowercase hex digits, most significant first. Computed
/// for every message sent and every echo checked, so with arithmetic on
/// whole words rather than a table lookup per digit.
fn seq_hex(seq: u64) -> [u8; SEQ_BYTES] {
    let mut out = [0u8; SEQ_BYTES];
    out[..8].copy_from_slice(&hex_digits((seq >> 32) as u32).to_be_bytes());
    out[8..].copy_from_slice(&hex_digits(seq as u32).to_be_bytes());
    out
}

/// The eight hex digits of `x` as ASCII, the least significant digit in
/// the lowest byte.
fn hex_digits(x: u32) -> u64 {
    // Spread the nibbles out to one per byte: halves, then bytes, then
    // nibbles each move up into the space made for them.
    let x = x as u64;
    let mut v = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    v = ((v & 0x0000_ff00_0000_ff00) << 8) | (v & 0x0000_00ff_0000_00ff);
    v = ((v & 0x00f0_00f0_00f0_00f0) << 4) | (v & 0x000f_000f_000f_000f);
    // 1 in each byte whose digit is 10 or more (adding 6 carries into bit
    // 4 exactly then), which moves it from after '9' to 'a'.
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    v + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64
}

fn small_byte(seq: u64, i: usize) -> u8 {
    PATTERN[((seq as usize).wrapping_add(i)) % PATTERN.len()]
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_number_and_catch_changes() {
        for content in Content::ALL {
            assert!(Bodies::new(content, 15).is_err());
            let bodies = Bodies::new(content, 1000).unwrap();
            let mut m = Vec::new();
            bodies.message_into(7, &mut m);
            assert_eq!(m.len(), 1000);
            bodies.verify(7, &m).unwrap();
            assert!(matches!(
                bodies.verify(8, &m),
                Err(ErrorKind::OutOfOrder { .. })
            ));
            m[500] ^= 1;
            assert!(matches!(
                bodies.verify(7, &m),
                Err(ErrorKind::Differs { at_byte: 500, .. })
            ));
            assert!(matches!(
                bodies.verify(7, &m[..999]),
                Err(ErrorKind::Length { .. })
            ));
        }
        let json = Content::Json.stream(4096);
        assert!(json.is_ascii() && json.starts_with(b"{\"id\":0,"));
        assert_eq!(Content::Random.stream(64), Content::Random.stream(64));
        // Consecutive messages carry different stretches, and a large
        // message its own pool; the stream wraps past POOL_BYTES.
        let bodies = Bodies::new(Content::Json, 1024).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        bodies.message_into(1, &mut a);
        bodies.message_into(2, &mut b);
        assert_ne!(a[SEQ_BYTES..], b[SEQ_BYTES..]);
        let wrap = (POOL_BYTES / 1024) as u64;
        bodies.message_into(wrap + 1, &mut b);
        assert_eq!(a[SEQ_BYTES..], b[SEQ_BYTES..]);
        let big = Bodies::new(Content::Random, 3 << 20).unwrap();
        big.message_into(5, &mut a);
        big.verify(5, &a).unwrap();
    }

    #[test]
    fn every_size_round_trips_and_rejects_changes() {
        for size in [0, 1, 5, 15, 16, 17, 125, 4096, 3 * CHECK_CHUNK_BYTES + 17] {
            let t = Template::new(size);
            for seq in [0u64, 1, 63, 64, u64::MAX] {
                let msg = t.message(seq);
                assert_eq!(msg.len(), size);
                assert!(std::str::from_utf8(&msg).is_ok());
                t.verify(seq, &msg).unwrap();
                if size > 0 {
                    let mut bad = msg.clone();
                    bad[size - 1] ^= 0x01;
                    assert!(t.verify(seq, &bad).is_err(), "size {size} seq {seq}");
                    let mut short = msg.clone();
                    short.pop();
                    assert!(t.verify(seq, &short).is_err());
                }
            }
        }
    }

    /// The chunked check sees a change anywhere, at every chunk boundary
    /// and phase of the pattern, and a body shifted by one byte.
    #[test]
    fn a_change_anywhere_in_a_large_echo_is_rejected() {
        let size = 5 * CHECK_CHUNK_BYTES + 100;
        let t = Template::new(size);
        let msg = t.message(3);
        t.verify(3, &msg).unwrap();
        let mut positions = vec![SEQ_BYTES, size - 1];
        for k in 1..=5 {
            let edge = SEQ_BYTES + k * CHECK_CHUNK_BYTES;
            positions.extend([edge - 1, edge, edge + 1]);
        }
        positions.extend((SEQ_BYTES..size).step_by(997));
        for at in positions {
            let mut bad = msg.clone();
            bad[at] ^= 0x20;
            let err = t.verify(3, &bad).unwrap_err();
            assert!(
                matches!(err, ErrorKind::Differs { seq: 3, at_byte } if at_byte == at),
                "{at}: {err}"
            );
        }
        let mut shifted = msg.clone();
        shifted[SEQ_BYTES..].rotate_left(1);
        assert!(t.verify(3, &shifted).is_err());
    }

    #[test]
    fn sequence_numbers_are_hex() {
        for seq in [
            0,
            9,
            10,
            15,
            0xabcdef,
            0x0123_4567_89ab_cdef,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(seq_hex(seq), *format!("{seq:016x}").as_bytes(), "{seq:#x}");
        }
    }

    /// A message checked in pieces, cut anywhere (inside the sequence
    /// number too), passes whole and fails where a byte changed.
    #[test]
    fn a_message_checked_in_pieces() {
        let size = 2 * CHECK_CHUNK_BYTES + 77;
        let t = Template::new(size);
        let msg = t.message(42);
        for cut in [1, 7, SEQ_BYTES, SEQ_BYTES + 1, CHECK_CHUNK_BYTES + 3] {
            for (i, piece) in msg.chunks(cut).enumerate() {
                t.verify_part(42, i * cut, piece).unwrap();
            }
            let mut bad = msg.clone();
            bad[size - 2] ^= 0x01;
            let failures: Vec<ErrorKind> = bad
                .chunks(cut)
                .enumerate()
                .filter_map(|(i, piece)| t.verify_part(42, i * cut, piece).err())
                .collect();
            assert_eq!(failures.len(), 1, "cut {cut}: {failures:?}");
            assert!(
                matches!(failures[0], ErrorKind::Differs { seq: 42, at_byte } if at_byte == size - 2),
                "{failures:?}"
            );
            let other = t.message(43);
            assert!(t.verify_part(42, 3, &other[3..SEQ_BYTES]).is_err());
        }
        let small = Template::new(9);
        let msg = small.message(5);
        small.verify_part(5, 4, &msg[4..]).unwrap();
        assert!(small.verify_part(6, 4, &msg[4..]).is_err());
    }

    #[test]
    fn another_sequence_number_is_rejected() {
        for size in [1, 16, 1000] {
            let t = Template::new(size);
            assert!(t.verify(7, &t.message(8)).is_err(), "size {size}");
        }
    }
}
