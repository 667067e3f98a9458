"""Glancing training for masked diffusion (GLAT: Qian et al. 2021, "Glancing Transformer for
Non-Autoregressive Neural Machine Translation", §3.2).

Random masking trains the denoiser on masks that have nothing to do with what it gets wrong. Glancing
first decodes the whole target in one gradient-free pass from the fully masked input, counts the
positions it gets wrong, d = Hamming(Y, Ŷ), and reveals N = ⌈λ · d⌉ randomly chosen *reference* tokens
(GLAT eq. 6–7); the model is trained to predict the rest. A model that is still bad sees many
reference tokens (an easy, informative task); one that is good sees few and must generate almost
everything in parallel — the curriculum adapts to the model, sentence by sentence.

The masked share of each row is its timestep (the MaskedDiffusion convention r(t) = t), so the
sampler's time input means the same thing as in training. With ``mix`` > 0 that share of the rows
keeps MDLM's random masking (t ~ the timestep sampler) so that every masking ratio an iterative
decoder visits is trained. Cost: one extra gradient-free forward per step.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..models.denoiser import Denoiser
from .discrete import DenoisePass
from .mdlm import MaskedDiffusion
from .schedule import NoiseSchedule


class GlancingMaskedDiffusion(MaskedDiffusion):
    """Args:
        ratio: λ, the share of the first pass's errors revealed as reference tokens (GLAT: 0.5, annealed to 0.3).
        mix: Share of rows trained with random (MDLM) masking instead of glancing.
        schedule, mask_id, length_weight: See :class:`MaskedDiffusion`. The loss is the mean cross-entropy
            of the masked tokens (GLAT's; the ELBO weight has no meaning for a glancing mask).
    """

    def __init__(self, ratio: float = 0.5, mix: float = 0.5, schedule: Optional[NoiseSchedule] = None,
                 mask_id: Optional[int] = None, length_weight: float = 0.1) -> None:
        super().__init__(schedule, mask_id, "uniform", length_weight=length_weight)
        if not 0.0 <= ratio <= 1.0 or not 0.0 <= mix <= 1.0:
            raise ValueError(f"ratio and mix must be in [0, 1], got {ratio}, {mix}")
        self.ratio = ratio
        self.mix = mix

    def grad_free_passes(self, self_condition: bool) -> float:  # noqa: ARG002 — one glancing pass with or without self-conditioning
        return 1.0

    def glance_mask(self, model: Denoiser, batch: dict[str, Any]) -> torch.Tensor:
        """(B, L) bool: target positions that stay masked after revealing ⌈λ · d⌉ random reference tokens."""
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        with torch.no_grad():
            full = torch.where(tmask, torch.full_like(ids, self.mask_token()), ids)
            ones = tmask.to(torch.float32)  # t = 1 on the whole target
            guess = self.denoise(model, batch, full, ones).logits.argmax(-1)  # (N,)
            wrong = torch.zeros_like(tmask)
            wrong[tmask] = guess != ids[tmask]
            reveal = torch.ceil(self.ratio * wrong.sum(1).float()).long()  # (B,) GLAT eq. 7
            # a random order of the target positions; the first `reveal` of each row are shown
            order = torch.rand(tmask.shape, device=ids.device).masked_fill(~tmask, 2.0).argsort(1).argsort(1)
            return tmask & (order >= reveal[:, None])

    def passes(self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor) -> list[DenoisePass]:
        ids, tmask = batch["input_ids"], batch["target_mask"]
        masked = self.glance_mask(model, batch)
        random_rows = torch.rand(ids.shape[0], device=ids.device) < self.mix  # (B,)
        masked = torch.where(random_rows[:, None], self.corrupt_mask(tmask, t), masked)
        share = masked.sum(1).float() / tmask.sum(1).clamp_min(1).float()  # (B,) the row's t under r(t) = t
        t_row = torch.where(random_rows, t, share)
        x = torch.where(masked, torch.full_like(ids, self.mask_token()), ids)
        return [self.denoise(model, batch, x, self.token_timesteps(t_row, tmask))]
