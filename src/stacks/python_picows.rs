//! python-picows: picows, a Cython WebSocket library for asyncio built for
//! speed, run by `python/echo_picows.py` in a child process (see
//! [`super::python`]).

use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::ServerSettings;

pub const STACK: StackInfo = StackInfo {
    name: "python-picows",
    package: "picows",
    version: super::versions::of_python("picows"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Python,
    notes: "ws_create_server with a WSListener in a child process (python/echo_picows.py), \
            on aiofastnet (picows' default when installed, and it is its dependency). Suite and \
            small-buffers (no buffer knob used, so the same): max_frame_size=32 MiB, and the \
            script holds a message of several frames to the same limit; automatic pings off \
            (its default), automatic pongs on (its default). No compression support. picows \
            hands over frames, not messages, and neither joins fragments nor answers a close \
            (its guides say so): the script does both, and checks text as UTF-8, which picows \
            leaves to its user. TCP_NODELAY set by picows and again per connection. One \
            asyncio event loop on one thread: --threads does not apply; the process is pinned \
            to the placement's server CPUs. Echo policy: not applicable, both policies run the \
            same code: transport.send writes each frame to the socket at once and buffers only \
            when it is full; there is no flush to defer. broadcast: the set of open transports is \
            the room and every message is sent to each with transport.send in one synchronous \
            loop, the sender included, as picows' examples/broadcast_server.py does; no queue: \
            a connection that stops reading is buffered without bound in its transport's write \
            buffer while the others go on (pause_writing ignored, as in the example and as its \
            docs allow: \"The data will be queued and eventually send anyway\"; overridden only \
            to silence picows' warning at each watermark); both policies run the same code. TLS \
            (wss://): an ssl.SSLContext(PROTOCOL_TLS_SERVER) loaded with the PEM chain and PKCS#8 \
            key, passed as ssl= to ws_create_server, which forwards it to aiofastnet's \
            create_server: aiofastnet's own TLS transport on OpenSSL, not asyncio's. No \
            permessage-deflate: the Core API has none (its README, \"Core API\"; the \
            picows.websockets compatibility layer has it, but that is another API), so the \
            script refuses --compression deflate.",
    deflate: false,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    super::python::start(&STACK, settings)
}
