"""The live loop: drain the bus, step every asset that received a control-step observation in
ONE micro-batched forward pass per model, then publish, detect and queue rows for the store.

It takes its collaborators (subscriber, publisher, writer, models) and builds none of them.
Nothing an input does can crash it: each bad frame is one ``error`` Event (rate limited per
asset and reason) and one count in :attr:`TwinWorker.rejected`; other assets are unaffected.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge import Action, Event, Observation, Prediction, Publisher, SensorSpec, StreamSchema, Subscriber
from twin.worker.assets import Anomaly, AssetState, Pending
from twin.worker.config import WorkerConfig
from twin.worker.detector import AFTER_LIMIT, APPROACHING_LIMIT, AT_LIMIT, Detector, Verdict
from twin.worker.inference import ModelAdapter
from twin.worker.memory import memory_op
from twin.worker.persistence import RowOp, WorkerWriter, event_op, f32, f64
from twin.worker.profile import DetectorProfile
from twin.worker.surprise import OpenLoop, Surprise, step_evidence

log = logging.getLogger(__name__)

_REPORT_EVERY_S = 10.0
SURPRISE_STREAM = "surprise"
BUS_REASONS = {"nan": "non_finite", "schema_mismatch": "bad_shape", "unknown_stream": "unknown_schema"}
"""The subscriber's reasons for refusing a frame, as the worker's reasons."""


def _target(pending: Pending) -> int:
    return pending.target_t_ns


@dataclass
class WorkerStats:
    """What the loop did (read live or after :meth:`TwinWorker.run`)."""

    observations: int = 0
    actions: int = 0
    """Applied actions heard on the bus (``act.<asset>.cmd`` or ``.applied``) and held."""
    steps: int = 0
    batches: int = 0
    predictions: int = 0
    errors_stored: int = 0
    anomalies: int = 0
    false_alarms: int = 0
    detection_delays_s: list[float] = field(default_factory=list)
    restored: int = 0
    resyncs: int = 0
    """Windows refilled after a gap in an asset's stream (a restart, a feed pause)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Bad input by reason (the same counter as :attr:`TwinWorker.rejected`)."""
    store: Any = None
    """The writer's :class:`~twin.store.writer.WriterStats` (set by the service at the end)."""
    adapt: dict[str, Any] | None = None
    """Online adaptation's summary (set by the service at the end; None: adaptation off)."""


