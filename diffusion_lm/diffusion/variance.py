"""Per-noise-level estimators of v(t), the quantity the importance sampler makes p(t) proportional to.

t ∈ [0, 1] is split into K equal bins (``stats.bins.bin_index``). Every estimator keeps
*decayed sums* per bin: at each observation all sums are multiplied by ``decay`` and the new batch's
sums are added, an exponential moving average without start-up bias (``decay = 1`` pools everything).
The batch sums are all-reduced across DDP ranks before they are added, so every rank holds the same
statistics, equal to those of one process that saw the concatenated batch, and the checkpoint written
by rank 0 holds them all.

* :class:`GradVariance` — the definition of "Cheaper and Better Diffusion Language Model via Task-Specific
  Training" (ACL 2025): the variance of the per-example gradient of the denoising loss, tr Cov_x[∇_θ ℓ(x, t)], on a parameter subset θ;
  per-example gradients come from ``torch.func`` (``vmap`` over ``grad``).
* :class:`LossVariance` — Var_x[ℓ(x, t)] of the per-example training losses (free: no extra pass).
* :class:`LossSecondMoment` — E_x[ℓ(x, t)²] (free; with α = ½ this is the improved-DDPM sampler,
  Nichol & Dhariwal 2021, §3.3).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..models.params import TIMESTEP_AND_ATTENTION, matching_parameters
from ..stats.bins import bin_index


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """In-place sum over DDP ranks (a no-op without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


class VarianceEstimator:
    """Interface. The sampler calls ``setup(K)`` once, then ``observe_losses`` after every training
    step of an estimation phase and, when ``needs_model``, ``observe_model`` on some of its batches.

    Args:
        decay: Factor applied to the per-bin sums at every observation (1 = plain average).
    """

    needs_model = False
    stat_names: tuple[str, ...] = ()

    def __init__(self, decay: float = 0.99) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = decay
        self.num_bins = 0

    def setup(self, num_bins: int) -> None:
        self.num_bins = num_bins
        for name in self.stat_names:
            setattr(self, name, torch.zeros(num_bins, dtype=torch.float64))

    def observe_losses(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Detached per-example training losses (B,) at noise levels t (B,)."""

    def observe_model(self, model: nn.Module, process: Any, batch: dict[str, Any]) -> None:
        """A training batch with the current model (only when ``needs_model``)."""

    def values(self) -> torch.Tensor:
        """(K,) float64 estimate of v per bin; NaN where a bin has no data yet."""
        raise NotImplementedError

    def _add(self, sums: dict[str, torch.Tensor], reduce: bool = True) -> None:
        """Fold one observation's per-bin sums into the decayed sums, all-reduced first (one
        collective) unless they already are."""
        names = list(sums)
        flat = torch.stack([sums[n].to(torch.float64) for n in names])
        if reduce:
            flat = all_reduce_sum(flat)
        for name, row in zip(names, flat):
            acc = getattr(self, name).to(row.device)
            setattr(self, name, acc.mul_(self.decay).add_(row))

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).detach().cpu().clone() for name in self.stat_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.stat_names:
            setattr(self, name, state[name].to(torch.float64).clone())


class _LossMoments(VarianceEstimator):
    """Decayed per-bin count, Σℓ and Σℓ² of the training losses."""

    stat_names = ("count", "total", "total_sq")

    def observe_losses(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        idx = bin_index(t.detach(), self.num_bins)
        x = losses.detach().to(torch.float64)
        zeros = x.new_zeros(self.num_bins)
        self._add({"count": zeros.index_add(0, idx, torch.ones_like(x)), "total": zeros.index_add(0, idx, x),
                   "total_sq": zeros.index_add(0, idx, x * x)})


class LossVariance(_LossMoments):
    """v(t) = Var[ℓ | t-bin], unbiased, from the training losses (EMA per bin)."""

    def values(self) -> torch.Tensor:
        n = self.count
        mean = self.total / n
        var = (self.total_sq / n - mean**2).clamp_min(0) * n / (n - 1)
        return torch.where(n > 1, var, torch.full_like(var, float("nan")))


class LossSecondMoment(_LossMoments):
    """v(t) = E[ℓ² | t-bin] from the training losses (EMA per bin)."""

    def values(self) -> torch.Tensor:
        return torch.where(self.count > 0, self.total_sq / self.count, torch.full_like(self.count, float("nan")))


class _LossModule(nn.Module):
    """Makes ``process.per_example_loss(model, …)`` a module call, so that ``functional_call`` swaps
    the model's parameters everywhere the process reads them (embedding table included)."""

    def __init__(self, model: nn.Module, process: Any) -> None:
        super().__init__()
        self.model = model
        self.process = process

    def forward(self, batch: dict[str, torch.Tensor], t: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
        return self.process.per_example_loss(self.model, batch, t, noise)


def per_example_grads(
    model: nn.Module,
    process: Any,
    batch: dict[str, Any],
    t: torch.Tensor,
    names: Sequence[str],
    noise: Optional[torch.Tensor] = None,
    chunk_size: int = 8,
) -> Iterator[torch.Tensor]:
    """Per-example gradients ∇_θ ℓ(x_i, t_i) of ``process.per_example_loss`` for the parameters
    ``names`` (θ), flattened and concatenated in that order: yields (c, P) blocks of ≤ chunk_size
    examples. One ``vmap(grad(·))`` call per block; the other parameters are constants."""
    B = t.shape[0]
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == B}
    wanted = set(names)
    fixed = {f"model.{n}": p.detach() for n, p in model.named_parameters() if n not in wanted}
    fixed.update({f"model.{n}": b for n, b in model.named_buffers()})
    theta = {n: p.detach() for n, p in model.named_parameters() if n in wanted}
    module = _LossModule(model, process)

    def loss_one(sub: dict[str, torch.Tensor], ex: dict[str, torch.Tensor], t1: torch.Tensor, *eps: torch.Tensor):
        params = {**fixed, **{f"model.{n}": p for n, p in sub.items()}}
        one = {k: v[None] for k, v in ex.items()}  # a batch of one example
        return functional_call(module, params, (one, t1[None], eps[0][None] if eps else None))[0]

    in_dims = (None, 0, 0) + ((0,) if noise is not None else ())
    per_example = vmap(grad(loss_one), in_dims=in_dims, randomness="different")
    # The math attention kernel has vmap batching rules; the fused ones fall back to a Python loop.
    with sdpa_kernel([SDPBackend.MATH]):
        for i in range(0, B, chunk_size):
            sl = slice(i, i + chunk_size)
            args = ({k: v[sl] for k, v in tensors.items()}, t[sl]) + ((noise[sl],) if noise is not None else ())
            g = per_example(theta, *args)
            yield torch.cat([g[n].flatten(1) for n in names], dim=1)  # (c, P)


class GradVariance(VarianceEstimator):
    """v(t) = tr Cov_x[∇_θ ℓ(x, t)] per bin: the variance of the per-example gradient of the
    denoising loss on the parameters θ matching ``params`` (the paper's definition).

    Each observation takes the first ``examples`` examples of the rank's batch and gives them noise
    levels inside ``examples // examples_per_bin`` bins (rotating over all K bins from one observation
    to the next, the same on every rank). With S_b = Σ_i g_i, Q_b = Σ_i ‖g_i‖² and n_b over the examples
    of bin b on all ranks, the within-batch sum of squared deviations Q_b − ‖S_b‖²/n_b and its n_b − 1
    degrees of freedom are accumulated; v_b is their ratio (an unbiased variance estimate).

    Args:
        params: Glob patterns of θ (``Denoiser.named_parameters()`` names). Default: timestep
            embedding and self-attention.
        examples: Examples per observed batch and rank (the pilot's subset; costs about one extra
            forward/backward of this many examples).
        examples_per_bin: Examples given to each observed bin (≥ 2: a variance needs two).
        chunk_size: Examples per ``vmap`` call (memory: chunk_size × |θ| gradients at once).
        decay: Factor applied to the sums at every observation.
    """

    needs_model = True
    stat_names = ("sq_dev", "dof")

    def __init__(
        self,
        params: Sequence[str] = TIMESTEP_AND_ATTENTION,
        examples: int = 32,
        examples_per_bin: int = 4,
        chunk_size: int = 8,
        decay: float = 0.95,
    ) -> None:
        super().__init__(decay)
        if examples_per_bin < 2 or examples < examples_per_bin:
            raise ValueError(f"need examples ≥ examples_per_bin ≥ 2, got {examples} and {examples_per_bin}")
        self.params = list(params)
        self.examples, self.examples_per_bin, self.chunk_size = examples, examples_per_bin, chunk_size
        self.observations = 0

    @property
    def bins_per_observation(self) -> int:
        return max(1, min(self.num_bins, self.examples // self.examples_per_bin))

    def next_bins(self) -> torch.Tensor:
        """(m,) the bins of the next observation: consecutive, rotating, identical on every rank."""
        m = self.bins_per_observation
        return (self.observations * m + torch.arange(m)) % self.num_bins

    def observe_model(self, model: nn.Module, process: Any, batch: dict[str, Any]) -> None:
        n = min(self.examples, batch["input_ids"].shape[0])
        bins = self.next_bins().to(batch["input_ids"].device)
        slot = torch.arange(n, device=bins.device) % bins.numel()
        t = (bins[slot] + torch.rand(n, device=bins.device)) / self.num_bins  # uniform inside each bin
        sub = {k: v[:n] for k, v in batch.items()}
        self.accumulate(model, process, sub, t, bins)

    @torch.compiler.disable  # torch.func transforms run eagerly, also around a compiled denoiser
    def accumulate(
        self, model: nn.Module, process: Any, batch: dict[str, Any], t: torch.Tensor, bins: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
    ) -> None:
        """Adds one observation: the examples of ``batch`` at noise levels ``t`` (B,), each inside one
        of ``bins`` (m,) (the same list on every rank). ``noise`` fixes the corruption (tests)."""
        names = matching_parameters(model, self.params, "GradVariance.params")
        slot_of_bin = torch.full((self.num_bins,), -1, dtype=torch.long, device=t.device)
        slot_of_bin[bins] = torch.arange(bins.numel(), device=t.device)
        slot = slot_of_bin[bin_index(t, self.num_bins)]  # (B,)
        if bool((slot < 0).any()):
            raise ValueError("every t must lie in one of the observed bins")
        m = bins.numel()
        S, Q, N = None, t.new_zeros(m, dtype=torch.float64), t.new_zeros(m, dtype=torch.float64)
        start = 0
        with torch.no_grad():  # torch.func.grad runs its own autograd; nothing here needs the outer graph
            for g in per_example_grads(model, process, batch, t, names, noise, self.chunk_size):
                g = g.to(torch.float64)  # (c, P): float64 keeps Q − ‖S‖²/n free of cancellation
                s = slot[start : start + g.shape[0]]
                start += g.shape[0]
                S = (S if S is not None else g.new_zeros(m, g.shape[1])).index_add_(0, s, g)
                Q.index_add_(0, s, g.pow(2).sum(1))
                N.index_add_(0, s, torch.ones_like(s, dtype=torch.float64))
            flat = all_reduce_sum(torch.cat([S.flatten(), Q, N]))  # one collective for S, Q and n
        S, Q, N = flat[: S.numel()].view_as(S), flat[S.numel() : S.numel() + m], flat[S.numel() + m :]
        sq_dev = (Q - S.pow(2).sum(1) / N.clamp_min(1)).clamp_min(0)  # Σ_i ‖g_i − ḡ_b‖²
        dof = (N - 1).clamp_min(0)
        self._add({"sq_dev": torch.zeros(self.num_bins, dtype=torch.float64, device=t.device).index_add(0, bins, sq_dev),
                   "dof": torch.zeros(self.num_bins, dtype=torch.float64, device=t.device).index_add(0, bins, dof)},
                  reduce=False)  # S, Q and n were all-reduced above
        self.observations += 1

    def values(self) -> torch.Tensor:
        return torch.where(self.dof > 0, self.sq_dev / self.dof, torch.full_like(self.dof, float("nan")))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "observations": self.observations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.observations = int(state["observations"])
