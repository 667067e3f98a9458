"""Self-conditioning perturbation (SCP), the first half of FastDiSS (Nguyen-Cong et al. 2026, arXiv:2604.05551).

At sampling with K steps the self-conditioning input of step t is the x̂_0 the model made one step
earlier, at the noisier level t + 1/K, from a sampler state, not from a fresh q-sample. Standard
self-conditioning (Chen et al. 2022, Analog Bits Alg. 1) trains on the estimate at t itself, which is
better than anything inference feeds. A perturbation makes the training estimate as poor; it is the
``perturbation`` component of :class:`~diffusion_lm.diffusion.FastDiSSDiffusion` (``class_path``):

* :class:`SelfConditionPerturbation` — none: the estimate is made at t and fed as it is;
* :class:`ShiftPerturbation` — the gradient-free self-conditioning pass sees x_{t'} with
  t' = min(1, t + Δ), Δ = 1/K, built from the same x_0 and the same ε as x_t (a deterministic DDIM
  trajectory keeps ε);
* :class:`NoisePerturbation` — Gaussian noise is added to the estimate made at t, x̃_0 = x̂_0 + σ·ξ,
  with a fixed σ (``noise_std``) or σ(t) = √max(0, e²(t + Δ) − e²(t)), where e²(·) is the running mean
  squared per-dimension error of gradient-free estimates measured during training (per bin of t,
  all-reduced over DDP ranks, stored in the checkpoint);
* :class:`ShiftNoisePerturbation` — shift, then add noise with a fixed ``noise_std``.

Here t is the level the trained pass sees, token by token (after FastDiSS's noise scaling), so the
estimate is never made at a lower noise level than the trained input.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..errors import ConfigError
from ..stats.bins import bin_index
from .variance import all_reduce_sum


def estimate_gap(sampler_steps: int, shift: Optional[float]) -> float:
    """Δ, the noise-level gap between a step's self-conditioning estimate and its input: ``shift``, else 1/K."""
    if sampler_steps < 1:
        raise ConfigError(f"perturbation.sampler_steps must be >= 1, got {sampler_steps}")
    return shift if shift is not None else 1.0 / sampler_steps


