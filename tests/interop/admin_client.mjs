// The Admin UI's side of the protocol, played by the npm socket.io-client (4.8.4) against
// a server instrumented for @socket.io/admin-ui 0.5.1 (ours or Node's reference).
//
//   node admin_client.mjs <serverUrl> <password> <readOnly:0|1> [timeoutMs] [clientsUrl]
//
// clientsUrl (default serverUrl) is where A and B connect: another node of a fleet.
// Steps: a wrong password is refused; "admin" logs in to /admin and records every event
// it gets; client A (room "red", polling then upgrade) and client B (room "blue",
// WebSocket) connect to "/"; A sends "ping" (acked, answered with "pong"); the admin asks
// A to join and leave "green" and B to disconnect; a second admin logs in with the
// session id of the first. Prints one JSON line {"ok", "ids", "events": [[name, ...args]],
// ...}; the Python test judges it. Exits by timeoutMs (default 20000) at the latest.

import { io } from "socket.io-client";

const [url, password, readOnlyArg, rawTimeout, clientsArg] = process.argv.slice(2);
const clientsUrl = clientsArg || url;
const readOnly = readOnlyArg === "1";
const TIMEOUT = Math.min(Number(rawTimeout) || 20000, 60000);
const STEP = 5000;
const out = { ok: false, steps: [], events: [], ids: {} };
const sockets = [];

function finish(extra, code) {
  Object.assign(out, extra);
  process.stdout.write(JSON.stringify(out) + "\n");
  for (const s of sockets) s.disconnect();
  setTimeout(() => process.exit(code), 100).unref();
}
setTimeout(() => finish({ error: `watchdog: ${TIMEOUT} ms elapsed` }, 1), TIMEOUT).unref();

/** Resolves with the first value `check` returns that is not undefined, re-checked on every event. */
const waiters = new Set();
function waitFor(what, check, timeout = STEP) {
  return new Promise((resolve, reject) => {
    const waiter = () => {
      const value = check();
      if (value !== undefined) {
        waiters.delete(waiter);
        clearTimeout(timer);
        resolve(value);
        return true;
      }
      return false;
    };
    const timer = setTimeout(() => {
      waiters.delete(waiter);
      reject(new Error(`timed out waiting for ${what}`));
    }, timeout);
    waiters.add(waiter);
    waiter();
  });
}
function poke() {
  for (const w of [...waiters]) w();
}
function findEvent(name, pred = () => true) {
  const found = out.events.find((e) => e[0] === name && pred(e.slice(1)));
  return found ? found.slice(1) : undefined;
}
function step(name) {
  out.steps.push(name);
}

function connect(path, opts, base = url) {
  const socket = io(base + path, { forceNew: true, reconnection: false, ...opts });
  sockets.push(socket);
  return socket;
}

function connected(socket, what) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`${what}: ${err.message}`)));
  });
}

async function main() {
  // 1. A wrong password.
  const bad = connect("/admin", { transports: ["websocket"], auth: { username: "admin", password: "wrong" } });
  out.badLogin = await new Promise((resolve) => {
    bad.once("connect", () => resolve("connected!"));
    bad.once("connect_error", (err) => resolve(err.message));
  });
  step("bad login refused");

  // 2. The admin, as the UI connects (polling then upgrade, withCredentials).
  const admin = connect("/admin", { withCredentials: true, auth: { username: "admin", password } });
  admin.onAny((name, ...args) => {
    out.events.push([name, ...args]);
    poke();
  });
  await connected(admin, "admin login");
  out.ids.admin = admin.id;
  step("admin connected");
  await waitFor("config", () => findEvent("config"));
  step("config");

  // 3. Two clients.
  const a = connect("/", { auth: { room: "red" } }, clientsUrl);
  await connected(a, "client A");
  const b = connect("/", { transports: ["websocket"], auth: { room: "blue" } }, clientsUrl);
  await connected(b, "client B");
  out.ids.a = a.id;
  out.ids.b = b.id;
  let bReason = null;
  b.on("disconnect", (reason) => {
    bReason = reason;
    poke();
  });
  step("clients connected");

  // 4. Events both ways.
  const ack = await a.timeout(STEP).emitWithAck("ping", 1, { x: "y" });
  out.pingAck = ack;
  step("ping acked");

  // 5. Stats that count the three connections.
  // (With a fleet: the node of the clients counts 2.)
  const expected = clientsUrl === url ? 3 : 2;
  out.stats = await waitFor(`server_stats with ${expected} clients`,
    () => findEvent("server_stats", ([s]) => s.clientsCount >= expected), 3 * STEP);
  step("stats");

  // 6. Actions.
  if (!readOnly) {
    admin.emit("join", "/", "green", a.id);
    admin.emit("leave", "/", "green", a.id);
    admin.emit("_disconnect", "/", false, b.id);
    await waitFor("B disconnected", () => bReason ?? undefined);
    out.bReason = bReason;
    step("actions");
  } else {
    admin.emit("_disconnect", "/", false, b.id);
    await new Promise((r) => setTimeout(r, 500));
    out.bConnectedAfterDisconnectRequest = b.connected;
    step("read-only");
  }

  // 7. Let the event stream settle (room_left is deferred; the transport update follows stats).
  await new Promise((r) => setTimeout(r, 2500));

  // 8. The session id instead of the password.
  const session = findEvent("session");
  if (session) {
    const again = connect("/admin", { transports: ["websocket"], auth: { sessionId: session[0] } });
    out.sessionLogin = await new Promise((resolve) => {
      again.once("connect", () => resolve("connected"));
      again.once("connect_error", (err) => resolve(err.message));
    });
    step("session login");
  }
  finish({ ok: true }, 0);
}

main().catch((err) => finish({ error: String(err && err.stack || err) }, 1));
