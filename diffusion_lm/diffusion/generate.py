"""Samplers: turn a prompt batch (target region of the predicted length) into target tokens."""

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

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: ARG002
        """Restore :meth:`state_dict` (generators without state ignore it)."""


class DDIMSampler(Generator):
    """Deterministic K-step DDIM (Song et al. 2021, eq. 12 with σ = 0) on the x̂_0 parameterisation.

    Times t_k = 1 − k/K, k = 0 … K. At each step the denoiser predicts x̂_0 from x_{t_k}; then
    ε̂ = (x_t − √ᾱ_t · x̂_0) / √(1 − ᾱ_t) and x_s = √ᾱ_s · x̂_0 + √(1 − ᾱ_s) · ε̂. The final tokens are
    the rounding argmax of the last x̂_0.

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

    @torch.no_grad()
    def generate(self, model: Denoiser, process: GaussianDiffusion, batch: dict[str, Any]) -> GenerationResult:
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        B = ids.shape[0]
        tm = tmask[..., None]  # (B, L, 1)
        x0_prompt = process.embed(model, ids)  # (B, L, E); target rows are placeholders
        x = torch.where(tm, torch.randn_like(x0_prompt), x0_prompt)  # x_1 ~ N(0, I) on the target
        use_sc = self.self_condition and model.config.self_condition
        sc = torch.zeros_like(x) if use_sc else None
        times = torch.linspace(1.0, 0.0, self.steps + 1, device=ids.device)
        logits = None
        for k in range(self.steps):
            t_tok = process.token_timesteps(times[k].expand(B), tmask)  # (B, L)
            latent = model(inputs_embeds=x, timesteps=t_tok, self_cond=sc, valid=batch["valid"],
                           prefix_len=batch["prefix_len"]).latent
            x0_hat, logits = process.predict_x0(model, latent)
            x0_hat = x0_hat.float()
            if self.clamp:
                x0_hat = process.embedding_table(model)[logits.argmax(-1)]
            x0_hat = torch.where(tm, x0_hat, x0_prompt)
            x = self.ddim_step(process, x, x0_hat, times[k], times[k + 1])
            x = torch.where(tm, x, x0_prompt)
            if use_sc:
                sc = torch.where(tm, x0_hat, torch.zeros_like(x0_hat))
        tokens = torch.where(tmask, logits.argmax(-1), ids)
        return GenerationResult(tokens=tokens, steps=torch.full((B,), self.steps, device=ids.device),
                                scores=rounding_score(logits, tmask))

    @staticmethod
    def ddim_step(process: GaussianDiffusion, x: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        a_t, a_s = process.schedule.alpha_bar(t), process.schedule.alpha_bar(s)
        eps = (x - a_t.sqrt() * x0_hat) / (1 - a_t).sqrt()
        return a_s.sqrt() * x0_hat + (1 - a_s).sqrt() * eps
