// Scenario driver for the real npm `socket.io-client` (4.8.4).
//
//   node sio_client.mjs <scenario> <url> [json-options]
//
// <url> is the server origin, e.g. http://127.0.0.1:3000 (the server must behave like
// tests/socketio_core/scenario_server.py). Options (JSON object):
//   path        Socket.IO path (default "/socket.io/")
//   transport   "websocket" | "polling" | "upgrade" (polling then upgrade, the default)
//   timeoutMs   watchdog, the process always exits by then (default 15000, max 20000)
//   silent      broadcast-ack: one client does not ack (default false)
//   drop        recovery: "engine-close" (socket.io.engine.close(), default) or
//               "transport-close" (close the transport underneath the engine)
//   awayMs      recovery: stay disconnected that long more (to outlive the session); the
//               missed message is then not waited for
//
// Scenarios: connect, multiplex, acks, binary, rooms, volatile, private, dynamic,
// broadcast-ack, reasons, wait-disconnect, recovery, no-connect, msgpack.
//
// On success one JSON line {"scenario", "ok": true, ...result} is printed on stdout and
// the exit status is 0. On failure one JSON line {"ok": false, "error", "events"} is
// printed and the exit status is 1. `wait-disconnect` first prints the line `READY` once
// connected, then waits for the disconnection (caused by the test: SIGSTOP/SIGTERM of the
// server) and prints the JSON line.
//
// Binary values in results are written as {"$bin": "<hex>"}. Every wait is event driven
// (or a bounded poll of the server) and bounded by the watchdog: there are no timed
// assertions in here, the test decides from what was observed.

import { io } from "socket.io-client";
import { Socket as EngineSocket } from "engine.io-client";

const STARTED = Date.now();
const [scenario, url, rawOptions] = process.argv.slice(2);

let options = {};
let finished = false;
const events = [];
const tracked = []; // every socket.io-client Socket created, closed on exit
const engines = []; // raw engine.io-client sockets

function logEvent(...detail) {
  if (events.length < 300) events.push([Date.now() - STARTED, ...detail.map(norm)]);
}

function emitLine(line) {
  process.stdout.write(line + "\n");
}

// ------------------------------------------------------------------ values

function isBinary(v) {
  return (
    (typeof Buffer !== "undefined" && Buffer.isBuffer(v)) ||
    v instanceof ArrayBuffer ||
    ArrayBuffer.isView(v)
  );
}

