// Oracle for the differential codec tests: the real npm Socket.IO parsers.
//
//   node sio_parser_oracle.mjs [--socket-io-parser DIR] [--socket-io-msgpack-parser DIR]
//        < requests.jsonl > responses.jsonl
//
// Reads one JSON request per line on stdin and writes exactly one JSON response line
// per request, in order. A request never makes the process fail: errors of the parsers
// are reported as {"ok": false, "error": "..."}.
//
// Values cross the pipe as JSON with these markers (an object holding only the marker key):
//   {"$b64": "..."}   binary: a Node Buffer (decoded Buffers, ArrayBuffers and typed
//                     arrays are all reported this way)
//   {"$ab": "..."}    (input only) an ArrayBuffer, which notepack.io encodes as ext type 0
//   {"$undef": true}  (input only) undefined
//   {"$date": ms}     a Date (ms since the epoch; null for an invalid Date)
// In decoded output, undefined becomes null inside arrays and is left out of objects, the
// way JSON.stringify does. Object keys keep their input order (except that JavaScript puts
// integer-like keys first).
//
// Requests ("op"):
//   {"op": "json_encode", "packet": P}         socket.io-parser Encoder
//        -> {"ok": true, "out": [string | {"$b64"}...]}
//   {"op": "json_decode", "messages": [string | {"$b64"}...]}
//        socket.io-parser Decoder, fresh for the request, fed the messages in order
//        -> {"ok": true, "packets": [P...], "pending": bool} | {"ok": false, "error", "at"}
//        with "brief": true, "count" replaces "packets" (and no packet is converted)
//   {"op": "msgpack_encode", "packet": P}      socket.io-msgpack-parser Encoder
//        -> {"ok": true, "out": "<base64>", "decoded": <msgpack_decode of out>}
//   {"op": "msgpack_decode", "b64": "..."}     socket.io-msgpack-parser Decoder
//        -> {"ok": true, "packet": P} | {"ok": false, "error"}  ("brief": true leaves out P)
//   {"op": "notepack_encode", "value": V}      notepack.io encode of any value
//        -> {"ok": true, "out": "<base64>"}
// P is a packet object {type, nsp, data?, id?} (keys in the order given).

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

// Package locations may be given (the test finds them under node_modules, hoisted or
// nested):  --socket-io-parser DIR  --socket-io-msgpack-parser DIR
function option(name) {
  const at = process.argv.indexOf(name);
  return at === -1 ? undefined : process.argv[at + 1];
}

const require = createRequire(import.meta.url);

function requireSocketIoParser() {
  const dir = option("--socket-io-parser");
  if (dir) return require(dir);
  try {
    return require("socket.io-parser");
  } catch {
    // not hoisted: it is a dependency of socket.io
    return createRequire(require.resolve("socket.io"))("socket.io-parser");
  }
}

const msgpackParserDir = option("--socket-io-msgpack-parser");
const jsonParser = requireSocketIoParser();
const msgpackParser = require(msgpackParserDir || "socket.io-msgpack-parser");
// notepack.io as the msgpack parser itself resolves it
const notepack = createRequire(require.resolve(msgpackParserDir || "socket.io-msgpack-parser"))(
  "notepack.io",
);

function isPlainObject(value) {
  return Object.prototype.toString.call(value) === "[object Object]";
}

function onlyKey(obj, key) {
  const keys = Object.keys(obj);
  return keys.length === 1 && keys[0] === key;
}

// JSON with markers -> JavaScript values.
function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (isPlainObject(value)) {
    if (onlyKey(value, "$b64")) return Buffer.from(value.$b64, "base64");
    if (onlyKey(value, "$ab")) {
      const buf = Buffer.from(value.$ab, "base64");
      const ab = new ArrayBuffer(buf.length);
      new Uint8Array(ab).set(buf);
      return ab;
    }
    if (onlyKey(value, "$undef")) return undefined;
    if (onlyKey(value, "$date")) return new Date(value.$date);
    const out = {};
    for (const key of Object.keys(value)) out[key] = revive(value[key]);
    return out;
  }
  return value;
}

