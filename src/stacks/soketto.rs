//! soketto: the WebSocket layer of jsonrpsee and libp2p, written against
//! the futures I/O traits (a tokio stream goes in through tokio-util's
//! compat adapter), with its own HTTP/1.1 handshake.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use soketto::connection::{self, Receiver, Sender};
use soketto::handshake::{self, server::Response};
use soketto::Data;

use tokio::sync::mpsc;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::room::Room;
use super::runtime::{accept_loop, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "soketto",
    package: "soketto",
    version: super::versions::of_crate("soketto"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Its own handshake (handshake::Server), no extension added, so deflate is never \
            negotiated. No usable permessage-deflate in soketto 0.8.1: its deflate feature \
            (extension::deflate::Deflate, added with add_extension) negotiates, but inflates \
            each message with flate2's write::DeflateDecoder::finish, which the flate2 in \
            Cargo.lock (1.1.11) rejects as an incomplete deflate stream, so every compressed \
            message ends the connection (it would also compress at level 1 with a fresh \
            compressor and decompressor per message, and its feature puts every flate2 user \
            on C zlib); the feature stays off. Suite: set_max_message_size and \
            set_max_frame_size at the limit (its defaults are 256 MiB, above it). Text is \
            checked as UTF-8 before the echo (the library leaves that to its user, as its \
            autobahn_server example does); invalid text gets soketto's only close, \
            Sender::close, whose code is always 1000 where RFC 6455 asks for 1007. No read-buffer setting used (small-buffers = \
            suite). Pongs and close replies are written inside receive_data. flush-each: \
            the socket in a BufReader over a BufWriter and `send_*` then `flush()` per echo, \
            as the library's examples/autobahn_server.rs does. batched: the same buffered \
            socket flushing itself whenever a read would block, and no flush per echo. \
            broadcast: the library has no broadcast example, so one unbounded queue per \
            connection (the suite's Room; a connection that stops reading has its messages \
            buffered without bound), each message shared by all queues and framed per \
            connection; the receiver reads into the room while a task of its own writes with \
            the sender (the halves jsonrpsee and libp2p use concurrently), the read side not \
            flushing. flush-each: `send_*` then `flush()` per message, as autobahn_server.rs \
            writes; batched: `send_*` for every message queued and `flush()` when the queue \
            is empty.",
    deflate: false,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                echo(stream, profile, policy)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Room::new();
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                broadcast(stream, profile, policy, room.clone())
            })
        }),
    }
}

/// The socket as soketto's example buffers it; under batched its reads
/// flush what was written before they wait.
type Io = BufReader<FlushWhenReadBlocks<BufWriter<tokio_util::compat::Compat<ServerStream>>>>;

async fn echo(stream: ServerStream, profile: Profile, policy: EchoPolicy) {
    let Some((mut sender, mut receiver)) =
        accept(stream, profile, policy == EchoPolicy::Batched).await
    else {
        return;
    };
    let _ = echo_messages(&mut sender, &mut receiver, policy).await;
    let _ = sender.flush().await;
}

/// The handshake on the socket buffered as soketto's example buffers it,
/// reads flushing the writes before they wait when `flush_when_read_blocks`.
async fn accept(
    stream: ServerStream,
    profile: Profile,
    flush_when_read_blocks: bool,
) -> Option<(Sender<Io>, Receiver<Io>)> {
    let io = BufReader::new(FlushWhenReadBlocks {
        inner: BufWriter::new(stream.compat()),
        enabled: flush_when_read_blocks,
    });
    let mut server = handshake::Server::new(io);
    let key = match server.receive_request().await {
        Ok(request) => request.key(),
        Err(_) => return None,
    };
    let accept = Response::Accept {
        key,
        protocol: None,
    };
    if server.send_response(&accept).await.is_err() {
        return None;
    }
    let mut builder = server.into_builder();
    if let Some(max) = profile.max_message_bytes() {
        builder.set_max_message_size(max);
        builder.set_max_frame_size(max);
    }
    Some(builder.finish())
}

