"""Samplers: turn a prompt batch (target region of the predicted length) into target tokens. The continuous
sampler is DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12 with σ = 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..models.denoiser import Denoiser
from .gaussian import GaussianDiffusion


@dataclass
class GenerationResult:
    tokens: torch.Tensor  # (B, L) the batch's input_ids with the target region filled in
    steps: torch.Tensor  # (B,) denoiser evaluations each sequence took
    scores: Optional[torch.Tensor] = None  # (B,) the model's mean log-probability of its output (to rank candidates)
    target_mask: Optional[torch.Tensor] = None  # (B, L') the target region of ``tokens`` when it differs from the batch's


def rounding_score(logits: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """(B, L, V) final rounding logits → (B,) mean log-probability of their argmax tokens over the target."""
    logp = torch.log_softmax(logits.float(), -1).max(-1).values  # (B, L)
    return (logp * target_mask).sum(1) / target_mask.sum(1).clamp_min(1)


class Generator:
    """Interface: ``generate(model, process, batch)`` with ``batch`` in the generation layout
    (``data.layout.build_batch(..., tgts=None, tgt_lengths=…)``)."""

    def generate(self, model: Denoiser, process: Any, batch: dict[str, Any]) -> GenerationResult:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Calibrated settings stored in the checkpoint (e.g. the adaptive sampler's ε)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: ARG002 — interface default: no calibrated settings
        """Restore :meth:`state_dict` (generators without state ignore it)."""


class StopRule:
    """Decides after every DDIM step which rows are finished; one instance per :meth:`DDIMSampler.generate`
    call (it may keep state across the steps). This base never stops a row: every row takes K steps."""

    def finished(self, k: int, active: torch.Tensor, x0_hat: torch.Tensor, x_new: torch.Tensor,  # noqa: ARG002 — interface
                 target_mask: torch.Tensor) -> Optional[torch.Tensor]:  # noqa: ARG002 — the base rule never stops a row
        """After step k (0-based) of the ``active`` rows (b,), given their x̂_0 and new x_t (b, L', E) and target
        mask (b, L'): the (b,) bool of rows that stop here, or ``None`` (none stops)."""
        return None


class DDIMSampler(Generator):
    """Deterministic K-step DDIM (Song et al. 2021, eq. 12 with σ = 0) on the x̂_0 parameterisation.

    Times t_k = 1 − k/K, k = 0 … K. At each step the denoiser predicts x̂_0 from x_{t_k}; then
    ε̂ = (x_t − √ᾱ_t · x̂_0) / √(1 − ᾱ_t) and x_s = √ᾱ_s · x̂_0 + √(1 − ᾱ_s) · ε̂. The final tokens are
    the rounding argmax of the last x̂_0.

    The loop lets a :class:`StopRule` (:meth:`stop_rule`) finish rows early: a finished row keeps the
    rounding of its last x̂_0 and leaves the batch, so the next denoiser call runs on the remaining rows
    only (and on the columns they need). Fixed-step DDIM stops none (the adaptive sampler does).

    Args:
        steps: K, the number of denoiser evaluations (1 … 2000).
        self_condition: Feed the previous step's x̂_0 as self-conditioning input.
        clamp: Replace x̂_0 by the embedding of its argmax token at each step (Diffusion-LM's clamping trick).
    """

    def __init__(self, steps: int = 20, self_condition: bool = True, clamp: bool = False) -> None:
        if not 1 <= steps <= 2000:
            raise ValueError(f"steps must be in [1, 2000], got {steps}")
        self.steps = steps
        self.self_condition = self_condition
        self.clamp = clamp

    def stop_rule(self, x: torch.Tensor) -> StopRule:  # noqa: ARG002 — interface: the base rule needs no x_1
        """The early-stopping rule of one call, given the initial x_1 (B, L, E)."""
        return StopRule()

    @torch.no_grad()
    def generate(self, model: Denoiser, process: GaussianDiffusion, batch: dict[str, Any]) -> GenerationResult:
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        B, L = ids.shape
        x0_prompt = process.embed(model, ids)  # (B, L, E); target rows are placeholders
        x = torch.where(tmask[..., None], torch.randn_like(x0_prompt), x0_prompt)  # x_1 ~ N(0, I) on the target
        use_sc = self.self_condition and model.config.self_condition
        sc = torch.zeros_like(x) if use_sc else None
        stop = self.stop_rule(x)
        tokens = ids.clone()
        steps = torch.full((B,), self.steps, dtype=torch.long, device=ids.device)
        scores = torch.zeros(B, device=ids.device)  # (B,) mean log-probability of each row's last rounding
        active = torch.arange(B, device=ids.device)  # rows still being denoised
        Lk = L  # columns the remaining rows need
        times = torch.linspace(1.0, 0.0, self.steps + 1, device=ids.device)
        for k in range(self.steps):
            a_ids, a_tm = ids[active, :Lk], tmask[active, :Lk]
            tm3 = a_tm[..., None]  # (b, Lk, 1)
            a_prompt, a_x = x0_prompt[active, :Lk], x[active, :Lk]
            t_tok = process.token_timesteps(times[k].expand(len(active)), a_tm)  # (b, Lk)
            latent = model(inputs_embeds=a_x, timesteps=t_tok, self_cond=None if sc is None else sc[active, :Lk],
                           valid=batch["valid"][active, :Lk], prefix_len=batch["prefix_len"][active]).latent
            x0_hat, logits = process.predict_x0(model, latent)
            x0_hat = x0_hat.float()
            if self.clamp:
                x0_hat = process.embedding_table(model)[logits.argmax(-1)]
            x0_hat = torch.where(tm3, x0_hat, a_prompt)
            new_x = torch.where(tm3, self.ddim_step(process, a_x, x0_hat, times[k], times[k + 1]), a_prompt)
            x[active, :Lk] = new_x
            if use_sc:
                sc[active, :Lk] = torch.where(tm3, x0_hat, torch.zeros_like(x0_hat))
            if k == self.steps - 1:  # every remaining row ends here: its tokens are the last rounding
                tokens[active, :Lk] = torch.where(a_tm, logits.argmax(-1), a_ids)
                scores[active] = rounding_score(logits, a_tm)
                break
            done = stop.finished(k, active, x0_hat, new_x, a_tm)  # (b,) or None
            if done is None or not done.any():
                continue
            rows = active[done]
            tokens[rows, :Lk] = torch.where(a_tm[done], logits[done].argmax(-1), a_ids[done])
            scores[rows] = rounding_score(logits[done], a_tm[done])
            steps[rows] = k + 1
            active = active[~done]
            if len(active) == 0:
                break
            Lk = int(batch["valid"][active].sum(-1).max())
        return GenerationResult(tokens=tokens, steps=steps, scores=scores)

    @staticmethod
    def ddim_step(process: GaussianDiffusion, x: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        a_t, a_s = process.schedule.alpha_bar(t), process.schedule.alpha_bar(s)
        eps = (x - a_t.sqrt() * x0_hat) / (1 - a_t).sqrt()
        return a_s.sqrt() * x0_hat + (1 - a_s).sqrt() * eps
