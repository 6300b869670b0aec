"""The detector on synthetic evidence: calibrated false alarms, a step, a drift, a stuck sensor,
a start-up transient left out of calibration, and its state surviving JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from twin.worker.config import DetectorConfig
from twin.worker.detector import Detector, steady_rows, tail_threshold
from twin.worker.surprise import Surprise

SENSORS = ("a", "b", "c")
STATS_NO_HORIZON = ("instant", "peak", "jump", "cusum", "ewma", "stuck")
UNRELATED = tuple(k for k in DetectorConfig().statistics if k != "consistency")
"""The synthetic readings here are independent random walks, each test's its own: there are no
relations between sensors to check (``consistency`` has tests of its own, with related readings)."""


def _ar1(rng: np.random.Generator, n: int, rho: float = 0.5) -> np.ndarray:
    """Autocorrelated residuals (n, S) with unit marginal std, like a model's one-step errors."""
    out = np.zeros((n, len(SENSORS)))
    noise = rng.standard_normal((n, len(SENSORS))) * np.sqrt(1 - rho**2)
    for t in range(1, n):
        out[t] = rho * out[t - 1] + noise[t]
    return out * 0.05


def _feed(detector: Detector, residual: np.ndarray, latent: np.ndarray, observed: np.ndarray) -> list:
    return [
        detector.update(Surprise(residual[t], float(latent[t]), observed[t])) for t in range(len(residual))
    ]


