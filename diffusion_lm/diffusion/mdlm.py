"""MDLM: masked (absorbing-state) diffusion (Sahoo et al. 2024, "Simple and Effective Masked Diffusion
Language Models").

A corrupted target token becomes MASK (each independently with probability r(t) = 1 − ᾱ(t)). The prediction
never proposes MASK (SUBS parameterisation, eq. 8); the loss is the cross-entropy at masked positions weighted
by −ᾱ'(t) / (1 − ᾱ(t)) (the continuous-time NELBO, eq. 10; 1/t for ᾱ = 1 − t), or unweighted. Sampling is
the ancestral step of eq. 7 (:meth:`MaskedDiffusion.step`) in :class:`~.discrete.DiscreteSampler`.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from typing_extensions import override

from ..errors import ConfigError
from .discrete import DiscreteDiffusion, sample_tokens
from .schedule import NoiseSchedule


class MaskedDiffusion(DiscreteDiffusion):
    """MDLM-style masked (absorbing-state) diffusion.

    Args:
        schedule: Masking rate r(t) = 1 − ᾱ(t). Default: r = t.
        mask_id: Id of the MASK token; default: the tokenizer's mask token (set by the recipe).
        loss_weighting: ``elbo`` (−ᾱ'(t) / (1 − ᾱ(t)), MDLM eq. 10) or ``uniform`` (mean CE of masked tokens).
        max_weight: Upper bound of the ELBO weight (it is 1/t for the default schedule).
        length_weight: Weight of the target-length cross-entropy.
    """

    def __init__(self, schedule: Optional[NoiseSchedule] = None, mask_id: Optional[int] = None,
                 loss_weighting: Literal["elbo", "uniform"] = "elbo", max_weight: float = 1000.0,
                 length_weight: float = 0.1) -> None:
        super().__init__(schedule, length_weight)
        self.mask_id = mask_id
        self.loss_weighting = loss_weighting
        self.max_weight = max_weight

    def trained_settings(self) -> dict[str, Any]:
        return {"corruption": "absorbing (MASK)", **super().trained_settings()}

    def bind_tokenizer(self, tokenizer) -> None:
        if self.mask_id is None:
            self.mask_id = tokenizer.mask_id

    def mask_token(self) -> int:
        """Id of the MASK token (a clear error when neither the config nor the tokenizer gives one)."""
        if self.mask_id is None:
            raise ConfigError("MaskedDiffusion needs a MASK token: the tokenizer has none; set "
                              "model.init_args.process.init_args.mask_id or use UniformDiffusion")
        return self.mask_id

    @override
    def corrupt(self, model, ids, target_mask, t):
        return torch.where(self.corrupt_mask(target_mask, t), torch.full_like(ids, self.mask_token()), ids)

    def target_logits(self, model, latent):
        logits = super().target_logits(model, latent)
        logits[:, self.mask_token()] = float("-inf")  # SUBS: the clean token is never MASK
        return logits

    def elbo_weight(self, t: torch.Tensor) -> torch.Tensor:
        """−ᾱ'(t) / (1 − ᾱ(t)), ᾱ' by a float64 central difference of the unclamped schedule (any schedule),
        clamped to ``max_weight``."""
        h = 1e-6
        t64 = t.double()
        lo, hi = (t64 - h).clamp(0, 1), (t64 + h).clamp(0, 1)
        d_alpha = (self.schedule._alpha_bar(hi) - self.schedule._alpha_bar(lo)) / (hi - lo)
        weight = -d_alpha / self.schedule.corruption_rate(t).double()
        return weight.clamp(0, self.max_weight).to(t.dtype)

    def per_token_loss(self, p, batch, t):
        ids, tmask = batch["input_ids"], batch["target_mask"]
        masked = (p.inputs == self.mask_token()) & tmask
        ce = torch.zeros(tmask.shape, device=ids.device)
        ce[tmask] = F.cross_entropy(p.logits, ids[tmask], reduction="none")
        ce = ce * masked  # unmasked tokens are copied (SUBS), no loss
        if self.loss_weighting == "elbo":
            return ce * self.elbo_weight(t)[:, None]
        # mean CE over the masked tokens, spread over the target so that masked_mean(…, target) recovers it
        frac = masked.sum(1, keepdim=True) / tmask.sum(1, keepdim=True).clamp_min(1)
        return ce / frac.clamp_min(1e-6)

    def per_example_loss(self, model, batch, t, noise=None):
        """(B,) the training objective per example (length term excluded), attached to the graph and without
        data-dependent shapes, for ``torch.func.vmap`` (the importance sampler's ``GradVariance``). ``noise``:
        uniform draws u (B, L); a target token is masked where u < r(t)."""
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        u = torch.rand(ids.shape, device=ids.device) if noise is None else noise
        masked = (u < self.schedule.corruption_rate(t)[:, None]) & tmask  # (B, L)
        x = torch.where(masked, torch.full_like(ids, self.mask_token()), ids)
        out = model(x, timesteps=self.token_timesteps(t, tmask), valid=batch["valid"], prefix_len=batch["prefix_len"])
        logits = model.logits(out.latent).float()  # (B, L, V): every position, so no shape depends on the data
        never = F.one_hot(torch.tensor(self.mask_token(), device=ids.device), logits.shape[-1]).bool()
        logits = logits.masked_fill(never, float("-inf"))  # SUBS, as in target_logits
        ce = F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="none").view_as(u) * masked  # (B, L)
        if self.loss_weighting == "elbo":
            return (ce * self.elbo_weight(t)[:, None]).sum(1) / tmask.sum(1).clamp_min(1)
        return ce.sum(1) / masked.sum(1).clamp_min(1)  # mean CE of the masked tokens (per_token_loss's uniform case)

    @override
    def prior(self, model, ids, target_mask):
        return torch.where(target_mask, torch.full_like(ids, self.mask_token()), ids)

    def step(self, x, logits, t, s, temperature, final):
        """Ancestral step (MDLM eq. 7): a masked token is revealed with probability (ᾱ(s) − ᾱ(t)) / (1 − ᾱ(t));
        revealed tokens never change again. The last step reveals everything."""
        masked = x == self.mask_token()
        a_t, a_s = (self.schedule.alpha_bar(torch.tensor(v)).item() for v in (t, s))
        p = 1.0 if final else (a_s - a_t) / max(1.0 - a_t, 1e-12)
        reveal = masked & (torch.rand(x.shape, device=x.device) < p)
        return torch.where(reveal, sample_tokens(logits, temperature), x)

    def is_complete(self, x):
        return x != self.mask_token()
