// The benchmark app on Node's socket.io 4.8.4 (default engine: ws). Same contract as
// ours.py. socket.io is loaded from BENCH_NPM_DIR (the harness's npm cache folder).
//
//   BENCH_NPM_DIR=... node benchmarks/load/apps/node.mjs --port 0   -> "LISTENING <port>"

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
  },
});

const httpServer = http.createServer();
const io = new Server(httpServer, { path: "/socket.io/" });

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
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
