// A Node socket.io 4.8.4 server with @socket.io/redis-streams-adapter 0.3.1, one node of a
// mixed fleet for the streams adapter tests, driven by JSON lines on stdin.
//
//   node redis_streams_node.mjs <redisUrl> <streamName> <channelPrefix> <sessionKeyPrefix> <recoveryMs>
//
// Every socket joins handshake.auth.rooms on connection. Prints JSON lines:
//   {"kind": "ready", "port"}, {"kind": "done", "id", "result"?, "error"?}
// Also {"kind": "sse", "args"} for a server-side event (acked "node:<first arg>") and
// {"kind": "gone", "id", "reason"} when a socket disconnects.
// Commands ({"id", "op", "to": [...], ...}): emit {event, args}, emitWithAck {event, args,
// timeout}, socketsJoin {rooms}, socketsLeave {rooms}, disconnectSockets {close},
// serverSideEmit {args}, serverSideEmitWithAck {args}, rooms, serverCount, fetchSockets.
// Exits on SIGTERM, stdin EOF or after 120 s.
import http from "node:http";
import readline from "node:readline";
import { createClient } from "redis";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-streams-adapter";

const [url, streamName, channelPrefix, sessionKeyPrefix, recoveryMs] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const client = createClient({ url });
client.on("error", (err) => console.error("redis error", err));
await client.connect();

const httpServer = http.createServer();
const options = { adapter: createAdapter(client, { streamName, channelPrefix, sessionKeyPrefix }) };
if (Number(recoveryMs) > 0) {
  options.connectionStateRecovery = { maxDisconnectionDuration: Number(recoveryMs) };
}
const io = new Server(httpServer, options);
io.on("connection", (socket) => {
  socket.join(socket.handshake.auth.rooms || []);
  socket.on("disconnect", (reason) => out({ kind: "gone", id: socket.id, reason }));
});
io.on("sse", (...args) => {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  out({ kind: "sse", args });
  if (ack) ack(`node:${args[0]}`);
});
await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));

async function run(cmd) {
  let op = io;
  if (cmd.to && cmd.to.length) op = op.to(cmd.to);
  switch (cmd.op) {
    case "emit":
      // {"hex": "..."} arguments are sent as Buffers
      op.emit(cmd.event, ...(cmd.args || []).map(
        (a) => (a && typeof a === "object" && "hex" in a ? Buffer.from(a.hex, "hex") : a)));
      return null;
    case "emitWithAck":
      return await op.timeout(cmd.timeout || 3000).emitWithAck(cmd.event, ...(cmd.args || []));
    case "socketsJoin":
      op.socketsJoin(cmd.rooms);
      return null;
    case "socketsLeave":
      op.socketsLeave(cmd.rooms);
      return null;
    case "disconnectSockets":
      op.disconnectSockets(!!cmd.close);
      return null;
    case "serverSideEmit":
      io.serverSideEmit(...cmd.args);
      return null;
    case "serverSideEmitWithAck":
      return await io.serverSideEmitWithAck(...cmd.args);
    case "rooms":
      return Object.fromEntries([...io.of("/").sockets.values()].map(
        (s) => [s.id, [...s.rooms].filter((r) => r !== s.id).sort()]));
    case "serverCount":
      return await io.of("/").adapter.serverCount();
    case "fetchSockets":
      return (await op.fetchSockets()).map((s) => ({ id: s.id, rooms: [...s.rooms].sort() }));
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
  await Promise.allSettled([client.quit()]);
  process.exit(code);
}
process.on("SIGTERM", () => stop(0));
setTimeout(() => { console.error("watchdog"); stop(3); }, 120000).unref();
