// Node.js reference for the Admin UI tests: npm `socket.io` 4.8.4 instrumented by
// `@socket.io/admin-ui` 0.5.1. Twin of tests/socketio_core/admin_server.py.
//
//   node reference_admin_server.mjs --port 0 --password-hash HASH [--mode development|production]
//       [--read-only]
//
// Prints `LISTENING <port>`. Admin user "admin" with the given bcrypt hash. Namespaces "/"
// and "/chat": a socket joins the room named by auth.room (if any); "ping" is acked with
// "pong" and answered with a "pong" event; "shout" (room, text) emits "shout" (text) to
// the room.

import http from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";
import { instrument } from "@socket.io/admin-ui";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    "password-hash": { type: "string" },
    mode: { type: "string", default: "development" },
    "read-only": { type: "boolean", default: false },
  },
  strict: true,
});

const httpServer = http.createServer();
const io = new Server(httpServer, { pingInterval: 2000, pingTimeout: 5000 });

function setup(nsp) {
  nsp.on("connection", (socket) => {
    const room = socket.handshake.auth && socket.handshake.auth.room;
    if (typeof room === "string") socket.join(room);
    socket.on("ping", (...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      socket.emit("pong", ...args);
      if (ack) ack("pong");
    });
    socket.on("shout", (room, text) => {
      nsp.to(room).emit("shout", text);
    });
  });
}
setup(io.of("/"));
setup(io.of("/chat"));

instrument(io, {
  auth: { type: "basic", username: "admin", password: values["password-hash"] },
  mode: values.mode,
  readonly: values["read-only"],
  serverId: "reference",
});

httpServer.listen(Number(values.port), values.host, () => {
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
