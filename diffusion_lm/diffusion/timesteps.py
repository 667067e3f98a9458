"""Timestep samplers: which noise levels t ∈ [0, 1] a training batch is drawn at.

The interface is what the recipes call; the importance sampler of "Cheaper and Better Diffusion Language
Model via Task-Specific Training" (ACL 2025) implements the same methods (and keeps per-bin statistics in
its state).
"""

from __future__ import annotations

from typing import Any

import torch


class TimestepSampler:
    """Interface.

    ``sample`` returns the per-example times and loss weights; ``update`` receives the
    per-example losses of the same batch so that adaptive samplers can keep statistics.
    ``observe`` is called before each training step with the model, the process and the batch,
    for estimators that need more than the losses (per-example gradients); ``curves`` returns
    per-bin curves the recipe logs under ``timestep/<name>/bin_XX``. Both default to nothing.
    ``state_dict``/``load_state_dict`` are stored in the recipe's checkpoint.
    """

    num_bins: int = 20  # bins of t for the recipe's per-noise-level loss statistics (adaptive samplers: theirs)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(t, weight)``, both of shape (B,): t ∈ [0, 1], weight multiplies the loss."""
        raise NotImplementedError

    def update(self, t: torch.Tensor, losses: torch.Tensor, step: int) -> None:  # noqa: ARG002 — interface default: stateless samplers
        """Called after each training step with detached per-example losses (B,)."""

    def observe(self, model: Any, process: Any, batch: dict[str, Any], step: int) -> None:  # noqa: ARG002 — interface default: stateless samplers
        """Called before each training step (not during evaluation) with the training denoiser."""

    def curves(self) -> dict[str, torch.Tensor]:
        """Per-bin curves to log (name → (K,) tensor), e.g. ``{"v": …, "p": …}``."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: ARG002 — interface default: no statistics
        return None


class UniformSampler(TimestepSampler):
    """t ~ U(t_min, 1), weight 1. ``t_min`` > 0 avoids wasting steps on an almost-clean input."""

    def __init__(self, t_min: float = 0.0) -> None:
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {t_min}")
        self.t_min = t_min

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        t = self.t_min + (1.0 - self.t_min) * torch.rand(batch_size, device=device)
        return t, torch.ones(batch_size, device=device)
