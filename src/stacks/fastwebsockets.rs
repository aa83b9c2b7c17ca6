//! fastwebsockets: a minimal, fast frame layer, upgraded through hyper's
//! HTTP/1.1 server; `FragmentCollector` reassembles fragmented messages.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Role, WebSocket, WebSocketError};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf, ReadHalf};

use tokio::sync::mpsc;

use super::room::Room;
use super::runtime::{accept_loop, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "fastwebsockets",
    package: "fastwebsockets",
    version: super::versions::of_crate("fastwebsockets"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "hyper http1 upgrade; auto close and auto pong on; set_max_message_size raised. \
            No read-buffer setting (small-buffers = suite). No permessage-deflate in fastwebsockets 0.10 (its docs: not supported yet). flush-each: \
            `write_frame(frame).await` per echo, straight to the socket, as the library's \
            examples/echo_server.rs and echo_server_split.rs do (its own recommendation; it has \
            no write buffer of its own, and writes payloads over 1 KiB vectored by default); \
            the stream is flushed whenever a read would block, as WebSocket::flush's docs ask \
            over a buffered stream such as TLS (without it the tail of a large echo stayed in \
            the TLS layer while the server waited to read, and the connection stalled); over \
            TCP that flush writes nothing. \
            batched: the upgraded stream wrapped in a 64 KiB write buffer that flushes itself \
            whenever a read would block; WebSocket::flush's docs say a buffered stream needs \
            such a flush, and that is the point where no more input is waiting. broadcast: one \
            unbounded queue per connection (the library has no broadcast example; the queues are \
            tokio-tungstenite's examples/server.rs's), so a connection that stops reading has its \
            messages buffered without bound; each message is serialized once, with the library's \
            `Frame::write`, and the same bytes are queued to every connection (server frames are \
            unmasked, so they are the same on every connection). The reader and the writer run \
            as examples/echo_server_split.rs splits them (`tokio::io::split`), but that \
            `WebSocket::split` needs the `unstable-split` feature, which this build does not \
            enable, so the reader is a whole `WebSocket` over the read half whose writes (the \
            pongs and close replies its auto-pong and auto-close send, each one frame per write \
            with vectored writes off) go to the connection's writer task instead of the socket. \
            The writer: flush-each writes each frame straight to the socket; batched writes \
            every frame already queued into a 64 KiB buffer and flushes when the queue is empty.",
    deflate: false,
    start,
};

/// The batched policy's write buffer: a 64 KiB message or several small
/// echoes per write, as the raw-TCP floor copies.
const BATCH_BUFFER_BYTES: usize = 64 << 10;

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                serve_http(stream, profile, policy)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Room::new();
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                serve_http_broadcast(stream, profile, policy, room.clone())
            })
        }),
    }
}

async fn serve_http(stream: ServerStream, profile: Profile, policy: EchoPolicy) {
    let service = service_fn(move |mut req: Request<Incoming>| async move {
        let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            if let Ok(ws) = upgrade.await {
                match policy {
                    // Nothing has been read through `ws` yet, so the
                    // stream is all there is to it.
                    EchoPolicy::FlushEach => {
                        let io = FlushWhenReadBlocks::new(ws.into_inner());
                        echo(WebSocket::after_handshake(io, Role::Server), profile).await
                    }
                    EchoPolicy::Batched => {
                        let io = FlushWhenReadBlocks::buffered(ws.into_inner());
                        echo(WebSocket::after_handshake(io, Role::Server), profile).await
                    }
                }
            }
        });
        Ok::<_, WebSocketError>(response)
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn echo<S>(mut ws: WebSocket<S>, profile: Profile)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    if let Some(max) = profile.max_message_bytes() {
        ws.set_max_message_size(max);
    }
    let mut ws = FragmentCollector::new(ws);
    echo_frames(&mut ws).await;
    // Under batched, the close reply (or the echoes before an error) may
    // still be in the write buffer; under flush-each this writes nothing.
    let _ = ws.into_inner().flush().await;
}

async fn echo_frames<S>(ws: &mut FragmentCollector<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let frame = match ws.read_frame().await {
            Ok(frame) => frame,
            Err(_) => return,
        };
        match frame.opcode {
            OpCode::Close => return,
            OpCode::Text | OpCode::Binary => {
                super::demo::per_message(STACK.name);
                if let Err(_closed) = ws.write_frame(frame).await {
                    return;
                }

            }
            _ => {}
        }
    }
}

/// The upgraded connection, and its halves.
type Io = TokioIo<Upgraded>;

