"""Plotly figures of the dashboard: pure functions of arrays, every axis titled with its unit.

Trace names are stable (``observed``, ``predicted mean``, ``predicted band``, ``predicted
<h> s before``, ``surprise``, ``anomaly``, ``fault``...) so tests and people can find them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ui.analysis import HorizonSlice
from ui.live import PredictionRecord
from ui.timefmt import axis_title, axis_type, to_axis

OBSERVED = "#1f77b4"
PREDICTED = "#ff7f0e"
PAST = "#2ca02c"
MARKERS = {"anomaly": ("x", "#d62728"), "fault": ("triangle-up", "#9467bd"), "note": ("circle", "#7f7f7f")}


def unit_label(name: str, unit: str) -> str:
    return f"{name} ({unit or '1'})"


class Stack:
    """Subplots stacked in one column sharing their x axis, built as plain dicts.

    ``plotly.subplots.make_subplots`` plus ``add_trace(row=...)`` validates every trace and axis
    as it goes: 0.2 to 0.6 s for a 4-sensor live chart on a busy core, three times a second.
    Dicts cost a few ms; the figure is validated once, when :meth:`figure` builds it."""

    def __init__(self, rows: int, spacing: float = 0.04) -> None:
        self.rows = max(1, rows)
        self.traces: list[dict] = []
        self.y_titles: dict[int, str] = {}
        height = (1.0 - spacing * (self.rows - 1)) / self.rows
        self.domains = [
            (1.0 - (r - 1) * (height + spacing) - height, 1.0 - (r - 1) * (height + spacing))
            for r in range(1, self.rows + 1)
        ]

    @staticmethod
    def _suffix(row: int) -> str:
        return "" if row == 1 else str(row)

    def add(self, row: int, **trace: object) -> None:
        """A scatter trace (plotly attributes as keywords) on subplot ``row`` (1: top)."""
        self.traces.append({"type": "scatter", **trace, "xaxis": f"x{self._suffix(row)}",
                            "yaxis": f"y{self._suffix(row)}"})  # fmt: skip

    def band(self, row: int, x, low, high, name: str, color: str, legend: bool, group: str) -> None:
        """A filled band between ``low`` and ``high`` (two traces: the edge, then the fill)."""
        self.add(row, x=x, y=high, mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False,
                 legendgroup=group, name=f"{name} upper")  # fmt: skip
        self.add(row, x=x, y=low, mode="lines", line={"width": 0}, fill="tonexty", fillcolor=color, name=name,
                 legendgroup=group, showlegend=legend)  # fmt: skip

    def figure(
        self, x_title: str, x_type: str, height: int, shapes: Sequence[dict] = (), **layout
    ) -> go.Figure:
        """The figure: x axes matched to the bottom one, which alone shows its ticks and title."""
        bottom = f"x{self._suffix(self.rows)}"
        axes: dict[str, dict] = {}
        for r in range(1, self.rows + 1):
            name = self._suffix(r)
            axes[f"xaxis{name}"] = {
                "anchor": f"y{name}", "domain": [0.0, 1.0], "type": x_type, "showticklabels": r == self.rows,
                **({"matches": bottom} if r != self.rows else {"title": {"text": x_title}}),
            }  # fmt: skip
            low, high = self.domains[r - 1]
            axes[f"yaxis{name}"] = {"anchor": f"x{name}", "domain": [max(0.0, low), min(1.0, high)]}
            if r in self.y_titles:
                axes[f"yaxis{name}"]["title"] = {"text": self.y_titles[r]}
        return go.Figure(
            {"data": self.traces, "layout": {**axes, "height": height, "shapes": list(shapes), **layout}}
        )


def _now_line(x_now: float) -> dict:
    """A dashed vertical line at ``x_now`` through every subplot (their x axes are matched)."""
    return {"type": "line", "xref": "x", "yref": "paper", "x0": x_now, "x1": x_now, "y0": 0, "y1": 1,
            "line": {"color": "#444", "dash": "dash", "width": 1}}  # fmt: skip


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
    stack = Stack(len(columns))
    x_obs = to_axis(t_ns, axis, origin_ns) if len(t_ns) else None
    x_past = to_axis(past.target_t_ns, axis, origin_ns) if past is not None and past.mean.size else None
    for row, s in enumerate(columns, start=1):
        first = row == 1
        if past is not None and x_past is not None and s < past.mean.shape[1]:
            label = f"predicted {past.horizon_s:.3g} s before"
            stack.band(row, x_past, past.lower[:, s], past.upper[:, s], f"{label} (band)",
                       "rgba(44,160,44,0.15)", first, "past")  # fmt: skip
            stack.add(row, x=x_past, y=past.mean[:, s], mode="lines", name=label, legendgroup="past",
                      line={"color": PAST, "dash": "dot"}, showlegend=first)  # fmt: skip
        if x_obs is not None and values.ndim == 2 and s < values.shape[1]:
            stack.add(row, x=x_obs, y=values[:, s], mode="lines", name="observed", legendgroup="observed",
                      line={"color": OBSERVED}, showlegend=first)  # fmt: skip
        if latest is not None and s < latest.mean.shape[1]:
            ahead = latest.origin_t_ns + (np.r_[0.0, latest.horizons_s] * 1e9).astype(np.int64)
            anchor = _value_at(t_ns, values, latest.origin_t_ns, s)
            mean = np.r_[anchor if anchor is not None else latest.mean[0, s], latest.mean[:, s]]
            low = np.r_[mean[0], latest.lower[:, s]]
            high = np.r_[mean[0], latest.upper[:, s]]
            x_ahead = to_axis(ahead, axis, origin_ns)
            stack.band(row, x_ahead, low, high, f"predicted band ({latest.level:.0%})",
                       "rgba(255,127,14,0.25)", first, "pred")  # fmt: skip
            stack.add(row, x=x_ahead, y=mean, mode="lines", name="predicted mean", legendgroup="pred",
                      line={"color": PREDICTED}, showlegend=first)  # fmt: skip
        stack.y_titles[row] = unit_label(sensors[s], units[s] if s < len(units) else "")
    shapes = [_now_line(float(to_axis(np.array([now_ns]), axis, origin_ns)[0]))] if now_ns else []
    return stack.figure(
        axis_title(axis, origin_ns),
        axis_type(axis),
        max(260, height_per_sensor * len(columns) + 80),
        shapes,
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        uirevision="keep",  # zoom and legend choices survive live updates
    )


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
    fig.update_xaxes(title_text=axis_title(axis, origin_ns), type=axis_type(axis))
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
    stack = Stack(len(columns))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for k, (label, t_ns, values) in enumerate(runs):
        if not len(t_ns):
            continue
        origin = origins_ns[k] if k < len(origins_ns) and origins_ns[k] is not None else t_ns[0]
        x = (t_ns - origin) / 1e9
        for row, s in enumerate(columns, start=1):
            stack.add(row, x=x, y=values[:, s], mode="lines", name=label, legendgroup=label,
                      showlegend=row == 1, line={"color": palette[k % len(palette)]})  # fmt: skip
    for row, s in enumerate(columns, start=1):
        stack.y_titles[row] = unit_label(sensors[s], units[s])
    return stack.figure(
        x_title,
        "linear",
        max(260, 190 * len(columns) + 80),
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )


def models_figure(
    sensors: Sequence[str],
    units: Sequence[str],
    t_ns: np.ndarray,
    values: np.ndarray,
    slices: Sequence[tuple[str, HorizonSlice]],
    *,
    axis: str,
    origin_ns: int,
    columns: Sequence[int],
) -> go.Figure:
    """Several models' predictions at one horizon over what happened, on one shared time axis:
    per sensor the observed trace and, per model, its predicted mean and band."""
    stack = Stack(len(columns))
    palette = [("#ff7f0e", "rgba(255,127,14,0.15)"), ("#2ca02c", "rgba(44,160,44,0.15)"),
               ("#d62728", "rgba(214,39,40,0.15)"), ("#9467bd", "rgba(148,103,189,0.15)")]  # fmt: skip
    x_obs = to_axis(t_ns, axis, origin_ns)
    xs = [to_axis(cut.target_t_ns, axis, origin_ns) for _, cut in slices]
    for row, s in enumerate(columns, start=1):
        first = row == 1
        for k, (label, cut) in enumerate(slices):
            if not cut.mean.size or s >= cut.mean.shape[1]:
                continue
            line, fill = palette[k % len(palette)]
            stack.band(row, xs[k], cut.lower[:, s], cut.upper[:, s], f"{label} band", fill, first, label)
            stack.add(row, x=xs[k], y=cut.mean[:, s], mode="lines", legendgroup=label,
                      name=f"{label}: predicted {cut.horizon_s:.3g} s before",
                      line={"color": line, "dash": "dot"}, showlegend=first)  # fmt: skip
        if len(t_ns) and values.ndim == 2 and s < values.shape[1]:
            stack.add(row, x=x_obs, y=values[:, s], mode="lines", name="observed", legendgroup="observed",
                      line={"color": OBSERVED}, showlegend=first)  # fmt: skip
        stack.y_titles[row] = unit_label(sensors[s], units[s] if s < len(units) else "")
    return stack.figure(
        axis_title(axis, origin_ns),
        axis_type(axis),
        max(260, 190 * len(columns) + 80),
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )


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
