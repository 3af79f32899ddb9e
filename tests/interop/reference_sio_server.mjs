// Reference Socket.IO v5 scenario server built on the npm `socket.io` package (4.8.4).
//
// Node.js twin of tests/socketio_core/scenario_server.py: same command line, same
// behaviour, so the interop tests can run every socket.io-client scenario against both
// servers (differential testing).
//
//   node reference_sio_server.mjs --port 0 [--ping-interval MS] [--ping-timeout MS]
//       [--connect-timeout MS] [--max-payload BYTES] [--recovery MS]
//       [--parser json|msgpack] [--host 127.0.0.1]
//
// Prints exactly one line `LISTENING <port>` on stdout once listening. SIGTERM / SIGINT
// close the server (io.close()) and exit with status 0.
//
// Behaviour, in every namespace that accepts connections (see the Python twin's
// docstring for the full list): hello on connect; echo, echo-ack, join, leave, to-room,
// to-all-except, volatile, server-ack, broadcast-ack, disconnect-me, close-me, count,
// last-reasons, data-set, data-get. Namespaces "/", "/custom", "/private" (refused with
// "not authorized" + data {code: 42} unless auth {token: "secret"}) and /^\/dynamic-\d+$/.

import http from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

function fail(message) {
  process.stderr.write(`reference_sio_server: ${message}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      "ping-interval": { type: "string", default: "25000" },
      "ping-timeout": { type: "string", default: "20000" },
      "connect-timeout": { type: "string", default: "45000" },
      "max-payload": { type: "string", default: "1000000" },
      recovery: { type: "string", default: "0" },
      parser: { type: "string", default: "json" },
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

if (values.parser !== "json" && values.parser !== "msgpack") {
  fail(`--parser must be json or msgpack, got ${JSON.stringify(values.parser)}`);
}

const opts = {
  pingInterval: intOption("ping-interval"),
  pingTimeout: intOption("ping-timeout"),
  connectTimeout: intOption("connect-timeout"),
  maxHttpBufferSize: intOption("max-payload"),
};
const recovery = intOption("recovery");
if (recovery > 0) {
  opts.connectionStateRecovery = { maxDisconnectionDuration: recovery, skipMiddlewares: true };
}
if (values.parser === "msgpack") {
  const mod = await import("socket.io-msgpack-parser");
  opts.parser = mod.default ?? mod;
}

const reasons = [];

function setup(nsp) {
  nsp.on("connection", (socket) => {
    socket.emit("hello", {
      id: socket.id,
      nsp: socket.nsp.name,
      auth: socket.handshake.auth,
      recovered: socket.recovered,
    });

    socket.on("echo", (...args) => {
      socket.emit("echo", ...args);
    });

    socket.on("echo-ack", (...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      if (ack) ack(...args);
    });

    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack([...socket.rooms].sort());
    });

    socket.on("leave", (room, ack) => {
      socket.leave(room);
      if (typeof ack === "function") ack([...socket.rooms].sort());
    });

    socket.on("to-room", (room, ...args) => {
      if (typeof args[args.length - 1] === "function") args.pop();
      socket.to(room).emit("room-message", ...args);
    });

    socket.on("to-all-except", (room, ...args) => {
      if (typeof args[args.length - 1] === "function") args.pop();
      socket.nsp.except(room).emit("except-message", ...args);
    });

    socket.on("volatile", (...args) => {
      if (typeof args[args.length - 1] === "function") args.pop();
      socket.volatile.emit("volatile-message", ...args);
    });

    socket.on("server-ack", (timeoutMs, ...args) => {
      if (typeof args[args.length - 1] === "function") args.pop();
      socket.timeout(timeoutMs).emit("need-ack", ...args, (err, value) => {
        socket.emit("server-ack-result", err ? { error: "timeout" } : { ok: value });
      });
    });

    socket.on("broadcast-ack", (timeoutMs) => {
      socket.nsp.timeout(timeoutMs).emit("need-ack", (err, responses) => {
        const sorted = (responses ?? []).map((r) => String(r)).sort();
        socket.emit(
          "broadcast-ack-result",
          err ? { error: "timeout", responses: sorted } : { responses: sorted },
        );
      });
    });

    socket.on("disconnect-me", () => {
      socket.disconnect();
    });

    socket.on("close-me", () => {
      socket.disconnect(true);
    });

    socket.on("count", (ack) => {
      if (typeof ack === "function") ack(socket.nsp.sockets.size);
    });

    socket.on("last-reasons", (ack) => {
      if (typeof ack === "function") ack(reasons.slice(-20));
    });

    socket.on("data-set", (value) => {
      socket.data = value;
    });

    socket.on("data-get", (ack) => {
      if (typeof ack === "function") ack(socket.data);
    });

    socket.on("disconnect", (reason) => {
      reasons.push(reason);
      if (reasons.length > 1000) reasons.splice(0, reasons.length - 1000);
    });
  });
}

const httpServer = http.createServer();
const io = new Server(httpServer, opts);

setup(io.of("/"));
setup(io.of("/custom"));
const priv = io.of("/private");
priv.use((socket, next) => {
  const auth = socket.handshake.auth;
  if (!auth || auth.token !== "secret") {
    const err = new Error("not authorized");
    err.data = { code: 42 };
    next(err);
    return;
  }
  next();
});
setup(priv);
setup(io.of(/^\/dynamic-\d+$/));

httpServer.on("error", (err) => fail(err.message));
httpServer.listen(intOption("port"), values.host, () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(0), 2000);
  hard.unref();
  io.close(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
