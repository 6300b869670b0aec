// Publish a stream onto the Jumeau bus from Node.js (wire format: docs/protocol.md).
//   node publish.mjs --count 100 --rate 50 [--asset cart-0] [--stream state] [--source node-pub-1]
// Bus address: JUMEAU_BUS_PUB (default tcp://127.0.0.1:7760, the bus's XSUB side).
import { endianness } from "node:os";
import { parseArgs } from "node:util";
import { encode } from "@msgpack/msgpack";
import * as zmq from "zeromq";

const { values: opt } = parseArgs({ options: {
  count: { type: "string", default: "100" }, rate: { type: "string", default: "50" },
  asset: { type: "string", default: "cart-0" }, stream: { type: "string", default: "state" },
  source: { type: "string", default: "node-pub-1" }, "wait-subscriber": { type: "boolean", default: false },
} });
if (endianness() !== "LE") throw new Error("raw array frames are little-endian; convert on this host");

// t_ns is integer ns since the epoch (> 2^53): keep it a BigInt and let msgpack write a uint64.
const pack = (envelope) => encode(envelope, { useBigInt64: true });
const t0 = BigInt(Date.now()) * 1_000_000n, h0 = process.hrtime.bigint();
const nowNs = () => t0 + (process.hrtime.bigint() - h0);
const seqs = {}; // seq is per topic, from 0, +1 per message sent on that topic
const nextSeq = (topic) => (seqs[topic] = (seqs[topic] ?? -1) + 1);
const header = (kind, topic) => ({ v: 1, kind, source: opt.source, seq: nextSeq(topic), t_ns: nowNs() });

// An XPUB (not PUB) sees subscriptions: the bus subscribes to "schema." as soon as we are connected.
const sock = new zmq.XPublisher({ linger: 2000, sendHighWaterMark: 100_000 });
sock.connect(process.env.JUMEAU_BUS_PUB ?? "tcp://127.0.0.1:7760");
const subs = new Set();
async function waitSubscribed(topic, ms) {
  const deadline = Date.now() + ms;
  while (![...subs].some((s) => topic.startsWith(s))) {
    if (Date.now() > deadline) throw new Error(`no subscription covering ${topic} after ${ms} ms`);
    sock.receiveTimeout = Math.max(1, deadline - Date.now());
    const [msg] = await sock.receive(); // byte 0: 1 subscribe / 0 unsubscribe, then the prefix
    (msg[0] === 1 ? subs.add(msg.subarray(1).toString()) : subs.delete(msg.subarray(1).toString()));
  }
}
await waitSubscribed("schema.", 5000); // the bus is up and forwards what we send

const { asset, stream } = opt;
const dataTopic = `obs.${asset}.${stream}`, schemaTopic = `schema.${asset}.${stream}`;
// Schema: one SensorSpec per value. Unbounded ranges are +-Infinity (msgpack float64).
const sensor = (name, unit, low = -Infinity, high = Infinity) =>
  ({ name, unit, low, high, allow_nan: false, description: "" });
const schema = { ...header("schema", schemaTopic), asset, stream, stream_kind: "vector", dtype: "<f8",
  shape: [4], rate_hz: Number(opt.rate), description: "cart-pole state from Node.js", schema_id: "",
  sensors: [sensor("x", "m", -2.4, 2.4), sensor("x_dot", "m/s"), sensor("theta", "rad"), sensor("theta_dot", "rad/s")],
  actuators: [{ name: "force", unit: "N", low: -10, high: 10, description: "" }], arrays: [] };
await sock.send([schemaTopic, pack(schema)]);
if (opt["wait-subscriber"]) await waitSubscribed(dataTopic, 5000);

for (let i = 0; i < Number(opt.count); i++) {
  const values = Float64Array.of(0.1 * i, -0.5 * i, 0.25, 1 + i); // deterministic, for the test
  // schema_id "": receivers validate against the latest schema announced for this asset/stream.
  const env = { ...header("obs", dataTopic), asset, stream, schema_id: "",
    arrays: [["values", "<f8", [values.length]]] };
  await sock.send([dataTopic, pack(env), Buffer.from(values.buffer)]);
  await new Promise((r) => setTimeout(r, 1000 / Number(opt.rate)));
}

// A closing heartbeat: last seq per topic lets subscribers count frames lost at the very end.
// (A long-running publisher sends one every ~1 s and re-sends its schemas with it, as Python does.)
const hbTopic = `hb.${opt.source}`, last_seq = { ...seqs }; // taken before the heartbeat's own seq
await sock.send([hbTopic, pack({ ...header("hb", hbTopic), role: "example", status: "closing",
  last_seq, dropped: 0, arrays: [] })]);
sock.close(); // linger 2 s flushes what is queued
console.error(`published ${opt.count} observation(s) on ${dataTopic} as ${opt.source}`);
