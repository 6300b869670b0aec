"""Every page of the dashboard, headless (AppTest), against a real bus, sim, recorder and SQLite."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest
from uistack import ASSET, MODEL

import ui
from twin.store.models import AcknowledgementRow

APP = str(Path(ui.__file__).parent / "app.py")
SECOND_MODEL = "persistence-test:2"
BIAS = 0.5


def app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


def trace_names(chart: dict) -> set[str]:
    return {trace.get("name") for trace in chart["data"]}


def axis_titles(chart: dict) -> list[str]:
    layout = chart["layout"]
    return [
        v["title"]["text"] for k, v in layout.items() if "axis" in k and isinstance(v, dict) and "title" in v
    ]


def numbers(encoded) -> np.ndarray:
    """A plotly array from the figure JSON: a list, or a typed array ``{"dtype", "bdata"}``."""
    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"])
    return np.asarray(encoded, dtype=float)


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("info", "error", "warning", "success", "caption", "markdown")
        for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


def wait_for(at: AppTest, condition, timeout_s: float = 15.0) -> AppTest:
    """Rerun until ``condition(at)`` holds (the live feed fills in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition(at):
            return at
        assert time.monotonic() < deadline, texts(at)
        time.sleep(0.5)
        at.run()


def test_fleet_lists_every_asset_with_status_model_and_anomalies(ui_env):
    def ready(at: AppTest) -> bool:
        frames = at.dataframe
        if not frames or not {ASSET, "cartpole-1"} <= set(frames[0].value["asset"]):
            return False
        row = frames[0].value.set_index("asset").loc[ASSET]
        return row["model"] == MODEL and row["rate (msg/s)"] > 0

    at = wait_for(app(), ready)
    table = at.dataframe[0].value.set_index("asset")
    assert table.loc[ASSET, "status"] == "live" and table.loc["cartpole-1", "status"] == "live"
    assert table.loc[ASSET, "model"] == MODEL
    assert table.loc[ASSET, "open anomalies"] >= 1
    assert table.loc[ASSET, "rate (msg/s)"] > 0
    assert table.loc[ASSET, "gaps"] == 0
    assert not at.exception


def test_asset_page_draws_observed_traces_with_the_predicted_fan_and_units(ui_env):
    at = wait_for(
        app("pages/asset.py", asset=ASSET),
        lambda at: len(charts(at)) >= 2 and "predicted mean" in trace_names(charts(at)[0]),
    )
    sensors, surprise = charts(at)[:2]
    names = trace_names(sensors)
    assert {"observed", "predicted mean", "predicted band (90%)"} <= names
    assert any(n and n.startswith("predicted ") and n.endswith(" s before") for n in names)
    titles = axis_titles(sensors)
    assert "cart_position (m)" in titles and "cart_velocity (m/s)" in titles  # the default sensors
    assert any(t.startswith("time (") for t in titles)
    assert "fault" in trace_names(surprise) and "anomaly" in trace_names(surprise)
    assert any("surprise" in t for t in axis_titles(surprise))
    assert at.get("image"), texts(at)  # the latest camera frame
    # the observed trace moves on: the newest sample of a later run is later
    first = numbers(next(t for t in sensors["data"] if t["name"] == "observed")["x"]).max()
    time.sleep(1.0)
    at.run()
    later = numbers(next(t for t in charts(at)[0]["data"] if t["name"] == "observed")["x"]).max()
    assert later > first
    at.multiselect(key=f"asset-sensors-{ASSET}-state").select("pole_angle").run()  # one more panel
    assert "pole_angle (rad)" in axis_titles(charts(at)[0])


def test_asset_page_in_sim_time(ui_env):
    at = wait_for(app("pages/asset.py", asset=ASSET), lambda at: len(charts(at)) >= 2)
    at.radio(key="asset-axis").set_value("sim time (s)").run()
    assert any(t.startswith("sim time (s since") for t in axis_titles(charts(at)[0]))


def test_history_replays_predictions_against_observations_with_horizon_errors(ui_env):
    at = app("pages/history.py")
    assert not at.exception, at.exception
    at.selectbox(key="history-episode").set_value(
        next(o for o in at.selectbox(key="history-episode").options if f" {ASSET} " in o)
    ).run()
    chart = charts(at)[0]
    assert "observed" in trace_names(chart)
    assert any(n and n.endswith(" s before") for n in trace_names(chart))
    assert "cart_velocity (m/s)" in axis_titles(chart)
    stats = next(f.value for f in at.dataframe if "horizon (s)" in f.value.columns)
    assert set(stats["horizon (s)"]) == {0.1, 0.5, 1.0, 2.0}
    assert (stats["n"] > 0).all()
    surprise = charts(at)[1]
    assert "surprise" in trace_names(surprise) and "fault" in trace_names(surprise)
    compare = charts(at)[-1]
    assert len({t["name"] for t in compare["data"]}) == 2
    assert "time since the start of each run (s)" in axis_titles(compare)


def test_history_compares_two_runs_synchronised_at_their_first_fault(ui_env):
    at = app("pages/history.py")
    labels = at.selectbox(key="compare-a").options
    at.selectbox(key="compare-a").set_value(next(o for o in labels if " cartpole-0 " in o))
    at.selectbox(key="compare-b").set_value(next(o for o in labels if " cartpole-1 " in o))
    at.radio(key="compare-align").set_value("first fault").run()
    assert not at.exception, at.exception
    compare = charts(at)[-1]
    assert "time since each run's first fault (s)" in axis_titles(compare)
    x = numbers(next(t for t in compare["data"] if t["name"].startswith("A:"))["x"])
    assert x.min() < 0 < x.max()  # the fault (1 s in) is at 0, the start before it
    assert "No fault in B:" in texts(at)  # cartpole-1 had none: aligned at its start


@pytest.fixture
def second_model(ui_env) -> str:
    """A second model's predictions of the recorded cartpole-0 run, stored through the worker's own
    writer: persistence shifted by +0.5 on every sensor (so its error is known: about 0.5)."""
    from sqlalchemy.orm import Session

    from twin.store.models import PredictionRow
    from twin.store.writer import WriterConfig
    from twin.worker.persistence import RowOp, WorkerWriter

    with Session(ui_env.engine) as session:
        rows = session.scalars(
            sa.select(PredictionRow).where(PredictionRow.asset == ASSET, PredictionRow.model == MODEL)
        ).all()
        ops = [
            RowOp(
                "predictions",
                {
                    "asset": r.asset,
                    "stream": r.stream,
                    "origin_t_ns": r.origin_t_ns,
                    "model": SECOND_MODEL,
                    "source": "twin-b",
                    "horizons_s": r.horizons_s,
                    "level": r.level,
                    "mean": (np.frombuffer(r.mean, "<f8") + BIAS).tobytes(),
                    "lower": (np.frombuffer(r.lower, "<f8") + BIAS).tobytes(),
                    "upper": (np.frombuffer(r.upper, "<f8") + BIAS).tobytes(),
                    "surprise": r.surprise,
                },
            )
            for r in rows
        ]
    assert ops
    for r in rows[:5]:  # both models' errors at the same (origin, horizon): the key keeps both
        for model, nrmse in ((MODEL, 0.25), (SECOND_MODEL, 0.75)):
            error = {
                "asset": r.asset, "stream": r.stream, "model": model, "origin_t_ns": r.origin_t_ns,
                "horizon_s": 0.1, "target_t_ns": r.origin_t_ns + 100_000_000,
                "observed_t_ns": r.origin_t_ns + 100_000_000, "predicted": r.mean[:32],
                "observed": r.mean[:32], "error": bytes(32), "nrmse": nrmse, "in_band": model == MODEL,
            }  # fmt: skip
            ops.append(RowOp("prediction_errors", error))
    with WorkerWriter(ui_env.engine, WriterConfig(flush_interval_s=0.01)) as writer:
        assert all(writer.submit(op) for op in ops)
    with ui_env.engine.connect() as connection:
        stored = connection.execute(
            sa.select(sa.func.count()).where(PredictionRow.model == SECOND_MODEL)
        ).scalar()
    assert stored == len(rows)  # same (asset, stream, origin) as MODEL's: both are kept
    st.cache_data.clear()  # the pages' queries cache for 10 s: see the new rows now
    return SECOND_MODEL


def test_history_compares_two_models_on_one_timeline_with_per_horizon_errors(ui_env, second_model):
    at = app("pages/history.py")
    at.selectbox(key="history-episode").set_value(
        next(o for o in at.selectbox(key="history-episode").options if f" {ASSET} " in o)
    ).run()
    assert set(at.selectbox(key="history-model").options) == {MODEL, second_model}
    at.radio(key="compare-mode").set_value("two models").run()
    assert not at.exception, at.exception
    at.selectbox(key="compare-model-a").set_value(MODEL)
    at.selectbox(key="compare-model-b").set_value(second_model).run()
    chart = next(c for c in charts(at) if any(n and n.startswith(f"{second_model}:") for n in trace_names(c)))
    names = trace_names(chart)
    assert "observed" in names and any(n and n.startswith(f"{MODEL}: predicted") for n in names)
    assert "cart_position (m)" in axis_titles(chart) and any(
        t.startswith("time (") for t in axis_titles(chart)
    )
    errors = next(f.value for f in at.dataframe if f"{second_model} MAE" in f.value.columns)
    assert set(errors["horizon (s)"]) == {0.1, 0.5, 1.0, 2.0}
    assert (errors[f"{MODEL} n"] > 0).all() and (errors[f"{second_model} n"] > 0).all()
    a, b = errors[f"{MODEL} MAE"], errors[f"{second_model} MAE"]
    # B's error is A's error minus the shift, sample by sample: |MAE_B - shift| <= MAE_A exactly
    assert (np.abs(b - BIAS) <= a + 1e-9).all(), errors
    assert (errors[f"{MODEL} n"] == errors[f"{second_model} n"]).all()  # the same moments compared
    assert (a < 0.25).any(), errors  # where A is that close, the check above tells B from A
    rmse = next(c for c in charts(at) if "RMSE (in each sensor's unit)" in axis_titles(c))
    assert any(n.startswith(second_model) for n in trace_names(rmse))


def test_history_error_table_keeps_each_models_stored_errors_apart(ui_env, second_model):
    at = app("pages/history.py")
    at.selectbox(key="history-episode").set_value(
        next(o for o in at.selectbox(key="history-episode").options if f" {ASSET} " in o)
    ).run()
    assert not at.exception, at.exception
    table = next(f.value for f in at.dataframe if "mean_nrmse" in f.value.columns)
    by_model = table[table["horizon_s"] == 0.1].set_index("model")
    assert set(by_model.index) == {MODEL, second_model}
    assert by_model.loc[MODEL, "n"] == by_model.loc[second_model, "n"] == 5
    assert by_model.loc[MODEL, "mean_nrmse"] == pytest.approx(0.25)
    assert by_model.loc[second_model, "mean_nrmse"] == pytest.approx(0.75)
    assert by_model.loc[MODEL, "coverage"] == 1.0 and by_model.loc[second_model, "coverage"] == 0.0


def test_history_travels_to_an_event(ui_env):
    at = app("pages/history.py")
    at.radio(key="history-mode").set_value("an event").run()
    assert not at.exception, at.exception
    assert any("fault: sensor_bias" in o for o in at.selectbox(key="history-event").options)
    assert "observed" in trace_names(charts(at)[0])


def test_events_acknowledge_an_anomaly_with_a_note(ui_env):
    at = app("pages/events.py")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert "anomaly" in set(table["category"]) and "fault" in set(table["category"])
    at.text_input(key="ack-author").set_value("ada")
    at.text_area(key="ack-note").set_value("pole bumped during maintenance")
    at.button[0].click().run()
    assert "Acknowledged event" in texts(at)
    with ui_env.engine.connect() as connection:
        row = connection.execute(sa.select(AcknowledgementRow)).first()
    assert row.author == "ada" and row.note == "pole bumped during maintenance"
    shown = AppTest.from_file(APP, default_timeout=30)
    shown.run()
    shown.switch_page("pages/events.py").run()  # another session sees it
    table = shown.dataframe[0].value.set_index("id")
    assert table.loc[row.event_id, "acknowledged"]
    assert "ada: pole bumped during maintenance" in table.loc[row.event_id, "notes"]


def test_events_memory_search(ui_env):
    at = app("pages/events.py")
    memory = next((f.value for f in at.dataframe if "similarity" in f.value.columns), None)
    assert memory is not None and len(memory) > 0, texts(at)


def test_whatif_is_an_honest_placeholder(ui_env):
    at = app("pages/whatif.py")
    assert "scenarios feature" in texts(at) and not at.get("plotly_chart")


def test_models_show_the_registry_metrics_and_training_curves(ui_env):
    at = app("pages/models.py")
    assert "cartpole:1" in set(at.dataframe[0].value["model"])
    nrmse, coverage, curves = charts(at)
    assert {"jepa", "persistence"} <= trace_names(nrmse)
    assert "normalised RMSE (training std)" in axis_titles(nrmse)
    assert any("coverage" in t for t in axis_titles(coverage))
    assert {"loss", "val"} <= trace_names(curves)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("pages/history.py", "Nothing recorded yet"),
        ("pages/events.py", "Nothing recorded yet"),
        ("pages/models.py", "model registry is not in the database yet"),
    ],
)
def test_pages_say_plainly_when_the_store_is_empty(ui_env, tmp_path, monkeypatch, page, message):
    monkeypatch.setenv("JUMEAU_DB", f"sqlite:///{tmp_path / 'empty.sqlite'}")
    at = app(page)
    assert message in texts(at) and not at.exception


