"""Sensor consistency: relations between readings learned from calibration, and the detector's
``consistency`` statistic catching a drifting sensor the world model's residuals cannot see."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twin.worker.config import DetectorConfig
from twin.worker.consistency import MIN_ROWS, Consistency
from twin.worker.detector import Detector
from twin.worker.surprise import Surprise

DT = 1 / 30
SENSORS = ("position", "velocity", "angle", "rate")
PERIODIC = np.array([False, False, True, False])


def _readings(seed: int, n: int) -> np.ndarray:
    """(n, 4) readings of a cart and a spinning wheel: the position integrates the velocity (a
    damped random acceleration), the wrapped angle integrates its rate; small sensor noise."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 4))
    v, p, w, a = 0.0, 0.0, 2.0, 0.0
    for t in range(n):
        dv = (-0.5 * v + 3.0 * rng.standard_normal()) * DT
        dw = (-0.2 * (w - 2.0) + 2.0 * rng.standard_normal()) * DT
        p += (v + dv / 2) * DT
        a += (w + dw / 2) * DT
        v += dv
        w += dw
        out[t] = p, v, (a + np.pi) % (2 * np.pi) - np.pi, w
    return out + rng.standard_normal(out.shape) * 1e-4


def test_relations_are_learned_from_consecutive_readings():
    x = _readings(0, 900)
    relations = Consistency.fit(x[:-1], x[1:], PERIODIC)
    assert relations is not None
    # the position's and the angle's changes are explained by their rates; the velocities'
    # changes are random accelerations no other reading explains: no relation to check there
    assert relations.checked.tolist() == [True, False, True, False]
    fresh = _readings(1, 600)  # another run: the relations hold, whatever the levels
    residual = relations.residuals(fresh[:-1], fresh[1:])
    change = np.diff(fresh, axis=0)
    change[:, 2] = (change[:, 2] + np.pi) % (2 * np.pi) - np.pi
    assert np.std(residual[:, 0]) < 0.05 * np.std(change[:, 0])
    assert np.std(residual[:, 2]) < 0.05 * np.std(change[:, 2])
    assert (residual[:, [1, 3]] == 0).all()
    # a drifting position reading: every change carries the drift's rate
    drifted = fresh.copy()
    drifted[:, 0] += 0.05 * DT * np.arange(len(fresh))
    shift = relations.residuals(drifted[:-1], drifted[1:])[:, 0] - residual[:, 0]
    np.testing.assert_allclose(shift, 0.05 * DT, rtol=0.05)
    again = Consistency.from_json(json.loads(json.dumps(relations.to_json())))
    np.testing.assert_array_equal(again.residuals(fresh[:-1], fresh[1:]), residual)


def test_spurious_relations_to_wandering_levels_are_dropped():
    """Independent random walks: no reading explains another's change; a weight on a level
    fitted by chance would become a bias once the walk leaves the calibration's range."""
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.standard_normal((900, 3)), axis=0)
    relations = Consistency.fit(walk[:-1], walk[1:], np.zeros(3, bool))
    assert relations is not None
    np.testing.assert_array_equal(relations.weights[:, :-1], 0.0)  # the intercept alone


def test_too_few_pairs_or_a_still_sensor():
    x = _readings(0, MIN_ROWS)
    assert Consistency.fit(x[:-1], x[1:], PERIODIC) is None
    x = _readings(0, 300)
    x[:, 2] = 0.5  # a reading that never changed has no relation to check
    relations = Consistency.fit(x[:-1], x[1:], PERIODIC)
    assert relations is not None and relations.checked.tolist() == [True, False, False, False]
    assert (relations.residuals(x[:-1], x[1:])[:, 2] == 0).all()
    with pytest.raises(ValueError, match="do not fit"):
        Consistency(relations.weights[:, :-1], PERIODIC, relations.checked)


def _detector_run(readings: np.ndarray, config: DetectorConfig, periods: np.ndarray) -> list:
    """The readings through a detector whose model residuals are plain noise (a model that is
    as good on every step): only the readings' relations can tell a drift."""
    rng = np.random.default_rng(11)
    detector = Detector(config, SENSORS)
    out = []
    for t, reading in enumerate(readings):
        residual = rng.standard_normal(4) * 0.05
        out.append(detector.update(Surprise(residual, 0.2, reading, step=t, periods=periods)))
    return out, detector


