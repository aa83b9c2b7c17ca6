//! wtx: a collection of transport implementations (HTTP/2, gRPC, database
//! clients, WebSocket) on its own stream traits, with its own WebSocket
//! handshake.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use tokio::sync::mpsc;
use wtx::collection::Vector;
use wtx::rng::Xorshift64;
use wtx::web_socket::compression::{Flate2, NegotiatedCompression};
use wtx::web_socket::{
    Compression as WsCompression, Frame, OpCode, WebSocketAcceptor, WebSocketPartsOwned,
    WebSocketPayloadOrigin, WebSocketReaderOwned, WebSocketReplier, WebSocketWriterOwned,
};

use super::room::{Member, Room};
use super::runtime::{accept_loop, plain_only, start_tokio_server, ServerStream};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{Compression, Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "wtx",
    package: "wtx",
    version: super::versions::of_crate("wtx"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Pinned to the last release that builds with this rustc (1.95; later releases need \
            1.96, and 0.47.x is yanked). WebSocketAcceptor::default().accept on the TCP stream \
            (its own handshake; compression `()` unless --compression deflate, below, so \
            deflate is otherwise never negotiated); features tokio, web-socket-handshake and \
            crypto-ring (the handshake's SHA-1 needs a crypto backend). Suite: set_max_payload_len at the limit (its default is 64 MiB, above \
            it). No read-buffer setting used (small-buffers = suite). Pongs and close replies \
            written by the reader (auto reply); fragments joined and text validated by \
            read_frame. Echo policy: not applicable, both policies run the same code: \
            write_frame writes header and payload in one vectored write to the socket, and \
            the library has no write buffer and no flush to defer. broadcast: the library \
            has no broadcast example, so one unbounded queue per connection (the suite's Room; \
            a connection that stops reading has its messages buffered without bound), each \
            payload shared by all queues and copied into the connection's own frame buffer, \
            as write_frame takes its payload mutably. The socket split into owned parts \
            (into_split over TcpStream::into_split), a reader publishing and a writer \
            selecting between the replier's control replies and the queue, joined in one \
            task, as examples/web-socket-client-concurrent-channel.rs does. Both policies \
            the same: write_frame per message, for the reason above. permessage-deflate is \
            wired up (crate feature flate2, `.compression(Flate2::default())` on the \
            acceptor) but `deflate` stays false: wtx 0.46.1 truncates a compressed message \
            whose deflate output is more than 128 bytes longer than its payload (its writer \
            sizes the output at payload + 128 and stops compressing once the input is taken, \
            dropping the output still pending), so incompressible messages from about 55 KiB \
            up go out corrupt; compressible ones echo correctly. Its defaults differ from the \
            RFC's: window bits 12 both ways (kept unless the client offers a value), level 6, \
            no context takeover either way (compressor and decompressor reset after every \
            message); it answers `permessage-deflate; client_max_window_bits=12; \
            server_max_window_bits=12; client_no_context_takeover; \
            server_no_context_takeover`. The connection's type carries the compression (`()` \
            or `Option<NegotiatedFlate2>`), so the plain path is the same code as before; the \
            feature builds flate2 on zlib-rs. Over TLS the \
            stream is tokio-rustls's, flushed after every write: wtx's own writer for it does not \
            flush, and without it a 1 MiB echo's tail stayed in rustls and the connection \
            stalled.",
    deflate: false,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    let compression = settings.compression;
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                echo(stream, profile, compression)
            })
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Room::new();
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                broadcast(stream, profile, compression, room.clone())
            })
        }),
    }
}

async fn echo(stream: ServerStream, profile: Profile, compression: Compression) {
    // wtx reads and writes through its own stream traits, which it
    // implements for the TCP stream and for tokio-rustls's; the acceptor's
    // compression is a type, `()` for none.
    let _ = match (stream, compression) {
        (ServerStream::Left(tcp), Compression::Off) => echo_frames(tcp, profile, ()).await,
        (ServerStream::Left(tcp), Compression::Deflate) => {
            echo_frames(tcp, profile, Flate2::default()).await
        }
        (ServerStream::Right(tls), Compression::Off) => {
            echo_frames(FlushingTls(tls), profile, ()).await
        }
        (ServerStream::Right(tls), Compression::Deflate) => {
            echo_frames(FlushingTls(tls), profile, Flate2::default()).await
        }
    };
}

/// tokio-rustls's stream, flushed after every write. wtx's own writer for
/// it writes without flushing, and a TLS write returns once rustls has the
/// bytes, not once the socket has taken them: with 1 MiB echoes the tail
/// of one stayed in rustls while the server waited to read, and the
/// connection stalled.
struct FlushingTls(Box<tokio_rustls::server::TlsStream<TcpStream>>);

impl wtx::stream::StreamReader for FlushingTls {
    async fn read(&mut self, bytes: &mut [u8]) -> wtx::Result<usize> {
        Ok(tokio::io::AsyncReadExt::read(&mut *self.0, bytes).await?)
    }
}