function toBuffer(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** JSON-friendly copy: binaries become {"$bin": hex}, functions "<function>". */
function norm(v, depth = 0) {
  if (depth > 20) return "<too deep>";
  if (v === undefined) return null;
  if (typeof v === "function") return "<function>";
  if (isBinary(v)) return { $bin: toBuffer(v).toString("hex") };
  if (v instanceof Error) return { error: v.message, data: norm(v.data, depth + 1) };
  if (Array.isArray(v)) return v.map((x) => norm(x, depth + 1));
  if (v && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = norm(x, depth + 1);
    return out;
  }
  return v;
}

function sameValue(a, b) {
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

// ------------------------------------------------------------------ exiting

async function closeAll() {
  const closing = [];
  for (const s of tracked) {
    try {
      const engine = s.io && s.io.engine;
      if (engine && engine.readyState !== "closed") {
        closing.push(new Promise((resolve) => engine.once("close", resolve)));
      }
      s.io.reconnection(false);
      s.disconnect();
    } catch {
      // ignore, we are exiting
    }
  }
  for (const e of engines) {
    try {
      if (e.readyState !== "closed") e.close();
    } catch {
      // ignore
    }
  }
  // Give the disconnections a moment to reach the server (bounded, not an assertion).
  await Promise.race([Promise.all(closing), sleep(500)]);
  await sleep(30);
}

async function finish(result) {
  if (finished) return;
  finished = true;
  await closeAll();
  emitLine(JSON.stringify({ scenario, ok: true, ...norm(result) }));
  process.exit(0);
}

function die(error, extra = {}) {
  if (finished) return;
  finished = true;
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  try {
    emitLine(JSON.stringify({ scenario, ok: false, error: message, ...norm(extra), events }));
  } catch (err) {
    emitLine(JSON.stringify({ scenario, ok: false, error: `${message} (${err})` }));
  }
  for (const s of tracked) {
    try {
      s.disconnect();
    } catch {
      // ignore
    }
  }
  process.exit(1);
}

process.on("uncaughtException", (err) => die(err));
process.on("unhandledRejection", (err) => die(err));

try {
  options = rawOptions ? JSON.parse(rawOptions) : {};
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error("json-options must be a JSON object");
  }
} catch (err) {
  die(`bad json-options: ${err.message}`);
}
if (!scenario || !url) die("usage: node sio_client.mjs <scenario> <url> [json-options]");

const timeoutMs = Math.min(Number(options.timeoutMs ?? 15000), 20000);
const watchdog = setTimeout(() => die(`watchdog: scenario not finished within ${timeoutMs} ms`), timeoutMs);
watchdog.unref?.();
// keep the process alive until the watchdog / finish decides
const keepAlive = setInterval(() => {}, 1000);
void keepAlive;

const PATH = options.path ?? "/socket.io/";
const TRANSPORT = options.transport ?? "upgrade";
if (!["websocket", "polling", "upgrade"].includes(TRANSPORT)) die(`unknown transport ${TRANSPORT}`);

function transportOptions() {
  if (TRANSPORT === "websocket") return { transports: ["websocket"] };
  if (TRANSPORT === "polling") return { transports: ["polling"] };
  return { transports: ["polling", "websocket"] };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ------------------------------------------------------------------ clients

/** A recorder of every event a socket receives, with awaitable lookups. */
class Inbox {
  constructor(socket, name) {
    this.name = name;
    this.items = []; // [event, ...args]
    this.consumed = new Set();
    this.waiters = [];
    socket.onAny((event, ...args) => {
      const item = [event, ...args.filter((a) => typeof a !== "function")];
      this.items.push(item);
      logEvent(name, "event", item);
      this._wake();
    });
    for (const ev of ["connect", "disconnect", "connect_error"]) {
      socket.on(ev, (arg) => logEvent(name, ev, ev === "connect" ? socket.id : arg));
    }
  }

  _wake() {
    for (const w of [...this.waiters]) {
      if (w.check()) this.waiters.splice(this.waiters.indexOf(w), 1);
    }
  }

  /** The args of the next not yet taken `event` (waits for it). */
  take(event) {
    return this.until(() => {
      const index = this.items.findIndex((it, i) => it[0] === event && !this.consumed.has(i));
      if (index < 0) return undefined;
      this.consumed.add(index);
      return this.items[index].slice(1);
    });
  }

  /** Resolves with predicate()'s value once it is not undefined (re-checked per event). */
  until(predicate) {
    return new Promise((resolve) => {
      const w = {
        check: () => {
          const value = predicate();
          if (value === undefined) return false;
          resolve(value);
          return true;
        },
      };
      if (!w.check()) this.waiters.push(w);
    });
  }

  events(...names) {
    return this.items.filter((it) => names.includes(it[0]));
  }
}

function client(nsp = "/", extra = {}, name = undefined) {
  const socket = io(url + nsp, {
    path: PATH,
    forceNew: true,
    reconnection: false,
    ...transportOptions(),
    ...extra,
  });
  tracked.push(socket);
  const label = name ?? `c${tracked.length}${nsp}`;
  socket.inbox = new Inbox(socket, label);
  return socket;
}

function connected(socket) {
  if (socket.connected) return Promise.resolve(socket.id);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket.id));
    socket.once("connect_error", (err) =>
      reject(new Error(`connect_error: ${err.message} ${JSON.stringify(norm(err.data))}`)),
    );
  });
}

function connectError(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error(`unexpectedly connected to ${socket.nsp}`)));
    socket.once("connect_error", (err) => resolve({ message: err.message, data: err.data ?? null }));
  });
}

function disconnected(socket) {
  return new Promise((resolve) => {
    socket.once("disconnect", (reason, description) =>
      resolve({ reason, description: describe(description) }),
    );
  });
}

