// Node's socket.io 4.8.4 serving its client bundle (serveClient: true, the default), the
// reference for tests/socketio_core/test_serve_client.py.
//
//   node serve_client_node.mjs [--path /socket.io] [--cors ORIGIN]
//
// Prints `LISTENING <port>` once listening on 127.0.0.1; SIGTERM closes it.

import http from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { path: { type: "string", default: "/socket.io" }, cors: { type: "string" } },
});
const httpServer = http.createServer((req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("Not Found");
});
const io = new Server(httpServer, {
  path: values.path,
  serveClient: true,
  ...(values.cors ? { cors: { origin: values.cors } } : {}),
});
httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
