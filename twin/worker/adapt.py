"""Online adaptation: fine-tune a served world model on its assets' recent *nominal* data in a
background process at a bounded CPU budget, register the result as a new version of the model,
and switch an asset to it only when it predicts that asset's held-out recent data better.

Parts, in the order data flows through them:

* :class:`NominalBuffer` (one per asset, fed by the live loop through :meth:`Adaptation.observe`)
  keeps the last ``buffer_steps`` control steps (observation, held action, where the action came
  from) in contiguous segments. A step is buffered only when the asset's detector is armed
  (calibrated), no anomaly is in progress, the step's surprise is below alarm level, and the
  step is at least ``guard_s`` after the end of the last anomaly. When an anomaly is raised,
  every buffered step from ``guard_s`` before the anomaly's start (``since_t_ns``, when the
  score was last calm) is purged. Steps younger than ``guard_s`` are never handed to a job: an
  anomaly detected a little late could still flag them.
* :class:`Adaptation` (in the worker's loop thread) starts at most one job at a time, every
  ``every_s`` at most, for a model whose assets have ``min_steps`` eligible steps. The job runs
  in a spawned child process (:func:`_child_main`): ``torch`` on one thread, ``nice`` raised, and
  a duty cycle (:class:`CpuBudget`) that sleeps so that the child's CPU time stays below
  ``cpu_fraction`` of its wall time (a fraction of one core), for at most ``train_steps``
  optimiser steps.
* :func:`fine_tune` (in the child): each asset's buffered steps are cut in time, the oldest
  ``1 - holdout`` train, the newest ``holdout`` are held out; a copy of the model is trained
  with the model's own objective (:class:`twin.model.losses.JepaObjective`, its training
  weights, ``rollout_steps`` unrolled steps) and both models are scored on the held-out windows
  (mean normalised RMSE of 1..``rollout_steps``-step open-loop forecasts with the recorded
  actions). The candidate is *better* when its error is below ``(1 - min_improvement)`` times
  the base model's, overall and per asset.
* Before registering, the child asks the loop whether any step it trained or evaluated on has
  been flagged since the job started (an anomaly whose guarded interval overlaps the job's
  time ranges); if so the candidate is discarded. Otherwise the child saves the checkpoint
  (``<models_dir>/<name>-v<version>.pt``) and registers it in the ``models`` table as the next
  version of the base model's name, with the time ranges it used in ``lineage`` and the
  held-out figures in ``metrics["adapt"]``. The loop then switches each asset the candidate
  improved: a new detector calibrates on the new model's residuals, and a ``model_adapted``
  marker Event is published and stored.

A candidate that is not better is not registered (``adaptation_rejected`` Event); a job that
fails (no database, an exception, a timeout) is logged and counted, and the worker goes on with
the model it had.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import multiprocessing
import os
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge import Event
from twin.worker.config import AdaptConfig

if TYPE_CHECKING:
    from twin.model.checkpoint import Checkpoint
    from twin.worker.assets import AssetState
    from twin.worker.inference import ModelAdapter
    from twin.worker.loop import TwinWorker

log = logging.getLogger(__name__)

_MAX_PENDING = 256
"""Frames of one asset kept between two of its steps (more: the oldest are left out)."""
_RECHECK_S = 5.0
"""How often the loop looks for enough nominal data when a job is due but none could start."""

__all__ = [
    "AdaptStats",
    "Adaptation",
    "CpuBudget",
    "NominalBuffer",
    "Segment",
    "fine_tune",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """Contiguous nominal control steps of one asset: ``t_ns`` (n,), ``obs`` (n, S) SI, and
    ``actions`` (n - 1, A) SI, the action held between ``obs[k]`` and ``obs[k + 1]``.
    ``inferred``: some actions were inferred by the model's inverse dynamics (none on the bus)."""

    t_ns: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    inferred: bool

    @property
    def steps(self) -> int:
        return len(self.actions)


