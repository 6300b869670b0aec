"""NumPy inference mirror of the world model (sensor encoder, predictor, readout), for small batches.

The live worker rolls out 1-10 assets at a time, 1-30 steps each, many times a second. At those
sizes torch's eager dispatch (~10-15 µs per operation, nine per predictor step) is the whole
cost: a 30-step rollout of one asset took 2.8-4.3 ms where the same arithmetic in NumPy takes
0.7 ms (``bench/worker.py``, docs/worker.md "Live latency"). :class:`NumpyWorldModel` copies the
weights of a :class:`~twin.model.jepa.JepaWorldModel` once and computes exactly its
``encode`` (sensor-only models), ``rollout``, ``read`` and ``error_scale``
(``tests/model/test_fastpath.py`` checks them against torch for every conditioning, the linear
path and the readout variants); encoding, reading and rolling out 1-10 assets costs a handful
of 10-µs torch calls each otherwise. :meth:`NumpyWorldModel.current` rebuilds the copy when a
parameter of the module has changed in place (its version counter moved), so a model being
fine-tuned is never read stale. Large batches (planning's 1,000 candidates) stay in torch, whose
threaded matmuls win there (:data:`MAX_ROWS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["MAX_ROWS", "NumpyWorldModel"]

MAX_ROWS = 256
"""Largest batch :meth:`TwinModel.predict_latents` sends to NumPy; above it, torch."""

Layer = tuple[np.ndarray, np.ndarray | None]
"""A linear layer as (W (in, out) float32, bias (out,) or None): ``x @ W + b``."""


def _layer(linear: nn.Linear, columns: slice | None = None) -> Layer:
    weight = linear.weight.detach() if columns is None else linear.weight.detach()[:, columns]
    bias = None if linear.bias is None else linear.bias.detach().numpy().astype(np.float32, copy=True)
    return np.ascontiguousarray(weight.numpy().T, dtype=np.float32), bias


def _apply(layer: Layer, x: np.ndarray) -> np.ndarray:
    w, b = layer
    y = x @ w
    return y if b is None else y + b


def _silu_(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x) in place of ``x`` (a temporary the caller owns), written with tanh so no
    exp overflows."""
    t = np.multiply(x, 0.5)
    np.tanh(t, out=t)
    t *= 0.5
    t += 0.5
    x *= t
    return x


def _mlp(sequential: nn.Module, what: str) -> tuple[Layer, ...]:
    """An ``nn.Sequential`` of Linear layers with SiLU between them (see ``encoders.mlp``)."""
    layers = []
    for part in sequential:
        if isinstance(part, nn.Linear):
            layers.append(_layer(part))
        elif not isinstance(part, nn.SiLU):
            raise TypeError(f"NumpyWorldModel: {what} part {part!r} has no NumPy mirror")
    return tuple(layers)


def _run_mlp(layers: tuple[Layer, ...], x: np.ndarray) -> np.ndarray:
    for i, layer in enumerate(layers):
        x = _apply(layer, x)
        if i < len(layers) - 1:
            x = _silu_(x)
    return x


def _versions(params: tuple[torch.Tensor, ...]) -> tuple[int, ...]:
    return tuple(p._version for p in params)


