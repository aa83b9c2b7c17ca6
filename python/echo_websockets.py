"""Echo server on the `websockets` package's asyncio implementation
(websockets.asyncio.server.serve), as wsbench's `python-websockets` stack;
with --service broadcast, one room served with websockets.broadcast()."""

import websockets
from websockets.asyncio.server import broadcast, serve

import _echo_common as common

# The suite's settings (see src/stacks/mod.rs). max_queue and write_limit
# stay at the library's defaults: they are flow control, not limits an echo
# of one message at a time can reach (and broadcast() ignores write_limit).
SUITE = dict(
    # permessage-deflate is on by default.
    compression=None,
    max_size=common.MAX_MESSAGE_BYTES,
    # Keepalive pings every 20 s by default; the client would have to answer
    # them in the middle of a measurement.
    ping_interval=None,
    ping_timeout=None,
)


# Both --echo policies run this same loop. `send` hands each frame to the
# transport at once (send_context() -> send_data() -> transport.write(), then
# drain() only waits when the write buffer is over its high-water mark); the
# library has no separate flush and no batched idiom, and the echo server in
# its README.rst is this loop.
async def echo(ws):
    common.set_nodelay(ws.transport.get_extra_info("socket"))
    try:
        # The library answers pings and closes and reassembles fragments;
        # text arrives as str and is sent back as text, binary as bytes.
        async for message in ws:
            await ws.send(message)
    except websockets.exceptions.ConnectionClosed:
        # A peer that drops the connection is not a server error; without
        # this the library logs a traceback for every such connection.
        pass


def broadcast_room():
    """The handler of one broadcast room, as the library's docs do it: the
    open connections registered in a set (docs/howto/patterns.rst,
    "Registration"; example/quick/counter.py) and every message handed to
    the built-in broadcast() (docs/topics/broadcast.rst, docs/faq/server.rst
    "How do I send a message to all users?").

    broadcast() keeps no queue of its own: it frames the message for each
    open connection and writes it into that connection's transport there
    and then, without waiting for any write buffer to drain ("There's no
    backpressure", its docstring). Being synchronous on the one event
    loop, it gives every connection the messages in the order the handlers
    called it. A connection that stops reading has its copies pile up in
    its write buffer without bound; the library's answer is keepalive
    (ping_interval and ping_timeout, which close it), which the suite turns
    off and the defaults keep. It skips connections that are closing, and
    a write that fails on one is logged and does not stop the others.

    Text arrives as str and is encoded once for everyone, binary as bytes;
    each goes out as the kind it came in. Both --echo policies run this:
    broadcast() has no flush to defer either."""
    room = set()

    async def handler(ws):
        common.set_nodelay(ws.transport.get_extra_info("socket"))
        room.add(ws)
        try:
            async for message in ws:
                # The sender is in the room: its own copy is its ack.
                broadcast(room, message)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            room.discard(ws)

    return handler


def serve_options(args, ssl_context):
    if args.profile == "suite":
        options = dict(SUITE)
        if args.compression == "deflate":
            # The library's own factory (enable_server_permessage_deflate):
            # server_max_window_bits=12, client_max_window_bits=12 when the
            # client offers the parameter, memLevel=5, zlib's default level,
            # context takeover both ways, every message compressed; the
            # tuning its docs/topics/compression.rst explains.
            options["compression"] = "deflate"
    else:
        options = {}
    if ssl_context is not None:
        # "You can set ssl to a SSLContext to enable TLS" (serve's docs);
        # it goes to the loop's create_server, asyncio's TLS.
        options["ssl"] = ssl_context
    return options


async def main(args, sock, ssl_context):
    stop = common.stop_event(args.exit_on_stdin_eof)
    handler = echo if args.service == "echo" else broadcast_room()
    # The library accepts the upgrade on any path by default.
    server = await serve(handler, sock=sock, **serve_options(args, ssl_context))
    common.announce(sock)
    await stop.wait()
    # Closes the listener and every open connection with 1001.
    server.close()
    if not await common.within_grace(server.wait_closed()):
        # A peer that does not answer the close would hold the exit for
        # close_timeout (10 s); drop those connections instead.
        for connection in server.all_connections:
            connection.transport.abort()


if __name__ == "__main__":
    args = common.parse_args(__doc__)
    ssl_context = common.tls_context(args)
    sock = common.bind(args.host, args.port)
    common.run(main(args, sock, ssl_context), args)