function b64(bytes) {
  return Buffer.from(bytes).toString("base64");
}

// JavaScript values -> JSON with markers.
function toWire(value) {
  if (value === undefined) return undefined;
  if (Buffer.isBuffer(value)) return { $b64: b64(value) };
  if (value instanceof ArrayBuffer) return { $b64: b64(new Uint8Array(value)) };
  if (ArrayBuffer.isView(value)) {
    return { $b64: b64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)) };
  }
  if (value instanceof Date) {
    const ms = value.getTime();
    return { $date: Number.isNaN(ms) ? null : ms };
  }
  if (Array.isArray(value)) {
    return value.map((item) => {
      const wired = toWire(item);
      return wired === undefined ? null : wired;
    });
  }
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value)) {
      const wired = toWire(value[key]);
      if (wired !== undefined) out[key] = wired;
    }
    return out;
  }
  if (typeof value === "number" && !Number.isFinite(value)) {
    return { $number: String(value) }; // NaN / Infinity, which JSON cannot carry
  }
  return value;
}

function packetToWire(packet) {
  const out = { type: packet.type, nsp: packet.nsp };
  if (packet.id !== undefined) out.id = toWire(packet.id);
  if (packet.data !== undefined) out.data = toWire(packet.data);
  return out;
}

function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

function jsonEncode(req) {
  const parts = new jsonParser.Encoder().encode(revive(req.packet));
  return { ok: true, out: parts.map((part) => (typeof part === "string" ? part : toWire(part))) };
}

function jsonDecode(req) {
  const decoder = new jsonParser.Decoder();
  const packets = [];
  decoder.on("decoded", (packet) => packets.push(req.brief ? null : packetToWire(packet)));
  let at = 0;
  try {
    for (; at < req.messages.length; at++) decoder.add(revive(req.messages[at]));
  } catch (err) {
    return { ok: false, error: errorText(err), at };
  }
  const pending = Boolean(decoder.reconstructor);
  if (req.brief) return { ok: true, count: packets.length, pending };
  return { ok: true, packets, pending };
}

function msgpackDecodeBuffer(buf, brief) {
  const decoder = new msgpackParser.Decoder();
  const packets = [];
  decoder.on("decoded", (packet) => packets.push(packet));
  try {
    decoder.add(buf);
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
  if (packets.length !== 1) return { ok: false, error: `decoded ${packets.length} packets` };
  return brief ? { ok: true } : { ok: true, packet: packetToWire(packets[0]) };
}

function msgpackEncode(req) {
  const parts = new msgpackParser.Encoder().encode(revive(req.packet));
  if (parts.length !== 1) throw new Error(`expected one message, got ${parts.length}`);
  return { ok: true, out: b64(parts[0]), decoded: msgpackDecodeBuffer(parts[0]) };
}

function msgpackDecode(req) {
  return msgpackDecodeBuffer(Buffer.from(req.b64, "base64"), req.brief);
}

function notepackEncode(req) {
  return { ok: true, out: b64(notepack.encode(revive(req.value))) };
}

const OPS = {
  json_encode: jsonEncode,
  json_decode: jsonDecode,
  msgpack_encode: msgpackEncode,
  msgpack_decode: msgpackDecode,
  notepack_encode: notepackEncode,
};

function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (err) {
    return { ok: false, oracleError: `bad request line: ${errorText(err)}` };
  }
  const op = OPS[req.op];
  if (!op) return { ok: false, oracleError: `unknown op ${JSON.stringify(req.op)}` };
  try {
    return op(req);
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
}

const out = [];
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (line.trim() !== "") out.push(JSON.stringify(handle(line)));
});
rl.on("close", () => {
  process.stdout.write(out.length ? out.join("\n") + "\n" : "");
});
