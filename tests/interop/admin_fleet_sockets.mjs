// A fleet's sockets in all_sockets: a client connects to node 2 (WebSocket, room "red"),
// then an admin logs in to node 1 and prints what all_sockets lists.
//
//   node admin_fleet_sockets.mjs <node1Url> <node2Url> <password> [timeoutMs]
//
// Prints one JSON line {"ok", "clientId", "allSockets"}; exits by timeoutMs at the latest.

import { io } from "socket.io-client";

const [node1, node2, password, rawTimeout] = process.argv.slice(2);
const TIMEOUT = Math.min(Number(rawTimeout) || 20000, 60000);
const sockets = [];

function finish(result, code) {
  process.stdout.write(JSON.stringify(result) + "\n");
  for (const s of sockets) s.disconnect();
  setTimeout(() => process.exit(code), 100).unref();
}
setTimeout(() => finish({ ok: false, error: `watchdog: ${TIMEOUT} ms elapsed` }, 1), TIMEOUT).unref();

function open(url, opts) {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(err));
  });
}

async function main() {
  const client = await open(`${node2}/`, { auth: { room: "red" } });
  const admin = io(`${node1}/admin`, {
    forceNew: true, reconnection: false, transports: ["websocket"],
    auth: { username: "admin", password },
  });
  sockets.push(admin);
  const all = await new Promise((resolve, reject) => {
    admin.once("all_sockets", resolve);
    admin.once("connect_error", reject);
  });
  finish({ ok: true, clientId: client.id, allSockets: all }, 0);
}

main().catch((err) => finish({ ok: false, error: String(err && err.stack || err) }, 1));
