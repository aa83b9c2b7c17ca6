//! actix-ws on actix-web: the actix framework's WebSocket support. actix
//! brings its own runtime (a System and one single-threaded worker per
//! server thread), so it runs on threads of its own, named and pinned like
//! the tokio stacks' (the app factory runs on each worker thread).

use std::sync::mpsc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::AggregatedMessage;
use anyhow::Context;

use super::runtime::{bind, enter_server_thread};
use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::{Profile, ServerSettings};

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
            library batches by design and has no per-echo flush to offer for flush-each.",
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    anyhow::ensure!(settings.threads >= 1, "server threads must be at least 1");
    let listener = bind(settings.addr)?;
    listener.set_nonblocking(false)?;
    let addr = listener.local_addr()?;
    let (threads, profile) = (settings.threads, settings.profile);
    let cpus = settings.placement.server_cpus();
    let (ready_tx, ready_rx) = mpsc::channel();
    let system_thread = std::thread::Builder::new()
        .name("srv-actix-ws".into())
        .spawn(move || {
            enter_server_thread(STACK.name, cpus.as_deref());
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    enter_server_thread(STACK.name, cpus.as_deref());
                    App::new()
                        .app_data(web::Data::new(profile))
                        .default_service(web::to(upgrade))
                })
                .workers(threads)
                .disable_signals()
                .shutdown_timeout(1)
                .tcp_nodelay(true)
                .listen(listener);
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
