"""Plots of predicted vs observed futures (PNG, matplotlib with the Agg backend: no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twin.model.data import wrap_difference


def plot_futures(
    path: Path,
    sensors: list[str],
    units: list[str],
    history: np.ndarray,
    observed: np.ndarray,
    predicted: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    baselines: dict[str, np.ndarray],
    periodic: np.ndarray,
    control_hz: float,
    title: str,
) -> Path:
    """One panel per sensor for one held-out window: history (K, S), observed and predicted
    futures (H, S) with the band [low, high], plus baseline predictions {name: (H, S)}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(sensors)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True, squeeze=False)
    t_hist = (np.arange(len(history)) - len(history) + 1) / control_hz
    t_fut = np.arange(1, len(observed) + 1) / control_hz
    for i, ax in enumerate(axes[:, 0]):
        past, anchor = history[:, i], observed[:, i]
        if periodic[i]:  # draw angles continuously: unwrap, and show predictions on that branch
            joined = np.unwrap(np.concatenate([past, anchor]))
            past, anchor = joined[: len(past)], joined[len(past) :]

        def near(values: np.ndarray, on: bool = bool(periodic[i]), ref: np.ndarray = anchor) -> np.ndarray:
            return ref + wrap_difference(values - ref, np.array(True)) if on else values

        ax.plot(t_hist, past, color="0.4", lw=1.2, label="history")
        ax.plot(t_fut, anchor, color="k", lw=1.5, label="observed")
        ax.plot(t_fut, near(predicted[:, i]), color="C0", lw=1.5, label="JEPA")
        centre = near(predicted[:, i])
        ax.fill_between(
            t_fut,
            centre - (predicted[:, i] - low[:, i]),
            centre + (high[:, i] - predicted[:, i]),
            color="C0",
            alpha=0.2,
            label="90% band",
        )
        for j, (name, values) in enumerate(baselines.items()):
            ax.plot(t_fut, near(values[:, i]), lw=0.9, ls="--", color=f"C{j + 1}", label=name)
        ax.set_ylabel(f"{sensors[i]}\n[{units[i]}]", fontsize=8)
        ax.axvline(0, color="0.7", lw=0.8)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    axes[-1, 0].set_xlabel("seconds from the last observation")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