/// A broadcast message: checked text or bytes, shared by every queue.
#[derive(Clone)]
enum Shared {
    Text(Arc<String>),
    Binary(Arc<Vec<u8>>),
}

/// The receiver reads into the room on this task; a task of its own
/// writes the connection's queue with the sender.
async fn broadcast(
    stream: ServerStream,
    profile: Profile,
    policy: EchoPolicy,
    room: Arc<Room<Shared>>,
) {
    // The writer flushes under the policy itself; the reads do not.
    let Some((sender, mut receiver)) = accept(stream, profile, false).await else {
        return;
    };
    let (member, rx) = room.join();
    let mut writer = tokio::spawn(write_queue(sender, rx, policy));
    let mut message = Vec::new();
    let invalid_text = loop {
        let received = tokio::select! {
            // Fragments arrive joined; pings and the close are answered here.
            received = receiver.receive_data(&mut message) => received,
            // The writer ended, so the socket failed: so does the connection.
            _ = &mut writer => return,
        };
        let shared = match received {
            Ok(Data::Binary(_)) => Shared::Binary(Arc::new(std::mem::take(&mut message))),
            Ok(Data::Text(_)) => match String::from_utf8(std::mem::take(&mut message)) {
                Ok(text) => Shared::Text(Arc::new(text)),
                Err(_) => break true,
            },
            Err(_) => break false,
        };
        room.publish(shared);
    };
    if invalid_text {
        // As the echo: RFC 6455 7.1.7 fails the connection with soketto's
        // only close (code 1000). Leaving the room ends the queue, so the
        // writer writes what was queued and hands the sender back.
        drop(member);
        if let Ok(mut sender) = writer.await {
            let _ = sender.close().await;
        }
    } else {
        writer.abort();
    }
}

/// Writes what `rx` brings under `policy` until the room or the socket
/// ends; returns the sender.
async fn write_queue(
    mut sender: Sender<Io>,
    mut rx: mpsc::UnboundedReceiver<Shared>,
    policy: EchoPolicy,
) -> Sender<Io> {
    while let Some(shared) = rx.recv().await {
        let sent = match &shared {
            Shared::Text(text) => sender.send_text(text.as_str()).await,
            Shared::Binary(bytes) => sender.send_binary(bytes.as_slice()).await,
        };
        let flush = policy == EchoPolicy::FlushEach || rx.is_empty();
        if sent.is_err() || (flush && sender.flush().await.is_err()) {
            break;
        }
    }
    sender
}

async fn echo_messages(
    sender: &mut Sender<Io>,
    receiver: &mut Receiver<Io>,
    policy: EchoPolicy,
) -> Result<(), connection::Error> {
    let mut message = Vec::new();
    loop {
        message.clear();
        // Fragments arrive joined; pings and the close are answered here.
        match receiver.receive_data(&mut message).await? {
            Data::Binary(_) => {
                super::demo::per_message(STACK.name);
                sender.send_binary(&message).await?;
            }
            Data::Text(_) => {
                let Ok(text) = std::str::from_utf8(&message) else {
                    // RFC 6455 7.1.7: invalid UTF-8 fails the connection
                    // (with 1007, but soketto's close always sends 1000).
                    return sender.close().await;
                };
                super::demo::per_message(STACK.name);
                sender.send_text(text).await?;
            }
        }
        if policy == EchoPolicy::FlushEach {
            sender.flush().await?;
        }
    }
}

/// A write buffer that, when `enabled`, flushes itself whenever a read
/// finds no input waiting, so echoes of buffered input share a write and a
/// lone message's echo is not held back (the batched policy; see
/// fastwebsockets' stack for the tokio twin). soketto's sender and receiver
/// share this one stream, so its reads can flush the sender's writes.
struct FlushWhenReadBlocks<S> {
    inner: S,
    enabled: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FlushWhenReadBlocks<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.enabled => match Pin::new(&mut this.inner).poll_flush(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                // Flushed, or waiting for the socket to take more: the read
                // is registered for wake-up either way.
                Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FlushWhenReadBlocks<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