class NominalBuffer:
    """The last ``capacity`` nominal control steps of one asset, in contiguous runs.

    :meth:`add` appends a step; a step that does not follow the previous one (a missed step, a
    time gap, a :meth:`split`) starts a new run. :meth:`purge_since` forgets every step from a
    time on (an anomaly found them suspect)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"NominalBuffer capacity={capacity!r} must be >= 2")
        self._rows: deque[tuple[int, int, int, np.ndarray, np.ndarray | None, bool]] = deque(maxlen=capacity)
        self._run = 0
        self._last: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(
        self,
        t_ns: int,
        step: int,
        obs: np.ndarray,
        action: np.ndarray | None,
        from_bus: bool,
        max_dt_ns: int,
    ) -> None:
        """Buffer one control step. ``action``: with ``from_bus``, the action held from this step
        on; else the action inferred for the transition that *led* to this step (None: unknown).
        A step more than ``max_dt_ns`` after the previous one starts a new run."""
        last = self._last
        if last is None or step != last[1] + 1 or not 0 < t_ns - last[0] <= max_dt_ns:
            self._run += 1
        self._rows.append((t_ns, step, self._run, obs, action, from_bus))
        self._last = (t_ns, step)

    def split(self) -> None:
        """The next step starts a new run (a step was left out here)."""
        self._last = None

    def purge_since(self, t_ns: int) -> int:
        """Forget every step at or after ``t_ns``; returns how many."""
        n = 0
        while self._rows and self._rows[-1][0] >= t_ns:
            self._rows.pop()
            n += 1
        self.split()
        return n

    @property
    def newest_t_ns(self) -> int | None:
        return self._rows[-1][0] if self._rows else None

    def segments(self, until_t_ns: int, min_steps: int = 1) -> list[Segment]:
        """The runs of steps at or before ``until_t_ns`` with at least ``min_steps`` transitions.

        The action of transition k -> k + 1 is the bus action held at step k, else the action
        inferred at step k + 1 (inverse dynamics from the latents of k and k + 1); a transition
        whose action is unknown ends a run."""
        out: list[Segment] = []
        rows: list[tuple[int, int, int, np.ndarray, np.ndarray | None, bool]] = []
        actions: list[np.ndarray] = []

        def close() -> None:
            if len(actions) >= min_steps:
                out.append(
                    Segment(
                        np.array([r[0] for r in rows], dtype=np.int64),
                        np.stack([r[3] for r in rows]),
                        np.stack(actions),
                        not all(r[5] for r in rows[:-1]),
                    )
                )

        for row in self._rows:
            if row[0] > until_t_ns:
                break
            if rows and rows[-1][2] == row[2]:
                prev = rows[-1]
                action = prev[4] if prev[5] else row[4]
                if action is not None:
                    rows.append(row)
                    actions.append(action)
                    continue
            close()
            rows, actions = [row], []
        if rows:
            close()
        return out


@dataclass(slots=True)
class _Gate:
    """Per asset: is an anomaly in progress, until when are steps held back, and the guarded
    intervals of every anomaly seen (``[start, end]``; end None while it lasts)."""

    flagged: bool = False
    blocked_until_t_ns: int = -1
    intervals: list[list[int | None]] = field(default_factory=list)


@dataclass
class AdaptStats:
    """What adaptation did (``adapt`` in ``worker_stopped``)."""

    jobs: int = 0
    accepted: int = 0
    rejected: int = 0
    discarded: int = 0
    """Candidates dropped because an anomaly flagged some of their data while they trained."""
    failed: int = 0
    switched: int = 0
    purged_steps: int = 0
    """Buffered steps forgotten because an anomaly flagged them."""
    excluded: Counter[str] = field(default_factory=Counter)
    """Steps never buffered, by reason: ``anomaly`` in progress, ``guard`` after one,
    ``calibrating`` (detector not armed), ``surprise`` at alarm level, ``range_limit`` (a reading
    at its range limit, and the detector's pause after it), ``untracked``."""
    last: dict[str, Any] = field(default_factory=dict)
    """The last job's outcome (figures from the child)."""


class CpuBudget:
    """A duty cycle: :meth:`throttle` sleeps until this process's CPU time is at most
    ``fraction`` of the wall time since the budget started (a fraction of one core)."""

    def __init__(self, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"CpuBudget fraction={fraction!r} must be in (0, 1]")
        self.fraction = fraction
        self._cpu0 = time.process_time()
        self._wall0 = time.monotonic()
        self.slept_s = 0.0

    @property
    def cpu_s(self) -> float:
        return time.process_time() - self._cpu0

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._wall0

    def throttle(self) -> None:
        wait = self.cpu_s / self.fraction - self.wall_s
        if wait > 0:
            time.sleep(wait)
            self.slept_s += wait


# --- the child's side: pure functions on data -----------------------------------------------------
def _cut(segments: list[Segment], holdout: float) -> tuple[list[Segment], list[Segment]]:
    """Split one asset's segments in time: the oldest ``1 - holdout`` of its transitions train,
    the newest are held out (the cut step ends one part and starts the other)."""
    total = sum(s.steps for s in segments)
    cut_at = total - max(1, round(holdout * total))
    train, held = [], []
    seen = 0
    for s in segments:
        if seen + s.steps <= cut_at:
            train.append(s)
        elif seen >= cut_at:
            held.append(s)
        else:
            i = cut_at - seen
            train.append(Segment(s.t_ns[: i + 1], s.obs[: i + 1], s.actions[:i], s.inferred))
            held.append(Segment(s.t_ns[i:], s.obs[i:], s.actions[i:], s.inferred))
        seen += s.steps
    return train, held


def _ranges(segments: list[Segment]) -> list[list[int]]:
    return [[int(s.t_ns[0]), int(s.t_ns[-1])] for s in segments]


def _windows(checkpoint: Checkpoint, segments: list[Segment], horizon: int) -> Any:
    """Training/evaluation windows (``history`` + ``horizon`` steps) inside the segments, or None."""
    from twin.model.data import Dataset, Episode, make_windows

    history = checkpoint.model.history
    episodes = tuple(Episode(s.obs, s.actions) for s in segments if s.steps + 1 >= history + horizon)
    if not episodes:
        return None
    return make_windows(Dataset(checkpoint.schema, episodes), checkpoint.features, history, horizon)


def _error(model: Any, checkpoint: Checkpoint, windows: Any, horizon: int) -> float:
    """Mean normalised RMSE of 1..``horizon``-step forecasts with the recorded actions."""
    from twin.model.baselines import NeuralForecaster
    from twin.model.evaluate import nrmse_table, observed_future

    history = checkpoint.model.history
    predicted = NeuralForecaster(model, checkpoint.features, history).forecast(windows, horizon)
    table = nrmse_table(predicted, observed_future(windows, history, horizon), checkpoint.features)
    return float(table.mean())


def _keep_blend(model: Any, checkpoint: Checkpoint, held: dict[str, Any], horizon: int) -> bool | None:
    """A tuned copy inherits the base model's horizon blend, which was fitted to the base
    network's errors: keep it only if the tuned network forecasts the held-out windows better
    with it than without (else drop it, ``model.blend = None``). None: the base had none."""
    if model.blend is None:
        return None
    inherited = model.blend
    with_blend = sum(_error(model, checkpoint, w, horizon) * len(w) for w in held.values())
    model.blend = None
    without = sum(_error(model, checkpoint, w, horizon) * len(w) for w in held.values())
    if with_blend <= without:
        model.blend = inherited
        return True
    return False


def fine_tune(
    checkpoint: Checkpoint,
    data: dict[str, list[Segment]],
    config: AdaptConfig,
    budget: CpuBudget | None = None,
) -> dict[str, Any]:
    """Fine-tune a copy of ``checkpoint.model`` on the older part of each asset's segments and
    score it against the base model on the newer part. Returns the figures and, under
    ``"model"``, the tuned :class:`~twin.model.jepa.JepaWorldModel` (None if there was nothing
    to learn from). Seeded by ``config.seed``."""
    import torch

    from twin.model.losses import JepaObjective, ObjectiveConfig
    from twin.model.pipeline import sensor_indices

    horizon = config.rollout_steps
    train_parts: list[Segment] = []
    held: dict[str, Any] = {}
    ranges: dict[str, dict[str, list[list[int]]]] = {}
    for asset, segments in sorted(data.items()):
        train, holdout = _cut(segments, config.holdout)
        windows = _windows(checkpoint, holdout, horizon)
        if windows is None:
            continue
        train_parts.extend(train)
        held[asset] = windows
        ranges[asset] = {"train": _ranges(train), "holdout": _ranges(holdout)}
    train_windows = _windows(checkpoint, train_parts, horizon)
    out: dict[str, Any] = {"model": None, "ranges": ranges, "assets": sorted(held)}
    if train_windows is None or not held:
        out["reason"] = "not enough contiguous nominal steps for training and held-out windows"
        return out
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = copy.deepcopy(checkpoint.model)
    inferred = any(s.inferred for s in train_parts)
    weights = {**checkpoint.config.get("objective", {}), "rollout_steps": horizon}
    if inferred:
        weights["inverse_weight"] = 0.0  # the inferred actions came from this very head
    names = [s.name for s in checkpoint.schema.sensors]
    selected = sensor_indices(tuple(checkpoint.config.get("select_on", ())), names)
    objective = JepaObjective(model, ObjectiveConfig.from_dict(weights), checkpoint.features, selected)
    weight_decay = float(checkpoint.config.get("train", {}).get("weight_decay", 0.0))
    optimiser = torch.optim.AdamW(objective.parameters(), lr=config.lr, weight_decay=weight_decay)
    losses = []
    for _ in range(config.train_steps):
        model.train()
        index = torch.randint(len(train_windows), (config.batch,), generator=generator)
        total, _stats = objective.loss(train_windows.take(index))
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
        optimiser.step()
        objective.after_step()
        losses.append(float(total.detach()))
        if budget is not None:
            budget.throttle()
    model.eval()
    blend_kept = _keep_blend(model, checkpoint, held, horizon)
    per_asset = {}
    for asset, windows in held.items():
        per_asset[asset] = {
            "base_nrmse": round(_error(checkpoint.model, checkpoint, windows, horizon), 6),
            "nrmse": round(_error(model, checkpoint, windows, horizon), 6),
            "windows": len(windows),
        }
    n = sum(p["windows"] for p in per_asset.values())
    base = sum(p["base_nrmse"] * p["windows"] for p in per_asset.values()) / n
    tuned = sum(p["nrmse"] * p["windows"] for p in per_asset.values()) / n
    keep = 1 - config.min_improvement
    out.update(
        model=model,
        base_nrmse=round(base, 6),
        nrmse=round(tuned, 6),
        per_asset=per_asset,
        better=tuned < keep * base,
        improved=sorted(a for a, p in per_asset.items() if p["nrmse"] < keep * p["base_nrmse"]),
        train_windows=len(train_windows),
        holdout_windows=n,
        train_steps=config.train_steps,
        inferred_actions=inferred,
        blend_kept=blend_kept,
        loss_first=round(losses[0], 6),
        loss_last=round(losses[-1], 6),
    )
    return out


def register_candidate(
    checkpoint: Checkpoint,
    model: Any,
    base_ref: str,
    result: dict[str, Any],
    config: AdaptConfig,
    db_url: str | None,
    models_dir: Path,
) -> tuple[str, str]:
    """Save the tuned model as the next version of the base model's name and register it;
    returns (``name:version``, checkpoint path). Retries when another worker took the version."""
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from twin.model.checkpoint import Checkpoint, save_checkpoint, schema_to_dict
    from twin.model.registry import next_version, register_model
    from twin.store.engine import make_engine

    name = checkpoint.name or base_ref.partition(":")[0]
    figures = {k: result[k] for k in ("base_nrmse", "nrmse", "per_asset", "train_windows", "holdout_windows")}
    figures.update(
        {
            k: result[k]
            for k in ("train_steps", "inferred_actions", "blend_kept", "cpu_s", "wall_s")
            if k in result
        }
    )
    engine = make_engine(db_url)
    try:
        for _attempt in range(5):
            with Session(engine) as session:
                version = max(next_version(session, name), checkpoint.version + 1)
                path = models_dir / f"{name}-v{version}.pt"
                while path.exists():
                    version += 1
                    path = models_dir / f"{name}-v{version}.pt"
                tuned = Checkpoint(
                    model=model,
                    features=checkpoint.features,
                    schema=checkpoint.schema,
                    bands=checkpoint.bands,
                    config={**checkpoint.config, "adapt": asdict(config)},
                    lineage={
                        "source": "online_adaptation",
                        "scene": checkpoint.lineage.get("scene"),
                        "adapted_from": base_ref,
                        "assets": result["assets"],
                        "ranges": result["ranges"],
                        "base_lineage": checkpoint.lineage,
                    },
                    metrics={"adapt": figures},
                    baselines=checkpoint.baselines,
                    name=name,
                    version=version,
                    control_hz=checkpoint.control_hz,
                    # the base model's: fine-tuning lowers the residuals it was fitted on
                    detector=checkpoint.detector,
                )
                save_checkpoint(tuned, path)
                try:
                    register_model(
                        session,
                        name=name,
                        version=version,
                        scene=checkpoint.lineage.get("scene"),
                        path=path,
                        schema=schema_to_dict(checkpoint.schema),
                        config=tuned.config,
                        lineage=tuned.lineage,
                        metrics=tuned.metrics,
                    )
                    session.commit()
                except IntegrityError:
                    session.rollback()
                    path.unlink(missing_ok=True)
                    continue
                return f"{name}:{version}", str(path)
        raise RuntimeError(f"could not register a new version of {name!r} after 5 attempts")
    finally:
        engine.dispose()


def _child_main(conn: Connection) -> None:
    """The job process: receive the job, fine-tune under the CPU budget, ask the loop whether
    the data is still clean, register, report. Every outcome is one message on ``conn``."""
    job: dict[str, Any] = {}
    try:
        first = conn.recv_bytes()  # cheap; the budget starts before the job is unpickled
        config = AdaptConfig(**json.loads(first))
        budget = CpuBudget(config.cpu_fraction)
        if config.nice:
            os.nice(config.nice)
        import torch

        torch.set_num_threads(1)
        job = conn.recv()
        checkpoint = job["checkpoint"]
        result = fine_tune(checkpoint, job["data"], config, budget)
        model = result.pop("model")
        result.update(cpu_s=round(budget.cpu_s, 3), wall_s=round(budget.wall_s, 3))
        result["cpu_fraction"] = round(result["cpu_s"] / max(result["wall_s"], 1e-9), 4)
        if model is None:
            conn.send({"status": "failed", **result})
            return
        if not result["better"]:
            conn.send({"status": "rejected", **result})
            return
        conn.send({"status": "candidate", "ranges": result["ranges"]})
        if conn.recv() != "register":
            conn.send({"status": "discarded", **result})
            return
        ref, path = register_candidate(
            checkpoint, model, job["base_ref"], result, config, job["db_url"], Path(job["models_dir"])
        )
        conn.send({"status": "accepted", "ref": ref, "path": path, **result})
    except Exception as exc:  # reported to the loop, which logs and counts it
        with contextlib.suppress(OSError, ValueError):
            conn.send({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


# --- the loop's side ---------------------------------------------------------------------------
def _send(conn: Connection, job: dict[str, Any]) -> None:
    """Send ``job`` to the child (a child that died is reported by the loop's next poll)."""
    with contextlib.suppress(OSError, ValueError):
        conn.send(job)


@dataclass(slots=True)
class _Job:
    base: ModelAdapter
    assets: list[str]
    process: Any
    conn: Connection
    started: float


class Adaptation:
    """The worker's side of online adaptation (see the module docstring). The live loop calls
    :meth:`observe` after each step of an asset and :meth:`poll` once per iteration; both are
    cheap and never block; :meth:`close` ends a job in progress."""

    def __init__(self, config: AdaptConfig, db_url: str | None, models_dir: Path) -> None:
        self.config = config
        self.db_url = db_url
        self.models_dir = models_dir
        self.buffers: dict[str, NominalBuffer] = {}
        self.gates: dict[str, _Gate] = {}
        self._pending: dict[str, deque[tuple[int, int, np.ndarray, np.ndarray | None]]] = {}
        self.stats = AdaptStats()
        self.job: _Job | None = None
        self.disabled = False
        self._next_start = time.monotonic() + config.every_s
        self._rotation = 0
        self._guard_ns = round(config.guard_s * 1e9)
        self._used: dict[str, int] = {}
        """Per asset, the newest step time the last job on it trained or evaluated on."""

    # --- data ----------------------------------------------------------------------------------
    def frame(self, asset: AssetState, t_ns: int) -> None:
        """A control-step frame entered ``asset``'s window (see :meth:`_frame`)."""
        if not self.disabled:
            self._guarded(self._frame, asset, t_ns)

    def observe(self, asset: AssetState) -> None:
        """After a step of ``asset`` (see :meth:`_observe`)."""
        if not self.disabled:
            self._guarded(self._observe, asset)

    def poll(self, worker: TwinWorker) -> None:
        """Once per loop iteration (see :meth:`_poll`)."""
        if not self.disabled:
            self._guarded(self._poll, worker)

    def _guarded(self, method: Any, *args: Any) -> None:
        """Adaptation never takes the live loop down: an unexpected error switches it off."""
        try:
            method(*args)
        except Exception:
            log.exception("online adaptation failed and is switched off; the worker goes on serving")
            self.disabled = True
            self.stats.failed += 1
            self.close()

    def _frame(self, asset: AssetState, t_ns: int) -> None:
        """A control-step frame entered ``asset``'s window (with the bus action held now); it is
        buffered or left out at the asset's next step, when the detector has seen it."""
        pending = self._pending.get(asset.asset)
        if pending is None:
            pending = self._pending[asset.asset] = deque(maxlen=_MAX_PENDING)
        action = None if asset.bus_action is None else asset.bus_action.copy()
        pending.append((t_ns, asset.step, asset.window[-1].copy(), action))

    def _observe(self, asset: AssetState) -> None:
        """After a step of ``asset``: buffer the frames it covered, or leave them out (and purge)
        if they are not nominal."""
        buffer = self.buffers.get(asset.asset)
        if buffer is None:
            buffer = self.buffers[asset.asset] = NominalBuffer(self.config.buffer_steps)
            self.gates[asset.asset] = _Gate()
        frames = list(self._pending.pop(asset.asset, ()))
        gate = self.gates[asset.asset]
        t = asset.last_step_t_ns
        if asset.anomaly is not None:
            if not gate.flagged:
                gate.flagged = True
                start = asset.anomaly.since_t_ns - self._guard_ns
                gate.intervals.append([start, None])
                del gate.intervals[:-100]
                purged = buffer.purge_since(start)
                self.stats.purged_steps += purged
                log.info("%s: anomaly since t_ns=%d: %d buffered steps purged", asset.asset, start, purged)
            self._exclude(buffer, len(frames), "anomaly")
            return
        if gate.flagged:
            gate.flagged = False
            gate.blocked_until_t_ns = t + self._guard_ns
            gate.intervals[-1][1] = gate.blocked_until_t_ns
        why = None
        if not frames or frames[-1][1] != asset.step:
            why = "untracked"
        elif frames[0][0] < gate.blocked_until_t_ns:
            why = "guard"
        elif not asset.detector.armed:
            why = "calibrating"
        elif asset.at_limit or asset.detector.hold > 0:
            why = "range_limit"  # an end stop's contact is outside what the model can learn
        elif asset.last_surprise >= self.config.alarm_level:
            why = "surprise"
        if why is not None:
            self._exclude(buffer, len(frames), why)
            return
        max_dt_ns = round(1.5e9 / asset.model.control_hz)
        for t_ns, step, obs, bus in frames[:-1]:
            buffer.add(t_ns, step, obs, bus, bus is not None, max_dt_ns)
        t_ns, step, obs, bus = frames[-1]
        if bus is None and len(frames) == 1 and asset.action is not None:
            buffer.add(t_ns, step, obs, asset.action.copy(), False, max_dt_ns)
        else:  # several frames since the last step: the inferred action spans them all
            buffer.add(t_ns, step, obs, bus, bus is not None, max_dt_ns)

    def _exclude(self, buffer: NominalBuffer, frames: int, why: str) -> None:
        self.stats.excluded[why] += frames
        buffer.split()

    def eligible(self, asset: str) -> list[Segment]:
        """The segments a job may use now: every buffered step older than the guard."""
        buffer = self.buffers.get(asset)
        if buffer is None or buffer.newest_t_ns is None:
            return []
        return buffer.segments(buffer.newest_t_ns - self._guard_ns, self.config.rollout_steps)

    def flagged_overlap(self, asset: str, ranges: list[list[int]]) -> bool:
        """Does the guarded interval of an anomaly of ``asset`` meet one of the time ``ranges``?
        (Steps at an interval's end are nominal again: the guard ends there.)"""
        for start, end in self.gates.get(asset, _Gate()).intervals:
            stop = math.inf if end is None else end
            if start is not None and any(lo < stop and hi >= start for lo, hi in ranges):
                return True
        return False

    def ready(self, group: list[AssetState]) -> dict[str, list[Segment]]:
        """Per asset of ``group`` that a job may train on now, its eligible segments: it has
        ``min_steps`` eligible steps, at least ``min_steps`` of them newer than the data of the
        previous job on it (a job on the same data would register the same model again), and no
        anomaly in progress (its steps since the anomaly's start are being purged, and the asset
        would not be switched anyway)."""
        data = {}
        for asset in group:
            if asset.anomaly is not None or len(self.buffers.get(asset.asset, ())) < self.config.min_steps:
                continue
            segments = self.eligible(asset.asset)
            used = self._used.get(asset.asset, -1)
            fresh = sum(int(np.count_nonzero(s.t_ns[1:] > used)) for s in segments)
            if fresh >= self.config.min_steps:  # (fresh steps are eligible steps too)
                data[asset.asset] = segments
        return data

    # --- jobs -----------------------------------------------------------------------------------
    def _poll(self, worker: TwinWorker) -> None:
        """Start a job when one is due; take a finished job's result (and switch assets)."""
        if self.job is not None:
            self._check(worker, self.job)
            return
        now = time.monotonic()
        if now < self._next_start:
            return
        self._next_start = now + min(self.config.every_s, _RECHECK_S)
        groups: dict[int, list[AssetState]] = {}
        for asset in worker.assets.values():
            groups.setdefault(id(asset.model), []).append(asset)
        ordered = sorted(groups.values(), key=lambda g: g[0].model.name)
        for k in range(len(ordered)):
            group = ordered[(self._rotation + k) % len(ordered)]
            data = self.ready(group)
            if data:
                self._next_start = now + self.config.every_s
                self._rotation = (self._rotation + k + 1) % len(ordered)
                self._start(worker, group[0].model, data)
                return

    def _start(self, worker: TwinWorker, base: ModelAdapter, data: dict[str, list[Segment]]) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_child_main, args=(child,), name="twin-adapt", daemon=True)
        process.start()
        child.close()
        parent.send_bytes(json.dumps(asdict(self.config)).encode())
        job = {
            "checkpoint": base.model.checkpoint,
            "data": data,
            "base_ref": base.name,
            "db_url": self.db_url,
            "models_dir": str(self.models_dir),
        }
        # the pipe holds ~64 kB: sending from the loop would block it until the child, still
        # importing torch, reads; a thread sends instead (the child answers only after reading)
        threading.Thread(target=_send, args=(parent, job), name="twin-adapt-send", daemon=True).start()
        for name, segments in data.items():
            self._used[name] = max(int(s.t_ns[-1]) for s in segments)
        self.job = _Job(base, sorted(data), process, parent, time.monotonic())
        self.stats.jobs += 1
        steps = {a: sum(s.steps for s in segs) for a, segs in data.items()}
        log.info("adaptation of %s started on %s nominal steps (pid %d)", base.name, steps, process.pid)

    def _check(self, worker: TwinWorker, job: _Job) -> None:
        message = None
        try:
            if job.conn.poll():
                message = job.conn.recv()
        except (EOFError, OSError):
            message = {
                "status": "failed",
                "reason": f"the job process ended (exit code {job.process.exitcode})",
            }
        if message is None:
            if not job.process.is_alive() and not job.conn.poll():
                message = {
                    "status": "failed",
                    "reason": f"the job process died (exit code {job.process.exitcode})",
                }
            elif time.monotonic() - job.started > self.config.timeout_s:
                job.process.kill()
                message = {"status": "failed", "reason": f"no result within {self.config.timeout_s:g} s"}
            else:
                return
        if message["status"] == "candidate":
            dirty = [
                a for a, r in message["ranges"].items() if self.flagged_overlap(a, r["train"] + r["holdout"])
            ]
            job.conn.send("discard" if dirty else "register")
            if dirty:
                log.warning(
                    "adaptation of %s: anomaly flagged %s's data during the job", job.base.name, dirty
                )
            return
        self._finish(worker, job, message)

    def _finish(self, worker: TwinWorker, job: _Job, message: dict[str, Any]) -> None:
        self.job = None
        self._next_start = time.monotonic() + self.config.every_s
        job.conn.close()
        job.process.join(5)
        if job.process.is_alive():
            job.process.kill()
        status = message.pop("status")
        self.stats.last = {"status": status, "base": job.base.name, **message}
        figures = {
            k: message[k] for k in ("base_nrmse", "nrmse", "cpu_s", "wall_s", "cpu_fraction") if k in message
        }
        if status == "failed":
            self.stats.failed += 1
            log.error("adaptation of %s failed: %s", job.base.name, message.get("reason"))
            return
        if status == "discarded":
            self.stats.discarded += 1
            return
        if status == "rejected":
            self.stats.rejected += 1
            log.info("adaptation of %s not better on held-out data: %s", job.base.name, figures)
            for name in job.assets:
                self._event(
                    worker,
                    name,
                    "adaptation_rejected",
                    f"{name}: adapted {job.base.name} not better",
                    figures,
                )
            return
        self.stats.accepted += 1
        from twin.worker.detector import Detector
        from twin.worker.inference import ModelAdapter

        adapted = ModelAdapter.load(message["path"])
        log.info("adaptation of %s registered %s: %s", job.base.name, message["ref"], figures)
        for name in message.get("improved", []):
            asset = worker.assets.get(name)
            if asset is None or asset.model is not job.base or asset.anomaly is not None:
                log.info(
                    "%s: not switched to %s (no longer served by %s, or in an anomaly)",
                    name,
                    message["ref"],
                    job.base.name,
                )
                continue
            asset.model = adapted
            asset.detector = Detector(
                worker.config.detector, adapted.sensors, worker.profile(adapted), adapted.limits
            )
            asset.z = asset.predicted_z = asset.predicted_values = asset.predicted_scale = None
            self.stats.switched += 1
            per = message["per_asset"][name]
            params = {"from": job.base.name, "to": adapted.name, **figures}
            params.update(asset_base_nrmse=per["base_nrmse"], asset_nrmse=per["nrmse"])
            self._event(worker, name, "model_adapted", f"{name}: now served by {adapted.name}", params)

    @staticmethod
    def _event(worker: TwinWorker, asset: str, name: str, message: str, params: dict[str, Any]) -> None:
        clean = {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool))}
        worker.emit(Event(asset, time.time_ns(), "marker", name, "info", message, clean))

    def close(self) -> None:
        """End a job in progress (its result is not used)."""
        job, self.job = self.job, None
        if job is None:
            return
        job.process.kill()
        job.process.join(5)
        job.conn.close()
        log.info("adaptation of %s stopped with the worker", job.base.name)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "jobs": s.jobs,
            "accepted": s.accepted,
            "rejected": s.rejected,
            "discarded": s.discarded,
            "failed": s.failed,
            "switched": s.switched,
            "disabled": self.disabled,
            "purged_steps": s.purged_steps,
            "excluded": dict(s.excluded),
            "last": {k: v for k, v in s.last.items() if k != "ranges"},
        }