function describe(description) {
  if (description === undefined || description === null) return null;
  if (description instanceof Error) return description.message;
  if (typeof description === "object") {
    const d = description.description;
    return {
      description: d instanceof Error ? d.message : typeof d === "string" ? d : d && d.type ? d.type : null,
      context: typeof description.context === "string" ? description.context : null,
    };
  }
  return String(description);
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

async function upgraded(socket) {
  if (TRANSPORT !== "upgrade") return;
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") await once(engine, "upgrade");
}

/** Registers a need-ack handler that acks with `reply(args)`, or never if reply is null. */
function answerNeedAck(socket, reply) {
  socket.needAcks = [];
  socket.on("need-ack", (...args) => {
    const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
    socket.needAcks.push(args);
    if (reply && cb) cb(reply(args));
  });
}

/** Polls the server's `count` until it is `expected` (bounded by the watchdog). */
async function waitForCount(socket, expected) {
  let count;
  for (let i = 0; i < 200; i++) {
    count = await socket.emitWithAck("count");
    if (count === expected) return count;
    await sleep(50);
  }
  throw new Error(`count stayed ${count}, expected ${expected}`);
}

function newEntries(before, after) {
  for (let k = 0; k <= before.length; k++) {
    const rest = before.slice(k);
    if (rest.every((v, i) => after[i] === v)) return after.slice(rest.length);
  }
  return after;
}

/** New server-side disconnect reasons since `before` (polls `last-reasons`). */
async function reasonsSince(watcher, before, expectedCount = 1) {
  let after = before;
  for (let i = 0; i < 200; i++) {
    after = await watcher.emitWithAck("last-reasons");
    if (newEntries(before, after).length >= expectedCount) break;
    await sleep(50);
  }
  // one more round trip, to catch a straggler
  await sleep(50);
  after = await watcher.emitWithAck("last-reasons");
  return { entries: newEntries(before, after), list: after };
}

// ------------------------------------------------------------------ scenarios

const scenarios = {};

scenarios.connect = async () => {
  const auth = { token: "abc", n: 1, nested: { list: [1, "two"] } };
  const s = client("/", { auth });
  await connected(s);
  const [hello] = await s.inbox.take("hello");
  await upgraded(s);
  const args = [1, "two", { three: [3, true, null] }, [1.5, "x"], null, false, ""];
  s.emit("echo", ...args);
  const echo = await s.inbox.take("echo");
  return {
    id: s.id,
    hello,
    sent: args,
    echo,
    echoEqual: sameValue(echo, args),
    helloIdIsSocketId: hello.id === s.id,
    transport: s.io.engine.transport.name,
  };
};

scenarios.multiplex = async () => {
  const opts = { path: PATH, reconnection: false, ...transportOptions() };
  const main = io(url, opts);
  const custom = io(url + "/custom", opts);
  tracked.push(main, custom);
  main.inbox = new Inbox(main, "main");
  custom.inbox = new Inbox(custom, "custom");
  await Promise.all([connected(main), connected(custom)]);
  const [[helloMain], [helloCustom]] = await Promise.all([
    main.inbox.take("hello"),
    custom.inbox.take("hello"),
  ]);
  await upgraded(main);
  main.emit("echo", "on main", 1);
  custom.emit("echo", "on custom", 2);
  const [echoMain, echoCustom] = await Promise.all([main.inbox.take("echo"), custom.inbox.take("echo")]);
  const ackCustom = await custom.emitWithAck("echo-ack", "custom-ack");
  return {
    sameManager: main.io === custom.io,
    engineIds: [main.io.engine.id, custom.io.engine.id],
    ids: [main.id, custom.id],
    helloMain,
    helloCustom,
    echoMain,
    echoCustom,
    ackCustom,
    transport: main.io.engine.transport.name,
  };
};

scenarios.acks = async () => {
  const s = client("/", {}, "acker");
  await connected(s);
  await s.inbox.take("hello");
  await upgraded(s);
  const multi = await new Promise((resolve) =>
    s.emit("echo-ack", 1, "two", { three: 3 }, [4], (...args) => resolve(args)),
  );
  const none = await new Promise((resolve) => s.emit("echo-ack", (...args) => resolve(args)));
  const single = await s.emitWithAck("echo-ack", "solo");
  answerNeedAck(s, (args) => ({ got: args }));
  s.emit("server-ack", 5000, "x", 2);
  const [result] = await s.inbox.take("server-ack-result");

  const quiet = client("/", {}, "quiet");
  await connected(quiet);
  await quiet.inbox.take("hello");
  answerNeedAck(quiet, null);
  quiet.emit("server-ack", 300, "y");
  const [timeoutResult] = await quiet.inbox.take("server-ack-result");
  return {
    multi,
    none,
    single,
    needAckArgs: s.needAcks,
    result,
    quietNeedAckArgs: quiet.needAcks,
    timeoutResult,
  };
};

scenarios.binary = async () => {
  const s = client();
  await connected(s);
  await s.inbox.take("hello");
  await upgraded(s);
  const payload = [
    { a: Buffer.from([0, 1, 2, 255]), nested: { list: [Buffer.from("hello"), 1, { deep: Buffer.alloc(3, 7) }] }, text: "t" },
    [Buffer.from([9]), "x", Buffer.alloc(0)],
    Buffer.from("top-level"),
  ];
  s.emit("echo", ...payload);
  const echo = await s.inbox.take("echo");
  const ackArgs = [{ bin: Buffer.from([1, 2, 3]), list: [Buffer.from("zz"), { b: Buffer.from([0]) }] }, Buffer.from([42])];
  const ack = await new Promise((resolve) => s.emit("echo-ack", ...ackArgs, (...args) => resolve(args)));
  // server -> client binary event, client -> server binary ack, server -> client result
  answerNeedAck(s, (args) => ({ back: args, extra: Buffer.from([7, 7]) }));
  const serverArgs = [{ blob: Buffer.from([5, 6]) }, Buffer.from("second")];
  s.emit("server-ack", 5000, ...serverArgs);
  const [serverAck] = await s.inbox.take("server-ack-result");
  const expectedServerAck = { ok: { back: serverArgs, extra: Buffer.from([7, 7]) } };
  return {
    echoEqual: sameValue(echo, payload),
    ackEqual: sameValue(ack, ackArgs),
    needAckEqual: sameValue(s.needAcks[0], serverArgs),
    serverAckEqual: sameValue(serverAck, expectedServerAck),
    echoIsBuffer: Buffer.isBuffer(echo[2]),
    echo,
    ack,
    needAck: s.needAcks[0],
    serverAck,
  };
};

scenarios.rooms = async () => {
  const a = client("/", {}, "A");
  const b = client("/", {}, "B");
  const c = client("/", {}, "C");
  const all = [a, b, c];
  await Promise.all(all.map(connected));
  await Promise.all(all.map((s) => s.inbox.take("hello")));
  const joinA = await a.emitWithAck("join", "r1");
  const joinB = await b.emitWithAck("join", "r1");
  let markers = 0;
  // Everyone gets the marker after whatever `sender` caused before it (same connection,
  // so the server handles the sender's packets in order).
  const barrier = async (sender) => {
    const marker = `marker-${++markers}`;
    sender.emit("to-all-except", "__nobody__", marker);
    await Promise.all(
      all.map((s) =>
        s.inbox.until(() => (s.inbox.items.some((it) => it[0] === "except-message" && it[1] === marker) ? true : undefined)),
      ),
    );
  };
  a.emit("to-room", "r1", "m1", { n: 1 });
  await barrier(a);
  a.emit("to-all-except", "r1", "m2");
  await barrier(a);
  c.emit("to-all-except", "r1", "m3");
  await barrier(c);
  const leaveB = await b.emitWithAck("leave", "r1");
  a.emit("to-room", "r1", "m4");
  c.emit("to-room", "r1", "m5");
  await barrier(a);
  await barrier(c);
  const logs = {};
  for (const [name, s] of [["A", a], ["B", b], ["C", c]]) {
    logs[name] = s.inbox.events("room-message", "except-message").filter((it) => !String(it[1]).startsWith("marker-"));
  }
  return { ids: { A: a.id, B: b.id, C: c.id }, joinA, joinB, leaveB, logs };
};

scenarios.volatile = async () => {
  const s = client();
  await connected(s);
  await s.inbox.take("hello");
  await upgraded(s);
  s.emit("volatile", "v1", { n: 2 });
  const got = await s.inbox.take("volatile-message");
  return { got };
};

scenarios.private = async () => {
  const bad = client("/private", {}, "no-token");
  const refused = await connectError(bad);
  const wrong = client("/private", { auth: { token: "nope" } }, "wrong-token");
  const refusedWrong = await connectError(wrong);
  const good = client("/private", { auth: { token: "secret" } }, "token");
  await connected(good);
  const [hello] = await good.inbox.take("hello");
  const echo = await good.emitWithAck("echo-ack", "inside");
  return { refused, refusedWrong, hello, echo, badActive: bad.active };
};

scenarios.dynamic = async () => {
  const d = client("/dynamic-1");
  await connected(d);
  const [hello] = await d.inbox.take("hello");
  const echo = await d.emitWithAck("echo-ack", "dyn");
  const d2 = client("/dynamic-22");
  await connected(d2);
  const [hello2] = await d2.inbox.take("hello");
  const nope = client("/nope");
  const refused = await connectError(nope);
  return { hello, echo, hello2, refused };
};

scenarios["broadcast-ack"] = async () => {
  const silent = Boolean(options.silent);
  const a = client("/", {}, "A");
  const b = client("/", {}, "B");
  const c = client("/", {}, "C");
  const all = [a, b, c];
  await Promise.all(all.map(connected));
  await Promise.all(all.map((s) => s.inbox.take("hello")));
  answerNeedAck(a, () => a.id);
  answerNeedAck(b, () => b.id);
  answerNeedAck(c, silent ? null : () => c.id);
  const count = await waitForCount(a, 3);
  a.emit("broadcast-ack", silent ? 500 : 3000);
  const [result] = await a.inbox.take("broadcast-ack-result");
  return {
    ids: { A: a.id, B: b.id, C: c.id },
    silentId: silent ? c.id : null,
    count,
    result,
    needAckCalls: all.map((s) => s.needAcks.length),
  };
};

scenarios.reasons = async () => {
  const watcher = client("/", {}, "watcher");
  await connected(watcher);
  await watcher.inbox.take("hello");
  const out = {};

  // 1. server socket.disconnect()
  let before = await watcher.emitWithAck("last-reasons");
  const s1 = client("/", {}, "disconnect-me");
  await connected(s1);
  await s1.inbox.take("hello");
  let gone = disconnected(s1);
  s1.emit("disconnect-me");
  out.disconnectMe = { client: await gone, server: (await reasonsSince(watcher, before)).entries, active: s1.active };

  // 2. server socket.disconnect(true)
  before = await watcher.emitWithAck("last-reasons");
  const s2 = client("/", {}, "close-me");
  await connected(s2);
  await s2.inbox.take("hello");
  gone = disconnected(s2);
  const engineClosed = once(s2.io.engine, "close");
  s2.emit("close-me");
  const client2 = await gone;
  const [engineReason] = await engineClosed;
  out.closeMe = { client: client2, engine: engineReason, server: (await reasonsSince(watcher, before)).entries };

  // 3. client socket.disconnect()
  before = await watcher.emitWithAck("last-reasons");
  const s3 = client("/", {}, "client-disconnect");
  await connected(s3);
  await s3.inbox.take("hello");
  gone = disconnected(s3);
  s3.disconnect();
  out.clientDisconnect = { client: await gone, server: (await reasonsSince(watcher, before)).entries };

  // 4. client closes the whole connection (manager's engine)
  before = await watcher.emitWithAck("last-reasons");
  const s4 = client("/", {}, "engine-close");
  await connected(s4);
  await s4.inbox.take("hello");
  await upgraded(s4);
  gone = disconnected(s4);
  s4.io.engine.close();
  out.engineClose = { client: await gone, server: (await reasonsSince(watcher, before)).entries };

  // 5. client leaves one namespace of a multiplexed connection, the other stays
  before = await watcher.emitWithAck("last-reasons");
  const m = client("/", {}, "multi-main");
  const mc = m.io.socket("/custom");
  tracked.push(mc);
  mc.inbox = new Inbox(mc, "multi-custom");
  await Promise.all([connected(m), connected(mc)]);
  gone = disconnected(mc);
  mc.disconnect();
  const mcReason = await gone;
  const stillThere = await m.emitWithAck("echo-ack", "still");
  out.leaveOneNamespace = {
    client: mcReason,
    server: (await reasonsSince(watcher, before)).entries,
    otherStillConnected: m.connected,
    stillThere,
  };
  return out;
};

scenarios["wait-disconnect"] = async () => {
  const s = client("/", {}, "waiter");
  await connected(s);
  await s.inbox.take("hello");
  await upgraded(s);
  const gone = disconnected(s);
  const engineClosed = once(s.io.engine, "close");
  emitLine("READY");
  const result = await gone;
  const [engineReason] = await engineClosed;
  return { ...result, engine: engineReason, transport: s.io.engine.transport.name };
};

scenarios.recovery = async () => {
  const drop = options.drop ?? "engine-close";
  // Automatic reconnection, gated so that the other client's emission surely happens
  // while this one is away: the Manager's reconnection attempt waits for `release`.
  const a = client("/", {
    reconnection: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 50,
    randomizationFactor: 0,
  }, "A");
  const b = client("/", {}, "B");
  await Promise.all([connected(a), connected(b)]);
  const [[hello1]] = await Promise.all([a.inbox.take("hello"), b.inbox.take("hello")]);
  await upgraded(a);
  const idBefore = a.id;
  const joined = await a.emitWithAck("join", "r1");
  const data = { k: "v", n: [1, 2] };
  a.emit("data-set", data);
  const dataBefore = await a.emitWithAck("data-get");
  const before = a.inbox.items.length;

  let release;
  const released = new Promise((resolve) => (release = resolve));
  const manager = a.io;
  const originalOpen = manager.open.bind(manager);
  let attempts = 0;
  manager.open = (fn) => {
    attempts += 1;
    released.then(() => originalOpen(fn));
    return manager;
  };
  const gone = disconnected(a);
  if (drop === "engine-close") {
    manager.engine.close();
  } else if (drop === "transport-close") {
    const transport = manager.engine.transport;
    if (transport.ws) transport.ws.close();
    else transport.close();
  } else {
    throw new Error(`unknown drop ${drop}`);
  }
  const dropped = await gone;
  await waitForCount(b, 1); // the server has seen A go
  b.emit("to-room", "r1", "missed", { x: 1 });
  b.emit("echo", "unrelated");
  await b.inbox.take("echo"); // B's emission has been handled
  const reconnected = new Promise((resolve) => a.once("connect", resolve));
  // awayMs > 0: stay away longer (e.g. beyond the server's maxDisconnectionDuration)
  if (options.awayMs) await sleep(Number(options.awayMs));
  release();
  await reconnected;
  manager.open = originalOpen;
  const [hello2] = await a.inbox.take("hello");
  const expired = Boolean(options.awayMs);
  const missed = expired ? null : await a.inbox.take("room-message");
  const after = a.inbox.items.slice(before).map((it) => it[0]);
  const dataAfter = await a.emitWithAck("data-get");
  const rooms = await a.emitWithAck("leave", "__not-a-member__");
  const count = await b.emitWithAck("count");
  return {
    drop,
    dropped,
    attempts,
    idBefore,
    idAfter: a.id,
    recovered: a.recovered,
    hello1,
    hello2,
    joined,
    dataBefore,
    dataAfter,
    missed,
    eventsAfterDrop: after,
    rooms,
    count,
  };
};

scenarios["no-connect"] = async () => {
  const e = new EngineSocket(url, { path: PATH, transports: ["websocket"] });
  engines.push(e);
  const opened = new Promise((resolve, reject) => {
    e.once("open", resolve);
    e.once("error", reject);
  });
  const closed = new Promise((resolve) => e.once("close", (reason, description) => resolve({ reason, description: describe(description) })));
  const messages = [];
  e.on("message", (m) => messages.push(m));
  await opened;
  const sid = e.id;
  const result = await closed;
  return { sid, ...result, messages };
};

scenarios.msgpack = async () => {
  const mod = await import("socket.io-msgpack-parser");
  const parser = mod.default ?? mod;
  const s = client("/", { parser, auth: { via: "msgpack" } });
  await connected(s);
  const [hello] = await s.inbox.take("hello");
  await upgraded(s);
  const args = [1, "two", { three: [3, true, null] }, 1.5, Buffer.from([0, 1, 255]), { nested: { bin: Buffer.from("deep") } }];
  s.emit("echo", ...args);
  const echo = await s.inbox.take("echo");
  const ack = await new Promise((resolve) => s.emit("echo-ack", "a", Buffer.from([9, 8]), (...xs) => resolve(xs)));
  answerNeedAck(s, (xs) => ({ got: xs }));
  s.emit("server-ack", 5000, "x", Buffer.from([3]));
  const [serverAck] = await s.inbox.take("server-ack-result");
  const helloIdIsSocketId = hello.id === s.id;
  return {
    hello,
    helloIdIsSocketId,
    echoEqual: sameValue(echo, args),
    ackEqual: sameValue(ack, ["a", Buffer.from([9, 8])]),
    serverAckEqual: sameValue(serverAck, { ok: { got: ["x", Buffer.from([3])] } }),
    echo,
    ack,
    serverAck,
  };
};

const run = scenarios[scenario];
if (!run) die(`unknown scenario ${JSON.stringify(scenario)}; known: ${Object.keys(scenarios).join(", ")}`);
else {
  run().then(finish, (err) => die(err));
}
