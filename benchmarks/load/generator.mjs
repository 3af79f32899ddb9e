// Load generator for the Socket.IO benchmarks: raw Engine.IO / Socket.IO frames over a
// minimal WebSocket client on node:net (cheaper than the `ws` package: one parser loop,
// no per-message objects), plus the real socket.io-client for polling-then-upgrade.
//
//   node generator.mjs '<json config>'
//
// The config names the scenario, the server's port and pid, and the sizes and times;
// `ports` and `server_pids` (lists) instead name the nodes of a fleet (scenarios fanout2,
// gateway-pm): client k connects to ports[k % n] (gateway-pm: senders to the first node,
// receivers to the last), and the server CPU is summed over every pid.
// Everything is bounded: connection phases have deadlines, measurement windows are timed,
// and a watchdog exits the process after config.deadline seconds whatever happens.
// Progress goes to stderr as "PROGRESS <text>"; the result is one stdout line
// "RESULT <json>". CPU is read at the edges of each measurement window: the server's from
// /proc/<pid>/stat (utime + stime), the generator's from process.cpuUsage().

import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";

const cfg = JSON.parse(process.argv[2] || "{}");
const HOST = cfg.host || "127.0.0.1";
const PORTS = cfg.ports || [cfg.port];
const SERVER_PIDS = cfg.server_pids || (cfg.server_pid ? [cfg.server_pid] : []);
const SIO_PATH = cfg.path || "/socket.io/";
const CLK_TCK = cfg.clk_tck || 100;

const watchdog = setTimeout(() => {
  process.stderr.write(`generator: deadline of ${cfg.deadline}s passed, exiting\n`);
  process.exit(3);
}, (cfg.deadline || 120) * 1000);
watchdog.unref();

const now = () => performance.now(); // ms, sub-microsecond resolution
// Microseconds of CLOCK_MONOTONIC (performance.now() counts from a fixed offset of it):
// the clock of the servers' departure times (Python time.monotonic_ns, Node hrtime).
const MONO_OFFSET_US = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
const nowMicros = () => Math.round(performance.now() * 1000 + MONO_OFFSET_US);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function progress(text) {
  process.stderr.write(`PROGRESS ${text}\n`);
}

// ------------------------------------------------------------------ CPU and memory

// [user + system, system] CPU seconds of one server process (all its threads).
function processCpu(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const user = Number(fields[11]) / CLK_TCK; // utime
    const system = Number(fields[12]) / CLK_TCK; // stime
    return [user + system, system];
  } catch {
    return null;
  }
}

// [user + system, system, [per-process user + system]]: summed over every server process.
function serverCpu() {
  if (!SERVER_PIDS.length) return null;
  let total = 0;
  let system = 0;
  const each = [];
  for (const pid of SERVER_PIDS) {
    const cpu = processCpu(pid);
    if (cpu === null) return null;
    total += cpu[0];
    system += cpu[1];
    each.push(cpu[0]);
  }
  return [total, system, each];
}

// Seconds the servers' main threads spent runnable but waiting for a CPU (summed over the
// servers; /proc/<pid>/schedstat, second field, ns): other load on their core, or each
// other when two nodes share it.
function serverRunqueueWait() {
  if (!SERVER_PIDS.length) return null;
  let total = 0;
  for (const pid of SERVER_PIDS) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[1]) / 1e9;
    } catch {
      return null;
    }
  }
  return total;
}

