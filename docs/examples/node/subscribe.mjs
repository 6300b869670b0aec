// Subscribe to the Jumeau bus from Node.js and print one JSON line per message (docs/protocol.md).
//   node subscribe.mjs [--topic obs.cart-0.] [--count 10] [--timeout 30]
// Bus addresses: JUMEAU_BUS_SUB (default tcp://127.0.0.1:7761), JUMEAU_BUS_CONTROL (…:7762).
// Output: {"event":"ready"} once the bus forwards our topics, then one line per obs/schema/...
// t_ns and other 64-bit integers are printed as strings (JSON numbers lose precision past 2^53).
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { decode, encode } from "@msgpack/msgpack";
import * as zmq from "zeromq";

const { values: opt } = parseArgs({ options: {
  topic: { type: "string", multiple: true, default: ["obs."] },
  count: { type: "string", default: "0" }, timeout: { type: "string", default: "30" },
} });
const unpack = (bytes) => decode(bytes, { useBigInt64: true }); // uint64 t_ns -> BigInt, exactly
const print = (o) => console.log(JSON.stringify(o, (_, v) => (typeof v === "bigint" ? String(v) : v)));
const TYPED = { "<f8": Float64Array, "<f4": Float32Array, "<i8": BigInt64Array, "<u8": BigUint64Array,
  "<i4": Int32Array, "<u4": Uint32Array, "<i2": Int16Array, "<u2": Uint16Array, "|i1": Int8Array,
  "|u1": Uint8Array, "|b1": Uint8Array };
const deadline = Date.now() + 1000 * Number(opt.timeout);

// Control endpoint: DEALER, frames ["", msgpack {op, id, ...}] -> ["", msgpack {ok, id, ...}].
const control = new zmq.Dealer({ linger: 0, receiveTimeout: 2000 });
control.connect(process.env.JUMEAU_BUS_CONTROL ?? "tcp://127.0.0.1:7762");
let lastId = 0;
async function request(op, args = {}) {
  const id = ++lastId;
  await control.send(["", encode({ op, id, ...args })]);
  for (;;) { // skip late replies to earlier (timed-out) requests
    const reply = unpack((await control.receive()).at(-1));
    if (reply.id !== id) continue;
    if (!reply.ok) throw new Error(`bus ${op}: ${reply.error}`);
    return reply;
  }
}

const sub = new zmq.Subscriber({ linger: 0, receiveHighWaterMark: 100_000 });
sub.connect(process.env.JUMEAU_BUS_SUB ?? "tcp://127.0.0.1:7761");
const probe = `probe-${randomUUID().slice(0, 12)}`; // the bus will publish hb.<probe> for us
sub.subscribe(...opt.topic, "schema.", `hb.${probe}`);
const schemas = new Map(); // "asset.stream" -> latest schema envelope (learnt from the bus cache too)
for (const [, env] of (await request("schemas")).schemas) schemas.set(`${env.asset}.${env.stream}`, env);

let ready = false, printed = 0;
function handle([topicBuf, envBuf, ...buffers]) {
  const topic = topicBuf.toString(), env = unpack(envBuf);
  if (env.v !== 1) return console.error(`reject bad_version ${env.v} on ${topic}`);
  if (env.kind === "hb" && env.source === probe) return void (ready = true); // handshake, not traffic
  if (env.kind === "schema") schemas.set(`${env.asset}.${env.stream}`, env);
  if (!opt.topic.some((p) => topic.startsWith(p))) return; // schema./probe traffic we did not ask for
  const arrays = {};
  (env.arrays ?? []).forEach(([name, dtype, shape], i) => {
    const T = TYPED[dtype], buf = buffers[i], n = shape.reduce((a, b) => a * b, 1);
    if (!T || !buf || buf.length !== n * T.BYTES_PER_ELEMENT) throw new Error(`bad array ${name} on ${topic}`);
    // Copy into a fresh ArrayBuffer: the frame's offset need not be aligned for the typed array.
    arrays[name] = Array.from(new T(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)));
  });
  const schema = schemas.get(`${env.asset}.${env.stream}`);
  const [, dtype, shape] = env.arrays?.[0] ?? [];
  if (env.kind === "obs" && (!schema || schema.dtype !== dtype || String(schema.shape) !== String(shape)))
    return console.error(`reject ${schema ? "schema_mismatch" : "unknown_stream"} on ${topic}`);
  const { arrays: _descriptors, ...fields } = env;
  print({ topic, ...fields, ...arrays });
  printed += 1;
}

// Readiness handshake: ask the bus to publish hb.<probe>; once it arrives, our topics flow too.
while (!ready && Date.now() < deadline) {
  await request("probe", { source: probe });
  sub.receiveTimeout = 200;
  try { while (!ready) handle(await sub.receive()); } catch (e) { if (e.code !== "EAGAIN") throw e; }
}
if (!ready) throw new Error("bus did not confirm the subscription in time");
print({ event: "ready" });
while (Number(opt.count) === 0 || printed < Number(opt.count)) {
  sub.receiveTimeout = Math.max(1, deadline - Date.now());
  try { handle(await sub.receive()); } catch (e) { if (e.code === "EAGAIN") break; throw e; }
}
sub.close(); control.close();
process.exitCode = Number(opt.count) > 0 && printed < Number(opt.count) ? 2 : 0;
