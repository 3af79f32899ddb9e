// Line-protocol "puppet" around the real npm `socket.io-client` (4.8.4), for the
// end-to-end tests of the realtime gateway (tests/realtime_app_e2e/).
//
//   node gateway_client.mjs [lifetimeMs]
//
// Reads one JSON command per line on stdin and answers each with one JSON line on stdout:
// {"id": <same id>, "ok": true, ...} or {"id", "ok": false, "error", ...}. Commands:
//
//   connect    {name, url, auth?, extraHeaders?, transports?, ackPrivate=true,
//               reconnection=false, withCredentials=false, timeoutMs}
//              -> {connected: true, socketId} | {connected: false, error: {message, data}}
//              reconnection: the client reconnects by itself (delays 200..1000 ms);
//              withCredentials: cookies (HAProxy's SERVERID) are kept and sent back.
//   emit       {name, event, args=[], ack=false, timeoutMs} -> {ack: <response>} | {}
//   wait       {name, event, count=1, timeoutMs} -> {events: [[...args], ...]}
//   events     {name, event?} -> {events: [{event, args, hasAck, at}, ...]}
//   set        {name, ackPrivate} -> {}
//   disconnect {name} -> {}
//   stream     {name, stream, target, count, intervalMs=0, ackTimeoutMs=3000, retries=0,
//               prefix} -> {} at once; in the background sends `count` private messages
//              {targetUserId: target, message: "<prefix>-<seq>", clientMessageId: same},
//              one at a time, each waiting for its ack; a missing ack (timeout) is retried
//              up to `retries` times with the same clientMessageId (the gateway answers a
//              retry with the first message's id, so a retry never makes a second copy).
//   streamResult {stream, timeoutMs} -> {results: [{seq, text, attempts, ack|error}]}
//              once the stream has finished (error if it has not within timeoutMs)
//   quit       {} -> exits
//
// Every socket records what it receives (onAny, plus connect_error / disconnect / connect
// as "$connect_error" / "$disconnect" / "$connect" [{socketId, recovered}]). An ack callback given by the server (the last
// argument of the handler) is recorded as hasAck and, for "private-message" when
// ackPrivate is true, called with {received: true}. Every wait is bounded; the whole
// process exits after lifetimeMs (default 60000, max 120000) or when stdin closes.

import { io } from "socket.io-client";
import readline from "node:readline";

const STARTED = Date.now();
const LIFETIME = Math.min(Number(process.argv[2]) || 60000, 120000);
const MAX_WAIT = 20000;
const sockets = new Map(); // name -> {socket, events, ackPrivate, waiters}
const streams = new Map(); // stream name -> {done: Promise, results: []}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function shutdown(code) {
  for (const entry of sockets.values()) {
    try {
      entry.socket.disconnect();
    } catch {
      // already closed
    }
  }
  setTimeout(() => process.exit(code), 50).unref();
}

const watchdog = setTimeout(() => {
  out({ id: null, ok: false, error: `watchdog: puppet exceeded ${LIFETIME} ms` });
  shutdown(3);
}, LIFETIME);
watchdog.unref();

function norm(v, depth = 0) {
  if (depth > 20) return "<too deep>";
  if (v === undefined) return null;
  if (typeof v === "function") return "<function>";
  if (v instanceof Error) return { message: v.message, data: norm(v.data, depth + 1) };
  if (Array.isArray(v)) return v.map((x) => norm(x, depth + 1));
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = norm(x, depth + 1);
    return o;
  }
  return v;
}

function record(entry, event, args) {
  let hasAck = false;
  if (args.length && typeof args[args.length - 1] === "function") {
    hasAck = true;
    args = args.slice(0, -1);
  }
  // With connection state recovery the server appends each packet's offset (a string)
  // after the payload; the client keeps it (socket._pid is set). Recorded apart, so that
  // args are what the application sends.
  let offset;
  if (entry.socket._pid && args.length > 1 && typeof args[args.length - 1] === "string") {
    offset = args[args.length - 1];
    args = args.slice(0, -1);
  }
  if (entry.events.length < 5000) {
    entry.events.push({ event, args: norm(args), hasAck, offset, at: Date.now() });
  }
  for (const w of [...entry.waiters]) w();
}

function bound(ms) {
  return Math.max(1, Math.min(Number(ms) || 5000, MAX_WAIT));
}

function getEntry(name) {
  const entry = sockets.get(name);
  if (!entry) throw new Error(`no socket named ${name}`);
  return entry;
}

function waitFor(entry, predicate, timeoutMs) {
  return new Promise((resolve) => {
    if (predicate()) return resolve(true);
    const check = () => {
      if (predicate()) {
        done();
        resolve(true);
      }
    };
    const timer = setTimeout(() => {
      done();
      resolve(false);
    }, bound(timeoutMs));
    const done = () => {
      clearTimeout(timer);
      const i = entry.waiters.indexOf(check);
      if (i > -1) entry.waiters.splice(i, 1);
    };
    entry.waiters.push(check);
  });
}

