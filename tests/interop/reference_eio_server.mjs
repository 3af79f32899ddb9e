// Reference Engine.IO v4 echo server built on the npm `engine.io` package.
//
// It has the same command-line contract as `python -m engineio_core`, so the
// interop tests can run every scenario against both servers (differential
// testing):
//
//   node reference_eio_server.mjs --host 127.0.0.1 --port 0 --path /engine.io/ \
//       --ping-interval 300 --ping-timeout 200 --max-payload 1000000 \
//       [--cors '*'] [--transports polling,websocket]
//
// Times are in milliseconds. Once listening it prints exactly one line
// `LISTENING <port>` (the real port, also when --port 0) on stdout. Every
// message received on a session is sent back unchanged (text as text, binary
// as binary). SIGTERM / SIGINT close everything and exit with status 0.

import http from "node:http";
import { parseArgs } from "node:util";
import { Server } from "engine.io";

function fail(message) {
  process.stderr.write(`reference_eio_server: ${message}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      path: { type: "string", default: "/engine.io/" },
      "ping-interval": { type: "string", default: "25000" },
      "ping-timeout": { type: "string", default: "20000" },
      "max-payload": { type: "string", default: "1000000" },
      cors: { type: "string" },
      transports: { type: "string", default: "polling,websocket" },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail(err.message);
}

function intOption(name) {
  const text = values[name];
  if (!/^\d+$/.test(text)) fail(`--${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
  return Number(text);
}

const transports = values.transports
  .split(",")
  .map((t) => t.trim())
  .filter((t) => t.length > 0);
for (const t of transports) {
  if (t !== "polling" && t !== "websocket") fail(`unknown transport ${JSON.stringify(t)}`);
}
if (transports.length === 0) fail("--transports must not be empty");

const opts = {
  path: values.path,
  pingInterval: intOption("ping-interval"),
  pingTimeout: intOption("ping-timeout"),
  maxHttpBufferSize: intOption("max-payload"),
  transports,
};

if (values.cors !== undefined) {
  if (values.cors === "*") {
    // What the `cors` middleware used by engine.io does for origin "*":
    // a literal `Access-Control-Allow-Origin: *` (no credentials).
    opts.cors = { origin: "*" };
  } else {
    // Comma-separated allow-list of origins; matching origins are reflected
    // with credentials allowed.
    opts.cors = {
      origin: values.cors.split(",").map((o) => o.trim()).filter((o) => o.length > 0),
      credentials: true,
    };
  }
}

const port = intOption("port");
const httpServer = http.createServer();
const engine = new Server(opts);
engine.attach(httpServer, { path: values.path });

engine.on("connection", (socket) => {
  socket.on("message", (data) => {
    // `data` is a string for text messages and a Buffer for binary ones;
    // sending it back as-is preserves the type.
    socket.send(data);
  });
});

let shuttingDown = false;
function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  try {
    engine.close();
  } catch {
    // ignore: we are exiting anyway
  }
  httpServer.close();
  if (typeof httpServer.closeAllConnections === "function") httpServer.closeAllConnections();
  // Pipes are written synchronously on POSIX, so nothing is lost by exiting now.
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

httpServer.on("error", (err) => fail(`listen failed: ${err.message}`));
httpServer.listen(port, values.host, () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
});
