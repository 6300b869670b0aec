"""The detector's reference profile: fitting, applying, storing with the model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin.worker.config import DetectorConfig
from twin.worker.detector import STATISTICS, Detector
from twin.worker.profile import PROFILE_VERSION, DetectorProfile, effective, fit_profile
from twin.worker.replay import Evidence, replay_detector, replay_ratios
from twin.worker.surprise import Surprise

SENSORS = ("a", "b", "c")
CONFIG = DetectorConfig(calibration_steps=300, statistics=("instant", "peak", "jump", "cusum", "ewma"))


def _nominal(seed: int, n: int) -> Evidence:
    """One nominal run whose residual spread wanders over minutes (regimes the first 300 steps
    of calibration do not show), as a controlled machine's model error does."""
    rng = np.random.default_rng(seed)
    spread = np.ones(n)
    for start in rng.integers(400, n - 200, size=n // 800):
        spread[start : start + int(rng.integers(60, 200))] = rng.uniform(1.6, 2.4)
    residual = np.zeros((n, len(SENSORS)))
    noise = rng.standard_normal((n, len(SENSORS))) * np.sqrt(1 - 0.5**2)
    for t in range(1, n):
        residual[t] = 0.5 * residual[t - 1] + noise[t]
    residual *= 0.05 * spread[:, None]
    latent = np.abs(rng.standard_normal(n)) * 0.1 * spread + 0.2
    observed = np.cumsum(rng.standard_normal((n, len(SENSORS))), axis=0)
    return Evidence(residual[None], latent[None], observed[None])


def _runs(seeds: range, n: int) -> Evidence:
    runs = [_nominal(s, n) for s in seeds]
    return Evidence(
        *(np.concatenate([getattr(r, f) for r in runs]) for f in ("residual", "latent", "observed"))
    )


def test_a_profile_divides_each_statistic_by_its_scale():
    rng = np.random.default_rng(0)
    profile = DetectorProfile(
        scale={"instant": 2.0, "jump": 4.0},
        exponent={"jump": 0.5},
        per_hour=0.5,
        hours=1.0,
        runs=4,
        block_steps=900,
        config={},
    )
    plain, scaled = Detector(CONFIG, SENSORS), Detector(CONFIG, SENSORS, profile)
    for t in range(400):
        surprise = Surprise(rng.standard_normal(3) * 0.05, 0.2 + 0.01 * rng.random(), np.full(3, float(t)))
        a, b = plain.update(surprise), scaled.update(surprise)
    assert a.ratios["instant"] == pytest.approx(2.0 * b.ratios["instant"])
    assert a.ratios["jump"] == pytest.approx(4.0 * b.ratios["jump"])
    assert a.ratios["peak"] == pytest.approx(b.ratios["peak"])
    # the score raises each scaled ratio to its exponent (alarm level 1 stays 1)
    levels = {k: v ** profile.exponent.get(k, 1.0) for k, v in b.ratios.items()}
    assert b.score == pytest.approx(max(levels.values()))
    assert b.reason == max(levels, key=levels.__getitem__)
    restored = Detector.from_json(CONFIG, SENSORS, scaled.to_json(), profile)
    assert restored.alarm_scale == {"instant": 2.0, "jump": 4.0}


def test_effective_ratio_follows_the_two_step_rule():
    ratios = np.zeros((1, 4, len(STATISTICS)))
    i, c = STATISTICS.index("instant"), STATISTICS.index("cusum")
    ratios[0, :, i] = [0.5, 2.0, 0.5, 6.0]
    ratios[0, :, c] = [0.1, 0.2, 1.5, 0.3]
    e = effective(ratios)
    # one step at 2 is not an alarm (needs two in a row, or one above 3); 6 is (6 / 3 = 2)
    assert e[0, :, i].tolist() == pytest.approx([0.5 / 3, 2.0 / 3, 0.5, 2.0])
    assert e[0, :, c].tolist() == [0.1, 0.2, 1.5, 0.3]


def test_a_fitted_profile_cuts_nominal_false_alarms_and_still_catches_a_fault():
    n = 3000
    reference = replay_ratios(_runs(range(100, 112), n), CONFIG, SENSORS)
    profile = fit_profile(reference, CONFIG, 30.0, per_hour=0.5, block_steps=300)
    assert set(profile.scale) == set(CONFIG.statistics)
    assert all(profile.scale[k] >= profile.peaks[k] for k in profile.scale)
    assert set(profile.exponent) == set(profile.scale)
    unseen = _runs(range(200, 212), n)
    before = replay_detector(unseen, CONFIG, SENSORS).onset.sum()
    after = replay_detector(unseen, CONFIG, SENSORS, profile=profile).onset.sum()
    assert before >= 10, before  # per-asset calibration alone: its 300 steps miss the wider regimes
    assert after <= before / 5, (before, after)
    faulty = _runs(range(300, 304), n)
    faulty.residual[:, 2000:, 1] += 0.6  # a bias far outside every nominal regime
    caught = replay_detector(faulty, CONFIG, SENSORS, profile=profile).onset[:, 2000:2010]
    assert caught.any(axis=1).all()


def test_profile_round_trip_validation_and_config_mismatch():
    profile = DetectorProfile(
        scale={"instant": 1.5, "horizon": 2.0},
        per_hour=0.5,
        hours=1.0,
        runs=4,
        block_steps=900,
        config={},
    )
    assert DetectorProfile.from_dict(profile.to_dict()) == profile
    fitted = fit_profile(replay_ratios(_runs(range(8), 1000), CONFIG, SENSORS), CONFIG, 30.0, block_steps=300)
    assert fitted.mismatch(CONFIG) is None
    # which statistics alarm and when an anomaly ends leave the ratios as they are
    assert fitted.mismatch(dataclasses.replace(CONFIG, clear_steps=5)) is None
    assert fitted.mismatch(dataclasses.replace(CONFIG, statistics=("instant", "peak"))) is None
    assert "margin" in (fitted.mismatch(DetectorConfig(calibration_steps=300, margin=2.0)) or "")
    # a statistic the profile has no scale for (it alarms at per-asset levels): not this profile
    assert "no alarm scale for stuck" in (
        fitted.mismatch(dataclasses.replace(CONFIG, statistics=(*CONFIG.statistics, "stuck"))) or ""
    )
    # residuals in other units: another evidence altogether (and a profile fitted before the field)
    other = DetectorConfig(calibration_steps=300, residual_units="training_std")
    assert "residual_units" in (fitted.mismatch(other) or "")
    older = dataclasses.replace(
        fitted, config={k: v for k, v in fitted.config.items() if k != "residual_units"}
    )
    assert "residual_units" in (older.mismatch(CONFIG) or "")
    # fitted on evidence an earlier detector computed (a statistic defined otherwise): not used
    stale = dataclasses.replace(fitted, version=PROFILE_VERSION - 1)
    assert f"profile version {PROFILE_VERSION - 1}" in (stale.mismatch(CONFIG) or "")
    with pytest.raises(ValueError, match="unknown statistics"):
        DetectorProfile(scale={"nope": 1.0}, per_hour=0.5, hours=1.0, runs=1, block_steps=9, config={})
    with pytest.raises(ValueError, match="finite and > 0"):
        DetectorProfile(scale={"peak": -1.0}, per_hour=0.5, hours=1.0, runs=1, block_steps=9, config={})
    with pytest.raises(ValueError, match="need >= 8"):
        fit_profile(replay_ratios(_runs(range(1), 700), CONFIG, SENSORS), CONFIG, 30.0, block_steps=300)
