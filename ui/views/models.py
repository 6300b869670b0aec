"""Models: the registry with held-out metrics against the baselines, and training curves."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui import queries
from ui.plots import bar_figure, curve_figure, horizon_error_figure
from ui.resources import config
from ui.views.common import store_error, store_tables


def registry_table(models: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for model in models:
        metrics = model["metrics"]
        nrmse = metrics.get("nrmse", {})
        own = nrmse.get("jepa") or next(iter(nrmse.values()), {})
        train = metrics.get("train", {})
        rows.append(
            {
                "model": model["ref"],
                "scene": model["scene"],
                "created": model["created"],
                "nRMSE (own, per horizon)": ", ".join(f"{h}: {v:.3f}" for h, v in own.items()),
                "training steps": train.get("steps"),
                "test windows": metrics.get("test_windows"),
                "checkpoint": model["path"],
            }
        )
    return pd.DataFrame(rows)


def metric_figures(metrics: dict[str, Any]) -> None:
    nrmse: dict[str, dict[str, float]] = metrics.get("nrmse", {})
    if nrmse:
        horizons = sorted({h for table in nrmse.values() for h in table}, key=float)
        st.plotly_chart(
            horizon_error_figure(
                [float(h) for h in horizons],
                {name: [table.get(h) for h in horizons] for name, table in nrmse.items()},
                "normalised RMSE (training std)",
            ).update_xaxes(title_text="prediction horizon (control steps)"),
            key="models-nrmse",
        )
        st.caption(
            "Held-out normalised RMSE of the model and the baselines on the same test windows "
            "(lower is better)."
        )
    coverage = metrics.get("coverage90") or metrics.get("coverage")
    if isinstance(coverage, dict) and coverage:
        keys = sorted(coverage, key=lambda k: float(k) if str(k).replace(".", "").isdigit() else 0.0)
        values = [coverage[k] if isinstance(coverage[k], int | float) else None for k in keys]
        st.plotly_chart(
            bar_figure(
                [str(k) for k in keys],
                {"coverage": values},
                "prediction horizon (control steps)",
                "90% band coverage (fraction of futures, 1)",
            ),
            key="models-coverage",
        )
    history = metrics.get("train", {}).get("history") or metrics.get("history")
    if isinstance(history, list) and history and all(isinstance(r, dict) for r in history):
        st.subheader("Training curves")
        st.plotly_chart(curve_figure(history), key="models-curves")
    else:
        st.caption("No training curve stored with this model.")


def render() -> None:
    st.title("Models")
    url = config().database_url
    tables = store_tables(url)
    if tables is None:
        return
    if "models" not in tables:
        st.info("The model registry is not in the database yet (no `models` table): train a model first.")
        return
    try:
        models = queries.model_table(url)
    except queries.StoreUnavailable as exc:
        store_error(exc)
        return
    if not models:
        st.info("No trained models registered yet (`models` is empty).")
        return
    st.dataframe(registry_table(models), hide_index=True, key="models-table")
    refs = [m["ref"] for m in models]
    chosen = st.selectbox("Model", refs, key="models-choice")
    model = models[refs.index(chosen)]
    metric_figures(model["metrics"])
    with st.expander("Metrics, configuration and lineage (JSON)"):
        st.json({"metrics": model["metrics"], "config": model["config"], "lineage": model["lineage"]})
