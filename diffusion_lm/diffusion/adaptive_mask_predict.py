"""Adaptive early stopping for Mask-Predict decoding (Ghazvininejad et al. 2019): the adaptive inference of
"Cheaper and Better Diffusion Language Model via Task-Specific Training" (ACL 2025), carried over from continuous to masked diffusion.

At iteration k Mask-Predict fills every masked target position with a prediction; call the filled
sequence x̂_k (the model's current full guess, before positions are masked again). Each sequence
measures how much its guess still moves,

    Δ_k = (1/N) Σ_i [x̂_k,i ≠ x̂_{k−1},i]          (N = its target length)

the share of its target tokens that changed — the discrete counterpart of the continuous sampler's
RMS change of x̂_0 (:class:`~diffusion_lm.diffusion.AdaptiveDDIMSampler`). A sequence with Δ_k < ε after
at least ``min_steps`` iterations is finished with x̂_k as its output and leaves the batch: the next
denoiser call runs on the remaining rows only, so the compute is really saved. With ε = 0 nothing
stops early and the result is the fixed-step :class:`MaskPredictSampler`'s.

``epsilon: null`` uses the ε that ``diffusion-lm calibrate`` stored in the checkpoint (0 if none).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch

from ..errors import ConfigError
from ..models.denoiser import Denoiser
from .calibrated_epsilon import CalibratedEpsilon
from .generate import GenerationResult
from .mask_predict import MaskPredictSampler, sample_with_confidence
from .mdlm import MaskedDiffusion

ROW_KEYS = ("input_ids", "target_mask", "valid", "prefix_len")  # what the denoiser pass reads of a batch


class AdaptiveMaskPredictSampler(CalibratedEpsilon, MaskPredictSampler):
    """Args (besides :class:`MaskPredictSampler`'s):
        epsilon: Stop a sequence when Δ_k < ε (share of its target tokens that changed); ``None`` = the
            calibrated ε from the checkpoint (else 0).
        min_steps: Iterations every sequence takes before it may stop.
    """

    criterion = "changed tokens"  # what Δ measures (recorded by calibrate)

    def __init__(self, steps: int = 20, epsilon: Optional[float] = None, min_steps: int = 2, remask: bool = True,
                 schedule: Literal["linear", "cosine"] = "linear", temperature: float = 0.0, top_p: float = 1.0,
                 confidence_noise: float = 0.0) -> None:
        super().__init__(steps=steps, remask=remask, schedule=schedule, temperature=temperature, top_p=top_p,
                         confidence_noise=confidence_noise)
        self.init_epsilon(epsilon, min_steps)

    @staticmethod
    def change(new: torch.Tensor, old: torch.Tensor, tmask: torch.Tensor) -> torch.Tensor:
        """Δ per row: the share of target tokens that differ.  (b, L) → (b,)"""
        return ((new != old) & tmask).sum(1).float() / tmask.sum(1).clamp_min(1).float()

    @torch.no_grad()
    def generate(self, model: Denoiser, process: MaskedDiffusion, batch: dict[str, Any]) -> GenerationResult:
        if not isinstance(process, MaskedDiffusion):
            raise ConfigError(f"AdaptiveMaskPredictSampler needs MaskedDiffusion, got {type(process).__name__}")
        eps = self.effective_epsilon
        mask_id = process.mask_token()
        tmask = batch["target_mask"]  # (B, L)
        B, L = tmask.shape
        lengths = tmask.sum(1)  # (B,)
        x = process.prior(model, batch["input_ids"], tmask)  # (B, L): all MASK on the target
        conf = torch.zeros(B, L, device=x.device)
        masked = tmask.clone()  # (B, L) positions predicted at this iteration
        guess = torch.where(tmask, torch.full_like(x, mask_id), batch["input_ids"])  # (B, L) x̂_{k−1}
        steps = torch.full((B,), self.steps, dtype=torch.long, device=x.device)
        active = torch.arange(B, device=x.device)  # rows still being decoded
        for k in range(self.steps):
            sub = {key: batch[key][active] for key in ROW_KEYS}
            a_tm, a_x, a_masked, a_len = tmask[active], x[active], masked[active], lengths[active]
            t_row = a_masked.sum(1).float() / a_len.clamp_min(1).float()  # (b,) masked share
            logits = process.denoise(model, sub, a_x, process.token_timesteps(t_row, a_tm)).logits  # (n, V)
            tokens, p = sample_with_confidence(logits, self.temperature, self.top_p)
            new_x, new_conf = a_x.clone(), conf[active].clone()
            new_x[a_tm], new_conf[a_tm] = tokens, p
            a_x = torch.where(a_masked, new_x, a_x)  # x̂_k: every target position holds a token
            a_conf = torch.where(a_masked, new_conf, conf[active])
            x[active], conf[active] = a_x, a_conf
            n_next = self.masked_counts(a_len, k + 1)  # (b,)
            if k == self.steps - 1 or not bool(n_next.any()):
                steps[active] = k + 1
                break
            done = torch.zeros(len(active), dtype=torch.bool, device=x.device)
            if eps > 0 and k + 1 >= self.min_steps:
                done = self.change(a_x, guess[active], a_tm) < eps  # (b,)
            guess[active] = a_x
            if bool(done.any()):
                steps[active[done]] = k + 1
                keep = ~done
                active, a_conf, a_tm, n_next = active[keep], a_conf[keep], a_tm[keep], n_next[keep]
                if len(active) == 0:
                    break
            candidates = a_tm if self.remask else masked[active]
            a_masked = self.choose_masked(a_conf, candidates, n_next, k)
            masked[active] = a_masked
            x[active] = torch.where(a_masked, torch.full_like(x[active], mask_id), x[active])
        logp = torch.where(tmask, conf.clamp_min(1e-12).log(), torch.zeros_like(conf))
        scores = logp.sum(1) / lengths.clamp_min(1)  # (B,) mean log-probability of the final tokens
        return GenerationResult(tokens=torch.where(tmask, x, batch["input_ids"]), steps=steps, scores=scores)
