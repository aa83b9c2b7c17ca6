//! python-aiohttp: aiohttp's web server with `web.WebSocketResponse`, run
//! by `python/echo_aiohttp.py` in a child process (see [`super::python`]).

use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::ServerSettings;

pub const STACK: StackInfo = StackInfo {
    name: "python-aiohttp",
    package: "aiohttp",
    version: super::versions::of_python("aiohttp"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Python,
    notes: "aiohttp web.WebSocketResponse on aiohttp's web server in a child process \
            (python/echo_aiohttp.py). Suite and small-buffers (no buffer knob, so the same): \
            compress=False, max_msg_size=32 MiB; heartbeat off, autoping and autoclose on \
            (all defaults). Defaults: permessage-deflate accepted, 4 MiB max_msg_size. \
            TCP_NODELAY set by aiohttp and again per connection. One asyncio event loop on one \
            thread: --threads does not apply; the process is pinned to the placement's server \
            CPUs. WSBENCH_PYTHON_UVLOOP=1 runs it on uvloop. Echo policy: not applicable, both \
            policies run the same code: `await ws.send_str/send_bytes(msg.data)` per echo, as \
            in the WebSockets section of aiohttp's docs/web_quickstart.rst, and each \
            uncompressed frame goes to the transport at once (WebSocketWriter.send_frame -> \
            transport.write, waiting only while the transport is paused); there is no separate \
            flush to defer. broadcast: the set of open sockets is the room and each handler, for \
            every message it reads, awaits send_str/send_bytes on every socket in turn, the \
            sender included, as aiohttp's examples/web_ws.py does, under one asyncio.Lock added \
            so that a publisher cannot overtake another that waits on a drain (the room keeps \
            one order); no queue: each frame goes into the transport at once, and a connection \
            that stops reading pauses its transport, so the publisher awaits each send and \
            everyone stalls (the other publishers wait on the lock and read nothing meanwhile); \
            both policies run the same code. TLS (wss://): an ssl.SSLContext(PROTOCOL_TLS_SERVER) \
            loaded with the PEM chain and PKCS#8 key, as the SockSite's ssl_context, so \
            asyncio's (or uvloop's) TLS transport on the interpreter's OpenSSL. --compression \
            deflate (suite): compress=True, its default: the window the client asks for (15 \
            unless it sends server_max_window_bits), zlib level 1 (Z_BEST_SPEED) and memLevel 8, \
            context takeover unless the client asks for server_no_context_takeover, every \
            message compressed; messages over 16 KiB are compressed in the loop's default \
            thread-pool executor, so deflate also uses threads besides the event loop's.",
    deflate: true,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    super::python::start(&STACK, settings)
}
