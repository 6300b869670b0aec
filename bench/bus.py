"""Bus throughput and latency: Jumeau's envelope against raw pyzmq multipart, in one run.

Through a real bus (libzmq proxy, tcp loopback), a publisher process floods N frames and this
process receives them; the baseline sends the very same bytes with plain ``send_multipart`` /
``recv_multipart`` and no decoding or validation. Then both are paced at 1 kHz for latency.

    python bench/bus.py [--n 200000] [--image-n 20000] [--paced-s 3]

Prints a table and ends with one JSON line (also written to bench/results/bus.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from tqdm import tqdm

from bridge import Bus, BusConfig, Observation, Publisher, SensorSpec, StreamSchema, Subscriber, encode

RESULTS = Path(__file__).parent / "results" / "bus.json"


def _schema(kind: str) -> StreamSchema:
    if kind == "obs":
        sensors = tuple(SensorSpec(f"s{i}", "m", -10.0, 10.0) for i in range(32))
        return StreamSchema("bench-0", "state", "vector", "<f4", (32,), 1000.0, sensors)
    channels = tuple(SensorSpec(c, "1", 0, 255) for c in "rgb")
    return StreamSchema("bench-0", "camera", "image", "|u1", (64, 64, 3), 30.0, channels)


def _payload(kind: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "obs":
        return rng.standard_normal(32).astype(np.float32)
    return rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)


def _config(env: dict[str, str]) -> BusConfig:
    return BusConfig(
        pub_endpoint=env["JUMEAU_BUS_PUB"],
        sub_endpoint=env["JUMEAU_BUS_SUB"],
        control_endpoint=env["JUMEAU_BUS_CONTROL"],
    )


def _publisher(mode: str, kind: str, env: dict[str, str], n: int, rate_hz: float, go: Any) -> None:
    """Child process: send ``n`` frames once ``go`` is set (``rate_hz`` 0: as fast as possible).

    ``raw`` sends pre-encoded Jumeau frames (paced: topic, 8-byte timestamp, payload) with plain
    ``send_multipart``; ``jumeau`` builds, validates and encodes an Observation per frame.
    """
    schema, values = _schema(kind), _payload(kind)
    period = 1.0 / rate_hz if rate_hz else 0.0
    with Publisher(_config(env), "bench-pub", hwm=400_000, linger_s=30.0) as pub:
        pub.announce(schema)
        if not pub.wait_subscribed(schema.data_topic, 10.0):
            raise SystemExit("bench publisher: no subscriber")
        go.wait(10.0)
        sock = pub.socket
        frames = encode(Observation("bench-0", schema.stream, 0, values, schema.schema_id), seq=0)
        topic, payload = frames[0], frames[2]
        start = time.perf_counter()
        for i in range(n):
            if period:  # sleep most of the gap, spin the last 0.3 ms: precise without eating a core
                deadline = start + i * period
                if (gap := deadline - time.perf_counter()) > 0.0003:
                    time.sleep(gap - 0.0003)
                while time.perf_counter() < deadline:
                    pass
            if mode == "jumeau":
                pub.publish(Observation("bench-0", schema.stream, time.time_ns(), values, schema.schema_id))
            elif period:
                sock.send_multipart([topic, struct.pack("<q", time.time_ns()), payload])
            else:
                sock.send_multipart(frames)


def _receive_raw(
    config: BusConfig, topic: str, n: int, paced: bool, go: Any
) -> tuple[int, float, np.ndarray]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 400_000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(config.sub_endpoint)
    sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    latencies = np.zeros(n, dtype=np.int64)
    received, first, last = 0, 0.0, 0.0
    go.set()
    try:
        while received < n and sock.poll(3000):
            frames = sock.recv_multipart()
            if received == 0:
                first = time.perf_counter()
            if paced:
                latencies[received] = time.time_ns() - struct.unpack("<q", frames[1])[0]
            received += 1
        last = time.perf_counter()
    finally:
        sock.close(linger=0)
    return received, last - first, latencies[:received]


def _receive_jumeau(
    config: BusConfig, topic: str, n: int, paced: bool, go: Any
) -> tuple[int, float, np.ndarray, int]:
    """Paced: ``recv`` one by one (latency); flood: ``drain`` batches (the worker's path)."""
    latencies = np.zeros(n, dtype=np.int64)
    received, first, last = 0, 0.0, 0.0
    with Subscriber(config, (topic,), name="bench-sub", hwm=400_000) as sub:
        go.set()
        while received < n:
            batch = [sub.recv(timeout_s=3.0)] if paced else sub.drain(max_messages=1000)
            if not batch or batch == [None]:
                if paced or not sub.socket.poll(3000):
                    break
                continue
            now = time.time_ns()
            for message in batch:
                if isinstance(message, Observation) and received < n:
                    if received == 0:
                        first = time.perf_counter()
                    latencies[received] = now - message.t_ns
                    received += 1
        last = time.perf_counter()
        rejects = sub.accounting.rejected
    return received, last - first, latencies[:received], rejects


def _run(config: BusConfig, mode: str, kind: str, n: int, rate_hz: float = 0.0) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    topic = _schema(kind).data_topic
    child = ctx.Process(target=_publisher, args=(mode, kind, config.env(), n, rate_hz, go))
    child.start()
    rejects = 0
    if mode == "raw":
        received, elapsed, lat = _receive_raw(config, topic, n, bool(rate_hz), go)
    else:
        received, elapsed, lat, rejects = _receive_jumeau(config, topic, n, bool(rate_hz), go)
    child.join(timeout=30)
    lat = lat[1:] if len(lat) > 1 else np.zeros(1)
    return {
        "received": received,
        "lost": n - received,
        "rejects": rejects,
        "frames_per_s": (received - 1) / max(elapsed, 1e-9),
        "p50_us": float(np.percentile(lat, 50) / 1e3),
        "p99_us": float(np.percentile(lat, 99) / 1e3),
    }


CASES = [
    ("obs32 raw pyzmq", "raw", "obs", "n", 0.0),
    ("obs32 jumeau", "jumeau", "obs", "n", 0.0),
    ("image64 raw pyzmq", "raw", "image", "image_n", 0.0),
    ("image64 jumeau", "jumeau", "image", "image_n", 0.0),
    ("obs32 raw @1kHz", "raw", "obs", "paced_n", 1000.0),
    ("obs32 jumeau @1kHz", "jumeau", "obs", "paced_n", 1000.0),
]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="32-float frames per flood")
    parser.add_argument("--image-n", type=int, default=20_000, help="64x64x3 frames per flood")
    parser.add_argument("--paced-s", type=float, default=3.0, help="seconds of 1 kHz pacing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (medians reported)")
    args = parser.parse_args(argv)
    sizes = {"n": args.n, "image_n": args.image_n, "paced_n": int(args.paced_s * 1000)}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in CASES}
    with Bus(BusConfig.local()) as bus:
        # interleaved, so a noisy neighbour slows both sides of a comparison alike
        for _ in tqdm(range(args.repeats), desc="bus bench", unit="round"):
            for name, mode, kind, size, rate in CASES:
                runs[name].append(_run(bus.config, mode, kind, sizes[size], rate))
    rows = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for name, rs in runs.items()}

    def ratio(a: str, b: str) -> float:  # median of the per-round ratios
        return round(
            float(
                np.median(
                    [x["frames_per_s"] / y["frames_per_s"] for x, y in zip(runs[a], runs[b], strict=True)]
                )
            ),
            3,
        )

    print(
        f"{'median of rounds':<24} {'frames/s':>11} {'received':>9} {'lost':>6} {'p50 us':>8} {'p99 us':>8}"
    )
    for name, r in rows.items():
        print(
            f"{name:<24} {r['frames_per_s']:>11,.0f} {r['received']:>9.0f} {r['lost']:>6.0f} "
            f"{r['p50_us']:>8.0f} {r['p99_us']:>8.0f}"
        )
    figures = {
        "obs_frames_per_s": round(rows["obs32 jumeau"]["frames_per_s"]),
        "raw_frames_per_s": round(rows["obs32 raw pyzmq"]["frames_per_s"]),
        "throughput_ratio": ratio("obs32 jumeau", "obs32 raw pyzmq"),
        "image_frames_per_s": round(rows["image64 jumeau"]["frames_per_s"]),
        "raw_image_frames_per_s": round(rows["image64 raw pyzmq"]["frames_per_s"]),
        "image_throughput_ratio": ratio("image64 jumeau", "image64 raw pyzmq"),
        "p50_us_paced_1khz": round(rows["obs32 jumeau @1kHz"]["p50_us"], 1),
        "p99_us_paced_1khz": round(rows["obs32 jumeau @1kHz"]["p99_us"], 1),
        "raw_p99_us_paced_1khz": round(rows["obs32 raw @1kHz"]["p99_us"], 1),
        "lost_frames": int(sum(r["lost"] for rs in runs.values() for r in rs)),
        "repeats": args.repeats,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
