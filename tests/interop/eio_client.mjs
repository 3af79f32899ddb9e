// Scenario driver for the real npm `engine.io-client`.
//
//   node eio_client.mjs <scenario> <url> [json-options]
//
// <url> is the server origin, e.g. http://127.0.0.1:3000. Options (JSON object):
//   path        Engine.IO path (default "/engine.io/")
//   transport   "polling" | "websocket" for scenarios that take a transport
//   timeoutMs   watchdog, the process always exits by then (default 15000)
//   count       number of messages for ordered-polling (default 1000)
//   size        message size for max-payload (default 5000)
//   pings       pings to wait for in heartbeat-alive (default 3)
//
// On success one JSON line with the result is printed on stdout and the exit
// status is 0. On failure one JSON line {"error": ..., "events": [...]} is
// printed and the exit status is 1. The heartbeat-timeout scenario first
// prints the line `OPEN` once the session is open, then the JSON line.
//
// Every wait in here is event driven and bounded by the watchdog.

import { Socket } from "engine.io-client";

const STARTED = Date.now();
const [scenario, url, rawOptions] = process.argv.slice(2);

let options = {};
let finished = false;
let socket = null;
const events = [];

function logEvent(name, detail) {
  if (events.length < 200) {
    events.push(detail === undefined ? [Date.now() - STARTED, name] : [Date.now() - STARTED, name, detail]);
  }
}

function emitLine(line) {
  // stdout is a pipe when driven by pytest; pipes are written synchronously
  // by Node on POSIX, so the line is out before process.exit() runs.
  process.stdout.write(line + "\n");
}

function closeQuietly() {
  try {
    if (socket && socket.readyState !== "closed") socket.close();
  } catch {
    // ignore, we are exiting
  }
}

function finish(result) {
  if (finished) return;
  finished = true;
  closeQuietly();
  emitLine(JSON.stringify({ scenario, ok: true, ...result }));
  process.exit(0);
}

