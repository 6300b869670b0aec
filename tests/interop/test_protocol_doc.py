"""docs/protocol.md cannot go stale: its worked example must be what ``bridge.encode`` produces."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import msgpack
import numpy as np

from bridge import REJECT_REASONS, Observation, decode

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"


def _generator():
    path = ROOT / "docs" / "examples" / "make_protocol_example.py"
    spec = importlib.util.spec_from_file_location("make_protocol_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worked_example_matches_encode() -> None:
    gen = _generator()
    text = DOC.read_text(encoding="utf-8")
    assert gen.splice(text, gen.render()) == text, (
        "docs/protocol.md's worked example differs from what bridge.encode() produces now: "
        "if the wire format changed on purpose, run python docs/examples/make_protocol_example.py --write"
    )


def test_worked_example_hex_decodes_to_the_documented_observation() -> None:
    """Read the hex back out of the doc (not the generator) and decode it with bridge.decode."""
    text = DOC.read_text(encoding="utf-8")
    frames = []
    for heading in ("**Frame 0: topic**", "**Frame 1: envelope**", "**Frame 2: `values`**"):
        block = text[text.index(heading) :]
        body = re.search(r"```text\n(.*?)```", block, flags=re.S)
        assert body is not None, f"no hex block after {heading}"
        frames.append(bytes.fromhex(" ".join(line.split("#")[0] for line in body.group(1).splitlines())))
    message = decode(frames)
    assert isinstance(message, Observation)
    assert (message.asset, message.stream, message.source, message.seq) == ("cart-0", "state", "sim-1", 7)
    assert message.t_ns == 1_700_000_000_123_456_789
    np.testing.assert_array_equal(message.values, [0.5, -1.25, 0.0625, 2.0])
    assert msgpack.unpackb(frames[1])["t_ns"] == message.t_ns
    assert frames[1][frames[1].index(b"t_ns") + 4] == 0xCF  # uint64, as the doc says


def test_doc_lists_every_reject_reason() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [reason for reason in REJECT_REASONS if f"| `{reason}` |" not in text]
    assert not missing, f"docs/protocol.md section 12 does not describe reject reason(s) {missing}"
