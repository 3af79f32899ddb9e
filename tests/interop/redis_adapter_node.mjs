// A Node socket.io 4.8.4 server with @socket.io/redis-adapter 8.3.0 (createAdapter), one node
// of a mixed fleet for the Redis adapter tests, driven by JSON lines on stdin.
//
//   node redis_adapter_node.mjs <redisUrl> <key> <nsp,nsp,...> [sharded:<mode>]
//
// With "sharded:<mode>" the adapter is createShardedAdapter (Redis 7 sharded pub/sub) with
// channelPrefix <key> and subscriptionMode <mode> (static, dynamic, dynamic-private).
// Every socket joins handshake.auth.rooms on connection. Prints one JSON object per line:
//   {"kind": "ready", "port"}                      once listening
//   {"kind": "sse", "nsp", "args"}                 server-side event "sse" (an ack, if asked
//                                                  for, is answered "node:<first arg>")
//   {"kind": "done", "id", "result"?, "error"?}    after each command
// Commands ({"id", "op", "nsp", "to": [...], "except": [...], ...}):
//   emit {event, args}, emitWithAck {event, args, timeout}, socketsJoin {rooms},
//   socketsLeave {rooms}, disconnectSockets {close}, serverSideEmit {args},
//   serverSideEmitWithAck {args}, fetchSockets, allRooms, serverCount,
//   rooms (the rooms of every local socket, by auth name).
// Values are tagged as in redis_values.mjs. Exits on SIGTERM, stdin EOF or after 120 s.
import http from "node:http";
import readline from "node:readline";
import { createClient } from "redis";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { tag, untag } from "./redis_values.mjs";

const [url, key, nsps, variant] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const pub = createClient({ url });
const sub = pub.duplicate();
for (const c of [pub, sub]) c.on("error", (err) => console.error("redis error", err));
await Promise.all([pub.connect(), sub.connect()]);

const httpServer = http.createServer();
const adapter = variant && variant.startsWith("sharded:")
  ? createShardedAdapter(pub, sub, { channelPrefix: key, subscriptionMode: variant.slice(8) })
  : createAdapter(pub, sub, { key, requestsTimeout: 3000 });
const io = new Server(httpServer, { adapter });
for (const name of nsps.split(",")) {
  const nsp = io.of(name);
  nsp.on("connection", (socket) => socket.join(socket.handshake.auth.rooms || []));
  nsp.on("sse", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    out({ kind: "sse", nsp: name, args: tag(args) });
    if (ack) ack(`node:${args[0]}`);
  });
}
await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));

function target(cmd) {
  let op = io.of(cmd.nsp || "/");
  if (cmd.to && cmd.to.length) op = op.to(cmd.to);
  if (cmd.except && cmd.except.length) op = op.except(cmd.except);
  if (cmd.volatile) op = op.volatile;
  return op;
}

async function run(cmd) {
  const nsp = io.of(cmd.nsp || "/");
  switch (cmd.op) {
    case "emit":
      target(cmd).emit(cmd.event, ...untag(cmd.args || []));
      return null;
    case "emitWithAck":
      return tag(await target(cmd).timeout(cmd.timeout).emitWithAck(cmd.event, ...untag(cmd.args || [])));
    case "socketsJoin":
      target(cmd).socketsJoin(cmd.rooms);
      return null;
    case "socketsLeave":
      target(cmd).socketsLeave(cmd.rooms);
      return null;
    case "disconnectSockets":
      target(cmd).disconnectSockets(!!cmd.close);
      return null;
    case "serverSideEmit":
      nsp.serverSideEmit(...untag(cmd.args));
      return null;
    case "serverSideEmitWithAck":
      return tag(await nsp.serverSideEmitWithAck(...untag(cmd.args)));
    case "fetchSockets": {
      const sockets = await target(cmd).fetchSockets();
      return sockets.map((s) => ({ id: s.id, rooms: [...s.rooms].sort(), name: s.handshake.auth.name,
        local: s.constructor.name === "Socket" }));
    }
    case "allRooms":
      return [...(await nsp.adapter.allRooms())].sort();
    case "serverCount":
      return await io.of(cmd.nsp || "/").adapter.serverCount();
    case "rooms": {
      const rooms = {};
      for (const s of nsp.sockets.values()) {
        rooms[s.handshake.auth.name] = [...s.rooms].filter((r) => r !== s.id).sort();
      }
      return rooms;
    }
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const cmd = JSON.parse(line);
  try {
    out({ kind: "done", id: cmd.id, result: await run(cmd) });
  } catch (err) {
    out({ kind: "done", id: cmd.id, error: String(err && err.message || err) });
  }
});
lines.on("close", () => stop(0));
out({ kind: "ready", port: httpServer.address().port });

async function stop(code) {
  io.close();
  await Promise.allSettled([pub.quit(), sub.quit()]);
  process.exit(code);
}
process.on("SIGTERM", () => stop(0));
setTimeout(() => { console.error("watchdog"); stop(3); }, 120000).unref();