def test_the_detector_catches_a_drifting_sensor_and_names_it():
    config = DetectorConfig(calibration_steps=600)
    periods = np.where(PERIODIC, 2 * np.pi / 1.8, np.inf)  # as the worker passes them
    start = config.warmup_steps + config.calibration_steps
    readings = _readings(5, start + 900)
    nominal, detector = _detector_run(readings, config, periods)
    assert detector.relations is not None
    assert not any(v.alarm for v in nominal[start:])
    drift_at = start + 300
    drifted = readings.copy()
    drifted[drift_at:, 0] += 0.05 * DT * np.arange(len(readings) - drift_at)  # 5 cm/s
    verdicts, _ = _detector_run(drifted, config, periods)
    first = next(i for i, v in enumerate(verdicts) if v.alarm)
    assert drift_at < first < drift_at + 90  # 1.7 mm a step against the relation's 0.1 mm of noise
    assert verdicts[first].reason == "consistency"
    later = verdicts[first + 30]  # as the drift grows it is named (the first alarm shares the
    # step's model residuals, plain noise here)
    assert max(later.contributions, key=later.contributions.get) == "position"
    without = DetectorConfig(
        calibration_steps=600, statistics=tuple(k for k in config.statistics if k != "consistency")
    )
    blind, _ = _detector_run(drifted, without, periods)
    assert not any(v.alarm for v in blind)  # the model's residuals alone do not see it


def test_the_relations_survive_a_restart():
    config = DetectorConfig(calibration_steps=300)
    periods = np.where(PERIODIC, 2 * np.pi / 1.8, np.inf)
    readings = _readings(6, 500)
    _, detector = _detector_run(readings[:400], config, periods)
    restored = Detector.from_json(config, SENSORS, json.loads(json.dumps(detector.to_json())))
    assert restored.relations is not None
    np.testing.assert_array_equal(restored.k_ewma, detector.k_ewma)
    np.testing.assert_array_equal(restored.relations.weights, detector.relations.weights)
    for t in range(400, 500):
        surprise = Surprise(np.zeros(4), 0.2, readings[t], step=t, periods=periods)
        assert detector.update(surprise).ratios == restored.update(surprise).ratios


def test_a_lost_frame_is_a_gap_the_relations_do_not_judge():
    """A frame lost or refused between two readings: the asset's step count advances by the
    periods that passed, and the detector skips that step instead of judging a two-period
    change against one-period relations (on the cart-pole, 80 mm against 0.55 mm of noise)."""
    from twin.worker.assets import AssetState

    period = 1e9 / 30
    asset = AssetState("a", "state", None, "schema", None, np.zeros((2, 4)))  # type: ignore[arg-type]
    for k in (0, 1, 2, 4, 5):  # frame 3 never came
        asset.push(np.full(4, float(k)), round(k * period), period)
    assert asset.step == 6 and asset.window[:, 0].tolist() == [4.0, 5.0]
    asset.push(np.zeros(4), round(5.6 * period), period)  # jitter: still one period
    assert asset.step == 7

    config = DetectorConfig(calibration_steps=300)
    periods = np.where(PERIODIC, 2 * np.pi / 1.8, np.inf)
    readings = _readings(8, 400)
    detector = Detector(config, SENSORS)
    for t in range(350):
        detector.update(Surprise(np.zeros(4), 0.2, readings[t], step=t, periods=periods))
    assert detector.relations is not None
    before = detector.k_ewma.copy()
    skipped = detector.update(Surprise(np.zeros(4), 0.2, readings[351], step=351, periods=periods))
    assert skipped.reason == "skipped steps" and not skipped.alarm
    np.testing.assert_array_equal(detector.k_ewma, before)
    after = [
        detector.update(Surprise(np.zeros(4), 0.2, readings[t], step=t, periods=periods))
        for t in range(352, 400)
    ]
    assert not any(v.alarm for v in after)


def test_near_constant_readings_do_not_break_the_fit():
    """A reading that barely moves about a level far from zero (an angle's cosine near 1, a
    pressure of 1e5 Pa twitching by a micropascal) is, once scaled, nearly the intercept
    column: the fit must stay finite and keep the relations the other sensors hold."""
    x = _readings(3, 900)
    rng = np.random.default_rng(3)
    still = np.column_stack([1e-6 * rng.standard_normal(900), 1.0e5 + 1e-6 * rng.standard_normal(900)])
    readings = np.column_stack([x, still])
    periodic = np.array([*PERIODIC, True, False])
    relations = Consistency.fit(readings[:-1], readings[1:], periodic)
    assert relations is not None
    assert np.isfinite(relations.weights).all()
    assert relations.checked[0] and relations.checked[2]  # position on velocity, angle on rate
    residuals = relations.residuals(readings[:-1], readings[1:])
    assert np.isfinite(residuals).all()
    assert np.abs(residuals[:, 0]).max() < 1e-3
