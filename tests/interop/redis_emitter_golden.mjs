// Publishes a list of calls with npm @socket.io/redis-emitter, for the golden-bytes tests.
// Usage: node redis_emitter_golden.mjs <redisUrl> <key> <cases.json>
// A case is {chain: [["of", "/x"], ["to", "a"], ["except", ["b"]], ["volatile"],
// ["compress", true], ...], call: ["emit" | "socketsJoin" | "socketsLeave" |
// "disconnectSockets" | "serverSideEmit", ...args]} with tagged arguments (redis_values.mjs).
// Prints {"ok": true, "results": [{"error": message | null}, ...]} once every PUBLISH is done.
import { readFileSync } from "node:fs";
import { createClient } from "redis";
import { Emitter } from "@socket.io/redis-emitter";
import { untag } from "./redis_values.mjs";

const [url, key, casesFile] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(casesFile, "utf8"));
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "watchdog" }));
  process.exit(2);
}, 30000);

const client = createClient({ url });
client.on("error", (err) => console.error("redis error", err));
await client.connect();
const emitter = new Emitter(client, { key });
const results = [];
for (const { chain, call } of cases) {
  try {
    let target = emitter;
    for (const [op, ...args] of chain) {
      if (op === "volatile") target = target.volatile;
      else target = target[op](...untag(args));
    }
    const [method, ...args] = call;
    target[method](...untag(args));
    results.push({ error: null });
  } catch (err) {
    results.push({ error: String(err.message) });
  }
}
// quit() waits for the replies of every command sent before it: every PUBLISH is done.
await client.quit();
clearTimeout(watchdog);
console.log(JSON.stringify({ ok: true, results }));