const handlers = {
  async connect(cmd) {
    if (sockets.has(cmd.name)) sockets.get(cmd.name).socket.disconnect();
    const socket = io(cmd.url, {
      forceNew: true,
      reconnection: cmd.reconnection === true,
      reconnectionDelay: 200,
      reconnectionDelayMax: 1000,
      autoConnect: false,
      auth: cmd.auth,
      extraHeaders: cmd.extraHeaders,
      transports: cmd.transports,
      withCredentials: cmd.withCredentials === true,
    });
    const entry = { socket, events: [], waiters: [], ackPrivate: cmd.ackPrivate !== false };
    sockets.set(cmd.name, entry);
    socket.onAny((event, ...args) => record(entry, event, args));
    socket.on("private-message", (...args) => {
      const ack = args[args.length - 1];
      if (entry.ackPrivate && typeof ack === "function") ack({ received: true });
    });
    socket.on("connect_error", (err) => record(entry, "$connect_error", [err]));
    socket.on("disconnect", (reason) => record(entry, "$disconnect", [reason]));
    socket.on("connect", () =>
      record(entry, "$connect", [{ socketId: socket.id, recovered: socket.recovered === true }]),
    );
    let outcome = null;
    const settled = new Promise((resolve) => {
      socket.once("connect", () => resolve((outcome = { connected: true, socketId: socket.id })));
      socket.once("connect_error", (err) =>
        resolve((outcome = { connected: false, error: norm(err) })),
      );
      setTimeout(() => resolve(null), bound(cmd.timeoutMs));
    });
    socket.connect();
    await settled;
    if (!outcome) throw new Error("connect: no connect nor connect_error in time");
    return outcome;
  },

  async emit(cmd) {
    const { socket } = getEntry(cmd.name);
    const args = cmd.args || [];
    if (!cmd.ack) {
      socket.emit(cmd.event, ...args);
      return {};
    }
    try {
      const response = await socket.timeout(bound(cmd.timeoutMs)).emitWithAck(cmd.event, ...args);
      return { ack: norm(response) };
    } catch (err) {
      throw new Error(`no ack for ${cmd.event}: ${err.message}`);
    }
  },

  async wait(cmd) {
    const entry = getEntry(cmd.name);
    const count = cmd.count ?? 1;
    const matching = () => entry.events.filter((e) => e.event === cmd.event);
    const ok = await waitFor(entry, () => matching().length >= count, cmd.timeoutMs);
    const events = matching().map((e) => e.args);
    if (!ok) {
      const err = new Error(`waited for ${count} ${cmd.event} on ${cmd.name}, got ${events.length}`);
      err.extra = { events: entry.events.map((e) => [e.event, e.args]) };
      throw err;
    }
    return { events };
  },

  async events(cmd) {
    const entry = getEntry(cmd.name);
    const list = cmd.event ? entry.events.filter((e) => e.event === cmd.event) : entry.events;
    return { events: list };
  },

  async set(cmd) {
    getEntry(cmd.name).ackPrivate = cmd.ackPrivate !== false;
    return {};
  },

  async disconnect(cmd) {
    const entry = getEntry(cmd.name);
    entry.socket.disconnect();
    return {};
  },

  async stream(cmd) {
    const { socket } = getEntry(cmd.name);
    if (streams.has(cmd.stream)) throw new Error(`stream ${cmd.stream} exists`);
    const count = Math.min(Number(cmd.count) || 1, 5000);
    const retries = Math.min(Number(cmd.retries) || 0, 20);
    const ackTimeout = bound(cmd.ackTimeoutMs || 3000);
    const results = [];
    const run = async () => {
      for (let seq = 1; seq <= count; seq++) {
        const text = `${cmd.prefix}-${seq}`;
        const payload = { targetUserId: cmd.target, message: text, clientMessageId: text };
        const result = { seq, text, attempts: 0 };
        while (result.attempts <= retries) {
          result.attempts += 1;
          try {
            result.ack = norm(await socket.timeout(ackTimeout).emitWithAck("private-message", payload));
            delete result.error;
            break;
          } catch (err) {
            result.error = err.message; // no ack in time: maybe lost, maybe not; retried
          }
        }
        result.at = Date.now();
        results.push(result);
        if (cmd.intervalMs) await new Promise((r) => setTimeout(r, Number(cmd.intervalMs)));
      }
    };
    streams.set(cmd.stream, { done: run(), results });
    return {};
  },

  async streamResult(cmd) {
    const entry = streams.get(cmd.stream);
    if (!entry) throw new Error(`no stream named ${cmd.stream}`);
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve(true), Math.max(1, Number(cmd.timeoutMs) || 5000));
    });
    const late = await Promise.race([entry.done.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      const err = new Error(`stream ${cmd.stream} unfinished: ${entry.results.length} sent`);
      err.extra = { results: entry.results };
      throw err;
    }
    return { results: entry.results };
  },

  async quit() {
    shutdown(0);
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ id: null, ok: false, error: `bad command line: ${err.message}` });
    return;
  }
  const handler = handlers[cmd.cmd];
  if (!handler) {
    out({ id: cmd.id, ok: false, error: `unknown command ${cmd.cmd}` });
    return;
  }
  try {
    const result = await handler(cmd);
    out({ id: cmd.id, ok: true, elapsed: Date.now() - STARTED, ...result });
  } catch (err) {
    out({ id: cmd.id, ok: false, error: err.message, ...(err.extra || {}) });
  }
});
rl.on("close", () => shutdown(0));
