// Values crossing between the pytest suite and the Redis emitter/adapter scripts. JSON cannot
// carry binary, dates, functions or non-finite numbers, so they travel tagged:
// {"$bin": base64} -> Buffer, {"$ab": base64} -> ArrayBuffer, {"$u8": base64} -> Uint8Array,
// {"$num": "NaN" | "Infinity" | "-Infinity" | "-0"} -> number, {"$date": ms} -> Date,
// {"$fn": 1} -> a function (to check that acknowledgements are refused).

export function untag(value) {
  if (Array.isArray(value)) return value.map(untag);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 1) {
    const [k] = keys;
    const v = value[k];
    if (k === "$bin") return Buffer.from(v, "base64");
    if (k === "$ab") {
      const b = Buffer.from(v, "base64");
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
    }
    if (k === "$u8") return new Uint8Array(Buffer.from(v, "base64"));
    if (k === "$num") return Number(v);
    if (k === "$date") return new Date(v);
    if (k === "$fn") return () => {};
  }
  const out = {};
  for (const k of keys) out[k] = untag(value[k]);
  return out;
}

// The reverse, for what a script reports: binary as {"$bin": base64}.
export function tag(value) {
  if (Buffer.isBuffer(value)) return { $bin: value.toString("base64") };
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("base64") };
  if (ArrayBuffer.isView(value)) {
    return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  }
  if (Array.isArray(value)) return value.map(tag);
  if (value instanceof Date) return { $date: value.getTime() };
  if (value === null || typeof value !== "object") return value;
  const out = {};
  for (const k of Object.keys(value)) out[k] = tag(value[k]);
  return out;
}
