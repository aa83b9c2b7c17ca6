//! python-websockets: the `websockets` package's asyncio server, run by
//! `python/echo_websockets.py` in a child process (see [`super::python`]).

use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::ServerSettings;

pub const STACK: StackInfo = StackInfo {
    name: "python-websockets",
    package: "websockets",
    version: super::versions::of_python("websockets"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Python,
    notes: "websockets.asyncio.server.serve in a child process (python/echo_websockets.py). \
            Suite and small-buffers (no buffer knob, so the same): compression=None, \
            max_size=32 MiB, ping_interval=None, ping_timeout=None; max_queue and write_limit \
            at their defaults. Defaults: permessage-deflate offered, 1 MiB max_size, keepalive \
            pings every 20 s. TCP_NODELAY set by asyncio and again per connection. One asyncio \
            event loop on one thread: --threads does not apply; the process is pinned to the \
            placement's server CPUs. WSBENCH_PYTHON_UVLOOP=1 runs it on uvloop. Echo policy: \
            not applicable, both policies run the same code: `await ws.send(message)` per \
            echo, as the echo server in the library's README.rst does, and send writes each \
            frame to the transport at once (Connection.send_context -> send_data -> \
            transport.write); there is no separate flush to defer. broadcast: the handlers \
            register the open connections in a set and hand every message to the built-in \
            `broadcast(room, message)`, as the library's docs advise (docs/topics/broadcast.rst, \
            docs/faq/server.rst, example/quick/counter.py); no queue of its own: each frame goes \
            straight into every open connection's transport, without backpressure, so a \
            connection that stops reading is buffered without bound in its write buffer while \
            the others go on (the docs' remedy, keepalive closing it after ping_timeout, is off \
            in the suite and on in defaults); text is encoded once for all; both policies run \
            the same code, there being no flush. TLS (wss://): an \
            ssl.SSLContext(PROTOCOL_TLS_SERVER) loaded with the PEM chain and PKCS#8 key, passed \
            as serve(ssl=...) as its docs say, so asyncio's (or uvloop's) TLS transport on the \
            interpreter's OpenSSL. --compression deflate (suite): compression=\"deflate\", the \
            library's default factory: server_max_window_bits=12, client_max_window_bits=12 when \
            the client offers the parameter (15 otherwise), zlib memLevel=5 at zlib's default \
            level, context takeover both ways, every message compressed, on the event loop's \
            thread.",
    deflate: true,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    super::python::start(&STACK, settings)
}
