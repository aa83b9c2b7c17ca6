"""Echo server on picows (ws_create_server with a WSListener), as wsbench's
`python-picows` stack; with --service broadcast, one room in the manner of
picows' examples/broadcast_server.py."""

import asyncio

from picows import WSCloseCode, WSListener, WSMsgType, ws_create_server

import _echo_common as common

# The suite's settings (see src/stacks/mod.rs). picows' Core API has no
# compression, and automatic pings are off by default; automatic pongs are on.
SUITE = dict(
    # Per frame; 10 MiB by default. A message made of several frames is
    # held to the same limit below.
    max_frame_size=common.MAX_MESSAGE_BYTES,
)


class Echo(WSListener):
    """picows hands over frames, not messages: it does not join fragments
    (its guides, "Message fragmentation") and does not answer a close (its
    guides, "Graceful websocket shutdown"). This listener does both, as the
    contract asks, and checks text as UTF-8, which picows leaves to its user
    and every other stack does.

    Both --echo policies run this code: `send` writes each frame to the
    transport at once (buffering only when the socket is full), and picows
    has no flush to defer."""

    def __init__(self, open_transports, max_message_bytes):
        self.open_transports = open_transports
        self.max_message_bytes = max_message_bytes
        self.kind = None
        self.parts = bytearray()

    def on_ws_connected(self, transport):
        common.set_nodelay(transport.underlying_transport.get_extra_info("socket"))
        self.open_transports.add(transport)

    def on_ws_disconnected(self, transport):
        self.open_transports.discard(transport)

    def on_ws_frame(self, transport, frame):
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            if self.kind is not None:
                # A new message before the last one ended.
                self.fail(transport, WSCloseCode.PROTOCOL_ERROR)
            elif frame.fin:
                # The payload view is valid only inside this call, and send
                # copies it out.
                self.echo(transport, kind, frame.get_payload_as_memoryview())
            else:
                self.kind = kind
                self.parts = bytearray(frame.get_payload_as_memoryview())
        elif kind == WSMsgType.CONTINUATION:
            if self.kind is None:
                self.fail(transport, WSCloseCode.PROTOCOL_ERROR)
                return
            self.parts += frame.get_payload_as_memoryview()
            if self.max_message_bytes and len(self.parts) > self.max_message_bytes:
                self.fail(transport, WSCloseCode.MESSAGE_TOO_BIG)
            elif frame.fin:
                kind, self.kind = self.kind, None
                parts, self.parts = self.parts, bytearray()
                self.echo(transport, kind, parts)
        # PING is answered by picows (enable_auto_pong) and PONG needs nothing.

    def echo(self, transport, kind, payload):
        if kind == WSMsgType.TEXT:
            try:
                bytes(payload).decode("utf-8")
            except UnicodeDecodeError:
                self.fail(transport, WSCloseCode.INVALID_TEXT)
                return
        transport.send(kind, payload)

    def fail(self, transport, code):
        self.kind, self.parts = None, bytearray()
        transport.send_close(code)
        transport.disconnect()


class Broadcast(Echo):
    """The echo's listener with the room in place of the echo, as picows'
    examples/broadcast_server.py does it: the connected clients kept in a
    set (joined in on_ws_connected, left in on_ws_disconnected; here the
    set of open transports a stop closes), and a message sent to each with
    transport.send in one synchronous loop, the sender included.

    There is no queue: send frames the message and writes it to each
    socket, and what a socket does not take waits in its transport's write
    buffer, without bound, for a connection that stops reading. picows
    calls the listener's pause_writing then, which the example leaves
    alone and so does this: "purely informative ... You can ignore it and
    just keep writing. The data will be queued and eventually send anyway"
    (WSListener.pause_writing's docs; its guides' "Dealing with slow peers"
    is for a producer that can wait, which a room that answers every
    reader is not). The two are overridden only to be silent: left out,
    picows logs a warning each time a buffer crosses a watermark. Being
    synchronous on the one event loop, the loop gives everyone the
    messages in one order. A transport that has sent its close ignores
    further sends, so one that is closing costs nothing. Both --echo
    policies run this, as they do the echo."""

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass

    def echo(self, transport, kind, payload):
        if kind == WSMsgType.TEXT:
            try:
                bytes(payload).decode("utf-8")
            except UnicodeDecodeError:
                self.fail(transport, WSCloseCode.INVALID_TEXT)
                return
        # As the example, over the set itself: no send changes it, since a
        # transport reports a lost connection on a later turn of the loop.
        for peer in self.open_transports:
            peer.send(kind, payload)


async def main(args, sock, ssl_context):
    stop = common.stop_event(args.exit_on_stdin_eof)
    options = dict(SUITE) if args.profile == "suite" else {}
    if ssl_context is not None:
        # ws_create_server forwards its other keyword arguments to the
        # server creation (its docs), here aiofastnet's create_server, which
        # takes asyncio's `ssl` and runs its own TLS transport on OpenSSL.
        options["ssl"] = ssl_context
    max_message_bytes = common.MAX_MESSAGE_BYTES if args.profile == "suite" else None
    open_transports = set()
    # The factory accepts the upgrade on any path.
    listener = Echo if args.service == "echo" else Broadcast
    server = await ws_create_server(
        lambda request: listener(open_transports, max_message_bytes), sock=sock, **options
    )
    common.announce(sock)
    await stop.wait()
    server.close()
    # Closing the listener leaves the connections open: close each with 1001.
    for transport in list(open_transports):
        transport.send_close(WSCloseCode.GOING_AWAY)
        transport.disconnect()
    waits = [t.wait_disconnected() for t in list(open_transports)]
    if waits:
        await common.within_grace(asyncio.gather(*waits))


if __name__ == "__main__":
    args = common.parse_args(__doc__)
    if args.compression == "deflate":
        # wsbench refuses first (StackInfo::deflate is false); a guard so
        # that the script never serves uncompressed what was asked compressed.
        common.fail(
            "--compression deflate: picows' Core API has no permessage-deflate "
            "(its README, \"Core API\")"
        )
    ssl_context = common.tls_context(args)
    sock = common.bind(args.host, args.port)
    common.run(main(args, sock, ssl_context), args)