impl wtx::stream::StreamWriter for FlushingTls {
    async fn write_all(&mut self, bytes: &[u8]) -> wtx::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.0.write_all(bytes).await?;
        Ok(self.0.flush().await?)
    }

    async fn write_all_vectored(&mut self, bytes: &[&[u8]]) -> wtx::Result<()> {
        use tokio::io::AsyncWriteExt;
        for part in bytes {
            self.0.write_all(part).await?;
        }
        Ok(self.0.flush().await?)
    }
}

async fn echo_frames<S: wtx::stream::Stream, C: WsCompression<false>>(
    stream: S,
    profile: Profile,
    compression: C,
) -> wtx::Result<()> {
    // Any path is accepted: the default request check accepts every one.
    let mut ws = WebSocketAcceptor::default()
        .compression(compression)
        .accept(stream)
        .await?;
    if let Some(max) = profile.max_message_bytes() {
        ws.set_max_payload_len(max);
    }
    let (mut common, mut reader, mut writer) = ws.split_mut();
    let mut buffer = Vector::new();
    loop {
        let mut frame = reader
            .read_frame(&mut buffer, &mut common, WebSocketPayloadOrigin::Adaptive)
            .await?;
        match frame.op_code() {
            OpCode::Binary | OpCode::Text => {
                super::demo::per_message(STACK.name);
                writer.write_frame(&mut common, &mut frame).await?;
            }
            // The reply went out as the close was read.
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}

/// A broadcast message: its kind and its bytes, shared by every queue.
type Shared = (OpCode, Bytes);

/// A connection's owned halves, `NC` its negotiated compression.
type Reader<NC> = WebSocketReaderOwned<NC, Xorshift64, OwnedReadHalf, false>;
type Writer<NC> = WebSocketWriterOwned<NC, Xorshift64, OwnedWriteHalf, false>;

async fn broadcast(
    stream: ServerStream,
    profile: Profile,
    compression: Compression,
    room: Arc<Room<Shared>>,
) {
    if let Some(tcp) = plain_only(stream) {
        let _ = match compression {
            Compression::Off => broadcast_frames(tcp, profile, (), room).await,
            Compression::Deflate => broadcast_frames(tcp, profile, Flate2::default(), room).await,
        };
    }
}

/// As examples/web-socket-client-concurrent-channel.rs: owned reader and
/// writer parts, the writer taking both the replier's control frames and
/// the connection's queue, reader and writer joined in this task.
async fn broadcast_frames<C>(
    stream: TcpStream,
    profile: Profile,
    compression: C,
    room: Arc<Room<Shared>>,
) -> wtx::Result<()>
where
    C: WsCompression<false>,
    C::NegotiatedCompression: Clone,
{
    let mut ws = WebSocketAcceptor::default()
        .compression(compression)
        .accept(stream)
        .await?;
    if let Some(max) = profile.max_message_bytes() {
        ws.set_max_payload_len(max);
    }
    let WebSocketPartsOwned {
        reader,
        replier,
        writer,
    } = ws.into_split(TcpStream::into_split)?;
    let (member, rx) = room.join();
    let read = read_into_room(reader, member, &room);
    let write = write_from_queue(writer, &replier, rx);
    tokio::pin!(read, write);
    tokio::select! {
        // The socket failed: the reader goes with this future.
        written = &mut write => written,
        read = &mut read => {
            // The reader and the member are gone, so the writer writes the
            // close reply if there is one and ends.
            let written = write.await;
            read.and(written)
        }
    }
}

/// Publishes every data frame until the close (whose reply the reader has
/// handed to the replier) or an error; dropping the reader and the member
/// on return tells the writer to finish.
async fn read_into_room<NC: NegotiatedCompression>(
    mut reader: Reader<NC>,
    member: Member<Shared>,
    room: &Room<Shared>,
) -> wtx::Result<()> {
    let _member = member;
    let mut buffer = Vector::new();
    loop {
        let frame = reader
            .read_frame(&mut buffer, WebSocketPayloadOrigin::Adaptive)
            .await?;
        match frame.op_code() {
            op @ (OpCode::Binary | OpCode::Text) => {
                room.publish((op, Bytes::copy_from_slice(frame.payload())));
            }
            OpCode::Close => return Ok(()),
            // The pong is with the replier.
            _ => {}
        }
    }
}

/// Writes control replies first, then the queue, one frame per message.
async fn write_from_queue<NC: NegotiatedCompression>(
    mut writer: Writer<NC>,
    replier: &WebSocketReplier<false>,
    mut rx: mpsc::UnboundedReceiver<Shared>,
) -> wtx::Result<()> {
    // The payload is copied in here, since write_frame takes it mutably.
    let mut payload = Vector::new();
    loop {
        tokio::select! {
            biased;
            mut reply = replier.reply_frame() => {
                // `true` once the close reply is out or the reader is gone.
                if writer.write_reply_frame(&mut reply).await? {
                    return Ok(());
                }
            }
            shared = rx.recv() => {
                let Some((op, bytes)) = shared else {
                    return Ok(());
                };
                payload.clear();
                payload.extend_from_copyable_slice(&bytes)?;
                writer.write_frame(&mut Frame::new_fin(op, &mut payload)).await?;
            }
        }
    }
}
