"""The training loop: handed its config, objective (which holds the model), data and logger.

Minibatches are drawn with a seeded ``torch.Generator``; the learning rate warms up then follows
a cosine; every ``eval_every`` steps ``validate()`` is called (lower is better) and the best
weights are kept (``keep_later_within``: a near-tie goes to the later ones); training stops
early after ``patience`` evaluations without improvement, at
``steps``, or at ``max_seconds`` (a wall-clock guard: a run stopped by it is not reproducible,
and the result says so). With ``anneal_by_time`` the cosine follows whichever is further along,
the steps or the wall-clock budget, so a run the guard stops (a loaded machine) still ends at a
low learning rate instead of being cut off near the peak. It takes over only while the run is on
course to overrun the budget (elapsed / step x steps > max_seconds), so a run with time to spare
anneals by its steps alone and stays repeatable; one near or over its budget depends on the
machine's speed, like the guard (off by default: runs are deterministic under a seed). Before
2026-12-06 it compared the two fractions from the first step after warm-up, where elapsed time
leads the step count: the learning rate of steps ~100-180 followed the clock (three
`bench/model.py` runs of the same code, data and seed gave rotor models from 0.244 to 0.291 at
h50; this was the one timing dependence found: two runs after the fix gave the same figures to
the fourth decimal).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch

from twin.model.data import Windows

log = logging.getLogger(__name__)


class Objective(Protocol):
    model: torch.nn.Module

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def loss(self, batch: Windows) -> tuple[torch.Tensor, dict[str, float]]: ...

    def after_step(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TrainConfig:
    steps: int = 3000
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup: int = 100
    grad_clip: float = 1.0
    eval_every: int = 250
    patience: int = 4
    max_seconds: float = 480.0
    seed: int = 0
    keep_later_within: float = 0.0
    """Relative tolerance of the best-weights choice: a later evaluation within this fraction of
    the best validation score so far replaces it (0: strictly better only). Where validation is
    flat and noisy while a part the score barely weighs still learns (the arm's camera: 6 of 70
    features), a tie goes to the more-trained weights instead of the earliest noise minimum.
    Patience still counts strict improvements."""
    anneal_by_time: bool = False
    """Cosine progress = max(step / steps, elapsed / max_seconds) while the run is on course to
    overrun ``max_seconds``; else step / steps (see the module docstring)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "eval_every", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name}={value!r} must be an integer >= 1")
        for name in ("lr", "max_seconds", "grad_clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"TrainConfig.{name}={value!r} must be a finite number > 0")
        if not 0 <= self.keep_later_within < 1:
            raise ValueError(f"TrainConfig.keep_later_within={self.keep_later_within!r} must be in [0, 1)")
        if self.weight_decay < 0 or self.warmup < 0 or self.seed < 0:
            raise ValueError(
                f"TrainConfig: weight_decay={self.weight_decay!r}, warmup={self.warmup!r}, "
                f"seed={self.seed!r} must be >= 0"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TrainResult:
    best_val: float
    best_step: int
    steps: int
    seconds: float
    stopped_by: str
    history: list[dict[str, float]] = field(default_factory=list)


Logger = Callable[[dict[str, float]], None]


class Trainer:
    """Fits ``objective.model`` on ``train`` windows; ``validate`` scores it (lower is better)."""

    def __init__(
        self,
        config: TrainConfig,
        objective: Objective,
        train: Windows,
        validate: Callable[[], float],
        logger: Logger | None = None,
        progress: bool = False,
        label: str = "train",
        position: int | None = None,
    ) -> None:
        """``progress``: a tqdm bar named ``label`` (on terminal line ``position`` below the
        cursor, for bars of processes side by side, which then clear it when done)."""
        self.config = config
        self.objective = objective
        self.train = train
        self.validate = validate
        self.logger = logger
        self.progress = progress
        self.label = label
        self.position = position

    def _lr(self, step: int, elapsed: float = 0.0) -> float:
        """Learning rate at ``step`` (0-based) after ``elapsed`` seconds: linear warm-up, then a
        cosine from ``lr`` to 5% of it over the steps (or the time budget, with ``anneal_by_time``)."""
        c = self.config
        if step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        frac = (step - c.warmup) / max(1, c.steps - c.warmup)
        if c.anneal_by_time and elapsed * c.steps / max(step, 1) > c.max_seconds:
            frac = max(frac, elapsed / c.max_seconds)  # on course to be stopped by the guard
        return c.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    def fit(self) -> TrainResult:
        c = self.config
        model = self.objective.model
        optimiser = torch.optim.AdamW(self.objective.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        generator = torch.Generator().manual_seed(c.seed)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=c.steps,
                desc=self.label,
                unit="step",
                dynamic_ncols=True,
                position=self.position,
                leave=self.position is None,  # bars side by side would overwrite each other's last line
            )
        started = time.perf_counter()
        best, best_step, best_state, bad, stopped_by = math.inf, 0, None, 0, "steps"
        kept = math.inf  # the validation score of the weights kept
        history: list[dict[str, float]] = []
        running: dict[str, float] = {}
        step = 0
        for step in range(1, c.steps + 1):
            model.train()
            index = torch.randint(len(self.train), (c.batch,), generator=generator)
            total, stats = self.objective.loss(self.train.take(index))
            for group in optimiser.param_groups:
                group["lr"] = self._lr(step - 1, time.perf_counter() - started)
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), c.grad_clip)
            optimiser.step()
            self.objective.after_step()
            stats["loss"] = float(total.detach())
            for key, value in stats.items():
                running[key] = 0.9 * running.get(key, value) + 0.1 * value
            if bar is not None:
                bar.update(1)
            elapsed = time.perf_counter() - started
            if step % c.eval_every == 0 or step == c.steps or elapsed > c.max_seconds:
                val = float(self.validate())
                record = {"step": step, "seconds": round(elapsed, 1), "val": val, **running}
                history.append(record)
                if self.logger is not None:
                    self.logger(record)
                if bar is not None:
                    postfix = {"loss": running["loss"], "val": val}
                    if "latent_std" in running:
                        postfix["z_std"] = running["latent_std"]
                    bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()})
                if val < best:
                    best, kept, best_step, bad = val, val, step, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
                    if val - best <= c.keep_later_within * abs(best):  # a tie: keep the later weights
                        kept, best_step, best_state = val, step, copy.deepcopy(model.state_dict())
                if bad >= c.patience:
                    stopped_by = "early_stopping"
                    break
                if elapsed > c.max_seconds:
                    stopped_by = "max_seconds"
                    log.warning(
                        "training stopped by the %.0f s wall-clock guard at step %d", c.max_seconds, step
                    )
                    break
        if bar is not None:
            bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return TrainResult(kept, best_step, step, time.perf_counter() - started, stopped_by, history)