/// The same HTTP/1.1 upgrade as [`serve_http`], each connection then
/// joining the room.
async fn serve_http_broadcast(
    stream: ServerStream,
    profile: Profile,
    policy: EchoPolicy,
    room: Arc<Room<Bytes>>,
) {
    let service = service_fn(move |mut req: Request<Incoming>| {
        let room = room.clone();
        async move {
            let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req)?;
            tokio::spawn(async move {
                if let Ok(ws) = upgrade.await {
                    broadcast(ws, profile, policy, room).await;
                }
            });
            Ok::<_, WebSocketError>(response)
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// One connection of the room: this task reads and publishes, a writer
/// task writes what the room and the reader's replies bring. Either
/// ending ends the connection; it leaves the room when this returns.
async fn broadcast(
    ws: WebSocket<Io>,
    profile: Profile,
    policy: EchoPolicy,
    room: Arc<Room<Bytes>>,
) {
    // Nothing has been read through `ws` yet, so its buffer is empty and
    // the stream is all there is to it.
    let (read, write) = tokio::io::split(ws.into_inner());
    let (replies_tx, replies_rx) = mpsc::unbounded_channel();
    let mut reader = WebSocket::after_handshake(
        ReadSide {
            read,
            replies: replies_tx,
        },
        Role::Server,
    );
    reader.set_auto_close(true);
    reader.set_auto_pong(true);
    // Each reply in one write, so that each write to `ReadSide` is one frame.
    reader.set_writev(false);
    if let Some(max) = profile.max_message_bytes() {
        reader.set_max_message_size(max);
    }
    let (member, room_rx) = room.join();
    let mut writer = match policy {
        EchoPolicy::FlushEach => tokio::spawn(write_frames(write, room_rx, replies_rx, policy)),
        EchoPolicy::Batched => tokio::spawn(write_frames(
            BufWriter::with_capacity(BATCH_BUFFER_BYTES, write),
            room_rx,
            replies_rx,
            policy,
        )),
    };
    tokio::select! {
        _ = &mut writer => {}
        () = publish_frames(FragmentCollector::new(reader), &room) => {
            // The reader, and with it the replies' sender, is gone: the
            // writer writes a close reply if there is one, then ends.
            drop(member);
            let _ = writer.await;
        }
    }
}

/// Publishes every data message the peer sends until it closes or fails.
async fn publish_frames(mut ws: FragmentCollector<ReadSide>, room: &Room<Bytes>) {
    loop {
        let frame = match ws.read_frame().await {
            Ok(frame) => frame,
            Err(_) => return,
        };
        match frame.opcode {
            OpCode::Close => return,
            OpCode::Text | OpCode::Binary => room.publish(serialize(Frame::new(
                true,
                frame.opcode,
                None,
                frame.payload,
            ))),
            _ => {}
        }
    }
}

/// The frame as it goes on the wire, for every connection alike.
fn serialize(mut frame: Frame<'_>) -> Bytes {
    let mut buf = Vec::new();
    let len = frame.write(&mut buf).len();
    buf.truncate(len);
    Bytes::from(buf)
}

/// Whether a serialized frame is a close frame: after it, nothing more
/// goes out.
fn is_close(frame: &[u8]) -> bool {
    frame
        .first()
        .is_some_and(|b| b & 0x0F == OpCode::Close as u8)
}

/// Writes serialized frames to the peer: the reader's replies first, then
/// the room's messages; stops after a close reply, once the reader has
/// ended, or when the socket fails. Flush-each flushes after every frame,
/// batched after the last frame already queued.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut out: W,
    mut room: mpsc::UnboundedReceiver<Bytes>,
    mut replies: mpsc::UnboundedReceiver<Bytes>,
    policy: EchoPolicy,
) {
    loop {
        let frame = tokio::select! {
            biased;
            reply = replies.recv() => match reply {
                Some(frame) => frame,
                None => return,
            },
            Some(frame) = room.recv() => frame,
        };
        let mut closing = is_close(&frame);
        if out.write_all(&frame).await.is_err() {
            return;
        }
        while policy == EchoPolicy::Batched && !closing {
            let Ok(more) = replies.try_recv().or_else(|_| room.try_recv()) else {
                break;
            };
            closing = is_close(&more);
            if out.write_all(&more).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() || closing {
            return;
        }
    }
}

/// The broadcast reader's stream: reads come from the socket's read half;
/// writes, which are the frames the library's auto-pong and auto-close
/// send, go to the connection's writer task, one frame per write (the
/// library writes a frame with one `write_all` when vectored writes are
/// off, and this accepts all of it at once).
struct ReadSide {
    read: ReadHalf<Io>,
    replies: mpsc::UnboundedSender<Bytes>,
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadSide {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.replies.send(Bytes::copy_from_slice(buf)) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The upgraded connection, flushed whenever a read finds no input
/// waiting. Under flush-each (`new`) each write goes straight to the
/// stream, and the flush only pushes out what a buffered stream (TLS) kept
/// back. Under batched (`buffered`), writes (echoes, and the pongs and
/// close replies fastwebsockets sends by itself) go into a buffer, so
/// echoes of buffered input share a write, and a lone message's echo is
/// never held back while its sender waits for it.
struct FlushWhenReadBlocks<S> {
    inner: S,
}

impl<S: AsyncWrite> FlushWhenReadBlocks<S> {
    fn new(stream: S) -> Self {
        FlushWhenReadBlocks { inner: stream }
    }

    fn buffered(stream: S) -> FlushWhenReadBlocks<BufWriter<S>> {
        FlushWhenReadBlocks {
            inner: BufWriter::with_capacity(BATCH_BUFFER_BYTES, stream),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FlushWhenReadBlocks<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().inner;
        match Pin::new(&mut *inner).poll_read(cx, buf) {
            Poll::Pending => match Pin::new(inner).poll_flush(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                // Flushed, or waiting for the socket to take more: the
                // read is registered for wake-up either way.
                Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FlushWhenReadBlocks<S> {
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

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
