"""What the echo servers share, so that they differ only in the library
under test: arguments (the service among them: the echo, or the broadcast
room), the listening socket, the LISTENING line, TCP_NODELAY,
the collector on SIGUSR2, the TLS context and a clean stop.

wsbench (src/stacks/child.rs) starts these scripts and reads one line,
`LISTENING <port>`, from stdout, then one `COLLECTED` per SIGUSR2; nothing
else is ever written there.
"""

import argparse
import asyncio
import gc
import os
import signal
import socket
import ssl
import sys
import threading

# Mirrors MAX_MESSAGE_BYTES in src/settings.rs: the largest message every
# stack accepts under the suite's settings (16 MiB messages plus headroom).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

# How long a stop may spend closing open connections (each with 1001) before
# the process exits anyway. wsbench kills the process 5 s after SIGTERM; this
# stays well inside that so a stop is always a clean exit.
CLOSE_GRACE_S = 2.0


def parse_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--profile",
        choices=["suite", "defaults"],
        default="suite",
        help="suite: compression off, 32 MiB messages, no keepalive; "
        "defaults: the library's own settings",
    )
    parser.add_argument(
        "--echo",
        choices=["flush-each", "batched"],
        default="flush-each",
        help="the echo write policy; neither library has a separate flush "
        "(each send writes to the transport at once), so both run the same code",
    )
    parser.add_argument(
        "--service",
        choices=["echo", "broadcast"],
        default="echo",
        help="echo: every message comes back to its sender; broadcast: one "
        "room, every message goes to every open connection, the sender included",
    )
    parser.add_argument(
        "--compression",
        choices=["off", "deflate"],
        default="off",
        help="suite profile only: off refuses permessage-deflate (the suite's "
        "setting), deflate accepts it with the library's default parameters; "
        "--profile defaults keeps the library's own choice either way",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="CHAIN.pem",
        help="serve wss://: the server certificate followed by the CA's",
    )
    parser.add_argument("--tls-key", metavar="KEY.pem", help="the certificate's private key, PKCS#8")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes: wsbench keeps a pipe open so that a "
        "server never outlives a killed benchmark and skews the next one",
    )
    return parser.parse_args()


def fail(message):
    """Startup errors: one line on stderr and exit code 2, which wsbench
    shows with the stack's name."""
    print(f"{sys.argv[0]}: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def tls_context(args):
    """The server's TLS context for --tls-cert and --tls-key, or None for
    plain TCP. Built as the ssl module's docs build a server context
    (PROTOCOL_TLS_SERVER, then load_cert_chain), and handed to each library
    where its docs take one, so every stack runs the same OpenSSL with the
    same defaults."""
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        fail("--tls-cert and --tls-key go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as e:
        fail(f"cannot load {args.tls_cert} and {args.tls_key}: {e}")
    return context


def bind(host, port):
    """Binds here rather than in the library so that both servers report a
    busy port the same way and the chosen port is known without reaching
    into either library's internals.

    The socket is made as the libraries would make it, with proto
    IPPROTO_TCP: asyncio's transport only sets TCP_NODELAY on sockets whose
    proto says TCP, and socket.create_server() leaves proto at 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # As asyncio's create_server() does on POSIX: a restarted server
        # can bind over connections left in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError as e:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    return sock


def set_nodelay(sock):
    """asyncio's and uvloop's TCP transports and aiohttp's protocol turn
    TCP_NODELAY on already (asyncio only for sockets whose proto is
    IPPROTO_TCP, see bind()); setting it again per connection keeps the
    suite's contract independent of those internals for one syscall."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def stop_event(exit_on_stdin_eof):
    """An event set by SIGTERM, SIGINT or (optionally) stdin's EOF. Installed
    before LISTENING is printed, so a SIGTERM sent right after the line is
    read still ends in a clean exit rather than the default action. SIGUSR2
    runs the cycle collector: wsbench's memory readings ask for it first, so
    that they count what the server holds, not cycles yet to be freed."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, collect)
    if exit_on_stdin_eof:

        def watch():
            # os.read on the descriptor, not sys.stdin: a daemon thread
            # blocked inside the buffered reader holds its lock, and the
            # interpreter aborts when it cannot take that lock at exit.
            try:
                while os.read(sys.stdin.fileno(), 4096):
                    pass
            except OSError:
                pass
            loop.call_soon_threadsafe(stop.set)

        # A thread rather than connect_read_pipe: it works the same on
        # asyncio's loop and uvloop whatever stdin is.
        threading.Thread(target=watch, name="stdin-eof", daemon=True).start()
    return stop


def collect():
    gc.collect()
    print("COLLECTED", flush=True)


def announce(sock):
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)


async def within_grace(awaitable):
    """Awaits for at most CLOSE_GRACE_S; says whether it finished."""
    try:
        await asyncio.wait_for(awaitable, CLOSE_GRACE_S)
        return True
    except asyncio.TimeoutError:
        return False


def run(main, args):
    if args.uvloop:
        try:
            import uvloop
        except ImportError as e:
            fail(f"--uvloop: {e}")
        uvloop.run(main)
    else:
        asyncio.run(main)
