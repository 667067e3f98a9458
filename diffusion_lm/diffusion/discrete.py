"""Discrete diffusion on token ids: the shared base of uniform corruption with unrolled denoising (SUNDAE,
:mod:`.sundae`) and masked (absorbing) diffusion (MDLM, :mod:`.mdlm`), plus their iterative sampler. Both
are discrete-state diffusion with uniform and absorbing transitions (D3PM: Austin et al. 2021, "Structured
Denoising Diffusion Models in Discrete State-Spaces", §3).

Both corrupt only the target: each target token is corrupted independently with probability
r(t) = 1 − ᾱ(t) (``schedule.corruption_rate``); the denoiser sees the corrupted ids (and, where the process
conditions on time, the per-token t, 0 on the clean prompt) and predicts the clean token at every target
position.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch

from ..errors import ConfigError
from ..models.denoiser import Denoiser
from .generate import GenerationResult, Generator
from .process import DiffusionProcess, LossOutput, masked_mean
from .schedule import LogLinearSchedule, NoiseSchedule


class DenoisePass(NamedTuple):
    inputs: torch.Tensor  # (B, L) ids the denoiser saw
    logits: torch.Tensor  # (N, V) predictions at the N target positions
    out: Any  # DenoiserOutput of the pass


def sample_tokens(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, V) → (N,): argmax at temperature 0, else a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits.float() / temperature, -1), 1).squeeze(-1)


class DiscreteDiffusion(DiffusionProcess):
    """What the uniform and masked processes share: corruption of the target, the denoising pass,
    and the sampler's hooks (:meth:`prior`, :meth:`step`, :meth:`is_complete`).

    Args:
        schedule: Corruption rate r(t) = 1 − ᾱ(t). Default: log-linear (r = t).
        length_weight: Weight of the target-length cross-entropy added to the loss.
    """

    temperature: float = 0.0  # sampling temperature when the sampler sets none (0 = argmax)

    def __init__(self, schedule: Optional[NoiseSchedule] = None, length_weight: float = 0.1) -> None:
        super().__init__(schedule or LogLinearSchedule(), length_weight)

    def configure_denoiser(self, cfg) -> None:
        cfg.self_condition = False  # tokens in, tokens out: there is no x̂_0 estimate to feed back

    # --- corruption
    def corrupt_mask(self, target_mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: each target token independently with probability r(t) (t: (B,))."""
        rate = self.schedule.corruption_rate(t)[:, None]  # (B, 1)
        return (torch.rand(target_mask.shape, device=target_mask.device) < rate) & target_mask

    def corrupt(self, model: Denoiser, ids: torch.Tensor, target_mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- the denoiser
    def target_logits(self, model: Denoiser, latent: torch.Tensor) -> torch.Tensor:
        """(N, E) latents at target positions → (N, V) logits (float32)."""
        return model.logits(latent).float()

    def denoise(self, model: Denoiser, batch: dict[str, Any], x: torch.Tensor, t_tok: torch.Tensor) -> DenoisePass:
        out = model(x, timesteps=t_tok, valid=batch["valid"], prefix_len=batch["prefix_len"])
        return DenoisePass(x, self.target_logits(model, out.latent[batch["target_mask"]]), out)

    def passes(self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor) -> list[DenoisePass]:
        ids, tmask = batch["input_ids"], batch["target_mask"]
        return [self.denoise(model, batch, self.corrupt(model, ids, tmask, t), self.token_timesteps(t, tmask))]

    def per_token_loss(self, p: DenoisePass, batch: dict[str, Any], t: torch.Tensor) -> torch.Tensor:
        """(B, L) loss of one pass, 0 outside the target."""
        raise NotImplementedError

    def training_loss(self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, weights: torch.Tensor) -> LossOutput:
        tmask = batch["target_mask"]
        passes = self.passes(model, batch, t)
        losses = [self.per_token_loss(p, batch, t) for p in passes]
        per_token = torch.stack(losses).mean(0)  # (B, L)
        per_example = masked_mean(per_token, tmask, dim=1)  # (B,)
        loss = masked_mean(per_token * weights[:, None], tmask)
        length = self.length_loss(model, batch, passes[0].out)
        logs = {f"ce_pass{i + 1}": masked_mean(x, tmask).detach() for i, x in enumerate(losses)}
        logs["length_ce"] = length.detach()
        return LossOutput(loss + self.length_weight * length, per_example.detach(), logs)

    # --- sampling
    def prior(self, model: Denoiser, ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """x_1: the fully corrupted target (prompt unchanged)."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, logits: torch.Tensor, t: float, s: float, temperature: float,
             final: bool) -> torch.Tensor:
        """One reverse step t → s < t on the flat target tokens x (N,) given the logits (N, V)."""
        raise NotImplementedError

    def is_complete(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) bool: target tokens that hold a real token (the sampler may stop a sequence only then)."""
        return torch.ones_like(x, dtype=torch.bool)

    def moving(self, old: torch.Tensor, new: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 — interface: SUNDAE's rule reads logits
        """(N,) bool: target tokens that keep their sequence decoding (early stop): here, tokens the step
        changed or that are not yet complete."""
        return (new != old) | ~self.is_complete(new)


class DiscreteSampler(Generator):
    """Iterative refinement for :class:`DiscreteDiffusion` processes.

    Starts from the fully corrupted target (random tokens / all MASK) and takes ``steps`` reverse steps
    at t_k = 1 − k/K. A sequence stops early once none of its tokens is ``process.moving`` (masked: the step
    left them unchanged and none is MASK; SUNDAE: they are the denoiser's argmax fixed point) and keeps its
    tokens from before that step; it leaves the batch, so the compute is saved. ``GenerationResult.steps``
    counts its evaluations.
    With ``num_samples`` > 1 every prompt is decoded several times (different noise) and the sample with
    the highest mean log-probability under the model's final prediction is kept (the AR2Diff paper decodes
    8 samples).

    Args:
        steps: K, the number of denoising steps (AR2Diff: 10).
        temperature: 0 = argmax at each step; > 0 samples from softmax(logits / temperature); None = the
            process's own (SUNDAE: 0.8, masked: 0).
        num_samples: Samples per prompt.
        early_stop: Stop a sequence once it settles (above).
        min_steps: Steps before early stopping may trigger.
    """

    def __init__(self, steps: int = 10, temperature: Optional[float] = None, num_samples: int = 1,
                 early_stop: bool = True, min_steps: int = 1) -> None:
        if not 1 <= steps <= 2000 or num_samples < 1:
            raise ValueError(f"steps must be in [1, 2000] and num_samples ≥ 1, got {steps}, {num_samples}")
        self.steps = steps
        self.temperature = temperature
        self.num_samples = num_samples
        self.early_stop = early_stop
        self.min_steps = min_steps

    @torch.no_grad()
    def generate(self, model: Denoiser, process: DiscreteDiffusion, batch: dict[str, Any]) -> GenerationResult:
        if not isinstance(process, DiscreteDiffusion):
            raise ConfigError(f"DiscreteSampler needs a discrete process, got {type(process).__name__}")
        S = self.num_samples
        rows = {k: batch[k].repeat_interleave(S, 0) for k in ("input_ids", "target_mask", "valid", "prefix_len")}
        tmask = rows["target_mask"]  # (R, L), R = B·S
        R = tmask.shape[0]
        x = process.prior(model, rows["input_ids"], tmask)  # (R, L)
        steps = torch.zeros(R, dtype=torch.long, device=x.device)  # denoiser evaluations of each row
        score = torch.zeros(R, device=x.device)  # mean log-probability of its tokens under its last prediction
        active = torch.arange(R, device=x.device)
        times = torch.linspace(1.0, 0.0, self.steps + 1).tolist()
        temperature = process.temperature if self.temperature is None else self.temperature
        for k in range(self.steps):
            sub = {key: v[active] for key, v in rows.items()}
            tm = sub["target_mask"]
            xa = x[active]
            t_tok = process.token_timesteps(torch.full((len(active),), times[k], device=x.device), tm)
            logits = process.denoise(model, sub, xa, t_tok).logits  # (N, V), N = target tokens of the active rows
            old = xa[tm]
            new = process.step(old, logits, times[k], times[k + 1], temperature, final=k == self.steps - 1)
            row = tm.nonzero()[:, 0]  # (N,) active-row index of each target token
            stopping = self.early_stop and k + 1 >= self.min_steps
            if stopping:
                moving = torch.zeros(len(active), device=x.device).index_add_(
                    0, row, process.moving(old, new, logits).float()) > 0  # (A,)
                new = torch.where(moving[row], new, old)  # a settled sequence keeps the tokens it settled on
            xa[tm] = new
            x[active] = xa
            n_tok = tm.sum(1).clamp_min(1)
            logp = torch.log_softmax(logits, -1).gather(1, new[:, None]).squeeze(1)
            score[active] = torch.zeros(len(active), device=x.device).index_add_(0, row, logp) / n_tok
            steps[active] += 1
            if stopping:
                active = active[moving]  # settled sequences leave the batch
                if len(active) == 0:
                    break
        best = score.view(-1, S).argmax(1) + torch.arange(0, R, S, device=x.device)  # (B,) kept sample per prompt
        return GenerationResult(tokens=x[best], steps=steps[best], scores=score[best])
