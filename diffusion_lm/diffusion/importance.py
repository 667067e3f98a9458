"""Task-aware importance sampling of the noise level, from
"Cheaper and Better Diffusion Language Model via Task-Specific Training" (ACL 2025).

t ∈ [0, 1] is split into K equal bins. During a pilot phase t is uniform while an estimator
(:mod:`.variance`) measures v(t) per bin on the task's own data; then

    p_k = (1 − λ) · v_k^α / Σ_j v_j^α + λ / K                    (λ = ``uniform_floor``)

and each example draws a bin k ~ p, then t ~ U(k/K, (k+1)/K). Noise levels whose gradients are
noisiest get the most steps; the floor keeps every level trained. Optionally each example's loss is
multiplied by w_k = 1 / (K · p_k), so that E_p[w · ℓ] = E_uniform[ℓ] and the objective stays the
uniform one (unbiased, but with larger weights on the rarely drawn levels); by default the weights
are 1 and the objective itself is re-weighted towards the levels that matter.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.pytorch.utilities import rank_zero_info

from ..errors import ConfigError
from .timesteps import TimestepSampler
from .variance import GradVariance, VarianceEstimator


def importance_probabilities(v: torch.Tensor, alpha: float, uniform_floor: float) -> torch.Tensor:
    """(K,) p ∝ v^α mixed with the uniform distribution: (1 − λ)·v^α/Σv^α + λ/K.

    Bins without an estimate (NaN) get the mean of the others; without any estimate (or all zero)
    p is uniform."""
    v = v.detach().to(torch.float64).cpu()
    K = v.numel()
    uniform = torch.full((K,), 1.0 / K, dtype=torch.float64)
    known = ~torch.isnan(v)
    if not bool(known.any()):
        return uniform
    v = torch.where(known, v, v[known].mean()).clamp_min(0.0)
    q = v.pow(alpha)
    if not bool(q.sum() > 0) or not bool(torch.isfinite(q).all()):
        return uniform
    return (1.0 - uniform_floor) * q / q.sum() + uniform_floor * uniform


class ImportanceSampler(TimestepSampler):
    """p(t) ∝ v(t)^α after a uniform pilot phase (see the module docstring).

    Args:
        num_bins: K, the number of equal-width bins of t.
        alpha: Exponent α of p ∝ v^α (0 = uniform, 1 = proportional, > 1 sharper).
        uniform_floor: λ, the weight of the uniform distribution mixed into p; every bin keeps at
            least λ/K of the probability.
        estimator: How v(t) is measured (``class_path``): ``GradVariance`` (default, the paper's
            per-example gradient variance), ``LossVariance`` or ``LossSecondMoment``.
        pilot_steps: Steps of uniform sampling at the start of training, during which v(t) is
            estimated; p is computed at their end.
        reestimate_every: Recompute p every this many steps after the pilot, from statistics that
            keep being collected (0 = p stays fixed after the pilot and estimation stops).
        estimate_every: Steps between two batches given to a model-based estimator (GradVariance)
            while estimating; the loss-based ones see every step's losses.
        importance_weights: Multiply each example's loss by 1 / (K · p(t)) (unbiased objective).
    """

    def __init__(
        self,
        num_bins: int = 20,
        alpha: float = 1.0,
        uniform_floor: float = 0.1,
        estimator: Optional[VarianceEstimator] = None,
        pilot_steps: int = 500,
        reestimate_every: int = 0,
        estimate_every: int = 1,
        importance_weights: bool = False,
    ) -> None:
        if num_bins < 1:
            raise ValueError(f"num_bins must be ≥ 1, got {num_bins}")
        if alpha < 0:
            raise ValueError(f"alpha must be ≥ 0, got {alpha}")
        if not 0.0 <= uniform_floor <= 1.0:
            raise ValueError(f"uniform_floor must be in [0, 1], got {uniform_floor}")
        if pilot_steps < 0 or reestimate_every < 0 or estimate_every < 1:
            raise ValueError("pilot_steps and reestimate_every must be ≥ 0, estimate_every ≥ 1")
        self.num_bins, self.alpha, self.uniform_floor = num_bins, alpha, uniform_floor
        self.estimator = estimator if estimator is not None else GradVariance()
        self.estimator.setup(num_bins)
        self.pilot_steps, self.reestimate_every, self.estimate_every = pilot_steps, reestimate_every, estimate_every
        self.importance_weights = importance_weights
        self.p = torch.full((num_bins,), 1.0 / num_bins, dtype=torch.float64)
        self.ready = False  # False: still in the pilot, t is uniform
        self.refreshes = 0
        self._p_on: tuple[torch.device, torch.Tensor] | None = None

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        device = torch.device(device)
        if not self.ready:
            return torch.rand(batch_size, device=device), torch.ones(batch_size, device=device)
        p = self._p_device(device)
        k = torch.multinomial(p, batch_size, replacement=True)  # (B,) bins
        t = (k + torch.rand(batch_size, device=device)) / self.num_bins
        if self.importance_weights:
            return t, 1.0 / (self.num_bins * p[k])
        return t, torch.ones(batch_size, device=device)

    def _p_device(self, device: torch.device) -> torch.Tensor:
        if self._p_on is None or self._p_on[0] != device:
            self._p_on = (device, self.p.to(device=device, dtype=torch.float32))
        return self._p_on[1]

    # ------------------------------------------------------------------ estimation
    def estimating(self, step: int) -> bool:
        return step < self.pilot_steps or self.reestimate_every > 0

    def observe(self, model: Any, process: Any, batch: dict[str, Any], step: int) -> None:
        if self.estimator.needs_model and self.estimating(step) and step % self.estimate_every == 0:
            self.estimator.observe_model(model, process, batch)

    def update(self, t: torch.Tensor, losses: torch.Tensor, step: int) -> None:
        if self.estimating(step):
            self.estimator.observe_losses(t, losses)
        done = step + 1  # steps completed after this one
        if not self.ready:
            due = done >= self.pilot_steps
        else:
            due = self.reestimate_every > 0 and done > self.pilot_steps and (done - self.pilot_steps) % self.reestimate_every == 0
        if due:
            self.refresh(step)

    def refresh(self, step: int = -1) -> None:
        """p ← p(v) from the estimator's current statistics (identical on every rank)."""
        self.p = importance_probabilities(self.estimator.values(), self.alpha, self.uniform_floor)
        self._p_on = None
        self.ready = True
        self.refreshes += 1
        rank_zero_info(f"importance sampler: p(t) estimated at step {step}: "
                       f"[{', '.join(f'{x:.3f}' for x in self.p.tolist())}] over {self.num_bins} bins of t")

    def curves(self) -> dict[str, torch.Tensor]:
        return {"v": self.estimator.values().cpu(), "p": self.p.clone()}

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"num_bins": self.num_bins, "p": self.p.clone(), "ready": self.ready, "refreshes": self.refreshes,
                "estimator": self.estimator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "num_bins" not in state:
            raise ConfigError("the checkpoint's timestep sampler state is not an ImportanceSampler's")
        if int(state["num_bins"]) != self.num_bins:
            raise ConfigError(
                f"the checkpoint's importance sampler has {state['num_bins']} bins but the config sets "
                f"num_bins={self.num_bins}: resume with the same timestep_sampler settings"
            )
        self.p = state["p"].to(torch.float64).clone()
        self._p_on = None
        self.ready, self.refreshes = bool(state["ready"]), int(state["refreshes"])
        self.estimator.load_state_dict(state["estimator"])