def _episode(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    residual = _ar1(rng, n)
    latent = np.abs(rng.standard_normal(n)) * 0.1 + 0.2
    observed = np.cumsum(rng.standard_normal((n, len(SENSORS))), axis=0)
    return residual, latent, observed


def _calibrated(seed: int, config: DetectorConfig | None = None, n_after: int = 0):
    config = config or DetectorConfig(calibration_steps=300, statistics=UNRELATED)
    detector = Detector(config, SENSORS)
    n = config.warmup_steps + config.calibration_steps + n_after
    residual, latent, observed = _episode(seed, n)
    verdicts = _feed(detector, residual, latent, observed)
    assert detector.armed
    return detector, verdicts[config.warmup_steps + config.calibration_steps :]


def test_nominal_evidence_rarely_alarms():
    alarms, steps = 0, 0
    for seed in range(6):
        _, verdicts = _calibrated(seed, n_after=3000)
        alarms += sum(v.alarm for v in verdicts)
        steps += len(verdicts)
    # thresholds sit far beyond the calibrated 1e-3 quantile: nominal steps almost never alarm
    assert alarms / steps < 1e-3, alarms


def test_a_step_is_caught_within_a_few_steps():
    detector, _ = _calibrated(1)
    residual, latent, observed = _episode(101, 20)
    residual[5:, 0] += 0.4  # eight nominal spreads on one sensor, from step 5
    verdicts = _feed(detector, residual, latent, observed)
    first = next(i for i, v in enumerate(verdicts) if v.alarm)
    assert 5 <= first <= 7
    assert max(verdicts[first].contributions, key=verdicts[first].contributions.get) == "a"


def test_a_slow_drift_is_caught_by_the_ewma():
    detector, _ = _calibrated(2)
    residual, latent, observed = _episode(102, 600)
    residual[:, 1] += np.linspace(0.0, 0.1, 600)  # 2 nominal spreads after 20 s: never an outlier
    verdicts = _feed(detector, residual, latent, observed)
    first = next(i for i, v in enumerate(verdicts) if v.alarm)
    assert 30 < first < 600
    assert verdicts[first].reason in ("ewma", "cusum")


def test_a_stuck_sensor_is_caught():
    detector, _ = _calibrated(3)
    residual, latent, observed = _episode(103, 40)
    observed[10:, 2] = observed[10, 2]
    verdicts = _feed(detector, residual, latent, observed)
    first = next(i for i, v in enumerate(verdicts) if v.alarm)
    assert 10 < first <= 10 + 3 * DetectorConfig().stuck_min_steps
    assert verdicts[first].reason == "stuck"


def test_calibration_leaves_a_start_up_transient_out():
    config = DetectorConfig(calibration_steps=300)
    residual, latent, observed = _episode(4, 310 + 300)
    residual[10:70] *= 40  # a large transient at start-up, inside the calibration span
    detector = Detector(config, SENSORS)
    verdicts = _feed(detector, residual, latent, observed)
    assert detector.kept <= 300 - 60
    later, _, _ = _episode(104, 20)
    later[5:, 0] += 0.4
    after = _feed(detector, later, latent[:20], observed[:20] + 1000)
    assert any(v.alarm for v in after[5:8])
    assert not any(v.alarm for v in verdicts[310:])


def test_steady_rows_and_tail_threshold():
    scores = np.ones(300)
    scores[:30] = 50.0
    keep = steady_rows(scores, 3.0)
    assert not keep[:30].any() and keep[30:].all()
    sample = np.random.default_rng(0).exponential(1.0, 300)
    # the exponential's 1e-4 quantile is ln(1e4) = 9.2: extrapolated from 300 samples
    assert 6.0 < tail_threshold(sample, 1e-4) < 13.0


def test_state_survives_json_and_an_old_version_recalibrates():
    detector, _ = _calibrated(5, n_after=50)
    restored = Detector.from_json(detector.config, SENSORS, json.loads(json.dumps(detector.to_json())))
    residual, latent, observed = _episode(105, 30)
    a = _feed(detector, residual, latent, observed)
    b = _feed(restored, residual, latent, observed)
    assert [v.score for v in a] == pytest.approx([v.score for v in b])
    old = {"steps": 400, "calib": [], "centre": [0.0] * 4}
    assert not Detector.from_json(detector.config, SENSORS, old).armed


def test_a_state_calibrated_on_residuals_in_other_units_recalibrates():
    """A detector calibrated on residuals in training stds (every state written before
    ``residual_units`` was recorded) is not restored under the predicted-error default, and the
    other way round: its thresholds would be in the wrong units."""
    import dataclasses

    detector, _ = _calibrated(5, n_after=50)
    state = json.loads(json.dumps(detector.to_json()))
    assert state["units"] == detector.config.residual_units == "predicted"
    assert Detector.from_json(detector.config, SENSORS, state).armed
    plain = dataclasses.replace(detector.config, residual_units="training_std")
    assert not Detector.from_json(plain, SENSORS, state).armed
    del state["units"]  # written before the field: training stds
    assert Detector.from_json(plain, SENSORS, state).armed
    assert not Detector.from_json(detector.config, SENSORS, state).armed
    with pytest.raises(ValueError, match="residual_units"):
        DetectorConfig(residual_units="kelvin")


def test_step_evidence_divides_by_the_predicted_error_scale():
    from twin.worker.surprise import step_evidence

    predicted = np.array([[0.0, 1.0], [2.0, 3.0]])
    observed = np.array([[0.5, 1.0], [1.0, 4.0]])
    z, pz = np.zeros((2, 3)), np.ones((2, 3))

    def error(p, o):
        return (o - p) / 2.0

    plain, latent = step_evidence(error, predicted, observed, z, pz)
    scaled, latent2 = step_evidence(error, predicted, observed, z, pz, np.array([[0.5, 1.0], [2.0, 0.1]]))
    np.testing.assert_allclose(plain, [[0.25, 0.0], [-0.5, 0.5]])
    np.testing.assert_allclose(scaled, [[0.5, 0.0], [-0.25, 5.0]])
    np.testing.assert_allclose(latent, latent2)


def test_a_calibrating_detector_resumes_from_its_packed_buffers():
    """Half-way through calibration (open-loop residuals still NaN at first): the buffers go
    through JSON packed and the restored detector arms on exactly the same thresholds."""
    config = DetectorConfig(calibration_steps=400)
    n = config.warmup_steps + config.calibration_steps + 40
    residual, latent, observed = _episode(9, n)
    horizons = _horizon_episode(9, n)
    horizons[:25] = np.nan
    half = config.warmup_steps + 200
    detector = Detector(config, SENSORS)
    _feed_h(detector, residual[:half], latent[:half], observed[:half], horizons[:half])
    state = json.dumps(detector.to_json())
    values = 200 * (3 * len(SENSORS) + 1 + horizons.shape[1] * horizons.shape[2])  # + readings before
    assert len(state) < 12 * values  # packed (10.7 characters a value), not lists (~19)
    restored = Detector.from_json(config, SENSORS, json.loads(state))
    assert np.isnan(restored._calib_h[0]).all() and len(restored._calib) == 200
    a = _feed_h(detector, residual[half:], latent[half:], observed[half:], horizons[half:])
    b = _feed_h(restored, residual[half:], latent[half:], observed[half:], horizons[half:])
    assert restored.armed and restored.c_threshold == detector.c_threshold
    np.testing.assert_array_equal(restored.h_threshold, detector.h_threshold)
    assert [v.score for v in a] == [v.score for v in b]


def test_replay_raises_one_anomaly_per_episode_of_alarms_and_auroc_ranks():
    from twin.worker.evaluation import auroc
    from twin.worker.replay import Evidence, replay_detector

    config = DetectorConfig(calibration_steps=300, clear_steps=10)
    residual, latent, observed = _episode(6, 400)
    residual[350:360, 0] += 1.0  # one burst after calibration: one anomaly event, then it clears
    evidence = Evidence(residual[None], latent[None], observed[None])
    found = replay_detector(evidence, config, SENSORS)
    assert found.onset[0, 350:352].any()
    assert found.onset.sum() == 1
    assert found.alarm[0, 350:360].all()
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5


def _horizon_episode(seed: int, n: int, k: int = 3) -> np.ndarray:
    """Open-loop residuals (n, K, S): autocorrelated, growing with the horizon, like a model's."""
    rng = np.random.default_rng(1000 + seed)
    return np.stack([_ar1(rng, n, rho=0.7) * (1 + j) for j in range(k)], axis=1)


def _feed_h(detector: Detector, residual, latent, observed, horizons) -> list:
    return [
        detector.update(Surprise(residual[t], float(latent[t]), observed[t], horizons=horizons[t]))
        for t in range(len(residual))
    ]


def test_open_loop_shift_below_every_one_step_threshold_is_caught_by_horizon():
    config = DetectorConfig(calibration_steps=600)
    n_cal = config.warmup_steps + config.calibration_steps
    residual, latent, observed = _episode(7, n_cal + 900)
    horizons = _horizon_episode(7, n_cal + 900)
    horizons[n_cal + 300 :, 2, 0] += 0.4  # 2.7 nominal spreads of the longest horizon, one sensor
    without = Detector(DetectorConfig(calibration_steps=600, statistics=STATS_NO_HORIZON), SENSORS)
    with_h = Detector(config, SENSORS)
    plain = _feed_h(without, residual, latent, observed, horizons)[n_cal:]
    found = _feed_h(with_h, residual, latent, observed, horizons)[n_cal:]
    assert with_h.h_centre is not None and without.h_centre is not None
    # the one-step residuals do not move: no statistic without the open loop sees it
    assert not any(v.alarm for v in plain)
    assert not any(v.alarm for v in found[:300])  # nominal open loop: calibrated, quiet
    first = next(i for i, v in enumerate(found) if v.alarm)
    assert 300 <= first < 300 + 2 * DetectorConfig().horizon_window
    assert found[first].reason == "horizon"


def test_horizon_statistic_survives_json_and_missing_open_loop_is_ignored():
    config = DetectorConfig(calibration_steps=400)
    n = config.warmup_steps + config.calibration_steps + 40
    residual, latent, observed = _episode(8, n + 30)
    horizons = _horizon_episode(8, n + 30)
    horizons[:25] = np.nan  # the first steps of an asset have no past to roll out from
    detector = Detector(config, SENSORS)
    _feed_h(detector, residual[:n], latent[:n], observed[:n], horizons[:n])
    assert detector.h_centre is not None and len(detector.h_recent) == config.horizon_window
    restored = Detector.from_json(config, SENSORS, detector.to_json())
    a = _feed_h(detector, residual[n:], latent[n:], observed[n:], horizons[n:])
    b = _feed_h(restored, residual[n:], latent[n:], observed[n:], horizons[n:])
    assert [v.ratios["horizon"] for v in a] == pytest.approx([v.ratios["horizon"] for v in b])
    assert all(v.ratios["horizon"] > 0 for v in a)
    blind = Detector(config, SENSORS)  # no open-loop evidence at all: the statistic stays off
    verdicts = _feed(blind, residual, latent, observed)
    assert blind.h_centre is None and verdicts[-1].ratios["horizon"] == 0.0
    short = Detector(DetectorConfig(calibration_steps=200), SENSORS)  # under 10 windows: off too
    _feed_h(short, residual, latent, observed, horizons)
    assert short.armed and short.h_centre is None


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first test of the session to need the tiny model trains it
def test_live_open_loop_matches_the_batch_replay(tiny_model):
    """The live loop's per-step :class:`OpenLoop` gives the same open-loop residuals as the
    offline replay's batch computation, on a real model and a real simulated episode."""
    from twin.worker.evaluation import simulate
    from twin.worker.inference import ModelAdapter
    from twin.worker.surprise import OpenLoop, open_loop_residuals

    model = ModelAdapter.load(str(tiny_model))
    episodes = simulate([3, 4], 40, [None, None], 0.0)
    observed, actions = episodes.observed, episodes.actions
    h, horizons = model.history, (1, 3, 7)
    zs = np.full((2, 40, model.latent_dim), np.nan, dtype=np.float32)
    for t in range(h - 1, 40):
        zs[:, t] = model.encode(observed[:, t - h + 1 : t + 1])
    plain = np.empty(0)
    for scaled in (False, True):  # residuals in training stds, and in the model's predicted error
        batch = open_loop_residuals(model, zs, actions, observed, horizons, scaled)
        loops = [OpenLoop(horizons), OpenLoop(horizons)]
        live = np.full_like(batch, np.nan)
        for t in range(h, 40):
            for i, loop in enumerate(loops):
                loop.push(zs[i, t - 1], actions[i, t - 1])
            live[:, t] = OpenLoop.residuals(model, loops, observed[:, t], horizons, scaled)
        assert np.isfinite(batch[:, h + 7 :]).all()
        assert np.isnan(batch[:, : h - 1 + 3, 1]).all()  # no latent 3 steps back yet
        np.testing.assert_allclose(live[:, h:], batch[:, h:], rtol=1e-4, atol=1e-4, equal_nan=True)
        if scaled:  # each residual divided by the error the model expected of that rollout
            t, k = 20, horizons[2]
            _, scale = model.rollout_read(zs[:, t - k], actions[:, t - k : t])
            np.testing.assert_allclose(batch[:, t, 2] * scale, plain[:, t, 2], rtol=1e-4, atol=1e-6)
            assert not np.allclose(batch[:, t, 2], plain[:, t, 2])
        else:
            plain = batch
    batch = plain
    # the open loop's error grows with the horizon: it is a different, longer prediction
    rms = np.sqrt(np.nanmean(batch[:, h + 7 :] ** 2, axis=(0, 1, 3)))
    assert rms[2] > rms[0]


def test_a_reading_at_its_range_limit_pauses_the_detector_then_it_resumes():
    from twin.worker.detector import AFTER_LIMIT, AT_LIMIT

    config = DetectorConfig(calibration_steps=300, limit_holdoff_steps=20)
    limits = (np.array([-15.0, -np.inf, -1.0]), np.array([15.0, np.inf, 1.0]))
    detector = Detector(config, SENSORS, limits=limits)
    residual, latent, observed = _episode(3, 700)
    observed = np.clip(observed * 0.01, -0.5, 0.5)
    observed[400:430, 0] = 15.0  # the cart rests against its end stop for 1 s...
    residual[400:430] += 3.0  # ...where the model's residuals are huge: an impact, not a fault
    verdicts = _feed(detector, residual, latent, observed)
    assert [v.reason for v in verdicts[400:430]] == [AT_LIMIT] * 30
    assert verdicts[400].contributions == {"a": 1.0}
    assert [v.reason for v in verdicts[430:450]] == [AFTER_LIMIT] * 20
    assert not any(v.alarm for v in verdicts[310:])
    assert verdicts[460].ratios  # judging again
    assert Detector.from_json(config, SENSORS, detector.to_json(), limits=limits).limit_high is not None
    # 1% of the span from either end counts as at the limit; an infinite range never does
    edge = Detector(config, SENSORS, limits=limits)
    assert edge.update(Surprise(np.zeros(3), 0.2, np.array([-14.8, 1e9, 0.0]))).reason == AT_LIMIT


def test_a_reading_running_fast_into_its_end_stop_pauses_before_the_contact():
    """A cart at 9 m/s 1.2 m from its end stop (rail +-15 m): the model's forecast crosses an
    end it never learned. The detector pauses (no contact, no event) until it is over; a slow
    cart there, one running away from the end, or one fast but mid-rail is judged as usual."""
    from twin.worker.detector import AFTER_LIMIT, APPROACHING_LIMIT, AT_LIMIT

    config = DetectorConfig(calibration_steps=300, limit_holdoff_steps=20, statistics=UNRELATED)
    limits = (np.array([-15.0, -np.inf, -1.0]), np.array([15.0, np.inf, 1.0]))
    residual, latent, observed = _episode(3, 700)
    observed = np.clip(observed * 0.01, -0.5, 0.5)
    x = observed[:, 0]
    x[380:405] = 6.0 + 0.3 * np.arange(25)  # 9 m/s at 30 Hz along the rail...
    x[405:410] = 14.9  # ...into the end stop
    x[410:460] = 14.9 - 0.3 * np.arange(1, 51)  # and away, as fast, back to where it wandered
    residual[400:410] += 3.0  # the model's one-step error explodes on the way in
    detector = Detector(config, SENSORS, limits=limits)
    verdicts = _feed(detector, residual, latent, observed)
    assert verdicts[399].ratios and not verdicts[399].alarm  # 3 m from the end (10%): judged
    assert [v.reason for v in verdicts[400:405]] == [APPROACHING_LIMIT] * 5
    assert verdicts[400].contributions == {"a": 1.0}
    assert [v.reason for v in verdicts[405:410]] == [AT_LIMIT] * 5
    assert all(v.reason == AFTER_LIMIT for v in verdicts[410:430])  # running away: no new pause
    assert not any(v.alarm for v in verdicts[310:400] + verdicts[430:])
    # slow near the end, fast away from it, fast mid-rail: judged
    for before, now in ((14.0, 14.005), (14.0, 13.7), (3.0, 3.3)):
        d = Detector(config, SENSORS, limits=limits)
        d.update(Surprise(np.zeros(3), 0.2, np.array([before, 0.0, 0.0])))
        assert not d.approaching(np.array([now, 0.0, 0.0]), np.ones((2, 3), dtype=bool)).any()
    d = Detector(config, SENSORS, limits=limits)
    d.update(Surprise(np.zeros(3), 0.2, np.array([-13.6, 0.0, 0.0])))
    assert d.update(Surprise(np.zeros(3), 0.2, np.array([-13.9, 0.0, 0.0]))).reason == APPROACHING_LIMIT
    restored = Detector.from_json(config, SENSORS, d.to_json(), limits=limits)
    assert restored.limit_prev is not None and restored.limit_prev[0] == -13.9
    # off with limit_lead_steps=0
    off = Detector(dataclasses.replace(config, limit_lead_steps=0), SENSORS, limits=limits)
    off.update(Surprise(np.zeros(3), 0.2, np.array([-13.6, 0.0, 0.0])))
    assert off.update(Surprise(np.zeros(3), 0.2, np.array([-13.9, 0.0, 0.0]))).reason != APPROACHING_LIMIT
    with pytest.raises(ValueError, match="limit_approach"):
        DetectorConfig(limit_approach=0.001)


def test_a_skipped_step_or_a_non_finite_residual_does_not_end_a_contact():
    """A worker that falls behind skips steps; a contact goes on through them (one event per
    contact in the worker, which ends a contact at the first verdict that is not at the limit)."""
    from twin.worker.detector import AT_LIMIT

    config = DetectorConfig(calibration_steps=300, limit_holdoff_steps=20)
    limits = (np.array([-15.0, -np.inf, -1.0]), np.array([15.0, np.inf, 1.0]))
    detector = Detector(config, SENSORS, limits=limits)
    at_stop = np.array([15.0, 0.0, 0.0])
    steps = [0, 1, 2, 5, 6]  # the worker fell behind between steps 2 and 5
    verdicts = [detector.update(Surprise(np.zeros(3), 0.2, at_stop, step=k)) for k in steps]
    verdicts.append(detector.update(Surprise(np.full(3, np.nan), 0.2, at_stop, step=7)))
    assert [v.reason for v in verdicts] == [AT_LIMIT] * 6
    # once it leaves, the step count carries on without a gap
    assert detector.update(Surprise(np.zeros(3), 0.2, np.zeros(3), step=8)).reason != "skipped steps"


def test_a_range_end_a_sensor_usually_sits_at_is_no_end_stop():
    """The rotor's ``vibration_rms`` (range 0-100) reads below 1 most of the time: within 1% of
    its low end, and pausing there would keep the detector from ever calibrating."""
    from twin.worker.detector import AT_LIMIT, LIMIT_MIN_SEEN

    config = DetectorConfig(calibration_steps=300, limit_holdoff_steps=20)
    limits = (np.array([-15.0, -np.inf, 0.0]), np.array([15.0, np.inf, 100.0]))
    detector = Detector(config, SENSORS, limits=limits)
    residual, latent, observed = _episode(3, 500)
    observed = np.clip(observed * 0.01, -0.5, 0.5)
    observed[:, 2] = np.abs(observed[:, 2])  # a non-negative reading near 0, always "at" 0 + 1%
    verdicts = _feed(detector, residual, latent, observed)
    assert verdicts[0].reason == AT_LIMIT  # too few steps seen to call it usual
    assert not any(v.reason == AT_LIMIT for v in verdicts[LIMIT_MIN_SEEN + config.limit_holdoff_steps :])
    assert detector.armed
    restored = Detector.from_json(config, SENSORS, detector.to_json(), limits=limits)
    assert restored.limit_seen == detector.limit_seen and (restored.limit_hits == detector.limit_hits).all()
    assert restored.update(Surprise(np.zeros(3), 0.2, np.array([0.0, 0.0, 0.1]))).reason != AT_LIMIT


def test_range_limits_leave_out_wrapped_angles_and_quaternions():
    from bridge import SensorSpec
    from twin.worker.inference import range_limits

    sensors = [
        SensorSpec("x", "m", -15.0, 15.0),
        SensorSpec("angle", "rad", -np.pi, np.pi),
        *(SensorSpec(f"ee_q{c}", "1", -1.0, 1.0) for c in "xyzw"),
    ]
    low, high = range_limits(
        sensors, np.array([False, True, False, False, False, False]), np.array([[2, 3, 4, 5]])
    )
    assert low.tolist() == [-15.0] + [-np.inf] * 5 and high.tolist() == [15.0] + [np.inf] * 5
