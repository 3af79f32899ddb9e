// One socket.io-client 4.8.4 socket that reconnects, for the recovery tests across nodes.
//
//   node recovering_client.mjs <url> <json auth>
//
// Prints JSON lines: {"kind": "connect", "id", "recovered"}, {"kind": "event", "args"}
// (every event: [name, ...args], offsets included), {"kind": "disconnect", "reason"}.
// Commands on stdin: {"op": "drop"} closes the Engine.IO connection underneath (the client
// reconnects by itself); {"op": "switch", "url"} makes the next reconnection go to url;
// {"op": "leave"} disconnects the socket for good (socket.disconnect()).
// Exits on stdin EOF or after 60 s.
import readline from "node:readline";
import { io } from "socket.io-client";

const [url, rawAuth] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const socket = io(url, {
  auth: JSON.parse(rawAuth || "{}"), transports: ["websocket"],
  reconnectionDelay: 100, reconnectionDelayMax: 200,
});
socket.on("connect", () => out({ kind: "connect", id: socket.id, recovered: socket.recovered }));
socket.on("disconnect", (reason) => out({ kind: "disconnect", reason }));
socket.onAny((...args) => out({ kind: "event", args }));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "drop") socket.io.engine.close();
  else if (cmd.op === "switch") socket.io.uri = cmd.url;
  else if (cmd.op === "leave") socket.disconnect();
});
lines.on("close", () => { socket.close(); process.exit(0); });
setTimeout(() => { socket.close(); process.exit(3); }, 60000).unref();
