"""Echo server on aiohttp's web server (web.WebSocketResponse), as
wsbench's `python-aiohttp` stack; with --service broadcast, one room in the
manner of aiohttp's examples/web_ws.py."""

import asyncio

from aiohttp import WSCloseCode, WSMsgType, web

import _echo_common as common

# The suite's settings (see src/stacks/mod.rs). Heartbeat pings are already
# off by default; autoping and autoclose (on by default) answer pings and
# closes.
SUITE = dict(
    # On by default: permessage-deflate is accepted when a client offers it.
    compress=False,
    # 4 MiB by default.
    max_msg_size=common.MAX_MESSAGE_BYTES,
)


# Both --echo policies run the same loop. send_str/send_bytes write each
# uncompressed frame to the transport at once (WebSocketWriter.send_frame ->
# transport.write(); it waits only when the transport is paused); the
# library has no separate flush and no batched idiom.
def make_app(profile, service, compression):
    options = SUITE if profile == "suite" else {}
    if profile == "suite" and compression == "deflate":
        # compress=True is the default: the window the client asks for
        # (15 unless it sends server_max_window_bits), zlib level 1
        # (Z_BEST_SPEED) and memLevel 8, context takeover unless the client
        # asks otherwise, every message compressed, those over 16 KiB in the
        # loop's default executor (aiohttp/_websocket/writer.py).
        options = dict(SUITE, compress=True)
    # Kept so that a stop can close them with 1001; otherwise the runner's
    # cleanup waits for every handler to end on its own.
    open_sockets = set()

    async def echo(request):
        ws = web.WebSocketResponse(**options)
        await ws.prepare(request)
        common.set_nodelay(request.transport.get_extra_info("socket"))
        open_sockets.add(ws)
        try:
            # Fragments arrive reassembled; TEXT carries str, BINARY bytes.
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        finally:
            open_sockets.discard(ws)
        return ws

    # The broadcast room is the set of open sockets, as in aiohttp's
    # examples/web_ws.py, whose one list of the app's sockets serves both
    # its chat and its on_shutdown: each handler reads its own socket and,
    # for every message, awaits send_str/send_bytes on every socket of the
    # room in turn (here the sender included, and binary too). There is no
    # queue: each frame goes into the peer's transport at once, and a send
    # waits only when that transport is paused (its write buffer over the
    # high-water mark). So a connection that stops reading makes the
    # publisher wait for its drain, and every other publisher waits on the
    # lock behind it: the whole room stalls, its readers too.
    #
    # The lock is the one thing added to the example. Without it a second
    # publisher need not wait where the first one does (the writer checks
    # for a drain only once per writer_limit, 256 KiB, written), so it
    # would overtake the first on the sockets after the slow one and the
    # room would lose its one order. The set is copied because the loop
    # awaits. Both --echo policies run this, for the reason given above.
    fan_out = asyncio.Lock()

    async def publish(send, data):
        async with fan_out:
            for peer in tuple(open_sockets):
                if peer.closed:
                    continue
                try:
                    await send(peer, data)
                except ConnectionResetError:
                    # Closing under us: it is leaving the room, and its
                    # failure is not the sender's.
                    pass

    async def broadcast(request):
        ws = web.WebSocketResponse(**options)
        await ws.prepare(request)
        common.set_nodelay(request.transport.get_extra_info("socket"))
        open_sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await publish(web.WebSocketResponse.send_str, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await publish(web.WebSocketResponse.send_bytes, msg.data)
        finally:
            open_sockets.discard(ws)
        return ws

    app = web.Application()
    # Any path upgrades, as on every other stack.
    app.router.add_get("/{path:.*}", echo if service == "echo" else broadcast)
    return app, open_sockets


async def main(args, sock, ssl_context):
    stop = common.stop_event(args.exit_on_stdin_eof)
    app, open_sockets = make_app(args.profile, args.service, args.compression)
    runner = web.AppRunner(app)
    await runner.setup()
    # TLS as aiohttp's docs serve HTTPS: the site's ssl_context (SockSite in
    # web_reference.rst; run_app passes its own the same way), asyncio's TLS
    # underneath.
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    common.announce(sock)
    await stop.wait()

    async def close_all():
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY) for ws in list(open_sockets)),
            return_exceptions=True,
        )
        await runner.cleanup()

    await common.within_grace(close_all())


if __name__ == "__main__":
    args = common.parse_args(__doc__)
    ssl_context = common.tls_context(args)
    sock = common.bind(args.host, args.port)
    common.run(main(args, sock, ssl_context), args)
