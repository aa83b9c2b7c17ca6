//! raw-tcp: a plain TCP echo, not WebSocket. The floor: what the loopback,
//! the runtime and the client cost with no protocol at all.
//!
//! The client frames its messages with an 8-byte little-endian length (see
//! `client::codec`). Under `batched` this server neither knows nor checks
//! that: it copies back what each read returns. Under `flush-each` it finds
//! the message boundaries in that copy and writes each message on its own,
//! as the WebSocket stacks' flush-each loops do; it still checks nothing.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use tokio::sync::mpsc;

use super::room::Room;
use super::runtime::{accept_loop, plain_only, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "raw-tcp",
    package: "tokio",
    version: super::versions::of_crate("tokio"),
    protocol: Protocol::RawTcp,
    runtime: Runtime::Native,
    notes: "Not WebSocket: bytes copied back through a 64 KiB buffer. Profiles change nothing. \
            flush-each: one write per message (boundaries found from the client's 8-byte length \
            prefix; a message longer than a read is written as its pieces arrive), as the \
            WebSocket stacks' flush-each loops pay. batched: one write per read of whatever \
            input was buffered. There is no library to recommend either. broadcast: each \
            length-prefixed message, prefix and all, into one unbounded queue per connection \
            (the bytes shared, not copied); flush-each writes each message, batched writes \
            every message queued with one write. Not WebSocket, so no permessage-deflate.",
    deflate: false,
    start,
};

/// Large enough that a 64 KiB message needs one read, small enough to stay
/// in cache.
const COPY_BUFFER_BYTES: usize = 64 << 10;

/// Bytes of the client's length prefix.
const LENGTH_PREFIX_BYTES: usize = 8;

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    let mut handle = match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                echo(stream, profile, policy)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Room::new();
            accept_loop(STACK.name, listener, profile, move |stream, _| {
                broadcast(stream, policy, room.clone())
            })
        }),
    }?;
    handle.protocol = Protocol::RawTcp;
    Ok(handle)
}

/// Every whole message read goes into the room; the room's queue goes
/// out to the peer.
async fn broadcast(stream: ServerStream, policy: EchoPolicy, room: Arc<Room<Bytes>>) {
    let Some(stream) = plain_only(stream) else {
        return;
    };
    let (mut read, write) = stream.into_split();
    let (_member, rx) = room.join();
    let writer = tokio::spawn(write_queue(write, rx, policy));
    let mut buf = BytesMut::with_capacity(COPY_BUFFER_BYTES);
    loop {
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        while let Some(len) = whole_message(&buf) {
            room.publish(buf.split_to(len).freeze());
        }
        buf.reserve(COPY_BUFFER_BYTES);
    }
    writer.abort();
}

/// The length of the first message in `buf`, prefix included, once all
/// of it is there.
fn whole_message(buf: &[u8]) -> Option<usize> {
    let prefix = buf.get(..LENGTH_PREFIX_BYTES)?;
    let body = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    let len = LENGTH_PREFIX_BYTES.checked_add(usize::try_from(body).ok()?)?;
    (buf.len() >= len).then_some(len)
}

async fn write_queue(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    policy: EchoPolicy,
) {
    let mut batch = BytesMut::new();
    while let Some(msg) = rx.recv().await {
        let written = match policy {
            EchoPolicy::FlushEach => write.write_all(&msg).await,
            EchoPolicy::Batched => {
                batch.extend_from_slice(&msg);
                while let Ok(more) = rx.try_recv() {
                    batch.extend_from_slice(&more);
                }
                let written = write.write_all(&batch).await;
                batch.clear();
                written
            }
        };
        if written.is_err() {
            return;
        }
    }
}

async fn echo(mut stream: ServerStream, _profile: Profile, policy: EchoPolicy) {
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut boundaries = MessageBoundaries::default();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let written = match policy {
            EchoPolicy::Batched => {
                // Per read rather than per message: this loop knows no messages.
                super::demo::per_message(STACK.name);
                stream.write_all(&buf[..n]).await
            }
            EchoPolicy::FlushEach => {
                write_each_message(&mut stream, &mut boundaries, &buf[..n]).await
            }
        };
        // What TLS kept back of the writes goes out before the next read
        // waits (over TCP the flush writes nothing): a write returns once
        // TLS has the bytes, not once the socket has taken them.
        if written.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// Writes `bytes` back in pieces that end where a message ends, one write
/// per piece.
async fn write_each_message(
    stream: &mut ServerStream,
    boundaries: &mut MessageBoundaries,
    mut bytes: &[u8],
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let (piece, rest) = bytes.split_at(boundaries.consume(bytes));
        super::demo::per_message(STACK.name);
        stream.write_all(piece).await?;
        bytes = rest;
    }
    Ok(())
}

/// Follows the client's length-prefixed messages through a byte stream cut
/// anywhere, to say where each one ends.
#[derive(Debug, Default)]
struct MessageBoundaries {
    prefix: [u8; LENGTH_PREFIX_BYTES],
    /// Bytes of the current message's prefix seen so far.
    prefix_len: usize,
    /// Body bytes of the current message still to come, once its prefix is
    /// complete.
    body_left_bytes: u64,
}

impl MessageBoundaries {
    /// Consumes the start of `bytes` up to the end of the current message,
    /// or all of it if the message goes on past it; returns how many bytes
    /// it consumed (at least one when `bytes` is not empty).
    fn consume(&mut self, bytes: &[u8]) -> usize {
        let mut used = 0;
        if self.prefix_len < LENGTH_PREFIX_BYTES {
            let take = (LENGTH_PREFIX_BYTES - self.prefix_len).min(bytes.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
            self.prefix_len += take;
            used = take;
            if self.prefix_len < LENGTH_PREFIX_BYTES {
                return used;
            }
            self.body_left_bytes = u64::from_le_bytes(self.prefix);
        }
        let available = (bytes.len() - used) as u64;
        let take = self.body_left_bytes.min(available);
        used += take as usize;
        self.body_left_bytes -= take;
        if self.body_left_bytes == 0 {
            // The message ended here; the next byte starts a prefix.
            self.prefix_len = 0;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body_bytes: usize) -> Vec<u8> {
        let mut m = (body_bytes as u64).to_le_bytes().to_vec();
        m.extend((0..body_bytes).map(|i| i as u8));
        m
    }

    /// Where `consume` says messages end when `stream` arrives in reads of
    /// `chunk` bytes, and how many pieces it cut.
    fn ends(stream: &[u8], chunk: usize) -> (Vec<usize>, usize) {
        let mut b = MessageBoundaries::default();
        let (mut ends, mut pieces, mut at) = (Vec::new(), 0, 0);
        for mut part in stream.chunks(chunk) {
            while !part.is_empty() {
                let n = b.consume(part);
                assert!(n > 0, "consume made no progress");
                at += n;
                pieces += 1;
                part = &part[n..];
                if b.prefix_len == 0 {
                    ends.push(at);
                }
            }
        }
        (ends, pieces)
    }

    #[test]
    fn one_piece_per_message_in_one_read() {
        let stream = [message(3), message(0), message(130)].concat();
        assert_eq!(ends(&stream, stream.len()), (vec![11, 19, 157], 3));
    }

    #[test]
    fn follows_messages_cut_anywhere() {
        let stream = [message(3), message(0), message(130)].concat();
        for chunk in [1, 5, 7, 12, 100] {
            assert_eq!(
                ends(&stream, chunk).0,
                vec![11, 19, 157],
                "reads of {chunk} B"
            );
        }
    }
}
