// A Node socket.io 4.8.4 server with @socket.io/redis-adapter 8.3.0 and real socket.io-client
// 4.8.4 clients connected to it, all in this process, for the Redis emitter interop tests.
//
//   node redis_emitter_fleet.mjs <redisUrl> <key> <clients.json>
//
// <clients.json>: [{name, nsp, rooms, transport: "websocket" | "polling"}, ...]. Every socket
// joins its `rooms` on connection. Prints one JSON object per line:
//   {"kind": "ready", "ids": {name: socketId}}     once every client is connected
//   {"kind": "event", "client", "event", "args"}  each event a client receives
//   {"kind": "disconnect", "client", "reason"}    each client disconnect
//   {"kind": "conn-close", "client", "reason"}    the server's end of a connection closes
//   {"kind": "sse", "nsp", "args"}                server-side event "sse" on a namespace
//   {"kind": "rooms", "nsp", "rooms": {name: [room, ...]}}  on server-side event "report"
// Binary values are tagged {"$bin": base64}. Exits on SIGTERM or after 60 s.
import http from "node:http";
import { readFileSync } from "node:fs";
import { createClient } from "redis";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter } from "@socket.io/redis-adapter";
import { tag } from "./redis_values.mjs";

const [url, key, clientsFile] = process.argv.slice(2);
const specs = JSON.parse(readFileSync(clientsFile, "utf8"));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const pub = createClient({ url });
const sub = pub.duplicate();
for (const c of [pub, sub]) c.on("error", (err) => console.error("redis error", err));
await Promise.all([pub.connect(), sub.connect()]);

const httpServer = http.createServer();
const io = new Server(httpServer, { adapter: createAdapter(pub, sub, { key }) });
const namespaces = [...new Set(specs.map((s) => s.nsp))];
for (const name of namespaces) {
  const nsp = io.of(name);
  nsp.on("connection", (socket) => {
    socket.join(socket.handshake.auth.rooms);
    // Server side of the Engine.IO connection: "forced close" when the server closes it.
    socket.conn.once("close", (reason) =>
      out({ kind: "conn-close", client: socket.handshake.auth.name, reason }));
  });
  // Server-side events arrive on the namespace's own emitter (io.on for "/").
  nsp.on("sse", (...args) => out({ kind: "sse", nsp: name, args: tag(args) }));
  nsp.on("report", () => {
    const rooms = {};
    for (const socket of nsp.sockets.values()) {
      rooms[socket.handshake.auth.name] = [...socket.rooms].filter((r) => r !== socket.id).sort();
    }
    out({ kind: "rooms", nsp: name, rooms });
  });
}
await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
const base = `http://127.0.0.1:${httpServer.address().port}`;

const clients = [];
const ids = {};
await Promise.all(specs.map((spec) => new Promise((resolve, reject) => {
  const socket = connect(base + spec.nsp, {
    auth: { name: spec.name, rooms: spec.rooms },
    transports: [spec.transport],
    reconnection: false,
    forceNew: true,
  });
  clients.push(socket);
  socket.onAny((event, ...args) => out({ kind: "event", client: spec.name, event, args: tag(args) }));
  socket.on("disconnect", (reason) => out({ kind: "disconnect", client: spec.name, reason }));
  socket.once("connect", () => { ids[spec.name] = socket.id; resolve(); });
  socket.once("connect_error", reject);
})));
out({ kind: "ready", ids });

async function stop(code) {
  for (const socket of clients) socket.close();
  io.close();
  await Promise.allSettled([pub.quit(), sub.quit()]);
  process.exit(code);
}
process.on("SIGTERM", () => stop(0));
setTimeout(() => { console.error("watchdog"); stop(3); }, 60000).unref();
