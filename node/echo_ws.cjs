// Echo server on the `ws` package (WebSocketServer on Node's http server,
// or its https server for wss://),
// as wsbench's `node-ws` stack; with --service broadcast, one room as in the
// "Server broadcast" example of ws's README.md.
//
// wsbench (src/stacks/child.rs) starts this script and reads one line,
// `LISTENING <port>`, from stdout, then one `COLLECTED <bytes>` per SIGUSR2;
// nothing else is ever written there.
// Arguments are those of the Python stacks' scripts (python/_echo_common.py).

"use strict";

const fs = require("node:fs");
const http = require("node:http");
const https = require("node:https");
const { parseArgs } = require("node:util");
const { WebSocket, WebSocketServer } = require("ws");

// Mirrors MAX_MESSAGE_BYTES in src/settings.rs.
const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;
// How long a stop may spend closing open connections (each with 1001);
// wsbench kills the process 5 s after SIGTERM.
const CLOSE_GRACE_MS = 2000;

function fail(message) {
  process.stderr.write(`${process.argv[1]}: ${message}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      profile: { type: "string", default: "suite" },
      echo: { type: "string", default: "flush-each" },
      service: { type: "string", default: "echo" },
      compression: { type: "string", default: "off" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "exit-on-stdin-eof": { type: "boolean", default: false },
    },
  }));
} catch (e) {
  fail(e.message);
}
if (!["suite", "defaults"].includes(args.profile)) {
  fail(`--profile: expected suite or defaults, got ${args.profile}`);
}
if (!["flush-each", "batched"].includes(args.echo)) {
  fail(`--echo: expected flush-each or batched, got ${args.echo}`);
}
if (!["echo", "broadcast"].includes(args.service)) {
  fail(`--service: expected echo or broadcast, got ${args.service}`);
}
if (!["off", "deflate"].includes(args.compression)) {
  fail(`--compression: expected off or deflate, got ${args.compression}`);
}
if ((args["tls-cert"] === undefined) !== (args["tls-key"] === undefined)) {
  fail("--tls-cert and --tls-key go together");
}
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port: ${args.port}`);

// The suite's settings (see src/stacks/mod.rs). permessage-deflate is off
// by default in ws, and pings are never sent by the server on its own;
// the default message limit is 100 MiB. --compression deflate turns it on
// with ws's defaults (`true` is `{}`, lib/permessage-deflate.js): window
// bits 15 and zlib's memLevel 8 and level, context takeover both ways,
// every message compressed (the 1024-byte threshold only applies without
// context takeover), at most 10 zlib calls at once process-wide
// (concurrencyLimit), on libuv's thread pool.
const suite =
  args.profile === "suite"
    ? { perMessageDeflate: args.compression === "deflate", maxPayload: MAX_MESSAGE_BYTES }
    : {};
const wss = new WebSocketServer({ noServer: true, ...suite });

// An upgrade on any path; anything else is not served.
function notServed(req, res) {
  res.writeHead(426, { Connection: "close" }).end();
}
// wss:// as ws's README does it ("Usage examples", "External HTTP/S
// server"): an https server with the PEM chain and key, the upgrade
// handled exactly as over http.
let server;
if (args["tls-cert"] !== undefined) {
  let tls;
  try {
    tls = { cert: fs.readFileSync(args["tls-cert"]), key: fs.readFileSync(args["tls-key"]) };
  } catch (e) {
    fail(`cannot read the TLS certificate and key: ${e.message}`);
  }
  try {
    server = https.createServer(tls, notServed);
  } catch (e) {
    fail(`cannot load ${args["tls-cert"]} and ${args["tls-key"]}: ${e.message}`);
  }
} else {
  server = http.createServer(notServed);
}
// The broadcast room, as the README's "Server broadcast" example (the
// variant "including itself"): every message sent in turn to every client
// wss.clients tracks that is OPEN, the sender among them, with
// `client.send(data, { binary })`. There is no queue: each send frames the
// message and writes it to that client's socket at once, synchronously, so
// on the one thread every client gets the messages in one order; what the
// socket cannot take waits in its write buffer (bufferedAmount), without
// bound, for a client that stops reading, and nobody else waits for it.
// The write policy as in the echo: batched corks each receiving socket at
// its first message of a tick and uncorks it on the next, so the messages
// one read brings share a write per client.
// Each client's socket, for the cork (ws keeps its own private).
const sockets = new WeakMap();
function broadcast(data, isBinary) {
  wss.clients.forEach((client) => {
    if (client.readyState !== WebSocket.OPEN) return;
    if (args.echo === "batched") {
      const socket = sockets.get(client);
      if (!socket.writableCorked) {
        socket.cork();
        process.nextTick(() => socket.uncork());
      }
    }
    client.send(data, { binary: isBinary });
  });
}

server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    // ws sets TCP_NODELAY itself; set here too, as the contract asks.
    socket.setNoDelay(true);
    ws.on("error", () => {});
    if (args.service === "broadcast") {
      // In the room from now (wss.clients) until its close.
      sockets.set(ws, socket);
      ws.on("message", broadcast);
      return;
    }
    // ws joins fragments, answers pings (autoPong) and closes, and
    // validates text; `isBinary` keeps text as text.
    ws.on("message", (data, isBinary) => {
      if (args.echo === "batched" && !socket.writableCorked) {
        // Every message parsed from one read is emitted in the same tick,
        // so their echoes share one write, released before the socket's
        // next read: Node's cork/uncork idiom.
        socket.cork();
        process.nextTick(() => socket.uncork());
      }
      ws.send(data, { binary: isBinary });
    });
  });
});

// wsbench's memory readings ask for a full collection first, so that they
// count what the server holds, not garbage V8 has yet to collect; the leak
// check reads the live heap printed here, as V8 keeps the pages it grew
// (tens of MiB over thousands of connections) after collecting them.
// wsbench starts Node with --expose-gc for it.
process.on("SIGUSR2", () => {
  global.gc();
  const { heapUsed, external } = process.memoryUsage();
  process.stdout.write(`COLLECTED ${heapUsed + external}\n`);
});

server.on("error", (e) => fail(`cannot listen on ${args.host}:${port}: ${e.message}`));
server.listen(port, args.host, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  for (const client of wss.clients) client.close(1001);
  const deadline = setTimeout(() => {
    for (const client of wss.clients) client.terminate();
    process.exit(0);
  }, CLOSE_GRACE_MS);
  const poll = setInterval(() => {
    if (wss.clients.size === 0) {
      clearInterval(poll);
      clearTimeout(deadline);
      process.exit(0);
    }
  }, 10);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (args["exit-on-stdin-eof"]) {
  // A server must never outlive a killed benchmark: the pipe closes when
  // wsbench dies, however it dies.
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}
