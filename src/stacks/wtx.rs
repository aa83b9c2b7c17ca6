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
use wtx::web_socket::{
    Frame, OpCode, WebSocketAcceptor, WebSocketPartsOwned, WebSocketPayloadOrigin,
    WebSocketReaderOwned, WebSocketReplier, WebSocketWriterOwned,
};

use super::room::{Member, Room};
use super::runtime::{accept_loop, start_tokio_server};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings, Service};

pub const STACK: StackInfo = StackInfo {
    name: "wtx",
    package: "wtx",
    version: super::versions::of_crate("wtx"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes: "Pinned to the last release that builds with this rustc (1.95; later releases need \
            1.96, and 0.47.x is yanked). WebSocketAcceptor::default().accept on the TCP stream \
            (its own handshake; compression `()`, so deflate is never negotiated); features \
            tokio, web-socket-handshake and crypto-ring (the handshake's SHA-1 needs a crypto \
            backend). Suite: set_max_payload_len at the limit (its default is 64 MiB, above \
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
            the same: write_frame per message, for the reason above.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    match settings.service {
        Service::Echo => start_tokio_server(STACK.name, settings, move |listener, profile| {
            accept_loop(STACK.name, listener, profile, echo)
        }),
        Service::Broadcast => start_tokio_server(STACK.name, settings, move |listener, profile| {
            let room = Room::new();
            accept_loop(STACK.name, listener, profile, move |stream, profile| {
                broadcast(stream, profile, room.clone())
            })
        }),
    }
}

async fn echo(stream: TcpStream, profile: Profile) {
    let _ = echo_frames(stream, profile).await;
}

async fn echo_frames(stream: TcpStream, profile: Profile) -> wtx::Result<()> {
    // Any path is accepted: the default request check accepts every one.
    let mut ws = WebSocketAcceptor::default().accept(stream).await?;
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

type Reader = WebSocketReaderOwned<(), Xorshift64, OwnedReadHalf, false>;
type Writer = WebSocketWriterOwned<(), Xorshift64, OwnedWriteHalf, false>;

async fn broadcast(stream: TcpStream, profile: Profile, room: Arc<Room<Shared>>) {
    let _ = broadcast_frames(stream, profile, room).await;
}

/// As examples/web-socket-client-concurrent-channel.rs: owned reader and
/// writer parts, the writer taking both the replier's control frames and
/// the connection's queue, reader and writer joined in this task.
async fn broadcast_frames(
    stream: TcpStream,
    profile: Profile,
    room: Arc<Room<Shared>>,
) -> wtx::Result<()> {
    let mut ws = WebSocketAcceptor::default().accept(stream).await?;
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
async fn read_into_room(
    mut reader: Reader,
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
async fn write_from_queue(
    mut writer: Writer,
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
