"""Adaptive early stopping for the continuous sampler: DDIM with a per-sequence stop criterion — the adaptive
inference of "Cheaper and Better Diffusion Language Model via Task-Specific Training" (ACL 2025), on the
DDIM sampler of Song, Meng & Ermon 2021 (eq. 12, σ = 0).

After each DDIM step k every sequence measures how much it still moves,

    Δ_k = ‖x_k − x_{k−1}‖ / √(target tokens)

(Frobenius norm over its target positions, i.e. the root-mean-square per-token change), and a
sequence with Δ_k < ε after at least ``min_steps`` steps is finished: its tokens are the rounding of
its last x̂_0 and it is **removed from the batch** — the next denoiser call runs on the remaining rows
only (and on the columns they need), so the compute is really saved. The loop is
:class:`~.generate.DDIMSampler`'s; this module adds only the criterion (:class:`ChangeBelowEpsilon`),
so with ε = 0 nothing stops early and the result is identical to it (same noise, same arithmetic).

What x_k is: ``criterion: x0`` tracks the model's clean estimate x̂_0 (default: it stops changing
once the model has made up its mind, whatever K is); ``criterion: xt`` tracks the sampler state x_t
itself (the literal reading; its change also shrinks with the step size 1/K).

``epsilon: null`` uses the ε that ``diffusion-lm calibrate`` stored in the checkpoint (0 if none).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch

from .calibrated_epsilon import CalibratedEpsilon
from .generate import DDIMSampler, StopRule


class ChangeBelowEpsilon(StopRule):
    """Stops a row once Δ_k < ε after at least ``min_steps`` steps (never at the last step: that one ends
    every row anyway). Keeps the tracked quantity of the previous step for every row.

    Args:
        x: The initial x_1 (B, L, E) of the call.
        epsilon, min_steps, steps, criterion: See :class:`AdaptiveDDIMSampler`.
    """

    def __init__(self, x: torch.Tensor, epsilon: float, min_steps: int, steps: int, criterion: str) -> None:
        self.epsilon, self.min_steps, self.steps, self.criterion = epsilon, min_steps, steps, criterion
        self.like = x
        self.prev = x.clone() if criterion == "xt" else None  # (B, L, E) tracked quantity of the last step

    def finished(self, k, active, x0_hat, x_new, target_mask):
        tracked = x0_hat if self.criterion == "x0" else x_new  # (b, Lk, E)
        Lk = tracked.shape[1]
        done = None
        if self.prev is not None and self.epsilon > 0 and k + 1 >= self.min_steps and k + 1 < self.steps:
            done = AdaptiveDDIMSampler.change(tracked, self.prev[active, :Lk], target_mask) < self.epsilon  # (b,)
            active, tracked = active[~done], tracked[~done]
        if self.prev is None:
            self.prev = torch.zeros_like(self.like)
        self.prev[active, :Lk] = tracked
        return done


class AdaptiveDDIMSampler(CalibratedEpsilon, DDIMSampler):
    """Args:
        steps: K, the most denoiser evaluations a sequence gets.
        epsilon: Stop a sequence when Δ_k < ε; ``None`` = the calibrated ε from the checkpoint (else 0).
        min_steps: Steps every sequence takes before it may stop.
        criterion: ``x0`` (track x̂_0) or ``xt`` (track the sampler state x_t).
        self_condition: Feed the previous step's x̂_0 as self-conditioning input.
        clamp: Diffusion-LM's clamping trick (see :class:`DDIMSampler`).
    """

    def __init__(
        self,
        steps: int = 20,
        epsilon: Optional[float] = None,
        min_steps: int = 2,
        criterion: Literal["x0", "xt"] = "x0",
        self_condition: bool = True,
        clamp: bool = False,
    ) -> None:
        super().__init__(steps=steps, self_condition=self_condition, clamp=clamp)
        if criterion not in ("x0", "xt"):
            raise ValueError(f"criterion must be x0 or xt, got {criterion!r}")
        self.init_epsilon(epsilon, min_steps)
        self.criterion = criterion

    @staticmethod
    def change(new: torch.Tensor, old: torch.Tensor, tmask: torch.Tensor) -> torch.Tensor:
        """Δ per row: ‖new − old‖ over target positions / √(target tokens).  (b, L, E) → (b,)"""
        sq = (new.float() - old.float()).pow(2).sum(-1) * tmask  # (b, L)
        return (sq.sum(-1) / tmask.sum(-1).clamp(min=1)).sqrt()

    def stop_rule(self, x: torch.Tensor) -> StopRule:
        return ChangeBelowEpsilon(x, self.effective_epsilon, self.min_steps, self.steps, self.criterion)
