//! What the tokio-based stacks share: a runtime of their own on named,
//! pinned threads, a listener bound with a clear error, and an accept loop
//! that hands each stack its connection, plain or after the TLS handshake.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

use super::{Protocol, ServerHandle, SHUTDOWN_GRACE};

/// The crates this layer builds every in-process stack's server on,
/// whatever the stack's own package: a change to one of them, or to what
/// they use, reaches every such stack (`wsbench compare --crate`). TLS's
/// crates are not here: compare measures plain connections.
pub const CRATES: &[&str] = &["tokio", "tokio-util"];
use crate::measure::threads::{self, Role};
use crate::placement::pin_current_thread;
use crate::settings::{Profile, ServerSettings, Transport};

/// A server's end of a connection: the TCP stream, or TLS over it (boxed,
/// so that a plain connection's state stays as small as it was).
pub type ServerStream =
    tokio_util::either::Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// The TCP stream of a connection to a server that serves its broadcast
/// room over plain TCP only ([`super::StackInfo::start`] refuses TLS for
/// it); `None` for a TLS stream, which never reaches such a server.
pub fn plain_only(stream: ServerStream) -> Option<TcpStream> {
    match stream {
        ServerStream::Left(tcp) => Some(tcp),
        ServerStream::Right(_) => None,
    }
}

/// How long a server waits for a client's TLS handshake before dropping
/// the connection (a client that stops mid-handshake must not hold a task
/// for ever).
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A bound listener and what each accepted connection goes through before
/// the stack sees it.
pub struct Listener {
    pub tcp: TcpListener,
    /// The TLS acceptor when the server serves `wss://`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The acceptor `transport` asks for.
pub fn tls_acceptor(transport: Transport) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    match transport {
        Transport::Plain => Ok(None),
        Transport::Tls => Ok(Some(crate::tls::acceptor()?)),
    }
}

/// Completes the TLS handshake on an accepted stream within
/// [`TLS_HANDSHAKE_TIMEOUT`]; `None` (the connection dropped) if it fails.
pub async fn tls_accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
) -> Option<Box<tokio_rustls::server::TlsStream<TcpStream>>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        _ => None,
    }
}

/// Binds a std listener with an error that names the address.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("address {addr} is already in use")
        } else {
            anyhow::anyhow!("cannot bind {addr}: {e}")
        }
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The name server threads carry, e.g. `srv-axum` (the kernel keeps 15 bytes).
pub fn server_thread_name(stack: &str) -> String {
    format!("srv-{stack}")
}

/// Marks the calling thread as a server thread of `stack` and pins it.
pub fn enter_server_thread(stack: &str, cpus: Option<&[usize]>) {
    threads::register(Role::Server, &server_thread_name(stack));
    if let Err(e) = pin_current_thread(cpus) {
        eprintln!("wsbench: {stack}: {e:#}");
    }
}

/// Starts a tokio multi-thread runtime with `settings.threads` workers named
/// after the stack, binds the listener and runs `serve` on it until the
/// handle is shut down.
pub fn start_tokio_server<F, Fut>(
    stack: &'static str,
    settings: &ServerSettings,
    serve: F,
) -> anyhow::Result<ServerHandle>
where
    F: FnOnce(Listener, Profile) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    anyhow::ensure!(settings.threads >= 1, "server threads must be at least 1");
    let cpus = settings.server_cpus();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .thread_name(server_thread_name(stack))
        .on_thread_start(move || enter_server_thread(stack, cpus.as_deref()))
        .enable_all()
        .build()
        .context("building the server runtime")?;
    let std_listener = bind(settings.addr)?;
    let addr = std_listener.local_addr()?;
    let listener = {
        let _guard = rt.enter();
        Listener {
            tcp: TcpListener::from_std(std_listener)?,
            tls: tls_acceptor(settings.transport)?,
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let profile = settings.profile;
    rt.spawn(async move {
        tokio::select! {
            _ = serve(listener, profile) => {}
            _ = stop_rx => {}
        }
    });
    Ok(ServerHandle::new(
        stack,
        addr,
        Protocol::WebSocket,
        settings.profile,
        None,
        move || {
            let _ = stop_tx.send(());
            rt.shutdown_timeout(SHUTDOWN_GRACE);
            Ok(())
        },
    ))
}

/// Accepts connections forever, turns TCP_NODELAY on and hands each one to
/// `handle` on its own task, over TLS once its handshake is done when the
/// listener has an acceptor. Accept errors (such as running out of file
/// descriptors) are reported and retried after a pause rather than ending
/// the server.
pub async fn accept_loop<H, Fut>(
    stack: &'static str,
    listener: Listener,
    profile: Profile,
    handle: H,
) where
    H: Fn(ServerStream, Profile) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.tcp.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                match &listener.tls {
                    None => {
                        tokio::spawn(handle(ServerStream::Left(stream), profile));
                    }
                    Some(acceptor) => {
                        let (acceptor, handle) = (acceptor.clone(), handle.clone());
                        tokio::spawn(async move {
                            if let Some(tls) = tls_accept(&acceptor, stream).await {
                                handle(ServerStream::Right(tls), profile).await;
                            }
                        });
                    }
                }
            }
            Err(e) => {
                eprintln!("wsbench: {stack}: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
