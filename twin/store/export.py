"""File layouts of :func:`twin.store.dataset.export_episodes` (documented in ``docs/store.md``).

``.npz``: ``lineage`` (a 0-d unicode array holding the JSON lineage document) and, per episode
``E`` and stream ``S``, ``episode_E/obs/S/{t_ns,seq,values}`` and
``episode_E/act/S/{t_ns,seq,values}``. Load with ``np.load(path)`` (no pickle needed).

``.parquet``: one row per sample: ``episode_id, kind ("obs"|"act"), stream, seq, t_ns, dtype,
shape, values`` (float64 list, for vector streams and actions) and ``data`` (raw little-endian
bytes, for image streams); the lineage JSON is in the file's schema metadata under
``jumeau.lineage``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from twin.store.dataset import EpisodeData, StreamData

LINEAGE_KEY = b"jumeau.lineage"


def _groups(episode: EpisodeData) -> list[tuple[str, StreamData]]:
    return [("obs", s) for s in episode.streams.values()] + [("act", a) for a in episode.actions.values()]


def write_npz(episodes: Sequence[EpisodeData], path: Path, document: dict[str, Any]) -> None:
    arrays: dict[str, np.ndarray] = {"lineage": np.array(json.dumps(document, sort_keys=True))}
    for episode in episodes:
        for kind, data in _groups(episode):
            prefix = f"episode_{episode.id}/{kind}/{data.name}"
            arrays[f"{prefix}/t_ns"] = data.t_ns
            arrays[f"{prefix}/seq"] = data.seq
            arrays[f"{prefix}/values"] = data.values
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


def write_parquet(episodes: Sequence[EpisodeData], path: Path, document: dict[str, Any]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is in the dev and parquet extras
        raise RuntimeError("Parquet export needs pyarrow: pip install 'jumeau[parquet]'") from exc
    columns: dict[str, list[Any]] = {
        name: []
        for name in ("episode_id", "kind", "stream", "seq", "t_ns", "dtype", "shape", "values", "data")
    }
    for episode in episodes:
        for kind, data in _groups(episode):
            n = len(data.t_ns)
            image = data.kind == "image"
            columns["episode_id"] += [episode.id] * n
            columns["kind"] += [kind] * n
            columns["stream"] += [data.name] * n
            columns["seq"] += data.seq.tolist()
            columns["t_ns"] += data.t_ns.tolist()
            columns["dtype"] += [data.values.dtype.str] * n
            columns["shape"] += [list(data.values.shape[1:])] * n
            if image:
                columns["values"] += [None] * n
                columns["data"] += [np.ascontiguousarray(v).tobytes() for v in data.values]
            else:
                columns["values"] += data.values.reshape(n, -1).astype(np.float64).tolist()
                columns["data"] += [None] * n
    schema = pa.schema(
        [
            ("episode_id", pa.int64()),
            ("kind", pa.string()),
            ("stream", pa.string()),
            ("seq", pa.int64()),
            ("t_ns", pa.int64()),
            ("dtype", pa.string()),
            ("shape", pa.list_(pa.int32())),
            ("values", pa.list_(pa.float64())),
            ("data", pa.binary()),
        ],
        metadata={LINEAGE_KEY: json.dumps(document, sort_keys=True).encode()},
    )
    pq.write_table(pa.table(columns, schema=schema), path)


def read_lineage(path: str | Path) -> dict[str, Any]:
    """The lineage document of an export (either format)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return json.loads(str(archive["lineage"]))
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[LINEAGE_KEY])
