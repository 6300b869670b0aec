"""The action-conditioned latent predictor and the readout from latents to sensor features.

:class:`LatentPredictor`: residual ``z_{t+1} = z_t + f(z_t, e(a_t))``. ``f`` is an MLP whose
hidden layers are modulated by the action embedding (FiLM: ``h * (1 + gamma(e)) + beta(e)``);
``conditioning="concat"`` feeds the embedding only at the input (the ablation's weaker variant).
History enters through the encoder's observation window, so the predictor is Markov in z and a
rollout costs one MLP call per step. With phase pairs (``ModelConfig.phase_from``) the first
dimensions of z turn, before the MLP reads them, through the angle a measured angular speed
sweeps in one step: a rotating machine's shaft angle, which its speed sensor does not show but
its vibration does, is integrated exactly instead of learned.

:class:`Readout`: latent (..., D) -> sensor features (..., F) and a per-sensor error scale
(..., S) (the variance head whose output conformal calibration turns into bands).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from twin.model.encoders import mlp

CONDITIONING = ("film", "concat")


class LatentPredictor(nn.Module):
    """(B, D) latent, (B, E) action embedding -> (B, D) next latent. ``linear``: a linear path
    ``A z + B e`` added to the MLP's step (zero-initialised). ``clip`` > 0: the MLP reads z
    clamped to ``[-clip, clip]`` (the residual and the linear path use z as it is; see
    ``ModelConfig.input_clip``).

    ``phase``: per phase pair k, ``(column, scale, offset)``: the column of z holding a
    normalised angular speed ``u`` (rad/s = mean + std * u) and ``scale = std * dt``, ``offset
    = mean * dt`` (rad), so that ``scale * u + offset`` is the angle the shaft turns through in
    one control step of ``dt`` seconds. Each step first rotates the pair ``(z[2k], z[2k+1])``
    by that angle, the speed taken as the mean of now and next (the trapezoid rule; next is
    now plus the linear path's step when there is one, else now), then runs the residual MLP
    and the linear path on the turned z: ``z' = T(z) + f(T(z), e) + A z + B e``. The encoder
    learns to put the shaft's phase in the pair (a vibration at once per turn shows it); the
    MLP reads the turned pair, so the next vibration is a smooth function of it and the speed
    rather than of ``cos(speed * dt)``, which over the speed range winds through several
    turns (see ``ModelConfig.phase_from``)."""

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        hidden: int,
        layers: int = 2,
        conditioning: str = "film",
        linear: bool = False,
        clip: float = 0.0,
        phase: tuple[tuple[int, float, float], ...] = (),
    ):
        super().__init__()
        self.clip = clip
        self.n_phase = len(phase)
        if any(not 2 * len(phase) <= c < latent_dim for c, _, _ in phase):  # also: room for the pairs
            raise ValueError(
                f"LatentPredictor(phase={phase!r}): {len(phase)} pairs need {2 * len(phase)} leading "
                f"dimensions and speed columns after them, below latent_dim={latent_dim}"
            )
        # (k,) each, from the config and the feature statistics, rebuilt on load: not stored
        columns, scales, offsets = zip(*phase, strict=True) if phase else ((), (), ())
        self.register_buffer("phase_column", torch.tensor(columns, dtype=torch.long), persistent=False)
        self.register_buffer("phase_scale", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.register_buffer("phase_offset", torch.tensor(offsets, dtype=torch.float32), persistent=False)
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning={conditioning!r} must be one of {CONDITIONING}")
        self.conditioning = conditioning
        # a linear path beside the MLP, z + A z + B e + f(z, e), zero at the start: the part of
        # the dynamics a least-squares ARX model gets exactly (a position-controlled joint)
        self.lin_z = nn.Linear(latent_dim, latent_dim, bias=False) if linear else None
        self.lin_a = nn.Linear(action_dim, latent_dim, bias=False) if linear else None
        for part in filter(None, (self.lin_z, self.lin_a)):
            nn.init.zeros_(part.weight)
        self.inp = nn.Linear(latent_dim + action_dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.film = nn.Linear(action_dim, 2 * hidden * layers) if conditioning == "film" else None
        self.out = nn.Linear(hidden, latent_dim)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def condition(self, action: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The action-only part of a step, (..., E) -> input term (..., hidden) and FiLM
        (gamma, beta) per layer: computed once for a whole action sequence in a rollout."""
        d = self.inp.in_features - action.shape[-1]
        a_in = functional.linear(action, self.inp.weight[:, d:], self.inp.bias)
        if self.lin_a is not None:  # the linear path's action term rides along: (..., hidden + D)
            a_in = torch.cat([a_in, self.lin_a(action)], dim=-1)
        if self.film is None:
            return a_in, None
        # one product per (gamma, beta) of each layer, from row blocks of the weight: each comes
        # out contiguous (a chunk of one wide product needed a copy of its own: for 1,000 x 30
        # rollouts, 60 MB of copies that took half of the rollout's time)
        n = 2 * (len(self.hidden) + 1)
        blocks = zip(self.film.weight.chunk(n, dim=0), self.film.bias.chunk(n, dim=0), strict=True)
        return a_in, tuple(functional.linear(action, w, b) for w, b in blocks)

    def step(
        self,
        z: torch.Tensor,
        a_in: torch.Tensor,
        mods: tuple[torch.Tensor, ...] | None,
        w_z: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One step from a latent (B, D) and :meth:`condition` terms of one action (B, ...).
        ``w_z``: the latent columns of the input layer, sliced once per rollout (each slice
        costs a full-size zero-filled gradient in the backward pass)."""
        w_z = self.inp.weight[:, : z.shape[-1]] if w_z is None else w_z
        linear = None
        if self.lin_z is not None:
            a_in, a_lin = a_in.split([self.inp.out_features, z.shape[-1]], dim=-1)
            linear = self.lin_z(z) + a_lin
        if self.n_phase:
            z = self.turn(z, linear)
        h = functional.linear(z.clamp(-self.clip, self.clip) if self.clip else z, w_z) + a_in
        for i, layer in enumerate([None, *self.hidden]):
            if layer is not None:
                h = layer(h)
            if mods is not None:
                h = torch.addcmul(mods[2 * i + 1], h, 1 + mods[2 * i])
            h = functional.silu(h)
        out = z + self.out(h)
        return out if linear is None else out + linear

    def turn(self, z: torch.Tensor, linear: torch.Tensor | None = None) -> torch.Tensor:
        """z (..., D) with each phase pair rotated through its speed's angle over one step
        (``linear``: the linear path's step of z, which estimates the next speed)."""
        now = z[..., self.phase_column]  # (..., k) normalised speeds
        after = now if linear is None else now + linear[..., self.phase_column]
        angle = (now + after) * (self.phase_scale / 2) + self.phase_offset
        cos, sin = torch.cos(angle), torch.sin(angle)
        pairs = 2 * self.n_phase
        x, y = z[..., 0:pairs:2], z[..., 1:pairs:2]
        turned = torch.stack((cos * x - sin * y, sin * x + cos * y), dim=-1).flatten(-2)
        return torch.cat((turned, z[..., pairs:]), dim=-1)

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.step(z, *self.condition(action))

    def unroll(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z (B, D), embedded actions (B, H, E) -> latents (B, H, D) for t+1..t+H."""
        w_z = self.inp.weight[:, : z.shape[-1]]
        if not torch.is_grad_enabled():  # inference: each step's action terms as it comes, kept in
            # cache; all H at once are (H, B, hidden) buffers written and read back from memory
            out = []
            for k in range(actions.shape[1]):
                z = self.step(z, *self.condition(actions[:, k]), w_z)
                out.append(z)
            return torch.stack(out, dim=1)
        a_in, mods = self.condition(actions.transpose(0, 1).contiguous())  # time-major: contiguous steps
        # unbind, not a_in[k]: the backward of one unbind is one stack, that of H selects is H
        # zero-filled full-size gradients
        steps_in = a_in.unbind(0)
        steps_mods = None if mods is None else list(zip(*(m.unbind(0) for m in mods), strict=True))
        out = []
        for k in range(actions.shape[1]):
            z = self.step(z, steps_in[k], None if steps_mods is None else steps_mods[k], w_z)
            out.append(z)
        return torch.stack(out, dim=1)


class Readout(nn.Module):
    """(..., D) latent -> ((..., F) features, (..., S) positive error scale).

    ``skip``: the last F dimensions of z are the features themselves (a latent that carries the
    observation, see ``ModelConfig.carry_observation``) and are read as they are; the MLP
    predicts only the ``derived`` columns (those the encoder never saw, e.g. the arm's cube poses
    in a camera-only-cubes model). An MLP correction on top of an exact carried value only adds
    its own fitting noise: on the cart-pole it tripled the one-step residual while balancing,
    where faults must show. ``derived_from``: the (start, stop) dimensions of z the derived
    columns are read from (None: all of z); the camera's own part of the latent
    (``ModelConfig.camera_dims``), so that what only the camera shows is read from what the
    camera saw (and what the predictor made of it), not guessed from the other sensors.
    ``derived_linear``: read the derived columns from those dimensions by a linear map (a
    linear probe) instead of an MLP: with a keypoint camera reader, a position on the table is
    an affine function of where its colour is in the image, and a linear map cannot memorise
    the training scenes' placements (supervised cube x, y from keypoints: test R^2 0.950
    linear against 0.940 MLP; docs/model.md, "The arm's camera").
    """

    def __init__(
        self,
        latent_dim: int,
        n_features: int,
        n_sensors: int,
        hidden: int,
        skip: bool = False,
        derived: tuple[int, ...] = (),
        derived_from: tuple[int, int] | None = None,
        derived_linear: bool = False,
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.skip = skip
        self.derived_from = derived_from
        if derived_from is not None and not (skip and derived):
            raise ValueError("Readout(derived_from=...) reads derived columns: needs skip=True and derived")
        if derived_linear and derived_from is None:
            raise ValueError("Readout(derived_linear=True) reads the derived_from dimensions: give them")
        width = latent_dim if derived_from is None else derived_from[1] - derived_from[0]
        self.mean = (
            nn.Linear(width, n_features) if derived_linear else mlp([width, hidden, hidden, n_features])
        )
        self.scale = mlp([latent_dim, hidden // 2, n_sensors])
        mask = torch.zeros(n_features)
        mask[list(derived)] = 1.0
        self.register_buffer("derived", mask, persistent=False)  # from the config, not stored
        self.has_derived = bool(derived)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.skip:
            return self.mean(z)
        carried = z[..., -self.n_features :]
        if not self.has_derived:
            return carried
        source = z if self.derived_from is None else z[..., self.derived_from[0] : self.derived_from[1]]
        return carried + self.mean(source) * self.derived

    def error_scale(self, z: torch.Tensor) -> torch.Tensor:
        """Expected absolute error per sensor (normalised units) of a reading of ``z``."""
        return functional.softplus(self.scale(z)) + 1e-4


class InverseDynamics(nn.Module):
    """(B, D) z_t, (B, D) z_{t+1} -> (B, A) action in [-1, 1]."""

    def __init__(self, latent_dim: int, n_actions: int, hidden: int) -> None:
        super().__init__()
        self.net = mlp([2 * latent_dim, hidden, n_actions])

    def forward(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, z_next], dim=-1))