function serverRssBytes() {
  if (!SERVER_PIDS.length) return null;
  try {
    const status = fs.readFileSync(`/proc/${SERVER_PIDS[0]}/status`, "utf8");
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

class Window {
  // One measurement window: wall time, server CPU, generator CPU.
  start() {
    this.t0 = now();
    this.server0 = serverCpu();
    this.wait0 = serverRunqueueWait();
    this.gen0 = process.cpuUsage();
  }
  stop() {
    this.t1 = now();
    this.server1 = serverCpu();
    this.wait1 = serverRunqueueWait();
    this.gen1 = process.cpuUsage(this.gen0);
  }
  get seconds() {
    return (this.t1 - this.t0) / 1000;
  }
  report(operations) {
    const wall = this.seconds;
    const known = this.server0 !== null && this.server1 !== null;
    const serverCpu = known ? this.server1[0] - this.server0[0] : null;
    const serverSystem = known ? this.server1[1] - this.server0[1] : null;
    const genCpu = (this.gen1.user + this.gen1.system) / 1e6;
    const genSystem = this.gen1.system / 1e6;
    const perNode = known && SERVER_PIDS.length > 1
      ? this.server1[2].map((v, k) => v - this.server0[2][k]) : undefined;
    return {
      seconds: wall,
      operations,
      server_cpu_s: serverCpu,
      server_cpu_s_per_node: perNode,
      server_cpu_pct: serverCpu === null ? null : (100 * serverCpu) / wall,
      server_cpu_system_pct: serverSystem === null ? null : (100 * serverSystem) / wall,
      server_cpu_us_per_op: serverCpu === null || !operations ? null : (1e6 * serverCpu) / operations,
      server_runqueue_wait_pct: this.wait0 === null || this.wait1 === null ? null
        : (100 * (this.wait1 - this.wait0)) / wall,
      generator_cpu_s: genCpu,
      generator_cpu_pct: (100 * genCpu) / wall,
      generator_cpu_system_pct: (100 * genSystem) / wall,
    };
  }
}

// ------------------------------------------------------------------ latency samples

class Samples {
  constructor(capacity) {
    this.values = new Float64Array(capacity);
    this.count = 0;
    this.dropped = 0;
  }
  add(value) {
    if (this.count < this.values.length) this.values[this.count++] = value;
    else this.dropped++;
  }
  summary(unit = "ms") {
    if (this.count === 0) return { count: 0 };
    const sorted = this.values.slice(0, this.count).sort();
    const pick = (q) => sorted[Math.min(this.count - 1, Math.floor(q * this.count))];
    return {
      unit,
      count: this.count,
      p50: pick(0.5),
      p90: pick(0.9),
      p99: pick(0.99),
      max: sorted[this.count - 1],
      mean: sorted.reduce((a, b) => a + b, 0) / this.count,
    };
  }
}

// ------------------------------------------------------------------ raw WebSocket client

const handshake = (port) => Buffer.from(
  `GET ${SIO_PATH}?EIO=4&transport=websocket HTTP/1.1\r\n` +
    `Host: ${HOST}:${port}\r\n` +
    "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
);
const HANDSHAKES = PORTS.map(handshake);
const HEADER_END = Buffer.from("\r\n\r\n");
const READ_BUFFER = Buffer.alloc(256 * 1024);
const ZERO_MASK = Buffer.alloc(4);

// A client frame must be masked; a zero key leaves the payload as is (RFC 6455 allows
// any key, and servers only XOR with it), so frames are built without copying the data.
function clientFrame(opcode, payload) {
  const n = payload.length;
  let header;
  if (n < 126) {
    header = Buffer.from([0x80 | opcode, 0x80 | n]);
  } else if (n < 65536) {
    header = Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff]);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([header, ZERO_MASK, payload]);
}

const FRAME_40 = clientFrame(1, Buffer.from("40"));
const FRAME_3 = clientFrame(1, Buffer.from("3"));

const C_0 = 0x30;
const C_1 = 0x31;
const C_2 = 0x32;
const C_3 = 0x33;
const C_4 = 0x34;

// One Socket.IO client in the main namespace over a raw WebSocket. Callbacks:
//   onConnect(client)                      namespace connected ("40{...}" received)
//   onEvent(client, buf, start, end)       a Socket.IO EVENT ("42..."): buf[start] is '['
//   onAck(client, id, buf, start, end)     a Socket.IO ACK ("43<id>[...]")
//   onClose(client, reason)
let PINGS = 0; // Engine.IO pings received by all clients (the scale scenario's idle phase)

class RawClient {
  constructor(handlers, node = 0, local = null) {
    this.h = handlers;
    this.node = node; // index into PORTS
    this.local = local; // {localAddress, localPort} or null: the kernel picks
    this.waiting = null; // ack id -> resolve, for request()
    this.state = "connecting";
    this.pending = null;
    this.fragments = null;
    this.closed = false;
    this.connectedAt = 0;
    this.startedAt = 0;
    this.socket = null;
  }

  open() {
    this.startedAt = now();
    // `onread` with one shared buffer: no Buffer per read and no stream 'data' events,
    // the cheapest way to read in Node. Frames are handled synchronously in the callback;
    // an incomplete frame's bytes are copied out before the buffer is reused.
    const socket = net.connect({
      host: HOST,
      port: PORTS[this.node],
      ...(this.local || {}),
      onread: {
        buffer: READ_BUFFER,
        callback: (nread, buf) => {
          this.onData(buf.subarray(0, nread));
        },
      },
    });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("connect", () => socket.write(HANDSHAKES[this.node]));
    socket.on("error", (err) => this.close(`error: ${err.code || err.message}`));
    socket.on("close", () => this.close("tcp close"));
  }

  sendText(text) {
    if (!this.closed) this.socket.write(clientFrame(1, Buffer.from(text)));
  }

  sendFrame(frame) {
    if (!this.closed) this.socket.write(frame);
  }

  close(reason = "client close") {
    if (this.closed) return;
    this.closed = true;
    this.state = "closed";
    if (this.socket && !this.socket.destroyed) this.socket.destroy();
    if (this.h.onClose) this.h.onClose(this, reason);
  }

  onData(chunk) {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let i = 0;
    if (this.state === "connecting") {
      const end = buf.indexOf(HEADER_END);
      if (end < 0) {
        this.pending = Buffer.from(buf);
        return;
      }
      if (buf.toString("latin1", 0, 12) !== "HTTP/1.1 101") {
        this.close(`handshake refused: ${buf.toString("latin1", 0, Math.min(end, 80))}`);
        return;
      }
      this.state = "open";
      i = end + 4;
    }
    const n = buf.length;
    while (i < n) {
      if (n - i < 2) break;
      const b0 = buf[i];
      const b1 = buf[i + 1];
      let len = b1 & 0x7f;
      let p = i + 2;
      if (len === 126) {
        if (n - i < 4) break;
        len = buf.readUInt16BE(i + 2);
        p = i + 4;
      } else if (len === 127) {
        if (n - i < 10) break;
        len = Number(buf.readBigUInt64BE(i + 2));
        p = i + 10;
      }
      if (b1 & 0x80) p += 4; // servers never mask; skip a key if one came anyway
      if (p + len > n) break;
      this.onFrame(b0 & 0x80, b0 & 0x0f, buf, p, p + len);
      if (this.closed) return;
      i = p + len;
    }
    if (i < n) this.pending = Buffer.from(buf.subarray(i)); // copy: `buf` is reused
  }

  onFrame(fin, opcode, buf, start, end) {
    if (opcode === 0x1) {
      if (fin) this.onText(buf, start, end);
      else this.fragments = [Buffer.from(buf.subarray(start, end))];
    } else if (opcode === 0x0 && this.fragments) {
      this.fragments.push(Buffer.from(buf.subarray(start, end)));
      if (fin) {
        const whole = Buffer.concat(this.fragments);
        this.fragments = null;
        this.onText(whole, 0, whole.length);
      }
    } else if (opcode === 0x9) {
      this.sendFrame(clientFrame(0xa, Buffer.from(buf.subarray(start, end)))); // pong
    } else if (opcode === 0x8) {
      this.sendFrame(clientFrame(0x8, Buffer.from(buf.subarray(start, Math.min(end, start + 2)))));
      this.close("websocket close");
    }
    // binary frames and pongs: not used by these scenarios
  }

  onText(buf, start, end) {
    const eio = buf[start];
    if (eio === C_4) {
      const sio = buf[start + 1];
      if (sio === C_2) {
        if (this.h.onEvent) this.h.onEvent(this, buf, start + 2, end);
      } else if (sio === C_3) {
        let j = start + 2;
        let id = 0;
        while (j < end && buf[j] >= 0x30 && buf[j] <= 0x39) id = id * 10 + (buf[j++] - 0x30);
        const waiter = this.waiting && this.waiting.get(id);
        if (waiter) {
          this.waiting.delete(id);
          waiter(JSON.parse(buf.toString("utf8", j, end)));
        } else if (this.h.onAck) this.h.onAck(this, id, buf, j, end);
      } else if (sio === C_0) {
        this.state = "connected";
        this.connectedAt = now();
        if (this.h.onConnect) this.h.onConnect(this);
      } else if (sio === 0x34) {
        this.close(`connect_error: ${buf.toString("utf8", start, end)}`);
      }
    } else if (eio === C_2) {
      PINGS++;
      this.sendFrame(FRAME_3); // ping -> pong
    } else if (eio === C_0) {
      // Engine.IO open -> connect to the main namespace (with auth when the handlers say)
      this.sendFrame(this.h.connectFrame || FRAME_40);
    } else if (eio === C_1) {
      this.close("engine.io close");
    }
  }
}

// emit(event, ...args) with ack id `id`; resolves with the ack's arguments (an array), or
// null after `timeoutMs` (a server without that handler).
function request(client, id, event, args, timeoutMs = 10000) {
  return new Promise((resolve) => {
    if (!client.waiting) client.waiting = new Map();
    const timer = setTimeout(() => {
      client.waiting.delete(id);
      resolve(null);
    }, timeoutMs);
    client.waiting.set(id, (value) => {
      clearTimeout(timer);
      resolve(value);
    });
    client.sendText(`42${id}${JSON.stringify([event, ...args])}`);
  });
}

// Opens `total` clients, at most `concurrency` handshakes at a time; resolves when every
// one is connected to the namespace or failed, or at `deadlineMs`. `local()`, when given,
// names the local address and port of each connection (a bind that finds the port in use
// is retried on the next one it names, at most 1,000 times in all).
function openMany(total, concurrency, makeHandlers, deadlineMs, label, local = null) {
  return new Promise((resolve) => {
    const clients = [];
    const connectTimes = new Samples(total);
    let started = 0;
    let done = 0;
    let failed = 0;
    let lastReport = 0;
    let rebinds = 0;
    const errors = {};
    const finish = () => {
      clearTimeout(timer);
      resolve({ clients, connectTimes, failed, errors, rebinds, timedOut: done < total });
    };
    const timer = setTimeout(finish, deadlineMs);
    const startNext = (retry = false) => {
      if (started >= total && !retry) return;
      const node = (retry ? started - 1 : started) % PORTS.length;
      if (!retry) started++;
      let settled = false;
      const extra = makeHandlers ? makeHandlers() : {};
      const client = new RawClient({
        ...extra,
        onConnect: (c) => {
          if (!settled) {
            settled = true;
            connectTimes.add(c.connectedAt - c.startedAt);
            clients.push(c);
            step();
          }
          if (extra.onConnect) extra.onConnect(c);
        },
        onClose: (c, reason) => {
          if (!settled && local && reason === "error: EADDRINUSE" && rebinds < 1000) {
            settled = true;
            rebinds++;
            startNext(true);
            return;
          }
          if (!settled) {
            settled = true;
            failed++;
            const key = reason.slice(0, 60);
            errors[key] = (errors[key] || 0) + 1;
            step();
          }
          if (extra.onClose) extra.onClose(c, reason);
        },
      }, node, local ? local() : null);
      client.open();
    };
    const step = () => {
      done++;
      const t = now();
      if (t - lastReport > 500) {
        lastReport = t;
        progress(`${label} ${done}/${total}`);
      }
      if (done >= total) finish();
      else startNext();
    };
    for (let k = 0; k < Math.min(concurrency, total); k++) startNext();
  });
}

function closeAll(clients) {
  for (const c of clients) c.close();
}

// ------------------------------------------------------------------ payloads

// The broadcast payload: {"t":<µs>,"p":"..."}; "t" comes first so receivers find it fast.
function payloadJson(size) {
  const base = `{"t":${nowMicros()},"p":""}`;
  const pad = Math.max(0, size - base.length);
  return `{"t":${nowMicros()},"p":"${"x".repeat(pad)}"}`;
}

const T_KEY = Buffer.from('"t":');

function readTimestamp(buf, start, end) {
  const k = buf.indexOf(T_KEY, start);
  if (k < 0 || k >= end) return -1;
  let j = k + 4;
  let t = 0;
  while (j < end && buf[j] >= 0x30 && buf[j] <= 0x39) t = t * 10 + (buf[j++] - 0x30);
  return t;
}

const median = (xs) => {
  if (!xs.length) return null;
  const sorted = xs.slice().sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

// Per broadcast, when its first and last frame arrived at the clients (keyed by the
// payload's send timestamp), to set beside the server's departure times.
class Arrivals {
  constructor() {
    this.byBroadcast = new Map();
  }
  add(sentUs, nowUs) {
    const entry = this.byBroadcast.get(sentUs);
    if (entry === undefined) this.byBroadcast.set(sentUs, [nowUs, nowUs, 1]);
    else {
      entry[1] = nowUs;
      entry[2]++;
    }
  }
  // [[sent, first arrival, last arrival, frames]] in send order
  list() {
    return [...this.byBroadcast.entries()].sort((a, b) => a[0] - b[0]).map(([t, e]) => [t, ...e]);
  }
}

// Server departures ([received, first write, last write, writes] per bcast, in order, from
// the app's `departures` tap) beside the generator's arrivals of the same broadcasts.
// All times are CLOCK_MONOTONIC microseconds; results in ms, medians over broadcasts.
function departureSummary(records, arrivals) {
  if (!Array.isArray(records) || !records.length) return null;
  const n = Math.min(records.length, arrivals.length);
  const pick = (f) => {
    const xs = [];
    for (let k = 0; k < n; k++) {
      const v = f(records[k], arrivals[k]);
      if (Number.isFinite(v)) xs.push(v / 1000);
    }
    return xs;
  };
  const firstWrite = pick((r) => (r[3] ? r[1] - r[0] : NaN));
  const lastWrite = pick((r) => (r[3] ? r[2] - r[0] : NaN));
  return {
    broadcasts: n,
    writes_per_broadcast: median(records.slice(0, n).map((r) => r[3])),
    // from the emit leaving the generator to the server handling it
    send_to_server_ms: median(pick((r, a) => r[0] - a[0])),
    // server: from handling the bcast to its first / last write
    server_first_write_ms: median(firstWrite),
    server_last_write_ms: median(lastWrite),
    server_last_write_ms_max: lastWrite.length ? Math.max(...lastWrite) : null,
    server_write_span_ms: median(pick((r) => (r[3] ? r[2] - r[1] : NaN))),
    // clients: from the emit to the first / last arrival
    first_arrival_ms: median(pick((r, a) => a[1] - a[0])),
    last_arrival_ms: median(pick((r, a) => a[2] - a[0])),
    // how long after the server's last write the last frame was read (the generator's lag)
    arrival_after_last_write_ms: median(pick((r, a) => (r[3] ? a[2] - r[2] : NaN))),
  };
}

// ------------------------------------------------------------------ scenarios

// Fan-out, in two phases after a warm-up:
//  1. throughput: `window` broadcasts in flight (closed loop: a new one is sent whenever
//     fewer than `window` broadcasts' worth of deliveries are missing); deliveries/s,
//     CPU, and the latency under that load (which is about window * room / throughput);
//  2. latency: one broadcast at a time (the next when every client has the previous),
//     for `latency_duration` seconds: emit-to-receipt latency with no queueing.
async function fanout() {
  const N = cfg.clients;
  const room = "bench";
  const size = cfg.payload_bytes || 100;
  let window = cfg.window || 4;
  let measuring = false;
  let deliveries = 0; // all deliveries
  let measured = 0; // deliveries inside the current measurement window
  let sent = 0;
  let stopped = true;
  const capacity = cfg.max_samples || 4_000_000;
  let latency = new Samples(capacity);
  let sender = null;
  // Several nodes (fanout2): latency and deliveries also per node; the sender is on node 0.
  const nodes = PORTS.length;
  const perNodeSamples = () =>
    nodes > 1 ? PORTS.map(() => new Samples(Math.ceil(capacity / nodes))) : null;
  let nodeLatency = perNodeSamples();
  const nodeMeasured = new Array(nodes).fill(0);
  let arrivals = null; // Arrivals, in the latency phase

  const maybeSend = () => {
    while (!stopped && sent - deliveries / N < window) {
      sent++;
      sender.sendText(`42["bcast","${room}",${payloadJson(size)}]`);
    }
  };
  const onEvent = (client, buf, start, end) => {
    deliveries++;
    if (measuring) {
      measured++;
      const t = readTimestamp(buf, start, end);
      if (t >= 0) {
        const nowUs = nowMicros();
        const ms = (nowUs - t) / 1000;
        latency.add(ms);
        if (arrivals !== null) arrivals.add(t, nowUs);
        if (nodeLatency) nodeLatency[client.node].add(ms);
      }
      if (nodes > 1) nodeMeasured[client.node]++;
    }
    if (!stopped) maybeSend();
  };
  const drain = async () => {
    const until = now() + 5000;
    while (deliveries < sent * N && now() < until) await sleep(10);
  };

  progress(`connecting ${N}`);
  const opened = await openMany(N, cfg.concurrency || 200, () => ({ onEvent }),
    (cfg.connect_timeout || 60) * 1000, "connect");
  const clients = opened.clients;
  if (clients.length < N) {
    closeAll(clients);
    return { error: `only ${clients.length}/${N} clients connected`, errors: opened.errors };
  }
  // Everyone joins the room (ack id 1 for each).
  progress("joining");
  await new Promise((resolve, reject) => {
    let joined = 0;
    const t = setTimeout(() => reject(new Error(`join timed out (${joined}/${N})`)), 30000);
    for (const c of clients) {
      c.h.onAck = () => {
        if (++joined === N) {
          clearTimeout(t);
          resolve();
        }
      };
      c.sendText(`421["join","${room}"]`);
    }
  });
  sender = clients.find((c) => c.node === 0);

  progress("warmup");
  stopped = false;
  maybeSend();
  await sleep((cfg.warmup || 2) * 1000);
  const win = new Window();
  measured = 0;
  nodeMeasured.fill(0);
  measuring = true;
  win.start();
  progress(`measuring throughput (${window} in flight)`);
  await sleep((cfg.duration || 5) * 1000);
  win.stop();
  measuring = false;
  stopped = true;
  const throughput = win.report(measured);
  const loadedLatency = latency.summary();
  const loadedByNode = nodeLatency && nodeLatency.map((x) => x.summary());
  const nodeDeliveries = nodeMeasured.slice(); // the latency phase counts on
  const sentLoaded = sent;
  await drain();
  const undelivered = sent * N - deliveries;

  let unloaded = { count: 0 };
  let unloadedByNode = null;
  let unloadedBroadcasts = 0;
  let departures = null;
  if ((cfg.latency_duration || 0) > 0) {
    progress("measuring latency (1 in flight)");
    // The server stamps its writes from here on (a no-op answer: no departure times).
    const tapped = await request(sender, 900000001, "departures", ["start"], 5000);
    latency = new Samples(capacity);
    nodeLatency = perNodeSamples();
    arrivals = new Arrivals();
    window = 1;
    const before = sent;
    measuring = true;
    stopped = false;
    maybeSend();
    await sleep(cfg.latency_duration * 1000);
    stopped = true;
    await drain();
    measuring = false;
    if (tapped && tapped[0] === true) {
      const records = await request(sender, 900000002, "departures", ["stop"], 10000);
      departures = departureSummary(records && records[0], arrivals.list());
    }
    arrivals = null;
    unloaded = latency.summary();
    unloadedByNode = nodeLatency && nodeLatency.map((x) => x.summary());
    unloadedBroadcasts = sent - before;
  }
  closeAll(clients);
  // A silent failure (a node that never gets the other's broadcasts through Redis) must not
  // pass for a slow result.
  const silent = nodeDeliveries.findIndex((n) => n === 0);
  if (throughput.operations === 0 || (nodes > 1 && silent >= 0)) {
    return {
      // With several nodes, a node missing the other's broadcasts stalls the closed loop.
      error: throughput.operations === 0
        ? "no broadcast delivered in the measurement window" +
          (nodes > 1 ? " (are the nodes' adapters subscribed?)" : "")
        : `no broadcast reached the clients of node ${silent} (is its adapter subscribed?)`,
      deliveries_per_node: nodeDeliveries,
    };
  }
  const byNode = nodes > 1 ? {
    nodes,
    clients_per_node: PORTS.map((_, k) => clients.filter((c) => c.node === k).length),
    deliveries_per_s_per_node: nodeDeliveries.map((n) => n / throughput.seconds),
    latency_ms_per_node: unloadedByNode,
    loaded_latency_ms_per_node: loadedByNode,
    // node 1 gets every broadcast through Redis: its latency is the cross-node one
    remote_latency_ms: unloadedByNode ? unloadedByNode[1] : null,
  } : {};
  return {
    clients: N,
    window: cfg.window || 4,
    broadcasts_sent: sentLoaded,
    deliveries_per_s: throughput.operations / throughput.seconds,
    broadcasts_per_s: throughput.operations / N / throughput.seconds,
    latency_ms: unloaded,
    latency_broadcasts: unloadedBroadcasts,
    loaded_latency_ms: loadedLatency,
    undelivered_after_throughput: undelivered,
    departures,
    ...byNode,
    ...throughput,
  };
}

async function echo() {
  const N = cfg.clients;
  const size = cfg.payload_bytes || 100;
  const body = payloadJson(size);
  let measuring = false;
  let stopped = false;
  let measured = 0;
  const rtt = new Samples(cfg.max_samples || 4_000_000);
  const send = (c) => {
    c.ackId = (c.ackId + 1) % 1_000_000_000;
    c.sentAt = now();
    c.sendText(`42${c.ackId}["echo",${body}]`);
  };
  const onAck = (c, id) => {
    if (id !== c.ackId) return;
    if (measuring) {
      measured++;
      rtt.add(now() - c.sentAt);
    }
    if (!stopped) send(c);
  };
  progress(`connecting ${N}`);
  const opened = await openMany(N, cfg.concurrency || 100, () => ({ onAck }),
    (cfg.connect_timeout || 60) * 1000, "connect");
  const clients = opened.clients;
  if (clients.length < N) {
    return { error: `only ${clients.length}/${N} clients connected`, errors: opened.errors };
  }
  for (const c of clients) {
    c.ackId = 0;
    send(c);
  }
  progress("warmup");
  await sleep((cfg.warmup || 2) * 1000);
  const win = new Window();
  measuring = true;
  win.start();
  progress("measuring");
  await sleep((cfg.duration || 10) * 1000);
  win.stop();
  measuring = false;
  stopped = true;
  await sleep(200);
  const report = win.report(measured);
  closeAll(clients);
  return {
    clients: N,
    acks_per_s: measured / report.seconds,
    rtt_ms: rtt.summary(),
    ...report,
  };
}

async function connectWebSocket() {
  const total = cfg.connections;
  const concurrency = cfg.concurrency || 100;
  // Warm-up: a few connections first, closed again (first-use costs of the server).
  const warm = await openMany(Math.min(50, total), concurrency, null, 20000, "warmup");
  closeAll(warm.clients);
  await sleep(500);
  progress("measuring connections");
  const win = new Window();
  win.start();
  const opened = await openMany(total, concurrency, null, (cfg.connect_timeout || 60) * 1000,
    "connect");
  win.stop();
  const ok = opened.clients.length;
  const report = win.report(ok);
  closeAll(opened.clients);
  await sleep(300);
  return {
    mode: "websocket",
    connections: total,
    concurrency,
    connected: ok,
    failed: opened.failed,
    errors: opened.errors,
    timed_out: opened.timedOut,
    connections_per_s: ok / report.seconds,
    connect_ms: opened.connectTimes.summary(),
    ...report,
  };
}

function loadSocketIoClient() {
  const require = createRequire(path.join(cfg.npm_dir, "package.json"));
  return require("socket.io-client");
}

async function connectUpgrade() {
  const { io } = loadSocketIoClient();
  const total = cfg.connections;
  const concurrency = cfg.concurrency || 100;
  const url = `http://${HOST}:${PORTS[0]}`;
  const run = (count, label, deadlineMs) =>
    new Promise((resolve) => {
      const sockets = [];
      const times = new Samples(count);
      let started = 0;
      let done = 0;
      let failed = 0;
      let lastReport = 0;
      const errors = {};
      const finish = () => {
        clearTimeout(timer);
        resolve({ sockets, times, failed, errors, timedOut: done < count });
      };
      const timer = setTimeout(finish, deadlineMs);
      const step = () => {
        done++;
        const t = now();
        if (t - lastReport > 500) {
          lastReport = t;
          progress(`${label} ${done}/${count}`);
        }
        if (done >= count) finish();
        else startNext();
      };
      const startNext = () => {
        if (started >= count) return;
        started++;
        const t0 = now();
        let settled = false;
        const settle = (error) => {
          if (settled) return;
          settled = true;
          if (error) {
            failed++;
            errors[error] = (errors[error] || 0) + 1;
          } else {
            times.add(now() - t0);
          }
          step();
        };
        const socket = io(url, {
          path: SIO_PATH,
          transports: ["polling", "websocket"],
          upgrade: true,
          forceNew: true,
          reconnection: false,
          timeout: 20000,
        });
        sockets.push(socket);
        socket.on("connect", () => {
          const engine = socket.io.engine;
          if (engine.transport.name === "websocket") settle();
          else engine.once("upgrade", () => settle());
          engine.once("upgradeError", (err) => settle(`upgradeError: ${err.message}`));
        });
        socket.on("connect_error", (err) => settle(`connect_error: ${err.message}`));
      };
      for (let k = 0; k < Math.min(concurrency, count); k++) startNext();
    });
  const closeSockets = (sockets) => {
    for (const s of sockets) s.disconnect();
  };
  const warm = await run(Math.min(20, total), "warmup", 20000);
  closeSockets(warm.sockets);
  await sleep(500);
  progress("measuring connections");
  const win = new Window();
  win.start();
  const result = await run(total, "connect+upgrade", (cfg.connect_timeout || 60) * 1000);
  win.stop();
  const report = win.report(result.times.count);
  closeSockets(result.sockets);
  await sleep(300);
  return {
    mode: "polling-upgrade",
    connections: total,
    concurrency,
    connected: result.times.count,
    failed: result.failed,
    errors: result.errors,
    timed_out: result.timedOut,
    connections_per_s: result.times.count / report.seconds,
    connect_ms: result.times.summary(),
    ...report,
  };
}

async function memory() {
  const total = cfg.connections;
  const concurrency = cfg.concurrency || 500;
  const warm = await openMany(Math.min(100, total), concurrency, null, 20000, "warmup");
  closeAll(warm.clients);
  await sleep((cfg.settle || 2) * 1000);
  const rssBefore = serverRssBytes();
  progress("measuring connections");
  const win = new Window();
  win.start();
  const opened = await openMany(total, concurrency, null, (cfg.connect_timeout || 90) * 1000,
    "connect");
  win.stop();
  const report = win.report(opened.clients.length);
  progress("settling");
  await sleep((cfg.settle || 2) * 1000);
  const rssAfter = serverRssBytes();
  const ok = opened.clients.length;
  closeAll(opened.clients);
  await sleep(500);
  return {
    connections: total,
    connected: ok,
    failed: opened.failed,
    errors: opened.errors,
    rss_before_bytes: rssBefore,
    rss_after_bytes: rssAfter,
    rss_per_connection_bytes: ok && rssBefore !== null ? (rssAfter - rssBefore) / ok : null,
    connections_per_s: ok / report.seconds,
    ...report,
  };
}

// ------------------------------------------------------------------ gateway private messages

// A JWT the gateway accepts (HS256 with the secret it was started with).
function jwtHs256(secret, claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  const signature = crypto.createHmac("sha256", secret).update(signed).digest("base64url");
  return `${signed}.${signature}`;
}

// INFO cpu + commandstats of the Redis server (one raw RESP round trip), or null. The
// Redis may be shared with other work: these numbers are upper bounds for the run.
function redisInfo() {
  if (!cfg.redis_url) return Promise.resolve(null);
  let url;
  try {
    url = new URL(cfg.redis_url);
  } catch {
    return Promise.resolve(null);
  }
  if (url.protocol !== "redis:" || url.password) return Promise.resolve(null);
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const sock = net.connect({ host: url.hostname || "127.0.0.1", port: Number(url.port || 6379) });
    const done = (value) => {
      sock.destroy();
      resolve(value);
    };
    sock.setTimeout(2000, () => done(null));
    sock.on("error", () => done(null));
    sock.on("connect", () => sock.write("INFO cpu commandstats\r\n"));
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf("\r\n");
      if (nl < 0) return;
      if (buf[0] !== 0x24) return done(null); // "$<length>": a bulk string
      const len = Number(buf.toString("latin1", 1, nl));
      if (buf.length < nl + 2 + len) return;
      const info = { cpu: 0, calls: {} };
      for (const line of buf.toString("utf8", nl + 2, nl + 2 + len).split("\r\n")) {
        if (line.startsWith("used_cpu_sys:") || line.startsWith("used_cpu_user:")) {
          info.cpu += Number(line.split(":")[1]);
        } else if (line.startsWith("cmdstat_")) {
          const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
          if (match) info.calls[match[1]] = Number(match[2]);
        }
      }
      done(info);
    });
  });
}

