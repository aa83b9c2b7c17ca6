"""Echo server on the `websockets` package's asyncio implementation
(websockets.asyncio.server.serve), as wsbench's `python-websockets` stack."""

import websockets
from websockets.asyncio.server import serve

import _echo_common as common

# The suite's settings (see src/stacks/mod.rs). max_queue and write_limit
# stay at the library's defaults: they are flow control, not limits an echo
# of one message at a time can reach.
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


async def main(args, sock):
    stop = common.stop_event(args.exit_on_stdin_eof)
    # The library accepts the upgrade on any path by default.
    server = await serve(echo, sock=sock, **(SUITE if args.profile == "suite" else {}))
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
    sock = common.bind(args.host, args.port)
    common.run(main(args, sock), args)