@pytest.mark.parametrize(
    ("page", "says"),
    [
        (None, ("is not answering", "database is unreachable")),
        ("pages/asset.py", ("is not answering", "database is unreachable")),
        ("pages/history.py", ("database is unreachable",)),
        ("pages/events.py", ("database is unreachable",)),
        ("pages/models.py", ("database is unreachable",)),
    ],
)
def test_pages_say_plainly_when_bus_and_database_are_unreachable(ui_env, monkeypatch, page, says):
    monkeypatch.setenv("JUMEAU_BUS_SUB", "tcp://127.0.0.1:9")
    monkeypatch.setenv("JUMEAU_BUS_CONTROL", "tcp://127.0.0.1:9")
    monkeypatch.setenv("JUMEAU_DB", "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1")
    at = wait_for(app(page, asset=ASSET), lambda at: all(text in texts(at) for text in says), timeout_s=20)
    assert not at.exception


def test_pages_recover_by_themselves_when_bus_and_database_return(ui_env, monkeypatch, tmp_path):
    from bridge import Bus, BusConfig
    from twin.store.engine import make_engine
    from twin.store.migrate import upgrade
    from ui.cli import free_port

    endpoints = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("pub", "sub", "control")}
    for name, endpoint in endpoints.items():
        monkeypatch.setenv(f"JUMEAU_BUS_{name.upper()}", endpoint)
    broken = tmp_path / "jumeau.sqlite"
    broken.write_bytes(b"this is not a database yet " * 200)  # a store that cannot be read
    monkeypatch.setenv("JUMEAU_DB", f"sqlite:///{broken}")
    both_down = "is not answering", "database is unreachable"
    at = wait_for(app(), lambda at: all(text in texts(at) for text in both_down), timeout_s=20)
    assert not at.exception
    asset = wait_for(app("pages/asset.py"), lambda at: all(text in texts(at) for text in both_down), 20)
    assert not asset.exception

    healthy = tmp_path / "healthy.sqlite"
    engine = make_engine(f"sqlite:///{healthy}")
    upgrade(engine)
    engine.dispose()
    broken.write_bytes(healthy.read_bytes())  # the database is back, same file
    config = BusConfig(endpoints["pub"], endpoints["sub"], endpoints["control"])
    with Bus(config):  # the bus is back, same addresses
        at = wait_for(at, lambda at: not any(text in texts(at) for text in both_down), timeout_s=30)
        assert "Connected to the bus" in texts(at) or "No assets yet" in texts(at)
        assert not at.exception
        asset = wait_for(asset, lambda at: not any(text in texts(at) for text in both_down), timeout_s=30)
        assert "No assets yet" in texts(asset) and not asset.exception
