"""Echo server on aiohttp's web server (web.WebSocketResponse), as
wsbench's `python-aiohttp` stack."""

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
def make_app(profile):
    options = SUITE if profile == "suite" else {}
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

    app = web.Application()
    # Any path upgrades, as on every other stack.
    app.router.add_get("/{path:.*}", echo)
    return app, open_sockets


async def main(args, sock):
    stop = common.stop_event(args.exit_on_stdin_eof)
    app, open_sockets = make_app(args.profile)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
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
    sock = common.bind(args.host, args.port)
    common.run(main(args, sock), args)