class TwinWorker:
    """Serve every matching asset of the bus; see the module docstring."""

    def __init__(
        self,
        config: WorkerConfig,
        subscriber: Subscriber,
        publisher: Publisher,
        writer: WorkerWriter | None,
        models: list[ModelAdapter],
        restored: dict[str, Any] | None = None,
        on_first_prediction: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.subscriber = subscriber
        self.publisher = publisher
        self.writer = writer
        self.models = models
        self.restored = dict(restored or {})
        self.assets: dict[str, AssetState] = {}
        self.unserved: dict[tuple[str, str], str] = {}
        self.stats = WorkerStats()
        self.rejected = self.stats.rejected
        self.on_first_prediction = on_first_prediction
        self._store_down = False
        self._outages_seen = 0
        self._reported: dict[tuple[str, str], tuple[float, int]] = {}
        self._announced: set[str] = set()
        self._pending_faults: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._open_loops: dict[str, OpenLoop] = {}
        """Per asset, the open-loop rollouts in flight (the detector's multi-horizon evidence)."""
        self.pending_restored: dict[str, list[Pending]] = {}
        """Per asset, stored predictions whose errors were still due at the snapshot it resumes
        from (set by the service): resolved when their target observations arrive."""
        self.adaptation: Any = None
        """Online adaptation (:class:`twin.worker.adapt.Adaptation`), set by the service; None: off."""
        self.adapted: dict[str, ModelAdapter] = {}
        """Adapted descendants of the served models that stored snapshots name (set by the
        service): an asset whose snapshot names one resumes on it."""
        self._profiles: dict[str, DetectorProfile | None] = {}
        """Per model name, its detector profile under this worker's config (logged once)."""

    # --- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event, duration_s: float | None = None) -> WorkerStats:
        end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (end is None or time.monotonic() < end):
            self.watch_store()
            first = self.subscriber.recv(timeout_s=0.05)
            if first is not None:
                self.handle([first, *self.subscriber.drain(self.config.max_batch)])
            self.report_bus_rejections()
            if self.adaptation is not None:
                self.adaptation.poll(self)
        self.snapshot_all("shutdown")
        return self.stats

    def handle(self, messages: list[Any]) -> None:
        """Ingest a drained batch, then step the assets that reached a control step."""
        stepped: dict[str, AssetState] = {}
        for message in messages:
            kind = type(message)
            if kind is Observation:
                if message.stream == self.config.stream:
                    asset = self.ingest(message)
                    if asset is not None:
                        stepped[asset.asset] = asset
            elif kind is Event:
                self.on_event(message)
            elif kind is Action:
                asset = self.assets.get(message.asset)
                values = message.values
                if (
                    asset is not None
                    and values.shape == (asset.model.n_actions,)
                    and np.isfinite(values).all()
                ):
                    asset.bus_action = values.astype(np.float64)
                    self.stats.actions += 1
            elif kind is StreamSchema and message.stream == self.config.stream:
                asset = self.assets.get(message.asset)
                if asset is not None and asset.schema_id != message.schema_id:
                    self.detach(asset, f"schema changed to {message.schema_id}")
        if stepped:
            self.step(list(stepped.values()))

    # --- input ---------------------------------------------------------------------------------
    def report(self, asset: str, name: str, message: str, **params: Any) -> None:
        """Count a rejected input and publish one ``error`` Event per asset and reason every 10 s."""
        self.rejected[name] += 1
        key = (asset, name)
        now = time.monotonic()
        last, suppressed = self._reported.get(key, (-_REPORT_EVERY_S, 0))
        if now - last < _REPORT_EVERY_S:
            self._reported[key] = (last, suppressed + 1)
            return
        self._reported[key] = (now, 0)
        log.warning("%s: %s: %s (%d more like it since the last report)", asset, name, message, suppressed)
        params = {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool))}
        params["suppressed"] = suppressed
        self.emit(Event(asset, time.time_ns(), "error", name, "warning", message, params))

    def attach(self, obs: Observation) -> AssetState | None:
        """Match the observation's stream to a model (by schema); None when none serves it."""
        schema = self.subscriber.schemas.get((obs.asset, obs.stream))
        if schema is None or (obs.schema_id and schema.schema_id != obs.schema_id):
            self.report(obs.asset, "unknown_schema", f"no schema {obs.schema_id!r} for {obs.topic}")
            return None
        key = (obs.asset, schema.schema_id)
        if key in self.unserved:
            self.rejected["no_model"] += 1
            return None
        reasons = {}
        for model in self.models:
            why = model.matches(schema)
            if why is None:
                return self._start(obs.asset, schema, model)
            reasons[model.name] = why
        detail = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "no model loaded"
        self.unserved[key] = detail
        self.rejected["no_model"] += 1
        log.error("%s.%s: no model serves schema %s (%s)", obs.asset, obs.stream, schema.schema_id, detail)
        self.emit(
            Event(
                obs.asset,
                time.time_ns(),
                "error",
                "no_model",
                "warning",
                f"no model serves {obs.topic} (schema {schema.schema_id}): {detail}"[:2000],
                {"stream": obs.stream, "schema_id": schema.schema_id},
            )
        )
        return None

    def _start(self, name: str, schema: StreamSchema, model: ModelAdapter) -> AssetState:
        row = self.restored.pop(name, None)
        adapted = None if row is None else self.adapted.get(row.model)
        if adapted is not None and adapted.matches(schema) is None:
            model = adapted  # adaptation had switched this asset to a descendant: resume on it
        asset = AssetState(
            asset=name,
            stream=schema.stream,
            model=model,
            schema_id=schema.schema_id,
            detector=Detector(self.config.detector, model.sensors, self.profile(model), model.limits),
            window=np.zeros((model.history, len(model.sensors))),
        )
        asset.faults.extend(self._pending_faults.pop(name, []))
        if row is not None:
            if row.model == model.name and row.schema_id == schema.schema_id:
                self._restore(asset, row)
            else:
                log.warning("%s: stored state is for %s/%s, starting afresh", name, row.model, row.schema_id)
        self.assets[name] = asset
        log.info(
            "%s.%s served by %s%s", name, schema.stream, model.name, " (restored)" if asset.restored else ""
        )
        return asset

    def profile(self, model: ModelAdapter) -> DetectorProfile | None:
        """``model``'s detector profile under this worker's detector config; says once per model
        whether it applies (a model without one alarms far more often on nominal data)."""
        if model.name not in self._profiles:
            profile, line = model.profile_for(self.config.detector)
            (log.info if profile is not None else log.warning)("%s", line)
            self._profiles[model.name] = profile
        return self._profiles[model.name]

    def _restore(self, asset: AssetState, row: Any) -> None:
        asset.window = np.frombuffer(row.window, dtype="<f8").reshape(asset.window.shape).copy()
        asset.filled = len(asset.window)
        asset.z = np.frombuffer(row.z, dtype="<f4").copy()
        action = np.frombuffer(row.action, dtype="<f8").copy()
        asset.action = action if len(action) else None
        asset.step = int(row.step)
        asset.last_t_ns = asset.last_step_t_ns = int(row.t_ns)
        asset.detector = Detector.from_json(
            self.config.detector,
            asset.model.sensors,
            row.detector,
            self.profile(asset.model),
            asset.model.limits,
        )
        asset.restored = True
        pending = self.pending_restored.pop(asset.asset, [])
        asset.pending = deque(sorted(pending, key=_target))
        self.stats.restored += 1
        self.emit(
            Event(
                asset.asset,
                time.time_ns(),
                "marker",
                "state_restored",
                "info",
                f"{asset.asset}: resumed from the snapshot at t_ns={row.t_ns}",
                {
                    "snapshot_t_ns": int(row.t_ns),
                    "step": int(row.step),
                    "z_digest": hashlib.sha1(asset.z.tobytes()).hexdigest()[:16],
                    "window_digest": hashlib.sha1(asset.window.tobytes()).hexdigest()[:16],
                },
            )
        )

    def detach(self, asset: AssetState, why: str) -> None:
        """Forget an asset's state (schema change): the next frame re-matches a model."""
        self.report(asset.asset, "schema_change", f"{asset.asset}.{asset.stream}: {why}; state reset")
        self.snapshot(asset, "detached")
        del self.assets[asset.asset]

    def ingest(self, obs: Observation) -> AssetState | None:
        """Validate one observation; return the asset if it completed a control step."""
        self.stats.observations += 1
        asset = self.assets.get(obs.asset)
        if asset is not None and obs.schema_id and obs.schema_id != asset.schema_id:
            self.detach(asset, f"frames now cite schema {obs.schema_id}")
            asset = None
        if asset is None:
            asset = self.attach(obs)
            if asset is None:
                return None
        values = obs.values
        if values.shape != asset.window.shape[1:]:
            self.report(
                obs.asset, "bad_shape", f"values {values.shape}, model wants {asset.window.shape[1:]}"
            )
            return None
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            bad = [s for s, v in zip(asset.model.sensors, values, strict=True) if not np.isfinite(v)]
            self.report(
                obs.asset, "non_finite", f"non-finite value in {bad}: frame skipped", sensors=",".join(bad)
            )
            return None
        if obs.t_ns <= asset.last_t_ns:
            self.report(
                obs.asset,
                "time_backwards",
                f"t_ns {obs.t_ns} <= last {asset.last_t_ns}: frame skipped",
                t_ns=obs.t_ns,
            )
            return None
        if (
            self.config.max_future_s is not None
            and obs.t_ns > time.time_ns() + self.config.max_future_s * 1e9
        ):
            ahead = (obs.t_ns - time.time_ns()) / 1e9
            self.report(obs.asset, "time_future", f"t_ns {ahead:.1f} s ahead of the clock: frame skipped")
            return None
        schema = self.subscriber.schemas.get((obs.asset, obs.stream))
        if schema is not None:
            outside = [
                s.name for s, v in zip(schema.sensors, values, strict=True) if not s.low <= v <= s.high
            ]
            if outside:
                self.report(obs.asset, "out_of_range", f"{outside} outside the schema's range: frame skipped")
                return None
        asset.last_t_ns = obs.t_ns
        period = 1e9 / asset.model.control_hz
        if asset.last_step_t_ns >= 0 and obs.t_ns - asset.last_step_t_ns > self.config.max_gap_s * 1e9:
            self.resync(asset, obs.t_ns)
        if asset.last_step_t_ns >= 0 and obs.t_ns - asset.last_step_t_ns < 0.75 * period:
            return None
        asset.push(values, obs.t_ns, period)
        if self.adaptation is not None:
            self.adaptation.frame(asset, obs.t_ns)
        self.resolve(asset, values, obs.t_ns, period)
        return asset if asset.ready else None

    def resync(self, asset: AssetState, t_ns: int) -> None:
        """After a gap in the stream, refill the window before stepping again: a window that
        spans the gap is not a history the model knows, and the predictions made before it can
        no longer be checked (those whose target time is still ahead are). Calibration, CUSUM
        and EWMA are kept."""
        gap_s = (t_ns - asset.last_step_t_ns) / 1e9
        log.info("%s: %.2f s gap in the stream: refilling the window before predicting", asset.asset, gap_s)
        self.stats.resyncs += 1
        period = 1e9 / asset.model.control_hz
        passed = [p for p in asset.pending if t_ns - p.target_t_ns > period]
        if passed:  # their targets went by in the gap; later ones are still checked
            self.rejected["target_missed"] += len(passed)
            asset.pending = deque(p for p in asset.pending if t_ns - p.target_t_ns <= period)
        asset.filled = 0
        asset.predicted_z = asset.predicted_values = asset.predicted_scale = None

    def report_bus_rejections(self) -> None:
        """Turn frames the subscriber refused (NaN, wrong shape, no schema) into the worker's own
        per-asset reasons: they never reach :meth:`ingest`."""
        rejections = getattr(self.subscriber, "rejections", None)
        while rejections:
            reason, detail, topic = rejections.popleft()
            parts = topic.split(".")
            if len(parts) == 3 and parts[0] == "obs" and parts[2] == self.config.stream:
                self.report(parts[1], BUS_REASONS.get(reason, reason), f"{topic}: {detail}")
            else:
                self.rejected[f"bus_{reason}"] += 1

    def watch_store(self) -> None:
        """Publish the store's alarm: one event when the database becomes unreachable and one
        when it is reachable again (both are stored too, once it is back)."""
        writer = self.writer
        if writer is None:
            return
        stats = writer.stats
        went_down = stats.outages > self._outages_seen
        if not went_down and not (self._store_down and not writer.alarm):
            return
        source = self.publisher.source
        params: dict[str, Any] = {"queued": writer.pending, "limit": writer.config.queue_size}
        params.update({f"shed_{table}": n for table, n in stats.shed.items()})
        if went_down:
            self._outages_seen = stats.outages
            self._store_down = True
            message = f"{source}: database unreachable; buffering writes (bounded) and retrying"
            self.emit(Event(source, time.time_ns(), "error", "db_unavailable", "critical", message, params))
        if self._store_down and not writer.alarm:
            self._store_down = False
            params["outage_s"] = round(stats.last_outage_s, 3)
            message = f"{source}: database reachable again; writing the buffered rows"
            self.emit(Event(source, time.time_ns(), "marker", "db_available", "info", message, params))

    def on_event(self, event: Event) -> None:
        if event.source == self.publisher.source:
            return
        if event.category == "fault" and not event.name.endswith("_cleared"):
            asset = self.assets.get(event.asset)
            target = asset.faults if asset is not None else self._pending_faults[event.asset]
            target.append((event.t_ns, event.name))
        elif event.category == "note":
            asset = self.assets.get(event.asset)
            if asset is not None and asset.z is not None:
                context = {"note": event.message, "name": event.name, "values": asset.window[-1].tolist()}
                self.store(memory_op(asset.asset, event.t_ns, "note", asset.model.name, asset.z, context))

    # --- stepping ------------------------------------------------------------------------------
    def step(self, assets: list[AssetState]) -> None:
        groups: dict[int, list[AssetState]] = defaultdict(list)
        for asset in assets:
            groups[id(asset.model)].append(asset)
        for group in groups.values():
            model = group[0].model
            # the full rollout only when a prediction is due (publish_hz); otherwise the one step
            # that surprise needs: a 30-step rollout costs ~4x one step, 2 of 3 steps at 30 Hz
            due = any(a.last_step_t_ns >= a.next_publish_t_ns for a in group)
            steps = min(model.horizon, max(self.config.horizons_steps)) if due else 1
            nan_z = np.full(model.latent_dim, np.nan, dtype=np.float32)
            nan_a = np.full(model.n_actions, np.nan)
            windows = np.stack([a.window for a in group])
            z_prev = np.stack([nan_z if a.z is None else a.z for a in group])
            held = np.stack([nan_a if a.bus_action is None else a.bus_action for a in group])
            forecast = model.forecast(windows, z_prev, held, steps)
            residuals = np.stack(
                [
                    model.normalised_error(a.predicted_values, a.window[-1])
                    if a.predicted_values is not None
                    else np.full(len(model.sensors), np.nan)
                    for a in group
                ]
            )
            horizons = self.config.detector.horizons
            scaled = self.config.detector.scaled
            open_loop = None
            if horizons:  # the latent k steps back rolled out through the actions applied since
                loops = [self._open_loops.setdefault(a.asset, OpenLoop(horizons)) for a in group]
                for i, (asset, loop) in enumerate(zip(group, loops, strict=True)):
                    contiguous = loop.step == asset.step - 1 and loop.model is model
                    if asset.z is None or asset.predicted_z is None or not contiguous:
                        loop.clear()  # first step, a gap, coalesced frames, another model: start again
                    else:  # z[t-1] and the action after it (on the bus, else inferred z[t-1] -> z[t])
                        loop.push(asset.z, forecast.actions[i])
                    loop.step, loop.model = asset.step, model
                open_loop = OpenLoop.residuals(model, loops, windows[:, -1], horizons, scaled)
            self.stats.batches += 1
            for i, asset in enumerate(group):
                self.stats.steps += 1
                verdict = None
                if asset.predicted_z is not None and np.isfinite(residuals[i]).all():
                    observed = asset.window[-1]
                    residual, latent = step_evidence(
                        model.normalised_error,
                        asset.predicted_values,
                        observed,
                        forecast.z[i],
                        asset.predicted_z,
                        asset.predicted_scale if scaled else None,
                    )
                    surprise = Surprise(
                        residual,
                        float(latent),
                        observed.copy(),
                        asset.step,
                        model.periods,
                        None if open_loop is None else open_loop[i],
                    )
                    try:
                        verdict = asset.detector.update(surprise)
                    except Exception as exc:  # one asset's detector must not stop the others
                        if (asset.asset, "detector_failed") not in self._reported:  # traceback once
                            log.exception("%s: the detector failed at step %d", asset.asset, asset.step)
                        message = f"{asset.asset}: the anomaly detector failed: {exc!r}"
                        self.report(asset.asset, "detector_failed", message)
                asset.z = forecast.z[i]
                asset.action = forecast.actions[i]
                asset.predicted_z = forecast.latents[i, 0]
                asset.predicted_values = forecast.next_values[i]
                asset.predicted_scale = forecast.scale[i, 0]
                if verdict is not None:
                    asset.last_surprise = verdict.score
                    self.detect(asset, verdict)
                self.outputs(asset, forecast, i)
                if self.adaptation is not None:
                    self.adaptation.observe(asset)

    def detect(self, asset: AssetState, verdict: Verdict) -> None:
        t = asset.last_step_t_ns
        if verdict.reason in (AT_LIMIT, AFTER_LIMIT, APPROACHING_LIMIT):  # the detector pauses
            if verdict.reason == AT_LIMIT and not asset.at_limit:
                sensors = ",".join(verdict.contributions)
                self.emit(
                    Event(
                        asset.asset,
                        t,
                        "marker",
                        "range_limit",
                        "info",
                        f"{asset.asset}: {sensors} at the end of its range: anomaly detection paused "
                        f"until {self.config.detector.limit_holdoff_steps} steps after it leaves",
                        {
                            "sensors": sensors,
                            **{
                                f"value_{name}": float(value)
                                for name, value in zip(asset.model.sensors, asset.window[-1], strict=True)
                                if name in verdict.contributions
                            },
                        },
                    )
                )
            asset.at_limit = verdict.reason == AT_LIMIT
            return
        asset.at_limit = False
        if verdict.score < 0.5:
            asset.calm_since_t_ns = t
        current = asset.anomaly
        if current is None:
            if verdict.alarm:
                since = asset.calm_since_t_ns or t
                asset.anomaly = Anomaly(since, t, verdict.score)
                self.raise_anomaly(asset, verdict, since)
            return
        current.peak = max(current.peak, verdict.score)
        current.quiet = 0 if verdict.alarm or verdict.score > 0.8 else current.quiet + 1
        if current.quiet >= self.config.detector.clear_steps:
            asset.anomaly = None
            asset.detector.reset_statistics()
            self.emit(
                Event(
                    asset.asset,
                    t,
                    "anomaly",
                    "anomaly_cleared",
                    "info",
                    f"{asset.asset}: back to nominal (anomaly since t_ns={current.since_t_ns})",
                    {"since_t_ns": current.since_t_ns, "peak": round(current.peak, 3)},
                )
            )

    def raise_anomaly(self, asset: AssetState, verdict: Verdict, since: int) -> None:
        t = asset.last_step_t_ns
        ranked = sorted(verdict.contributions.items(), key=lambda kv: -kv[1])
        params: dict[str, Any] = {
            "since_t_ns": since,
            "detected_t_ns": t,
            "score": round(verdict.score, 3),
            "statistic": verdict.reason,
            "sensors": ",".join(name for name, share in ranked[:3] if share > 0.05) or ranked[0][0],
            "model": asset.model.name,
            "evidence": f"predictions:{asset.asset}.{asset.stream}:{since}..{t}",
        }
        params.update({f"share_{name}": share for name, share in ranked[:5]})
        faults = [f for f in asset.faults if f[0] <= t]
        self.stats.anomalies += 1
        if faults:
            fault_t, fault_name = faults[-1]
            delay = (t - fault_t) / 1e9
            params.update(fault=fault_name, fault_t_ns=fault_t, delay_s=round(delay, 3))
            self.stats.detection_delays_s.append(delay)
        else:
            params["false_alarm"] = True
            self.stats.false_alarms += 1
        message = (
            f"{asset.asset}: anomaly ({verdict.reason}, score {verdict.score:.2f}) in {params['sensors']}"
        )
        log.warning("%s", message)
        self.emit(Event(asset.asset, t, "anomaly", "anomaly", "warning", message, params))
        if asset.z is not None:
            context = {"values": asset.window[-1].tolist(), "score": verdict.score, **params}
            self.store(memory_op(asset.asset, t, "anomaly", asset.model.name, asset.z, context))

    # --- outputs ------------------------------------------------------------------------------
    def outputs(self, asset: AssetState, forecast: Any, i: int) -> None:
        t = asset.last_step_t_ns
        model = asset.model
        if t >= asset.next_publish_t_ns:
            asset.next_publish_t_ns = t + int(1e9 / self.config.publish_hz * 0.999)
            self.publish_prediction(asset, forecast, i)
        if t >= asset.next_snapshot_t_ns:
            asset.next_snapshot_t_ns = t + int(self.config.snapshot_every_s * 1e9)
            self.snapshot(asset, "periodic")
        if t >= asset.next_keyframe_t_ns and asset.z is not None:
            asset.next_keyframe_t_ns = t + int(self.config.keyframe_every_s * 1e9)
            context = {"values": asset.window[-1].tolist(), "surprise": asset.last_surprise}
            self.store(memory_op(asset.asset, t, "keyframe", model.name, asset.z, context))

    def publish_prediction(self, asset: AssetState, forecast: Any, i: int) -> None:
        model = asset.model
        t = asset.last_step_t_ns
        rows = [h - 1 for h in self.config.horizons_steps if h <= forecast.values.shape[1]]
        horizons = np.array([(r + 1) / model.control_hz for r in rows])
        mean, low, high = forecast.values[i, rows], forecast.low[i, rows], forecast.high[i, rows]
        self.publisher.publish(
            Prediction(
                asset.asset,
                asset.stream,
                time.time_ns(),
                t,
                horizons,
                mean,
                low,
                high,
                model.level,
                model.name,
            )
        )
        self.publish_surprise(asset, t)
        if self.stats.predictions == 0 and self.on_first_prediction is not None:
            self.on_first_prediction(asset.asset)
        self.stats.predictions += 1
        row = {
            "asset": asset.asset,
            "stream": asset.stream,
            "origin_t_ns": t,
            "model": model.name,
            "source": self.publisher.source,
            "horizons_s": horizons.tolist(),
            "level": model.level,
            "mean": f64(mean),
            "lower": f64(low),
            "upper": f64(high),
            "surprise": asset.last_surprise if asset.detector.armed else None,
        }
        self.store(RowOp("predictions", row))
        for k, h in enumerate(horizons):
            target = t + round(float(h) * 1e9)
            asset.pending.append(Pending(t, float(h), target, mean[k], low[k], high[k], model.name))
        if len(asset.pending) > len(horizons):  # resolve() takes them in target order
            asset.pending = deque(sorted(asset.pending, key=_target))

    def publish_surprise(self, asset: AssetState, t: int) -> None:
        if asset.asset not in self._announced:
            self._announced.add(asset.asset)
            spec = (
                SensorSpec("score", "1", 0.0),
                SensorSpec("cusum", "1", 0.0),
                SensorSpec("anomaly", "1", 0.0, 1.0),
            )
            self.publisher.announce(
                StreamSchema(
                    asset.asset, SURPRISE_STREAM, "vector", "<f8", (3,), self.config.publish_hz, spec
                )
            )
        d = asset.detector
        values = np.array(
            [asset.last_surprise, d.cusum / d.cusum_h if d.armed else 0.0, float(asset.anomaly is not None)]
        )
        self.publisher.publish(Observation(asset.asset, SURPRISE_STREAM, t, values))

    def resolve(self, asset: AssetState, values: np.ndarray, t_ns: int, period: float) -> None:
        """Store the error of every pending prediction whose target time this step reaches."""
        model = asset.model
        while asset.pending and asset.pending[0].target_t_ns <= t_ns + period / 2:
            p = asset.pending.popleft()
            if t_ns - p.target_t_ns > period:
                self.rejected["target_missed"] += 1
                continue
            normalised = model.normalised_error(p.predicted, values)
            error = normalised * model.std
            row = {
                "asset": asset.asset,
                "stream": asset.stream,
                "model": p.model,
                "origin_t_ns": p.origin_t_ns,
                "horizon_s": p.horizon_s,
                "target_t_ns": p.target_t_ns,
                "observed_t_ns": t_ns,
                "predicted": f64(p.predicted),
                "observed": f64(values),
                "error": f64(error),
                "nrmse": float(np.sqrt(np.mean(normalised**2))),
                "in_band": bool(np.all((values >= p.low) & (values <= p.high))),
            }
            self.store(RowOp("prediction_errors", row))
            self.stats.errors_stored += 1

    def snapshot(self, asset: AssetState, reason: str) -> None:
        if asset.z is None:
            return
        row = {
            "asset": asset.asset,
            "stream": asset.stream,
            "t_ns": asset.last_step_t_ns,
            "source": self.publisher.source,
            "model": asset.model.name,
            "schema_id": asset.schema_id,
            "step": asset.step,
            "z": f32(asset.z),
            "window": f64(asset.window),
            "action": f64(asset.action if asset.action is not None else np.zeros(0)),
            "detector": asset.detector.to_json(),
            "reason": reason,
        }
        self.store(RowOp("latent_states", row))

    def snapshot_all(self, reason: str) -> None:
        for asset in self.assets.values():
            self.snapshot(asset, reason)

    def emit(self, event: Event) -> None:
        """Publish an event and store it (with the seq it travelled with)."""
        self.publisher.publish(event)
        seq = self.publisher.last_seq.get(event.topic, 0)
        self.store(event_op(event, seq, self.publisher.source))

    def store(self, op: RowOp) -> None:
        if self.writer is not None:
            self.writer.submit(op)
