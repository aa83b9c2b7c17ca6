//! actix-ws on actix-web: the actix framework's WebSocket support. actix
//! brings its own runtime (a System and one single-threaded worker per
//! server thread), so it runs on threads of its own, named and pinned like
//! the tokio stacks' (the app factory runs on each worker thread).

use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{AggregatedMessage, Session};
use anyhow::Context;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::runtime::{bind, enter_server_thread};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings, Service, Transport};

pub const STACK: StackInfo = StackInfo {
    name: "actix-ws",
    package: "actix-ws",
    version: super::versions::of_crate("actix-ws"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Native,
    notes:
        "actix-web HttpServer, TCP_NODELAY set with HttpServer::tcp_nodelay; max_frame_size and \
            max_continuation_size raised (defaults: 64 KiB frames). Replies to ping and close by \
            hand, as actix-ws requires. No read-buffer setting (small-buffers = suite). Both \
            echo policies run the same loop, `session.text/binary(..).await` per echo as in the \
            library's examples/chat.rs (its only idiom): that await returns once the frame is in \
            the session's channel (capacity 32), not on the socket, and actix-web's dispatcher \
            encodes every queued frame into its write buffer and writes them together, so the \
            library batches by design and has no per-echo flush to offer for flush-each. \
            broadcast: as examples/chat.rs, every session in one list under an async lock, and \
            the publisher, holding the lock, sends the message to every session concurrently \
            and waits until each has taken it (`session.text/binary(..).await`, into that \
            session's channel of 32 frames), so a connection that stops reading stalls the \
            publisher, and with it every other publisher, once its channel and socket are \
            full; a session whose send fails is dropped, as in the example, and a connection \
            also leaves the list when its reader ends. Each message cloned (the payload \
            shared) and framed per session by its response body; the writer is actix-web's \
            dispatcher, under both policies alike, as for the echo. No permessage-deflate in \
            actix-ws 0.4 or actix-http 3 (its compress features are HTTP content encodings).",
    deflate: false,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    anyhow::ensure!(settings.threads >= 1, "server threads must be at least 1");
    let listener = bind(settings.addr)?;
    listener.set_nonblocking(false)?;
    let addr = listener.local_addr()?;
    let (threads, profile) = (settings.threads, settings.profile);
    // actix-web's own rustls listener; the configuration is the one every
    // server shares.
    let tls = match settings.transport {
        Transport::Plain => None,
        Transport::Tls => Some(crate::tls::server_config()?.as_ref().clone()),
    };
    // One room for every worker, as examples/chat.rs shares its `Chat`.
    let chat = (settings.service == Service::Broadcast).then(Chat::default);
    let cpus = settings.server_cpus();
    let (ready_tx, ready_rx) = mpsc::channel();
    let system_thread = std::thread::Builder::new()
        .name("srv-actix-ws".into())
        .spawn(move || {
            enter_server_thread(STACK.name, cpus.as_deref());
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    enter_server_thread(STACK.name, cpus.as_deref());
                    let app = App::new().app_data(web::Data::new(profile));
                    match &chat {
                        None => app.default_service(web::to(upgrade)),
                        Some(chat) => app
                            .app_data(web::Data::new(chat.clone()))
                            .default_service(web::to(broadcast)),
                    }
                })
                .workers(threads)
                .disable_signals()
                .shutdown_timeout(1)
                .tcp_nodelay(true);
                let server = match tls {
                    None => server.listen(listener),
                    Some(config) => server.listen_rustls_0_23(listener, config),
                };
                let server = match server {
                    Ok(s) => s.run(),
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("actix listen: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(server.handle()));
                if let Err(e) = server.await {
                    eprintln!("wsbench: actix-ws: server ended: {e}");
                }
            });
        })
        .context("spawning the actix system thread")?;
    let server = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("actix-web did not start within 10 s")??;
    Ok(ServerHandle::new(
        STACK.name,
        addr,
        Protocol::WebSocket,
        profile,
        None,
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(server.stop(false));
            system_thread
                .join()
                .map_err(|_| anyhow::anyhow!("actix system thread panicked"))?;
            Ok(())
        },
    ))
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    profile: web::Data<Profile>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let max = profile.max_message_bytes();
    let stream = match max {
        Some(max) => stream.max_frame_size(max),
        None => stream,
    };
    let mut stream = stream.aggregate_continuations();
    if let Some(max) = max {
        stream = stream.max_continuation_size(max);
    }
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.recv().await {
            if matches!(
                msg,
                AggregatedMessage::Text(_) | AggregatedMessage::Binary(_)
            ) {
                super::demo::per_message(STACK.name);
            }
            let sent = match msg {
                AggregatedMessage::Text(text) => session.text(text).await,
                AggregatedMessage::Binary(bin) => session.binary(bin).await,
                AggregatedMessage::Ping(payload) => session.pong(&payload).await,
                AggregatedMessage::Pong(_) => Ok(()),
                AggregatedMessage::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

/// The broadcast room, as examples/chat.rs's `Chat`: the sessions under
/// one async lock, held while a message goes out, so every session takes
/// the messages in the same order.
#[derive(Clone, Default)]
struct Chat {
    inner: Arc<tokio::sync::Mutex<ChatInner>>,
}

#[derive(Default)]
struct ChatInner {
    /// Each session with the id its connection leaves by.
    sessions: Vec<(u64, Session)>,
    next_id: u64,
}

/// A data message as it goes to every session; `T` is actix's
/// `ByteString`, which this crate cannot name (it is no dependency of its
/// own), so it is inferred.
#[derive(Clone)]
enum Outgoing<T> {
    Text(T),
    Binary(Bytes),
}

impl Chat {
    async fn join(&self, session: Session) -> u64 {
        let mut inner = self.inner.lock().await;
        let id = inner.next_id;
        inner.next_id += 1;
        inner.sessions.push((id, session));
        id
    }

    async fn leave(&self, id: u64) {
        self.inner
            .lock()
            .await
            .sessions
            .retain(|(member, _)| *member != id);
    }

    /// Sends a text or binary `msg` to every session at once and waits
    /// until each has taken it; a session that is closed is dropped.
    async fn send(&self, msg: AggregatedMessage) {
        let msg = match msg {
            AggregatedMessage::Text(text) => Outgoing::Text(text),
            AggregatedMessage::Binary(bin) => Outgoing::Binary(bin),
            _ => return,
        };
        let mut inner = self.inner.lock().await;
        let mut sending: FuturesUnordered<_> = inner
            .sessions
            .drain(..)
            .map(|(id, mut session)| {
                let msg = msg.clone();
                async move {
                    let sent = match msg {
                        Outgoing::Text(text) => session.text(text).await,
                        Outgoing::Binary(bin) => session.binary(bin).await,
                    };
                    sent.map(|()| (id, session))
                }
            })
            .collect();
        while let Some(sent) = sending.next().await {
            if let Ok(member) = sent {
                inner.sessions.push(member);
            }
        }
    }
}

/// The echo's upgrade and limits; the reader publishes each data message
/// to the room and answers pings and closes as the echo does.
async fn broadcast(
    req: HttpRequest,
    body: web::Payload,
    profile: web::Data<Profile>,
    chat: web::Data<Chat>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let max = profile.max_message_bytes();
    let stream = match max {
        Some(max) => stream.max_frame_size(max),
        None => stream,
    };
    let mut stream = stream.aggregate_continuations();
    if let Some(max) = max {
        stream = stream.max_continuation_size(max);
    }
    let chat = chat.into_inner();
    let id = chat.join(session.clone()).await;
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.recv().await {
            let answered = match msg {
                data @ (AggregatedMessage::Text(_) | AggregatedMessage::Binary(_)) => {
                    chat.send(data).await;
                    Ok(())
                }
                AggregatedMessage::Ping(payload) => session.pong(&payload).await,
                AggregatedMessage::Pong(_) => Ok(()),
                AggregatedMessage::Close(reason) => {
                    let _ = session.close(reason).await;
                    break;
                }
            };
            if answered.is_err() {
                break;
            }
        }
        // Without the room's clone of the session, the response body ends
        // once this task's is dropped, and the connection with it.
        chat.leave(id).await;
    });
    Ok(response)
}