@dataclass(frozen=True, slots=True)
class NumpyWorldModel:
    """The weights of one model's sensor encoder, action encoder, predictor and readout, as
    float32 NumPy arrays: :meth:`encode` (sensor-only models; ``sensor`` None otherwise),
    :meth:`rollout`, :meth:`read` and :meth:`error_scale`."""

    encoder: tuple[Layer, ...]
    """Action encoder: linear layers with SiLU between them."""
    w_z: Layer
    """Input layer, latent columns (no bias)."""
    w_a: Layer
    """Input layer, action-embedding columns and the bias."""
    hidden: tuple[Layer, ...]
    film: Layer | None
    out: Layer
    lin_z: Layer | None
    lin_a: Layer | None
    sensor: tuple[Layer, ...] | None
    """Sensor encoder MLP over the flattened window; None: a camera model (torch encodes)."""
    keep: np.ndarray
    """(F,) 1 for the features the sensor encoder sees, 0 for the camera-only ones."""
    history: int
    carry: bool
    read_mean: tuple[Layer, ...]
    read_scale: tuple[Layer, ...]
    skip: bool
    derived: np.ndarray | None
    """(F,) mask of the columns a skip readout's MLP predicts; None: none."""
    source: nn.Module
    """The module copied (another one: :meth:`current` copies that)."""
    params: tuple[torch.Tensor, ...]
    """Its parameters (listing them afresh costs ~10 µs: more than a small step)."""
    versions: tuple[int, ...]
    """Their version counters when copied."""

    @classmethod
    def from_model(cls, model: nn.Module) -> NumpyWorldModel:
        """Copy ``model`` (a :class:`~twin.model.jepa.JepaWorldModel`): its ``action_encoder``
        (an ``nn.Sequential`` of Linear and SiLU) and ``predictor`` (a
        :class:`~twin.model.predictor.LatentPredictor`)."""
        p = model.predictor
        d = p.inp.in_features - model.action_encoder.embed_dim
        enc, readout = model.encoder, model.readout
        sensor_only = enc.sensor is not None and enc.camera is None and enc.mix is None
        keep = enc.sensor.keep if enc.sensor is not None else torch.ones(readout.n_features)
        params = tuple(model.parameters())
        with torch.no_grad():
            return cls(
                encoder=_mlp(model.action_encoder.net, "action encoder"),
                w_z=(_layer(p.inp, slice(0, d))[0], None),
                w_a=_layer(p.inp, slice(d, None)),
                hidden=tuple(_layer(layer) for layer in p.hidden),
                film=None if p.film is None else _layer(p.film),
                out=_layer(p.out),
                lin_z=None if p.lin_z is None else _layer(p.lin_z),
                lin_a=None if p.lin_a is None else _layer(p.lin_a),
                sensor=_mlp(enc.sensor.net, "sensor encoder") if sensor_only else None,
                keep=keep.detach().numpy().astype(np.float32),
                history=enc.history,
                carry=enc.carry,
                read_mean=_mlp(readout.mean, "readout"),
                read_scale=_mlp(readout.scale, "error scale head"),
                skip=readout.skip,
                derived=readout.derived.numpy().astype(np.float32) if readout.has_derived else None,
                source=model,
                params=params,
                versions=_versions(params),
            )

    def current(self, model: nn.Module) -> NumpyWorldModel:
        """This copy if it is of ``model`` and no parameter changed in place since (an optimiser
        step, ``load_state_dict``), else a new one."""
        if model is self.source and _versions(self.params) == self.versions:
            return self
        return NumpyWorldModel.from_model(model)

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Normalised features (B, >=history, F) -> latents (B, D) float32, as
        :meth:`JepaWorldModel.encode` computes them without frames (``sensor`` must be set)."""
        if self.sensor is None:
            raise ValueError("NumpyWorldModel.encode: a camera model encodes in torch")
        window = np.asarray(features, dtype=np.float32)[:, -self.history :]
        z = _run_mlp(self.sensor, (window * self.keep).reshape(len(window), -1))
        return np.concatenate([z, window[:, -1] * self.keep], axis=-1) if self.carry else z

    def read(self, z: np.ndarray) -> np.ndarray:
        """Latents (..., D) -> features (..., F), as :meth:`Readout.forward`."""
        z = np.asarray(z, dtype=np.float32)
        if not self.skip:
            return _run_mlp(self.read_mean, z)
        carried = z[..., -len(self.keep) :]
        if self.derived is None:
            return carried.copy()
        return carried + _run_mlp(self.read_mean, z) * self.derived

    def error_scale(self, z: np.ndarray) -> np.ndarray:
        """Latents (..., D) -> expected |error| per sensor (..., S), as :meth:`Readout.error_scale`."""
        return (np.logaddexp(0.0, _run_mlp(self.read_scale, np.asarray(z, dtype=np.float32))) + 1e-4).astype(
            np.float32
        )

    def rollout(self, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Latents (B, D) float32, normalised actions (B, H, A) -> latents (B, H, D) float32 for
        t+1..t+H, as :meth:`JepaWorldModel.rollout` computes them."""
        z = np.asarray(z, dtype=np.float32)
        e = np.asarray(actions, dtype=np.float32).transpose(1, 0, 2)  # time-major (H, B, A)
        e = _run_mlp(self.encoder, e)
        a_in = _apply(self.w_a, e)
        layers = (None, *self.hidden)
        if self.film is not None:  # (h W + b)(1 + g) + beta = (h W)(1 + g) + (b(1 + g) + beta)
            mods = np.split(_apply(self.film, e), 2 * len(layers), axis=-1)
            scales = [1.0 + g for g in mods[0::2]]
            shifts = [
                s * (a_in if i == 0 else layers[i][1]) + beta
                for i, (s, beta) in enumerate(zip(scales, mods[1::2], strict=True))
            ]
        else:
            scales = [None] * len(layers)
            shifts = [
                a_in,
                *(np.broadcast_to(layer[1], a_in.shape[:-1] + layer[1].shape) for layer in self.hidden),
            ]
        a_lin = None if self.lin_a is None else _apply(self.lin_a, e)
        weights = [self.w_z[0], *(layer[0] for layer in self.hidden)]
        w_out, b_out = self.out
        out = np.empty((len(z), e.shape[0], z.shape[-1]), dtype=np.float32)
        for k in range(e.shape[0]):
            h = z
            for w, scale, shift in zip(weights, scales, shifts, strict=True):
                h = h @ w
                if scale is not None:
                    h *= scale[k]
                h += shift[k]
                h = _silu_(h)
            step = h @ w_out
            step += b_out
            if self.lin_z is not None and a_lin is not None:
                step += z @ self.lin_z[0]
                step += a_lin[k]
            z = z + step
            out[:, k] = z
        return out
