"""The training objective in latent space, its anti-collapse regulariser and latent health.

:class:`JepaObjective` for a batch of windows (features (B, history + K, F), actions (B, K, A)):

* latent rollout: the online encoder's z_t is unrolled K steps through the predictor and each
  predicted latent is pulled to the (EMA) target encoder's latent of the observed window, plus
  the teacher-forced one-step prediction from every observed latent;
* VICReg variance (std of every latent dimension >= 1) and covariance (off-diagonal -> 0) on
  the online latents, so the trivial constant latent is not a solution;
* inverse dynamics: a_t predicted from (z_t, z_{t+1}) keeps action-relevant information;
* readout: features decoded from observed latents (reconstruction) and from *predicted*
  latents (the sensor-space rollout term); with ``readout_through=False`` the readout sees
  detached latents (a probe) and shapes nothing upstream;
* variance head: expected |error| per sensor from a predicted latent (Laplace NLL on detached
  residuals), the scale conformal calibration turns into bands.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from twin.model.data import FeatureMap, Windows
from twin.model.encoders import FrameStacks
from twin.model.jepa import JepaWorldModel

SENSOR_LOSSES = ("mse", "log_mse", "mse+log_mse", "huber")
HUBER_DELTA = 0.5
"""Where the ``huber`` feature loss turns from squared to linear, in training stds."""


def feature_loss(
    predicted: torch.Tensor, observed: torch.Tensor, kind: str, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Error of predicted features (..., F): plain MSE, the mean of per-feature log-MSE, or a
    Huber loss (squared below :data:`HUBER_DELTA` training stds, linear above, scaled so that
    small errors cost what they cost in MSE). ``weights`` (F,): each feature's share of the
    mean (mean 1 keeps the scale; None: all 1)."""
    f = predicted.shape[-1]
    if kind == "huber":
        if weights is None:  # one mean, as before weights existed (the same rounding, the same runs)
            return 2 * functional.huber_loss(predicted, observed, delta=HUBER_DELTA)
        per_feature = 2 * functional.huber_loss(predicted, observed, delta=HUBER_DELTA, reduction="none")
        return (per_feature.reshape(-1, f).mean(dim=0) * weights).mean()
    per_feature = (predicted - observed).pow(2).reshape(-1, f).mean(dim=0)
    w = 1.0 if weights is None else weights  # x 1.0 is exact: unweighted runs train as before
    if kind == "mse":
        return (per_feature * w).mean()
    log_mse = (torch.log(per_feature + 1e-5) * w).mean()
    return log_mse if kind == "log_mse" else (per_feature * w).mean() + 0.1 * log_mse


