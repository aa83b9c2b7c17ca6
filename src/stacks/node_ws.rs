//! node-ws: the `ws` package, Node's most used WebSocket server, run by
//! `node/echo_ws.cjs` in a child process (see [`super::node`]).

use super::{Protocol, Runtime, ServerHandle, StackInfo};
use crate::settings::ServerSettings;

pub const STACK: StackInfo = StackInfo {
    name: "node-ws",
    package: "ws",
    version: super::versions::of_node("ws"),
    protocol: Protocol::WebSocket,
    runtime: Runtime::Node,
    notes: "WebSocketServer({ noServer: true }) on Node's http server in a child process \
            (node/echo_ws.cjs). Suite and small-buffers (no buffer knob used, so the same): \
            perMessageDeflate false (also its default), maxPayload 32 MiB (default 100 MiB); \
            the optional native add-ons bufferutil and utf-8-validate are not installed (ws \
            masks and validates in JavaScript, and Node's own buffer.isUtf8). ws joins \
            fragments, answers pings and closes and validates text; TCP_NODELAY set by ws and \
            again per connection. One event loop on one thread: --threads does not apply; the \
            process is pinned to the placement's server CPUs. flush-each: `ws.send(data, \
            { binary })` per message, which writes to the socket at once. batched: the socket \
            corked at the first echo of a tick and uncorked on the next tick, so the echoes of \
            every message parsed from one read share a write (Node's cork/uncork idiom; ws \
            emits the messages of one read in the same tick). broadcast: `wss.clients.forEach` \
            with `client.send(data, { binary })` to every OPEN client, the sender included, as \
            the \"Server broadcast\" example of ws's README.md; no queue: each send writes to \
            that client's socket at once, and a client that stops reading is buffered without \
            bound in its socket's write buffer (bufferedAmount grows) while the others go on; \
            flush-each: each send written at once; batched: each receiving socket corked for the \
            tick, as the echo does, so the messages of one read share a write per client. TLS \
            (wss://): Node's https server (https.createServer({ cert, key }) with the PEM chain \
            and PKCS#8 key) in place of the http one, the upgrade handled the same way, as in \
            ws's README (\"External HTTP/S server\"); Node's TLS on its bundled OpenSSL. \
            --compression deflate (suite): perMessageDeflate: true, ws's defaults: window bits 15 \
            both ways, zlib memLevel 8 at zlib's default level, context takeover both ways; the \
            1024-byte threshold applies only without context takeover, so every message is \
            compressed; zlib runs asynchronously on libuv's thread pool, at most 10 calls at once \
            in the process (concurrencyLimit), and a compressed echo is written from zlib's \
            callback, after the tick a batched cork spans.",
    deflate: true,
    start,
};

fn start(settings: &ServerSettings) -> anyhow::Result<ServerHandle> {
    super::node::start(&STACK, settings)
}
