"""Confidence-ordered decoding of masked diffusion: Mask-Predict and MaskGIT.

Revealing *random* positions by argmax (the MDLM ancestral step) makes all positions revealed
together pick the marginal mode independently ("ein einem einem …"): nothing ties them to each
other. Confidence-ordered decoding fixes that by revealing what the model is surest of first, so
that every later prediction is conditioned on the committed tokens.

At iteration k = 0 … T−1 the denoiser predicts every masked target position; each gets a token
(argmax, or a draw at ``temperature`` / ``top_p``) and its confidence p = the probability of that
token. Then n_{k+1} = ⌊N · γ((k+1)/T)⌋ positions (N = target length) are masked again for the next
iteration, the least confident first:

* ``remask: true`` — Mask-Predict (Ghazvininejad et al. 2019, §3.2 eq. 2–3, γ(r) = 1 − r): *every*
  target position competes, a token revealed earlier can be masked again when later tokens make it
  look unlikely; positions not masked keep their token and their confidence;
* ``remask: false`` — MaskGIT (Chang et al. 2022, §3.2, γ(r) = cos(πr/2)): only the positions that
  were masked in this iteration compete; a kept token is final.

``confidence_noise`` adds Gumbel noise of that scale to the log-confidences, annealed linearly to 0
over the iterations (MaskGIT's "choice temperature"), so early choices are less greedy.
The denoiser's timestep is the masked share of each row, t = n_k / N (the inverse of the
log-linear corruption rate r(t) = t, the MaskedDiffusion default).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from ..errors import ConfigError
from ..models.denoiser import Denoiser
from .generate import GenerationResult, Generator
from .mdlm import MaskedDiffusion

# γ(r): share of the target still masked after a fraction r of the iterations
MASK_SCHEDULES = {
    "linear": lambda r: 1.0 - r,  # Mask-Predict
    "cosine": lambda r: math.cos(0.5 * math.pi * r),  # MaskGIT
}


def sample_with_confidence(logits: torch.Tensor, temperature: float, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, V) logits → tokens (N,) and their probability under the untempered model (N,).

    Temperature 0 is the argmax; otherwise a draw from softmax(logits / temperature) restricted to the
    smallest set of tokens whose probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020)."""
    probs = torch.softmax(logits.float(), -1)  # (N, V)
    if temperature <= 0:
        conf, tokens = probs.max(-1)
        return tokens, conf
    scaled = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = scaled.sort(-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > top_p  # tokens after the nucleus is full
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        scaled = torch.zeros_like(scaled).scatter_(-1, order, sorted_p)
    tokens = torch.multinomial(scaled, 1).squeeze(-1)
    return tokens, probs.gather(-1, tokens[:, None]).squeeze(-1)


class MaskPredictSampler(Generator):
    """Args:
        steps: T, the number of denoiser evaluations (Mask-Predict: 10).
        remask: ``true`` = Mask-Predict (any position may be masked again), ``false`` = MaskGIT (kept tokens are final).
        schedule: γ, the masked share after each iteration: ``linear`` (Mask-Predict) or ``cosine`` (MaskGIT).
        temperature: 0 = argmax; > 0 samples the tokens from softmax(logits / temperature).
        top_p: Nucleus of the token draw (with ``temperature`` > 0).
        confidence_noise: Scale of the Gumbel noise on log-confidences, annealed to 0 (0 = greedy order).
    """

    def __init__(self, steps: int = 10, remask: bool = True, schedule: Literal["linear", "cosine"] = "linear",
                 temperature: float = 0.0, top_p: float = 1.0, confidence_noise: float = 0.0) -> None:
        if not 1 <= steps <= 1000:
            raise ValueError(f"steps must be in [1, 1000], got {steps}")
        if schedule not in MASK_SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(MASK_SCHEDULES)}, got {schedule!r}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.steps = steps
        self.remask = remask
        self.schedule = schedule
        self.gamma = MASK_SCHEDULES[schedule]
        self.temperature = temperature
        self.top_p = top_p
        self.confidence_noise = confidence_noise

    def masked_counts(self, lengths: torch.Tensor, k: int) -> torch.Tensor:
        """(B,) positions masked at iteration k: all at k = 0, ⌊N · γ(k/T)⌋ after, none at k = T."""
        if k >= self.steps:
            return torch.zeros_like(lengths)
        return torch.floor(lengths.float() * self.gamma(k / self.steps)).long()

    @torch.no_grad()
    def generate(self, model: Denoiser, process: MaskedDiffusion, batch: dict[str, Any]) -> GenerationResult:
        if not isinstance(process, MaskedDiffusion):
            raise ConfigError(f"MaskPredictSampler needs MaskedDiffusion, got {type(process).__name__}")
        mask_id = process.mask_token()
        tmask = batch["target_mask"]  # (B, L)
        B, L = tmask.shape
        lengths = tmask.sum(1)  # (B,) N per row
        x = process.prior(model, batch["input_ids"], tmask)  # (B, L): all MASK on the target
        conf = torch.zeros(B, L, device=x.device)  # probability of each position's current token
        masked = tmask.clone()  # (B, L) positions predicted at this iteration
        for k in range(self.steps):
            t_row = masked.sum(1).float() / lengths.clamp_min(1).float()  # (B,) masked share = t of r(t) = t
            logits = process.denoise(model, batch, x, process.token_timesteps(t_row, tmask)).logits  # (N, V)
            tokens, p = sample_with_confidence(logits, self.temperature, self.top_p)
            new_x, new_conf = x.clone(), conf.clone()
            new_x[tmask], new_conf[tmask] = tokens, p  # dense (B, L) from the flat target order
            x = torch.where(masked, new_x, x)  # only predicted positions change (Mask-Predict eq. 2)
            conf = torch.where(masked, new_conf, conf)
            n_next = self.masked_counts(lengths, k + 1)  # (B,)
            if k == self.steps - 1 or not bool(n_next.any()):
                masked = torch.zeros_like(masked)
                break
            masked = self.choose_masked(conf, masked if not self.remask else tmask, n_next, k)
            x = torch.where(masked, torch.full_like(x, mask_id), x)
        logp = torch.where(tmask, conf.clamp_min(1e-12).log(), torch.zeros_like(conf))
        scores = logp.sum(1) / lengths.clamp_min(1)  # (B,) mean log-probability of the final tokens
        steps = torch.full((B,), k + 1, device=x.device)
        return GenerationResult(tokens=torch.where(tmask, x, batch["input_ids"]), steps=steps, scores=scores)

    def choose_masked(self, conf: torch.Tensor, candidates: torch.Tensor, n: torch.Tensor, k: int) -> torch.Tensor:
        """(B, L) bool: the ``n`` (B,) least confident ``candidates`` of each row, after annealed Gumbel noise."""
        score = conf.clamp_min(1e-12).log()
        if self.confidence_noise > 0:
            u = torch.rand_like(score).clamp(1e-9, 1 - 1e-9)
            score = score + self.confidence_noise * (1 - (k + 1) / self.steps) * -torch.log(-torch.log(u))
        score = score.masked_fill(~candidates, float("inf"))  # never chosen
        rank = score.argsort(1).argsort(1)  # (B, L) 0 = least confident
        return (rank < n[:, None]) & candidates
