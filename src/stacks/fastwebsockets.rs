//! fastwebsockets: a minimal, fast frame layer, upgraded through hyper's
//! HTTP/1.1 server; `FragmentCollector` reassembles fragmented messages.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket, WebSocketError};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
use tokio::net::TcpStream;

use super::runtime::{accept_loop, start_tokio_server};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{EchoPolicy, Profile, ServerSettings};

pub const STACK: StackInfo = StackInfo {
    name: "fastwebsockets",
    package: "fastwebsockets",
    version: super::versions::of_crate("fastwebsockets"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "hyper http1 upgrade; auto close and auto pong on; set_max_message_size raised. \
            No read-buffer setting (small-buffers = suite). No compression support. flush-each: \
            `write_frame(frame).await` per echo, straight to the socket, as the library's \
            examples/echo_server.rs and echo_server_split.rs do (its own recommendation; it has \
            no write buffer of its own, and writes payloads over 1 KiB vectored by default). \
            batched: the upgraded stream wrapped in a 64 KiB write buffer that flushes itself \
            whenever a read would block; WebSocket::flush's docs say a buffered stream needs \
            such a flush, and that is the point where no more input is waiting.",
    start,
};

/// The batched policy's write buffer: a 64 KiB message or several small
/// echoes per write, as the raw-TCP floor copies.
const BATCH_BUFFER_BYTES: usize = 64 << 10;

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let policy = settings.echo;
    start_tokio_server(STACK.name, settings, move |listener, profile| {
        accept_loop(STACK.name, listener, profile, move |stream, profile| {
            serve_http(stream, profile, policy)
        })
    })
}

async fn serve_http(stream: TcpStream, profile: Profile, policy: EchoPolicy) {
    let service = service_fn(move |mut req: Request<Incoming>| async move {
        let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            if let Ok(ws) = upgrade.await {
                match policy {
                    EchoPolicy::FlushEach => echo(ws, profile).await,
                    EchoPolicy::Batched => {
                        let io = FlushWhenReadBlocks::new(ws.into_inner());
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

/// The upgraded connection under the batched policy. Writes (echoes, and
/// the pongs and close replies fastwebsockets sends by itself) go into a
/// buffer; a read that finds no input waiting flushes it before it waits,
/// so echoes of buffered input share a write and a lone message's echo is
/// never held back while its sender waits for it.
struct FlushWhenReadBlocks<S> {
    inner: BufWriter<S>,
}

impl<S: AsyncWrite> FlushWhenReadBlocks<S> {
    fn new(stream: S) -> Self {
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