@dataclass(frozen=True, slots=True)
class ObjectiveConfig:
    """Weights of the objective's parts (0 switches a part off)."""

    rollout_steps: int = 32
    latent_weight: float = 0.3
    sensor_weight: float = 1.0
    recon_weight: float = 1.0
    one_step_weight: float = 10.0
    """Features read from the teacher-forced one-step predictions (every observed latent one
    step on) against the next observation: the one-step residual the live detector watches."""
    readout_through: bool = True
    var_weight: float = 0.1
    """VICReg's variance term (anti-collapse on the learned part of the latent). 0.1 since
    2026-12-06 (1.0 before): in the three-seed ablation the default weight cost 7% at h10 and 15%
    at h50, a tenth of it kept the latent alive (minimum std 0.72) and was 5% / 10% better on
    every seed; at the full budget h50 -13% on the cartpole and the rotor (docs/model.md)."""
    cov_weight: float = 0.004
    """VICReg's covariance term (0.04 before 2026-12-06, with ``var_weight`` 1.0)."""
    inverse_weight: float = 0.1
    scale_weight: float = 0.1
    ema_tau: float = 0.99
    """Target encoder = EMA of the online one with this decay; 0: the online encoder itself."""
    sensor_loss: str = "mse"
    """How feature errors are pooled: "mse" (large errors dominate: a sensor that cannot be
    predicted drowns the rest), "log_mse" (mean over features of log(mse + 1e-5): every sensor's
    relative improvement counts the same, but hard sensors are given up), their sum
    (mse + 0.1 log_mse), or "huber" (an outlier, a cube knocked off its spot or a bang-bang
    torque, weighs linearly, not squared)."""
    select_weight: float = 1.0
    """Weight of the features of ``RunConfig.select_on``'s sensors (what the run is for, which
    also chooses its weights) in the feature losses (reconstruction, rollout, one step),
    relative to the others; the weights are scaled to a mean of 1. Camera runs: 2
    (``presets.CAMERA_SELECT_WEIGHT``), so that the arm's cubes' x and y, 6 of 70 features,
    shape the camera's reader (docs/model.md, "The arm's camera"). 1: every feature alike."""
    stop_gradient: bool = True
    """With ``ema_tau=0``: detach the target latents (False: gradients flow into both sides, as
    in VICReg/LeJEPA, where only the regulariser prevents collapse)."""

    def __post_init__(self) -> None:
        if not isinstance(self.rollout_steps, int) or self.rollout_steps < 1:
            raise ValueError(f"ObjectiveConfig.rollout_steps={self.rollout_steps!r} must be an integer >= 1")
        weights = (
            "latent_weight",
            "sensor_weight",
            "recon_weight",
            "one_step_weight",
            "var_weight",
            "cov_weight",
        )
        for name in (*weights, "inverse_weight", "scale_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ObjectiveConfig.{name}={value!r} must be a finite number >= 0")
        if not (math.isfinite(self.select_weight) and self.select_weight > 0):
            raise ValueError(
                f"ObjectiveConfig.select_weight={self.select_weight!r} must be a finite number > 0"
            )
        if self.sensor_loss not in SENSOR_LOSSES:
            raise ValueError(f"ObjectiveConfig.sensor_loss={self.sensor_loss!r} must be in {SENSOR_LOSSES}")
        if not 0 <= self.ema_tau < 1:
            raise ValueError(f"ObjectiveConfig.ema_tau={self.ema_tau!r} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObjectiveConfig:
        """A stored objective; fields added since get the value those runs trained with."""
        return cls(**{**OBJECTIVE_LEGACY_DEFAULTS, **d})


OBJECTIVE_LEGACY_DEFAULTS: dict[str, Any] = {"one_step_weight": 0.0}
"""Fields added to :class:`ObjectiveConfig` after runs were stored, with the value they trained
with (the weights that existed are stored with every run)."""


def vicreg_variance(z: torch.Tensor, target_std: float = 1.0) -> torch.Tensor:
    """Hinge on the std of each dimension of z (N, D): mean(relu(target - std))."""
    std = torch.sqrt(z.var(dim=0) + 1e-4)
    return functional.relu(target_std - std).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances of z (N, D), divided by D."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / max(n - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return off.pow(2).sum() / d


def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of centred z (N, D): 1 (collapsed) to D."""
    s = torch.linalg.svdvals(z - z.mean(dim=0))
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(torch.exp(entropy))


def latent_health(z: torch.Tensor) -> dict[str, Any]:
    """Per-dimension std and effective rank of latents z (N, D): is the latent collapsing?"""
    std = z.std(dim=0)
    return {
        "std_mean": float(std.mean()),
        "std_min": float(std.min()),
        "dims_below_0.01": int((std < 0.01).sum()),
        "effective_rank": effective_rank(z),
        "dim": int(z.shape[1]),
        "std_per_dim": [round(float(s), 4) for s in std],
    }


class SensorResidual:
    """Normalised per-sensor residual (..., S) between two feature tensors (..., F), with
    periodic sensors compared as wrapped angles."""

    def __init__(self, features: FeatureMap) -> None:
        self.n = features.n_sensors
        self.p = int(features.periodic.sum())
        self.periodic = torch.as_tensor(features.periodic)
        self.std = torch.as_tensor(features.std, dtype=torch.float32)

    def __call__(self, predicted: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        residual = predicted[..., : self.n] - observed[..., : self.n]
        if self.p:
            s, p = self.n, self.p
            angle = torch.atan2(predicted[..., s : s + p], predicted[..., s + p :])
            true = torch.atan2(observed[..., s : s + p], observed[..., s + p :])
            wrapped = torch.remainder(angle - true + math.pi, 2 * math.pi) - math.pi
            residual = residual.clone()
            residual[..., self.periodic] = wrapped / self.std[self.periodic]
        return residual


def encoder_windows(batch: Windows, history: int, frames: int = 2) -> tuple[torch.Tensor, FrameStacks | None]:
    """Every observed window of a batch: features (B*(K+1), history, F), and its stacks of the
    last ``frames`` frames (B*(K+1) of them), each distinct frame once (consecutive windows
    share frames)."""
    feats = batch.features.unfold(1, history, 1).permute(0, 1, 3, 2)  # (B, K+1, history, F)
    windows = feats.reshape(-1, history, feats.shape[-1])
    stacked = None
    if batch.frame_bank is not None and batch.frame_index is not None:
        index, n = batch.frame_index, batch.frame_index.shape[1]
        columns = [index[:, history - frames + j : n - frames + 1 + j] for j in range(frames)]
        stacks = torch.stack(columns, dim=2).reshape(-1, frames)  # (B*(K+1), frames), latest last
        distinct, local = torch.unique(stacks, return_inverse=True)
        stacked = FrameStacks(batch.frame_bank[distinct], local)
    return windows, stacked


class JepaObjective:
    """Computes the loss of a :class:`JepaWorldModel` and keeps its EMA target encoder."""

    def __init__(
        self,
        model: JepaWorldModel,
        config: ObjectiveConfig,
        features: FeatureMap,
        selected: list[int] | None = None,
    ) -> None:
        """``selected``: the sensors (indices) whose features weigh ``config.select_weight``
        times the others' in the feature losses (None: every feature alike)."""
        self.model = model
        self.config = config
        self.residual = SensorResidual(features)
        self.weights: torch.Tensor | None = None
        if selected and config.select_weight != 1.0:
            mask = np.zeros(features.n_sensors, dtype=bool)
            mask[selected] = True
            weights = torch.ones(features.n_features)
            weights[list(features.columns(mask))] = config.select_weight
            self.weights = weights / weights.mean()
        self.target = copy.deepcopy(model.encoder).requires_grad_(False) if config.ema_tau > 0 else None

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def loss(self, batch: Windows) -> tuple[torch.Tensor, dict[str, float]]:
        c, m, h = self.config, self.model, self.model.history
        k = batch.actions.shape[1]
        b = batch.features.shape[0]
        windows, frames = encoder_windows(batch, h, max(m.camera_frames, 2))
        z_all = m.encode(windows, frames).reshape(b, k + 1, -1)
        if self.target is not None:
            with torch.no_grad():
                z_target = self.target(windows, frames).reshape(b, k + 1, -1)
        else:
            z_target = z_all.detach() if c.stop_gradient else z_all
        embedded = m.action_encoder(batch.actions)
        z_pred = m.predictor.unroll(z_all[:, 0], embedded)  # (B, K, D)
        z_forced = m.predictor(z_all[:, :-1], embedded)  # teacher-forced one step
        terms: dict[str, torch.Tensor] = {}
        terms["latent"] = functional.mse_loss(z_pred, z_target[:, 1:]) + functional.mse_loss(
            z_forced, z_target[:, 1:]
        )
        flat = z_all[..., : m.latent_dim].reshape(-1, m.latent_dim)  # the learned part
        terms["variance"] = vicreg_variance(flat)
        terms["covariance"] = vicreg_covariance(flat)
        inverse = m.inverse(z_all[:, :-1], z_all[:, 1:])
        terms["inverse"] = functional.mse_loss(inverse, batch.actions)
        observed = batch.features[:, h - 1 :]  # (B, K+1, F)
        read_obs = z_all if c.readout_through else z_all.detach()
        read_pred = z_pred if c.readout_through else z_pred.detach()
        w = self.weights
        terms["recon"] = feature_loss(m.read(read_obs), observed, c.sensor_loss, w)
        decoded = m.read(read_pred)
        terms["sensor"] = feature_loss(decoded, observed[:, 1:], c.sensor_loss, w)
        if c.one_step_weight > 0:
            forced = z_forced if c.readout_through else z_forced.detach()
            terms["one_step"] = feature_loss(m.read(forced), observed[:, 1:], c.sensor_loss, w)
        residual = self.residual(decoded.detach(), observed[:, 1:]).abs()
        scale = m.error_scale(z_pred.detach())
        terms["scale"] = (torch.log(scale) + residual / scale).mean()
        weights = {
            "latent": c.latent_weight,
            "variance": c.var_weight,
            "covariance": c.cov_weight,
            "inverse": c.inverse_weight,
            "recon": c.recon_weight,
            "sensor": c.sensor_weight if c.readout_through else 1.0,
            "one_step": c.one_step_weight,
            "scale": c.scale_weight,
        }
        total = sum(weights[name] * value for name, value in terms.items())
        stats = {name: float(value.detach()) for name, value in terms.items()}
        stats["latent_std"] = float(flat.detach().std(dim=0).mean())
        return total, stats

    @torch.no_grad()
    def after_step(self) -> None:
        """EMA update of the target encoder."""
        if self.target is None:
            return
        tau = self.config.ema_tau
        for target, online in zip(self.target.parameters(), self.model.encoder.parameters(), strict=True):
            target.mul_(tau).add_(online.detach(), alpha=1 - tau)


class SensorObjective:
    """Unrolled multi-step feature-space MSE for sensor-space models (the MLP and GRU baselines)."""

    def __init__(self, model: torch.nn.Module, history: int) -> None:
        self.model = model
        self.history = history

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def loss(self, batch: Windows) -> tuple[torch.Tensor, dict[str, float]]:
        h = self.history
        predicted = self.model.forecast_features(batch.features[:, :h], None, batch.actions)
        loss = functional.mse_loss(predicted, batch.features[:, h:])
        return loss, {"sensor": float(loss.detach())}

    def after_step(self) -> None:
        pass
