"""Plotly figures of the dashboard: pure functions of arrays, every axis titled with its unit.

Trace names are stable (``observed``, ``predicted mean``, ``predicted band``, ``predicted
<h> s before``, ``surprise``, ``anomaly``, ``fault``...) so tests and people can find them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.analysis import HorizonSlice
from ui.live import PredictionRecord
from ui.timefmt import axis_title, to_axis

OBSERVED = "#1f77b4"
PREDICTED = "#ff7f0e"
PAST = "#2ca02c"
MARKERS = {"anomaly": ("x", "#d62728"), "fault": ("triangle-up", "#9467bd"), "note": ("circle", "#7f7f7f")}


def unit_label(name: str, unit: str) -> str:
    return f"{name} ({unit or '1'})"


def _band(fig: go.Figure, x, low, high, name: str, color: str, row: int, legend: bool, group: str) -> None:
    fig.add_trace(
        go.Scatter(
            x=x,
            y=high,
            mode="lines",
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            legendgroup=group,
            name=f"{name} upper",
        ),
        row=row,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=low,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=color,
            name=name,
            legendgroup=group,
            showlegend=legend,
        ),
        row=row,
        col=1,
    )


def sensor_figure(
    sensors: Sequence[str],
    units: Sequence[str],
    t_ns: np.ndarray,
    values: np.ndarray,
    *,
    axis: str,
    origin_ns: int,
    latest: PredictionRecord | None = None,
    past: HorizonSlice | None = None,
    now_ns: int | None = None,
    columns: Sequence[int] | None = None,
    height_per_sensor: int = 190,
) -> go.Figure:
    """One panel per sensor: the observed trace; the latest prediction's mean and band ahead of
    "now" (a fan widening with the horizon); past predictions at one horizon over what happened."""
    columns = list(range(len(sensors))) if columns is None else list(columns)
    fig = make_subplots(rows=max(1, len(columns)), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    for row, s in enumerate(columns, start=1):
        first = row == 1
        if past is not None and past.mean.size and s < past.mean.shape[1]:
            x_past = to_axis(past.target_t_ns, axis, origin_ns)
            label = f"predicted {past.horizon_s:.3g} s before"
            _band(
                fig,
                x_past,
                past.lower[:, s],
                past.upper[:, s],
                f"{label} (band)",
                "rgba(44,160,44,0.15)",
                row,
                first,
                "past",
            )
            fig.add_trace(
                go.Scatter(
                    x=x_past,
                    y=past.mean[:, s],
                    mode="lines",
                    name=label,
                    legendgroup="past",
                    line={"color": PAST, "dash": "dot"},
                    showlegend=first,
                ),
                row=row,
                col=1,
            )
        if len(t_ns) and values.ndim == 2 and s < values.shape[1]:
            fig.add_trace(
                go.Scatter(
                    x=to_axis(t_ns, axis, origin_ns),
                    y=values[:, s],
                    mode="lines",
                    name="observed",
                    legendgroup="observed",
                    line={"color": OBSERVED},
                    showlegend=first,
                ),
                row=row,
                col=1,
            )
        if latest is not None and s < latest.mean.shape[1]:
            ahead = latest.origin_t_ns + (np.r_[0.0, latest.horizons_s] * 1e9).astype(np.int64)
            anchor = _value_at(t_ns, values, latest.origin_t_ns, s)
            mean = np.r_[anchor if anchor is not None else latest.mean[0, s], latest.mean[:, s]]
            low = np.r_[mean[0], latest.lower[:, s]]
            high = np.r_[mean[0], latest.upper[:, s]]
            x_ahead = to_axis(ahead, axis, origin_ns)
            _band(
                fig,
                x_ahead,
                low,
                high,
                f"predicted band ({latest.level:.0%})",
                "rgba(255,127,14,0.25)",
                row,
                first,
                "pred",
            )
            fig.add_trace(
                go.Scatter(
                    x=x_ahead,
                    y=mean,
                    mode="lines",
                    name="predicted mean",
                    legendgroup="pred",
                    line={"color": PREDICTED},
                    showlegend=first,
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(
            title_text=unit_label(sensors[s], units[s] if s < len(units) else ""), row=row, col=1
        )
    if now_ns:
        x_now = to_axis(np.array([now_ns]), axis, origin_ns)[0]
        fig.add_vline(x=x_now, line={"color": "#444", "dash": "dash", "width": 1})
    fig.update_xaxes(title_text=axis_title(axis, origin_ns), row=max(1, len(columns)), col=1)
    fig.update_layout(
        height=max(260, height_per_sensor * len(columns) + 80),
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        uirevision="keep",  # zoom and legend choices survive live updates
    )
    return fig


def _value_at(t_ns: np.ndarray, values: np.ndarray, at_ns: int, s: int) -> float | None:
    if not len(t_ns) or values.ndim != 2:
        return None
    i = int(np.searchsorted(t_ns, at_ns, side="right")) - 1
    return float(values[i, s]) if 0 <= i < len(t_ns) and abs(int(t_ns[i]) - at_ns) < 1_000_000_000 else None


def surprise_figure(
    t_ns: np.ndarray,
    score: np.ndarray,
    *,
    axis: str,
    origin_ns: int,
    events: Sequence[tuple[int, str, str]] = (),
    source: str = "surprise",
    threshold: float = 1.0,
) -> go.Figure:
    """Surprise over time (1 = band edge / alarm threshold) with anomaly and fault markers;
    ``events`` are ``(t_ns, category, name)``."""
    fig = go.Figure()
    if len(t_ns):
        fig.add_trace(
            go.Scatter(
                x=to_axis(t_ns, axis, origin_ns), y=score, mode="lines", name=source, line={"color": "#444"}
            )
        )
    top = float(np.nanmax(score)) if len(score) else threshold
    for category, (symbol, color) in MARKERS.items():
        chosen = [(t, n) for t, c, n in events if c == category]
        if not chosen:
            continue
        fig.add_trace(
            go.Scatter(
                x=to_axis(np.array([t for t, _ in chosen]), axis, origin_ns),
                y=[max(top, threshold) * 1.05] * len(chosen),
                mode="markers",
                name=category,
                text=[n for _, n in chosen],
                hovertemplate="%{text}<extra>" + category + "</extra>",
                marker={"symbol": symbol, "color": color, "size": 11},
            )
        )
    fig.add_hline(y=threshold, line={"color": "#d62728", "dash": "dot", "width": 1})
    fig.update_xaxes(title_text=axis_title(axis, origin_ns))
    fig.update_yaxes(title_text="surprise (1 = band edge / threshold)", rangemode="tozero")
    fig.update_layout(
        height=240,
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        uirevision="keep",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )
    return fig


def compare_figure(
    runs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    sensors: Sequence[str],
    units: Sequence[str],
    columns: Sequence[int],
    origins_ns: Sequence[int | None] = (),
    x_title: str = "time since the start of each run (s)",
) -> go.Figure:
    """Several runs on one synchronised timeline: seconds since each run's origin (its entry in
    ``origins_ns``, e.g. its fault; else its first sample)."""
    fig = make_subplots(rows=max(1, len(columns)), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for k, (label, t_ns, values) in enumerate(runs):
        if not len(t_ns):
            continue
        origin = origins_ns[k] if k < len(origins_ns) and origins_ns[k] is not None else t_ns[0]
        x = (t_ns - origin) / 1e9
        for row, s in enumerate(columns, start=1):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=values[:, s],
                    mode="lines",
                    name=label,
                    legendgroup=label,
                    showlegend=row == 1,
                    line={"color": palette[k % len(palette)]},
                ),
                row=row,
                col=1,
            )
    for row, s in enumerate(columns, start=1):
        fig.update_yaxes(title_text=unit_label(sensors[s], units[s]), row=row, col=1)
    fig.update_xaxes(title_text=x_title, row=max(1, len(columns)), col=1)
    fig.update_layout(
        height=max(260, 190 * len(columns) + 80),
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )
    return fig


def horizon_error_figure(
    horizons: Sequence[float], series: dict[str, Sequence[float]], y_title: str
) -> go.Figure:
    """Error (or coverage) against the prediction horizon, one line per model or sensor."""
    fig = go.Figure()
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=list(horizons), y=list(ys), mode="lines+markers", name=name))
    fig.update_xaxes(title_text="prediction horizon (s)")
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    fig.update_layout(height=320, margin={"l": 60, "r": 20, "t": 30, "b": 40})
    return fig


def bar_figure(
    labels: Sequence[str], series: dict[str, Sequence[float]], x_title: str, y_title: str
) -> go.Figure:
    fig = go.Figure()
    for name, ys in series.items():
        fig.add_trace(go.Bar(x=list(labels), y=list(ys), name=name))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    fig.update_layout(barmode="group", height=320, margin={"l": 60, "r": 20, "t": 30, "b": 40})
    return fig


def curve_figure(history: Sequence[dict[str, float]], x_key: str = "step") -> go.Figure:
    """Training curves: every numeric key of the history records against ``x_key``."""
    fig = go.Figure()
    xs = [r.get(x_key, i) for i, r in enumerate(history)]
    keys = sorted(
        {
            k
            for r in history
            for k, v in r.items()
            if k not in (x_key, "seconds") and isinstance(v, int | float)
        }
    )
    for key in keys:
        fig.add_trace(go.Scatter(x=xs, y=[r.get(key) for r in history], mode="lines+markers", name=key))
    fig.update_xaxes(title_text=f"{x_key} (training steps)" if x_key == "step" else x_key)
    fig.update_yaxes(title_text="loss / validation error (1, normalised units)")
    fig.update_layout(height=320, margin={"l": 60, "r": 20, "t": 30, "b": 40})
    return fig
