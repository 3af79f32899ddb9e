// The benchmark app on Node's socket.io 4.8.4 (default engine: ws). Same contract as
// ours.py. socket.io is loaded from BENCH_NPM_DIR (the harness's npm cache folder).
//
//   BENCH_NPM_DIR=... node benchmarks/load/apps/node.mjs --port 0   -> "LISTENING <port>"
//
// With --redis URL --redis-key KEY the server is one node of a fleet: @socket.io/redis-adapter
// 8.3.0 (createAdapter, node-redis 4.7.1 clients), as the `fanout2` scenario runs it.

import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";

const npmDir = process.env.BENCH_NPM_DIR;
if (!npmDir) {
  process.stderr.write("node.mjs: BENCH_NPM_DIR is not set\n");
  process.exit(2);
}
const require = createRequire(path.join(npmDir, "package.json"));
const { Server } = require("socket.io");

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    redis: { type: "string" },
    "redis-key": { type: "string", default: "socket.io" },
  },
});

const options = { path: "/socket.io/" };
const redisClients = [];
if (values.redis) {
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url: values.redis });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (err) => process.stderr.write(`redis: ${err}\n`));
  await Promise.all([pub.connect(), sub.connect()]);
  redisClients.push(pub, sub);
  options.adapter = createAdapter(pub, sub, { key: values["redis-key"] });
}

const httpServer = http.createServer();
const io = new Server(httpServer, options);
if (values.redis) {
  // The adapter subscribes without waiting for Redis's answer; give it a moment so the
  // other node's broadcasts arrive from the first client on.
  await new Promise((resolve) => setTimeout(resolve, 200));
}

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
  socket.on("bcast", (room, payload) => {
    io.to(room).emit("msg", payload);
  });
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack(payload);
  });
});

httpServer.listen(Number(values.port), values.host, () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
});

function stop() {
  for (const c of redisClients) c.disconnect().catch(() => {});
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
