// The benchmark app on Node's socket.io 4.8.4 (default engine: ws). Same contract as
// ours.py. socket.io is loaded from BENCH_NPM_DIR (the harness's npm cache folder).
//
//   BENCH_NPM_DIR=... node benchmarks/load/apps/node.mjs --port 0   -> "LISTENING <port>"
//
// `departures` ("start" / "stop", with ack): as in ours.py, the departure times (CLOCK_MONOTONIC
// microseconds: process.hrtime) of the first and last of the room-size writes after each
// `bcast`, taken by
// wrapping each connection's net.Socket write (ws corks a frame's two buffers and uncorks
// right after: the stamp is within microseconds of the send) between start and stop.
// --ping-interval SECONDS sets pingInterval (default 25 s).
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
    "ping-interval": { type: "string" },
  },
});

const options = { path: "/socket.io/" };
if (values["ping-interval"]) options.pingInterval = Math.round(Number(values["ping-interval"]) * 1000);
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

const monoMicros = () => Number(process.hrtime.bigint() / 1000n);
const tap = { on: false, records: [], current: null };

function tcpSockets() {
  const found = [];
  for (const socket of io.of("/").sockets.values()) {
    const ws = socket.conn.transport && socket.conn.transport.socket;
    if (ws && ws._socket) found.push(ws._socket);
  }
  return found;
}

function tapStart() {
  tap.records = [];
  tap.current = null;
  tap.on = true;
  for (const tcp of tcpSockets()) {
    if (Object.prototype.hasOwnProperty.call(tcp, "write")) continue;
    const write = tcp.write;
    tcp.write = function tapped(...args) {
      const record = tap.current;
      if (record !== null && record[3] < record[4]) {
        const t = monoMicros();
        if (!record[3]) record[1] = t;
        record[2] = t;
        record[3] += 1;
      }
      return write.apply(this, args);
    };
  }
}

function tapStop() {
  tap.on = false;
  tap.current = null;
  for (const tcp of tcpSockets()) delete tcp.write;
  return tap.records.slice(-5000);
}

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
  socket.on("bcast", (room, payload) => {
    if (tap.on) {
      const members = io.of("/").adapter.rooms.get(room);
      tap.current = [monoMicros(), 0, 0, 0, members ? members.size : 0];
      tap.records.push(tap.current);
    }
    io.to(room).emit("msg", payload);
  });
  socket.on("departures", (command, ack) => {
    const answer = command === "start" ? (tapStart(), true) : tapStop();
    if (typeof ack === "function") ack(answer);
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