function die(error, extra = {}) {
  if (finished) return;
  finished = true;
  closeQuietly();
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  emitLine(JSON.stringify({ scenario, ok: false, error: message, ...extra, events }));
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

if (!scenario || !url) {
  die("usage: node eio_client.mjs <scenario> <url> [json-options]");
}

const timeoutMs = Number.isFinite(options.timeoutMs) ? options.timeoutMs : 15000;
setTimeout(() => die(`watchdog: scenario ${scenario} did not finish within ${timeoutMs} ms`), timeoutMs);

const path = options.path ?? "/engine.io/";

// ---------------------------------------------------------------- helpers

function describeDetails(details) {
  // The second argument of the client's "close" event / error objects.
  if (details === undefined || details === null) return null;
  const out = {};
  if (details instanceof Error) {
    out.message = details.message;
    if (details.type !== undefined) out.type = details.type;
  }
  for (const key of ["description", "message", "type"]) {
    const v = details[key];
    if (typeof v === "string" || typeof v === "number") out[key] = v;
  }
  const ctx = details.context;
  if (ctx && typeof ctx === "object") {
    const c = {};
    for (const key of ["code", "reason", "status", "statusText", "wasClean", "type"]) {
      const v = ctx[key];
      if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") c[key] = v;
    }
    if (Object.keys(c).length > 0) out.context = c;
  } else if (typeof ctx === "string" || typeof ctx === "number") {
    out.context = ctx;
  }
  if (typeof details === "string") return { message: details };
  return out;
}

function isBinary(data) {
  return Buffer.isBuffer(data) || data instanceof ArrayBuffer || ArrayBuffer.isView(data);
}

function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function describeMessage(data) {
  if (typeof data === "string") return { kind: "text", length: data.length, data: data.length <= 64 ? data : data.slice(0, 64) + "..." };
  if (isBinary(data)) {
    const buf = toBuffer(data);
    return { kind: "binary", ctor: data.constructor?.name ?? null, length: buf.length, hex: buf.subarray(0, 32).toString("hex") };
  }
  return { kind: typeof data, ctor: data?.constructor?.name ?? null };
}

// A tiny "condition variable": waiters are re-checked on every socket event.
const waiters = new Set();
function poke() {
  for (const w of [...waiters]) {
    let ok = false;
    try {
      ok = w.cond();
    } catch (err) {
      waiters.delete(w);
      w.reject(err);
      continue;
    }
    if (ok) {
      waiters.delete(w);
      w.resolve();
    }
  }
}
function until(cond, what, { failOnClose = true } = {}) {
  return new Promise((resolve, reject) => {
    const w = { cond, resolve, reject, what, failOnClose };
    waiters.add(w);
    poke();
  });
}

const received = [];
let closeInfo = null;
let pingsSeen = 0;

function connect(extraOpts) {
  const opts = { path, ...extraOpts };
  logEvent("connect", { url, opts });
  socket = new Socket(url, opts);
  socket.on("open", () => {
    logEvent("open", { transport: socket.transport?.name, id: socket.id });
    poke();
  });
  socket.on("handshake", (data) => {
    logEvent("handshake", data);
    poke();
  });
  socket.on("upgrading", (t) => {
    logEvent("upgrading", t?.name);
    poke();
  });
  socket.on("upgrade", (t) => {
    logEvent("upgrade", t?.name);
    poke();
  });
  socket.on("upgradeError", (err) => {
    logEvent("upgradeError", describeDetails(err));
    poke();
  });
  socket.on("ping", () => {
    pingsSeen += 1;
    if (pingsSeen <= 20) logEvent("ping");
    poke();
  });
  socket.on("error", (err) => {
    logEvent("error", describeDetails(err));
    poke();
  });
  socket.on("message", (data) => {
    received.push(data);
    if (received.length <= 20) logEvent("message", describeMessage(data));
    poke();
  });
  socket.on("close", (reason, details) => {
    closeInfo = { reason, details: describeDetails(details) };
    logEvent("close", closeInfo);
    // Waiters that are still pending and did not expect a close fail now,
    // with a clear message rather than via the watchdog.
    poke();
    for (const w of [...waiters]) {
      if (w.failOnClose) {
        waiters.delete(w);
        w.reject(new Error(`socket closed (${reason}) while waiting for ${w.what}`));
      }
    }
  });
  return socket;
}

function waitOpen() {
  return until(() => socket.readyState === "open", "open");
}

function transportOption() {
  const t = options.transport ?? "polling";
  if (t !== "polling" && t !== "websocket") throw new Error(`bad transport option ${JSON.stringify(t)}`);
  return t;
}

function expectTransport(expected) {
  const actual = socket.transport?.name;
  if (actual !== expected) throw new Error(`expected transport ${expected}, got ${actual}`);
}

function firstMismatch(expected, actual) {
  const n = Math.max(expected.length, actual.length);
  for (let i = 0; i < n; i++) {
    if (expected[i] !== actual[i]) return { index: i, expected: expected[i] ?? null, actual: actual[i] === undefined ? null : describeMessage(actual[i]) };
  }
  return null;
}

// -------------------------------------------------------------- scenarios

async function simpleEcho(transport) {
  connect({ transports: [transport], upgrade: false });
  await waitOpen();
  expectTransport(transport);
  socket.send("hello");
  await until(() => received.length >= 1, "echo of hello");
  const echo = received[0];
  if (echo !== "hello") throw new Error(`expected "hello" back, got ${JSON.stringify(describeMessage(echo))}`);
  expectTransport(transport);
  return { transport: socket.transport.name, id: socket.id, echoed: echo };
}

async function upgradeScenario() {
  // Default client transports: starts with HTTP long-polling, then probes
  // and upgrades to WebSocket.
  connect({});
  const expected = [];
  const sendTracked = (msg) => {
    expected.push(msg);
    socket.send(msg);
  };
  let openTransport = null;
  let upgradedTo = null;
  let sentDuringUpgrade = 0;
  socket.on("open", () => {
    openTransport = socket.transport.name;
    // Queued right at open, while the probe is starting.
    for (let i = 0; i < 5; i++) sendTracked(`pre-${i}`);
  });
  socket.on("upgrading", () => {
    // The transport is paused / being swapped: these are buffered by the
    // client and must still arrive, in order.
    for (let i = 0; i < 5; i++) sendTracked(`during-${i}`);
    sentDuringUpgrade += 5;
  });
  socket.on("upgrade", (t) => {
    upgradedTo = t.name;
    for (let i = 0; i < 5; i++) sendTracked(`post-${i}`);
  });
  await until(() => upgradedTo !== null, "upgrade event");
  expectTransport("websocket");
  await until(() => received.length >= expected.length, `${expected.length} echoes`);
  // Give the final check one more message, sent purely over the websocket.
  sendTracked("after-upgrade-final");
  await until(() => received.length >= expected.length, `${expected.length} echoes`);
  const mismatch = firstMismatch(expected, received);
  if (mismatch) throw new Error(`echo order mismatch: ${JSON.stringify(mismatch)}`);
  expectTransport("websocket");
  return {
    openTransport,
    upgradedTo,
    transport: socket.transport.name,
    sent: expected.length,
    sentDuringUpgrade,
    received: received.length,
    inOrder: true,
  };
}

async function binaryScenario() {
  const transport = transportOption();
  connect({ transports: [transport], upgrade: false });
  await waitOpen();
  const bytes = new Uint8Array(256);
  for (let i = 0; i < 256; i++) bytes[i] = i;
  const text = "text after binary: h\u00e9llo \u2603 \u{1F680}";
  const buf = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
  socket.send(bytes);
  socket.send(text);
  socket.send(buf);
  await until(() => received.length >= 3, "3 echoes");
  const [b, t, b2] = received;
  if (!isBinary(b)) throw new Error(`message 0 should be binary, got ${JSON.stringify(describeMessage(b))}`);
  if (!toBuffer(b).equals(Buffer.from(bytes))) throw new Error(`binary bytes differ: ${JSON.stringify(describeMessage(b))}`);
  if (typeof t !== "string") throw new Error(`message 1 should be text, got ${JSON.stringify(describeMessage(t))}`);
  if (t !== text) throw new Error(`text differs: ${JSON.stringify(t)}`);
  if (!isBinary(b2) || !toBuffer(b2).equals(buf)) throw new Error(`message 2 should be binary deadbeef, got ${JSON.stringify(describeMessage(b2))}`);
  expectTransport(transport);
  return {
    transport: socket.transport.name,
    messages: received.slice(0, 3).map(describeMessage),
    binaryIdentical: true,
    textIdentical: true,
  };
}

async function orderedPolling() {
  const count = Number.isInteger(options.count) ? options.count : 1000;
  connect({ transports: ["polling"], upgrade: false });
  await waitOpen();
  const expected = [];
  for (let i = 0; i < count; i++) expected.push(`m${i}`);
  // Back to back in one tick: the client batches them into payloads.
  for (const m of expected) socket.send(m);
  await until(() => received.length >= count, `${count} echoes`);
  const mismatch = firstMismatch(expected, received);
  if (mismatch) throw new Error(`echo order mismatch: ${JSON.stringify(mismatch)}`);
  expectTransport("polling");
  return { transport: socket.transport.name, sent: count, received: received.length, inOrder: true };
}

async function heartbeatTimeout() {
  const transport = transportOption();
  connect({ transports: [transport], upgrade: false });
  await waitOpen();
  emitLine("OPEN");
  // The test freezes the server now; we wait for the client to give up.
  await until(() => closeInfo !== null, "close", { failOnClose: false });
  return { transport, ...closeInfo };
}

async function heartbeatAlive() {
  const transport = transportOption();
  const pings = Number.isInteger(options.pings) ? options.pings : 3;
  connect({ transports: [transport], upgrade: false });
  await waitOpen();
  await until(() => pingsSeen >= pings, `${pings} pings`);
  socket.send("still-alive");
  await until(() => received.length >= 1, "echo after pings");
  if (received[0] !== "still-alive") throw new Error(`unexpected echo ${JSON.stringify(describeMessage(received[0]))}`);
  expectTransport(transport);
  return { transport, pings: pingsSeen, readyState: socket.readyState };
}

async function maxPayload() {
  const transport = transportOption();
  const size = Number.isInteger(options.size) ? options.size : 5000;
  connect({ transports: [transport], upgrade: false });
  await waitOpen();
  const handshakeMax = socket._maxPayload;
  socket.send("x".repeat(size));
  // Either the session closes (expected) or, wrongly, the message is echoed.
  await until(() => closeInfo !== null || received.length > 0, "close or echo", { failOnClose: false });
  return {
    transport,
    size,
    handshakeMaxPayload: handshakeMax,
    closed: closeInfo !== null,
    echoed: received.length > 0,
    reason: closeInfo?.reason ?? null,
    details: closeInfo?.details ?? null,
  };
}

async function handshake() {
  const transport = options.transport ?? null;
  let data = null;
  const opts = transport ? { transports: [transport], upgrade: false } : {};
  connect(opts);
  socket.on("handshake", (d) => {
    data = d;
  });
  await waitOpen();
  if (data === null) throw new Error("no handshake event before open");
  return { transport: socket.transport.name, id: socket.id, handshake: data };
}

const scenarios = {
  "polling-echo": () => simpleEcho("polling"),
  "websocket-echo": () => simpleEcho("websocket"),
  upgrade: upgradeScenario,
  binary: binaryScenario,
  "ordered-polling": orderedPolling,
  "heartbeat-timeout": heartbeatTimeout,
  "heartbeat-alive": heartbeatAlive,
  "max-payload": maxPayload,
  handshake,
};

const run = scenarios[scenario];
if (!run) {
  die(`unknown scenario ${JSON.stringify(scenario)}; known: ${Object.keys(scenarios).join(", ")}`);
} else {
  run().then(
    (result) => finish(result),
    (err) => die(err),
  );
}