class SelfConditionPerturbation:
    """The interface, and itself no perturbation: the estimate is made at the trained level t and fed
    unchanged (plain self-conditioning)."""

    def estimate_timesteps(self, t_tok: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 — interface: subclasses read target_mask
        """Level of the self-conditioning estimate for a trained input at t (never below t).  (B, L)"""
        return t_tok

    def perturb(self, est: torch.Tensor, t_tok: torch.Tensor, t_est: torch.Tensor,  # noqa: ARG002 — interface: this base feeds the estimate unperturbed
                target_mask: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Self-conditioning input: the estimate (perturbed) on the target, 0 on the prompt (B, L, E); and the
        σ (B, L) of the added noise, ``None`` when no noise is added."""
        return torch.where(target_mask[..., None], est, torch.zeros_like(est)), None

    @property
    def measures_error(self) -> bool:
        """Whether :meth:`observe` keeps statistics of the estimates' error (it is then a DDP collective that
        every rank must call on the same steps)."""
        return False

    def observe(self, est: torch.Tensor, x0: torch.Tensor, t_est: torch.Tensor, target_mask: torch.Tensor) -> None:
        """Fold a gradient-free estimate x̂_0 (B, L, E) made at t_est (B, L) into the error statistics."""

    def observe_nothing(self, device: torch.device) -> None:
        """A step without an estimate (joins the collective of :meth:`observe` with nothing to add)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: ARG002 — interface: no statistics to restore
        """Restore :meth:`state_dict`; perturbations without statistics ignore it."""


class ShiftPerturbation(SelfConditionPerturbation):
    """The estimate is made at min(1, t + Δ) from the same x_0 and ε.

    Args:
        sampler_steps: K, the number of sampling steps the model is trained for; Δ = 1/K.
        shift: Δ directly (overrides ``sampler_steps``).
    """

    def __init__(self, sampler_steps: int = 10, shift: Optional[float] = None) -> None:
        self.shift = estimate_gap(sampler_steps, shift)

    def estimate_timesteps(self, t_tok, target_mask):
        return torch.where(target_mask, (t_tok + self.shift).clamp(max=1.0), t_tok)


class NoisePerturbation(SelfConditionPerturbation):
    """Gaussian noise on the estimate made at t: fixed σ, or σ(t) matched to the measured error gap.

    Args:
        noise_std: Fixed σ of the noise added to the estimate (per dimension, in units of the normalised
            embedding); ``None`` = measured σ(t).
        sampler_steps: K; the measured σ(t) closes the error gap between t + 1/K and t.
        shift: Δ directly (overrides ``sampler_steps``).
        error_bins: Bins of t for the measured estimate error.
        error_momentum: EMA momentum of those error statistics.
    """

    def __init__(self, noise_std: Optional[float] = None, sampler_steps: int = 10, shift: Optional[float] = None,
                 error_bins: int = 20, error_momentum: float = 0.99) -> None:
        self.shift = estimate_gap(sampler_steps, shift)
        self.noise_std = noise_std
        self.error_momentum = error_momentum
        self.error_sq = torch.zeros(error_bins)  # running mean squared per-dimension error of x̂_0, per bin of t
        self.error_seen = torch.zeros(error_bins, dtype=torch.bool)

    def _bins(self, t: torch.Tensor) -> torch.Tensor:
        return bin_index(t, self.error_sq.numel())

    def noise_sigma(self, t_tok: torch.Tensor, t_est: torch.Tensor) -> torch.Tensor:
        """σ per token (B, L): fixed, or √max(0, e²(t + Δ) − e²(t_est)) from the measured error."""
        if self.noise_std is not None:
            return torch.full_like(t_tok, self.noise_std, dtype=torch.float32)
        err = self.error_sq.to(t_tok.device)
        gap = err[self._bins((t_tok + self.shift).clamp(max=1.0))] - err[self._bins(t_est)]
        return gap.clamp(min=0.0).sqrt()

    def perturb(self, est, t_tok, t_est, target_mask):
        sigma = self.noise_sigma(t_tok, t_est) * target_mask
        est = est + sigma[..., None].to(est.dtype) * torch.randn_like(est)
        return torch.where(target_mask[..., None], est, torch.zeros_like(est)), sigma

    # ------------------------------------------------------------------ measured error e²(t)
    @property
    def measures_error(self) -> bool:
        return self.noise_std is None

    def error_sums(self, est: torch.Tensor, x0: torch.Tensor, t_est: torch.Tensor, target_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-bin Σ of the squared per-dimension error of x̂_0 and the number of target tokens.  (n,), (n,)"""
        # masked sums over all positions rather than boolean indexing: no data-dependent shape, no host sync
        w = target_mask.flatten().float()  # (B·L,)
        sq = (est.float() - x0.float()).pow(2).mean(-1).flatten() * w  # (B·L,)
        bins = self._bins(t_est.flatten())
        n = self.error_sq.numel()
        sums = torch.zeros(n, device=est.device).index_add_(0, bins, sq)
        return sums, torch.zeros(n, device=est.device).index_add_(0, bins, w)

    @torch.no_grad()
    def record_error(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Fold one step's per-bin error sums into the running means, summed over DDP ranks first.

        Every rank must call this on the same steps (it is a collective): a rank without an estimate
        this step passes zeros."""
        flat = all_reduce_sum(torch.cat([sums, counts]).float())  # one collective for both
        sums, counts = flat.chunk(2)
        self.error_sq, self.error_seen = self.error_sq.to(sums.device), self.error_seen.to(sums.device)
        mean = sums / counts.clamp(min=1)
        m = self.error_momentum
        updated = torch.where(self.error_seen, m * self.error_sq + (1 - m) * mean, mean)
        hit = counts > 0
        self.error_sq = torch.where(hit, updated, self.error_sq)
        self.error_seen = self.error_seen | hit

    def observe(self, est, x0, t_est, target_mask):
        if self.measures_error:
            self.record_error(*self.error_sums(est, x0, t_est, target_mask))

    def observe_nothing(self, device):
        if self.measures_error:
            zeros = torch.zeros(self.error_sq.numel(), device=device)
            self.record_error(zeros, zeros)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"error_sq": self.error_sq.detach().cpu().clone(), "error_seen": self.error_seen.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:  # a checkpoint of a process without statistics: nothing measured yet
            return
        for key in ("error_sq", "error_seen"):
            if key not in state:
                raise ConfigError(f"the checkpoint's process state has no {key!r}: "
                                  "it was not written by FastDiSSDiffusion with a NoisePerturbation")
        n = self.error_sq.numel()
        if state["error_sq"].numel() != n:
            raise ConfigError(f"the checkpoint's FastDiSS error statistics have {state['error_sq'].numel()} bins but "
                              f"perturbation.error_bins={n}: resume with the same error_bins")
        self.error_sq = state["error_sq"].float().clone()
        self.error_seen = state["error_seen"].bool().clone()


class ShiftNoisePerturbation(NoisePerturbation, ShiftPerturbation):
    """The estimate is made at min(1, t + Δ) and then noised with a fixed σ.

    Args:
        noise_std: σ of the noise added to the shifted estimate.
        sampler_steps: K; Δ = 1/K.
        shift: Δ directly (overrides ``sampler_steps``).
    """

    def __init__(self, noise_std: float, sampler_steps: int = 10, shift: Optional[float] = None) -> None:
        if noise_std is None:
            raise ConfigError("ShiftNoisePerturbation needs a fixed perturbation.noise_std")
        super().__init__(noise_std=noise_std, sampler_steps=sampler_steps, shift=shift)
        # estimate_timesteps: ShiftPerturbation's; perturb: NoisePerturbation's (method resolution order)