function redisDelta(before, after, operations, seconds) {
  if (!before || !after || !operations) return {};
  const calls = {};
  for (const [name, n] of Object.entries(after.calls)) {
    const per = (n - (before.calls[name] || 0)) / operations;
    if (per >= 0.01) calls[name] = Math.round(per * 100) / 100;
  }
  const cpu = after.cpu - before.cpu;
  return {
    redis_cpu_pct: (100 * cpu) / seconds,
    redis_cpu_us_per_op: (1e6 * cpu) / operations,
    redis_calls_per_op: calls,
    redis_calls_per_op_total: Object.values(calls).reduce((a, b) => a + b, 0),
  };
}

const MESSAGE_KEY = Buffer.from('"message":"');
const SUCCESS_TRUE = Buffer.from('"success":true');
const PRIVATE_MESSAGE = Buffer.from('"private-message"');

// Digits at buf[i..]: [value, index after them].
function readInt(buf, i, end) {
  let v = 0;
  while (i < end && buf[i] >= 0x30 && buf[i] <= 0x39) v = v * 10 + (buf[i++] - 0x30);
  return [v, i];
}

// The gateway's private-message path (realtime_app, scenario gateway-pm). `pairs` pairs of
// users: the sender on the first node, its receiver on the last (the same node when there
// is one). Each sender keeps `window` acked private-messages in flight to its receiver
// (closed loop: a message is done when the sender has its ack AND the receiver has it);
// the receiver acks every private-message, which deletes the stored copy. The message
// text carries "<n> <send time in us>", so the receipt gives send-to-receipt latency.
// Phases: warm-up, throughput (`duration`), then `latency_duration` with one message in
// flight in the whole run (pairs in turn): the latency without queueing.
async function gatewayPm() {
  const P = cfg.pairs;
  let window = cfg.window || 1;
  const size = cfg.payload_bytes || 100;
  const nodes = PORTS.length;
  const receiverNode = nodes - 1;
  const capacity = cfg.max_samples || 2_000_000;
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const run = cfg.run_tag || "b";
  let measuring = false;
  let stopped = true;
  let solo = false; // the latency phase: one message in flight in the whole run
  let soloNext = 0;
  let ackMs = new Samples(capacity);
  let deliveryMs = new Samples(capacity);
  let acks = 0; // sender acks in the measurement window
  let completed = 0; // acked and received, in the window
  let sent = 0;
  const refusals = {};
  let refused = 0;
  let duplicates = 0;
  let messageSentEvents = 0;
  const otherEvents = {};

  const count = (table, key) => {
    table[key] = (table[key] || 0) + 1;
  };
  const pairs = [];
  for (let k = 0; k < P; k++) {
    pairs.push({
      k,
      senderId: `${run}-s${k}`,
      receiverId: `${run}-r${k}`,
      next: 1,
      pending: new Map(), // n -> [send time us, acked, received]
      inflight: 0,
      sender: null,
      receiver: null,
    });
  }
  const pad = (text) => text + " " + "x".repeat(Math.max(0, size - text.length - 1));
  const send = (pair) => {
    const n = pair.next++;
    const t = nowMicros();
    pair.pending.set(n, [t, false, false]);
    pair.inflight++;
    sent++;
    pair.sender.sendText(`42${n}["private-message",{"targetUserId":"${pair.receiverId}",` +
      `"message":"${pad(`${n} ${t}`)}"}]`);
  };
  const fill = (pair) => {
    if (solo || stopped) return;
    while (pair.inflight < window) send(pair);
  };
  const sendSolo = () => {
    if (!stopped) {
      const pair = pairs[soloNext++ % P];
      send(pair);
    }
  };
  const finish = (pair, n, entry) => {
    if (!(entry[1] && entry[2])) return;
    pair.pending.delete(n);
    pair.inflight--;
    if (measuring) completed++;
    if (solo) sendSolo();
    else fill(pair);
  };
  const onSenderAck = (client, id, buf, start, end) => {
    const pair = client.pair;
    const entry = pair.pending.get(id);
    if (!entry) return;
    const ok = buf.indexOf(SUCCESS_TRUE, start) >= 0 && buf.indexOf(SUCCESS_TRUE, start) < end;
    if (!ok) {
      // Refused (rate limit, inbox full, store down): never delivered; counted, not timed.
      refused++;
      count(refusals, buf.toString("utf8", start, Math.min(end, start + 100)));
      entry[2] = true;
    } else if (measuring) {
      acks++;
      ackMs.add((nowMicros() - entry[0]) / 1000);
    }
    entry[1] = true;
    finish(pair, id, entry);
  };
  const onSenderEvent = (client, buf, start, end) => {
    if (buf.indexOf('"message-sent"', start) === start + 1) messageSentEvents++;
    else count(otherEvents, buf.toString("utf8", start, Math.min(end, start + 40)));
  };
  const onReceiverEvent = (client, buf, start, end) => {
    const [ackId, bracket] = readInt(buf, start, end);
    if (bracket === start) { // no ack id: "connected" and the like
      count(otherEvents, buf.toString("utf8", start, Math.min(end, start + 40)));
      return;
    }
    client.sendText(`43${ackId}[]`); // the ack deletes the stored copy
    if (buf.indexOf(PRIVATE_MESSAGE, bracket) !== bracket + 1) return;
    const k = buf.indexOf(MESSAGE_KEY, bracket);
    if (k < 0 || k >= end) return;
    const [n, space] = readInt(buf, k + MESSAGE_KEY.length, end);
    const [t] = readInt(buf, space + 1, end);
    const pair = client.pair;
    const entry = pair.pending.get(n);
    if (!entry || entry[2]) {
      duplicates++; // delivered twice (or after it was given up)
      return;
    }
    entry[2] = true;
    if (measuring) deliveryMs.add((nowMicros() - t) / 1000);
    finish(pair, n, entry);
  };

  // Connect every sender and receiver (auth.token in the CONNECT packet).
  progress(`connecting ${2 * P}`);
  const clients = [];
  const failures = {};
  await new Promise((resolve) => {
    let settled = 0;
    const timer = setTimeout(resolve, (cfg.connect_timeout || 30) * 1000);
    const settle = () => {
      if (++settled === 2 * P) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (const pair of pairs) {
      for (const role of ["sender", "receiver"]) {
        const user = role === "sender" ? pair.senderId : pair.receiverId;
        const token = jwtHs256(cfg.jwt_secret, { sub: user, username: user, exp });
        let done = false;
        const client = new RawClient({
          connectFrame: clientFrame(1, Buffer.from(`40{"token":"${token}"}`)),
          onConnect: (c) => {
            if (!done) {
              done = true;
              clients.push(c);
              settle();
            }
          },
          onClose: (c, reason) => {
            if (!done) {
              done = true;
              count(failures, reason.slice(0, 80));
              settle();
            }
          },
          onAck: role === "sender" ? onSenderAck : undefined,
          onEvent: role === "sender" ? onSenderEvent : onReceiverEvent,
        }, role === "sender" ? 0 : receiverNode);
        client.pair = pair;
        pair[role] = client;
        client.open();
      }
    }
  });
  if (clients.length < 2 * P) {
    closeAll(clients);
    return { error: `only ${clients.length}/${2 * P} clients connected`, errors: failures };
  }
  await sleep(300); // let the gateway finish each connection's bookkeeping (presence, inbox)

  progress("warmup");
  stopped = false;
  for (const pair of pairs) fill(pair);
  await sleep((cfg.warmup || 2) * 1000);
  const win = new Window();
  const redis0 = await redisInfo();
  measuring = true;
  win.start();
  progress(`measuring throughput (${P} pairs x ${window} in flight)`);
  await sleep((cfg.duration || 10) * 1000);
  win.stop();
  measuring = false;
  const redis1 = await redisInfo();
  const throughput = win.report(acks);
  const loaded = { ack: ackMs.summary(), delivery: deliveryMs.summary(), completed };
  // Drain: the loop stops sending; whatever is in flight must still arrive.
  stopped = true;
  const drainUntil = now() + 5000;
  const inflight = () => pairs.reduce((a, p) => a + p.pending.size, 0);
  while (inflight() > 0 && now() < drainUntil) await sleep(10);
  const lostAfterAck = pairs.reduce(
    (a, p) => a + [...p.pending.values()].filter((e) => e[1] && !e[2]).length, 0);
  const unansweredAfterDrain = inflight();

  let idle = { ack: { count: 0 }, delivery: { count: 0 }, messages: 0 };
  if ((cfg.latency_duration || 0) > 0 && unansweredAfterDrain === 0) {
    progress("measuring latency (1 in flight)");
    ackMs = new Samples(capacity);
    deliveryMs = new Samples(capacity);
    completed = 0;
    solo = true;
    stopped = false;
    measuring = true;
    sendSolo();
    await sleep(cfg.latency_duration * 1000);
    stopped = true;
    const until = now() + 5000;
    while (inflight() > 0 && now() < until) await sleep(5);
    measuring = false;
    idle = { ack: ackMs.summary(), delivery: deliveryMs.summary(), messages: completed };
  }
  closeAll(clients);
  if (throughput.operations === 0) {
    return {
      error: "no private message acked in the measurement window" +
        (refused ? ` (${refused} refused: ${JSON.stringify(refusals).slice(0, 300)})` : ""),
      other_events: otherEvents,
    };
  }
  if (loaded.delivery.count === 0) {
    return { error: `no private message reached a receiver (node ${receiverNode})` };
  }
  return {
    pairs: P,
    window,
    nodes,
    receiver_node: receiverNode,
    messages_per_s: throughput.operations / throughput.seconds,
    completed_per_s: loaded.completed / throughput.seconds,
    ack_ms: loaded.ack,
    delivery_ms: loaded.delivery,
    idle_ack_ms: idle.ack,
    idle_delivery_ms: idle.delivery,
    idle_messages: idle.messages,
    sent,
    refused,
    refusals,
    duplicates,
    lost_after_ack: lostAfterAck,
    unanswered_after_drain: unansweredAfterDrain,
    message_sent_events: messageSentEvents,
    other_events: otherEvents,
    ...redisDelta(redis0, redis1, throughput.operations, throughput.seconds),
    // the sender's node and the receiver's (the same one with one node)
    node1_cpu_us_per_op: throughput.server_cpu_s_per_node
      ? (1e6 * throughput.server_cpu_s_per_node[0]) / throughput.operations : null,
    node2_cpu_us_per_op: throughput.server_cpu_s_per_node
      ? (1e6 * throughput.server_cpu_s_per_node[1]) / throughput.operations : null,
    ...throughput,
  };
}

// Scale: as many idle connections as the file-descriptor limit allows, all in one room;
// RSS per connection and connect rate; then `broadcasts` broadcasts to all of them, one
// at a time (emit-to-arrival latency over all recipients, the server's departure times,
// the generator's CPU while it drains them); then an idle window of `idle` seconds (two
// ping intervals): the server's heartbeat CPU per ping, connections lost.
// The clients bind to `source_addresses` loopback addresses (127.0.0.2, ...) and to
// ports picked here, from `port_base` up: letting connect() search the ephemeral range
// for each of ~20,000 sockets makes connecting slow.
async function scale() {
  const N = cfg.connections;
  const room = "all";
  const addresses = cfg.source_addresses || 4;
  const portBase = cfg.port_base || 10000 + Math.floor(Math.random() * 10000);
  let slot = 0;
  const local = () => {
    const k = slot++;
    return { localAddress: `127.0.0.${2 + (k % addresses)}`, localPort: portBase + Math.floor(k / addresses) };
  };
  const concurrency = cfg.concurrency || 500;
  let lost = 0;
  let idleLost = 0;
  let idle = false;
  const lossReasons = {};
  let received = 0;
  let arrivals = null;
  let latency = null;
  const onEvent = (client, buf, start, end) => {
    received++;
    const t = readTimestamp(buf, start, end);
    if (t >= 0 && latency !== null) {
      const nowUs = nowMicros();
      latency.add((nowUs - t) / 1000);
      arrivals.add(t, nowUs);
    }
  };
  const handlers = () => ({
    onEvent,
    onClose: (c, reason) => {
      if (c.state === "closed" && c.connectedAt && !c.ending) {
        lost++;
        if (idle) idleLost++;
        const key = reason.slice(0, 60);
        lossReasons[key] = (lossReasons[key] || 0) + 1;
      }
    },
  });

  const warm = await openMany(Math.min(100, N), concurrency, null, 30000, "warmup", local);
  closeAll(warm.clients);
  await sleep((cfg.settle || 3) * 1000);
  const rssBefore = serverRssBytes();

  progress(`connecting ${N}`);
  const win = new Window();
  win.start();
  const opened = await openMany(N, concurrency, handlers, (cfg.connect_timeout || 180) * 1000,
    "connect", local);
  win.stop();
  const connectReport = win.report(opened.clients.length);
  const clients = opened.clients;
  const endAll = () => {
    for (const c of clients) c.ending = true;
    closeAll(clients);
  };
  if (clients.length < N) {
    endAll();
    return { error: `only ${clients.length}/${N} clients connected`, errors: opened.errors,
      rebinds: opened.rebinds };
  }
  progress("joining");
  const joinedAll = await Promise.all(clients.map((c) => request(c, 1, "join", [room], 60000)));
  if (joinedAll.some((x) => x === null)) {
    endAll();
    return { error: `join timed out for ${joinedAll.filter((x) => x === null).length} clients` };
  }
  progress("settling");
  await sleep((cfg.settle || 3) * 1000);
  const rssAfter = serverRssBytes();

  // Broadcasts, one at a time, each to all N.
  const sender = clients[0];
  const tapped = await request(sender, 2, "departures", ["start"], 5000);
  latency = new Samples(N * (cfg.broadcasts || 3));
  arrivals = new Arrivals();
  const perBroadcast = [];
  let deliveryGenCpu = 0;
  let deliveryWall = 0;
  for (let b = 0; b < (cfg.broadcasts || 3); b++) {
    progress(`broadcast ${b + 1}`);
    received = 0;
    const gen0 = process.cpuUsage();
    const t0 = now();
    sender.sendText(`42["bcast","${room}",${payloadJson(cfg.payload_bytes || 100)}]`);
    const until = t0 + 30000;
    while (received < N && now() < until) await sleep(1);
    const wall = now() - t0;
    const gen = process.cpuUsage(gen0);
    deliveryGenCpu += (gen.user + gen.system) / 1e6;
    deliveryWall += wall / 1000;
    perBroadcast.push({ received, wall_ms: wall });
    await sleep(1000);
  }
  const records = tapped && tapped[0] === true
    ? await request(sender, 3, "departures", ["stop"], 10000) : null;
  const departures = departureSummary(records && records[0], arrivals.list());
  const broadcastLatency = latency.summary();
  latency = null;

  // Idle: two ping cycles.
  progress("idle");
  const pings0 = PINGS;
  const lostBefore = lost;
  idle = true;
  const idleWin = new Window();
  idleWin.start();
  await sleep((cfg.idle || 50) * 1000);
  idleWin.stop();
  idle = false;
  const pings = PINGS - pings0;
  const idleReport = idleWin.report(pings);
  const open = clients.filter((c) => !c.closed).length;
  endAll();
  await sleep(500);
  const ok = clients.length;
  return {
    connections: N,
    connected: ok,
    failed: opened.failed,
    rebinds: opened.rebinds,
    errors: opened.errors,
    source_addresses: addresses,
    port_base: portBase,
    rss_before_bytes: rssBefore,
    rss_after_bytes: rssAfter,
    rss_per_connection_bytes: rssBefore !== null ? (rssAfter - rssBefore) / ok : null,
    connections_per_s: ok / connectReport.seconds,
    connect_ms: opened.connectTimes.summary(),
    connect_server_cpu_us_per_connection: connectReport.server_cpu_us_per_op,
    connect_generator_cpu_pct: connectReport.generator_cpu_pct,
    broadcast_ms: broadcastLatency,
    broadcasts: perBroadcast,
    broadcast_complete: perBroadcast.every((x) => x.received >= N),
    broadcast_generator_cpu_pct: deliveryWall ? (100 * deliveryGenCpu) / deliveryWall : null,
    departures,
    idle_seconds: idleReport.seconds,
    idle_pings: pings,
    heartbeat_cpu_us_per_ping: idleReport.server_cpu_us_per_op,
    idle_server_cpu_pct: idleReport.server_cpu_pct,
    idle_generator_cpu_pct: idleReport.generator_cpu_pct,
    lost_while_idle: idleLost,
    lost_before_idle: lostBefore,
    open_at_end: open,
    loss_reasons: lossReasons,
    // Window.report's fields for the harness's generic columns: the connect window
    ...connectReport,
    server_cpu_us_per_op: connectReport.server_cpu_us_per_op,
  };
}

const SCENARIOS = {
  "gateway-pm": gatewayPm,
  scale,
  fanout,
  echo,
  "connect-websocket": connectWebSocket,
  "connect-upgrade": connectUpgrade,
  memory,
};

const scenario = SCENARIOS[cfg.scenario];
if (!scenario) {
  process.stderr.write(`generator: unknown scenario ${cfg.scenario}\n`);
  process.exit(2);
}
try {
  const result = await scenario();
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stdout.write(`RESULT ${JSON.stringify({ error: String(err && err.stack || err) })}\n`);
  process.exit(1);
}
