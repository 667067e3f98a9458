"""SUNDAE (Savinov et al. 2022, "Step-unrolled Denoising Autoencoders for Text Generation").

Training (§2): each target token is corrupted with probability r(t) = 1 − ᾱ(t) into a uniformly random
*other* token (so the observed change rate equals r(t) exactly); the loss is the cross-entropy on every
target token, corrupted or not. Unrolled denoising (eq. 4–5): a second pass reads the model's own sample
of the first pass's prediction (integer ids, no gradient path) and is trained to reconstruct the data too;
the loss is the mean of both passes.

The SUNDAE denoiser is time-agnostic: it never sees t, so the same function denoises the data's corruption
and its own samples. ``time_conditioning=False`` (the default) realises that by feeding t = 0 at every
position (for AR2Diff's zero-initialised timestep embedding a learned constant, nothing that depends on t).

Sampling (§3): starting from uniform noise, every step draws a proposal from softmax(logits / τ) and
rewrites only a random proportion of the tokens with it; low τ and partial updates keep the chain from
collapsing onto the first argmax. τ = 0 with proportion 1 is the plain argmax re-prediction of every token.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from typing_extensions import override

from ..models.denoiser import Denoiser
from .discrete import DenoisePass, DiscreteDiffusion, sample_tokens
from .process import ForwardPasses, masked_mean
from .schedule import NoiseSchedule


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """(N, V) logits outside the smallest set of tokens whose probability reaches ``top_p`` set to −∞
    (nucleus sampling, Holtzman et al. 2020). The most likely token always stays."""
    probs, order = torch.softmax(logits.float(), -1).sort(-1, descending=True)  # (N, V)
    outside = probs.cumsum(-1) - probs >= top_p  # the tokens before this one already hold top_p
    return logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), float("-inf"))


class UniformDiffusion(DiscreteDiffusion):
    """SUNDAE uniform corruption with unrolled denoising and SUNDAE's sampler step.

    Args:
        schedule: Corruption rate r(t) = 1 − ᾱ(t). Default: r = t (SUNDAE draws the rate uniformly).
        unroll: Train a second pass on the model's own (detached) sample of the first pass.
        unroll_temperature: Temperature of that sample (SUNDAE: 1).
        time_conditioning: Feed the denoiser the per-token t. Off (SUNDAE): every pass and every sampling
            step sees t = 0. On: the first pass sees the drawn t and the unrolled pass the t whose corruption
            rate equals its input's observed disagreement with the data (its input is the model's sample,
            not a draw of the forward process at the first pass's t).
        temperature: Sampling temperature τ the sampler uses unless it sets its own (SUNDAE: 0.8);
            0 = argmax.
        top_p: Nucleus mass of each draw (1 = the full tempered distribution).
        update_proportion: Probability that a target token is rewritten with the proposal at a step (SUNDAE's
            update proportion); the others keep their value. 1 = every token.
        length_weight: Weight of the target-length cross-entropy.
    """

    def __init__(self, schedule: Optional[NoiseSchedule] = None, unroll: bool = True, unroll_temperature: float = 1.0,
                 time_conditioning: bool = False, temperature: float = 0.8, top_p: float = 1.0,
                 update_proportion: float = 0.8, length_weight: float = 0.1) -> None:
        if not 0 < top_p <= 1 or not 0 < update_proportion <= 1:
            raise ValueError(f"top_p and update_proportion must be in (0, 1], got {top_p}, {update_proportion}")
        super().__init__(schedule, length_weight)
        self.unroll = unroll
        self.unroll_temperature = unroll_temperature
        self.time_conditioning = time_conditioning
        self.temperature = temperature
        self.top_p = top_p
        self.update_proportion = update_proportion

    def trained_settings(self) -> dict[str, Any]:
        return {"corruption": "uniform", "time_conditioning": self.time_conditioning, **super().trained_settings()}

    def forward_passes_per_step(self, self_condition: bool) -> ForwardPasses:
        """The unrolled pass is trained too (with its backward pass), not gradient-free."""
        return ForwardPasses(2.0 if self.unroll else 1.0, float(self.grad_free_passes(self_condition)))

    # --- training
    def corrupt(self, model: Denoiser, ids: torch.Tensor, target_mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        V = model.config.vocab_size
        other = (ids + torch.randint(1, V, ids.shape, device=ids.device)) % V  # uniform over the V − 1 other tokens
        return torch.where(self.corrupt_mask(target_mask, t), other, ids)

    def denoise(self, model: Denoiser, batch: dict[str, Any], x: torch.Tensor, t_tok: torch.Tensor) -> DenoisePass:
        # the one place the denoiser is called (both training passes and every sampling step)
        return super().denoise(model, batch, x, t_tok if self.time_conditioning else torch.zeros_like(t_tok))

    def unrolled_time(self, x: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """(B,) t at which the forward process changes as many target tokens as ``x`` differs from the data."""
        tmask = batch["target_mask"]
        rate = masked_mean((x != batch["input_ids"]).float(), tmask, dim=1)  # (B,)
        return self.schedule.time_at_corruption_rate(rate)

    def passes(self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor) -> list[DenoisePass]:
        first = super().passes(model, batch, t)[0]
        if not self.unroll:
            return [first]
        tmask = batch["target_mask"]
        with torch.no_grad():  # the sample is the model's own guess: ids, no gradient path
            guess = sample_tokens(first.logits.detach(), self.unroll_temperature)
        x2 = first.inputs.clone()  # (B, L)
        x2[tmask] = guess
        t2 = self.unrolled_time(x2, batch) if self.time_conditioning else torch.zeros_like(t)  # (B,)
        return [first, self.denoise(model, batch, x2, self.token_timesteps(t2, tmask))]

    @override
    def per_token_loss(self, p: DenoisePass, batch: dict[str, Any], t: torch.Tensor) -> torch.Tensor:
        ids, tmask = batch["input_ids"], batch["target_mask"]
        ce = torch.zeros(tmask.shape, device=ids.device)
        ce[tmask] = F.cross_entropy(p.logits, ids[tmask], reduction="none")
        return ce

    # --- sampling
    def prior(self, model: Denoiser, ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        noise = torch.randint(0, model.config.vocab_size, ids.shape, device=ids.device)
        return torch.where(target_mask, noise, ids)

    def propose(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """(N, V) → (N,): argmax at τ = 0, else a draw from the (nucleus of the) tempered distribution."""
        if temperature <= 0 or self.top_p >= 1:
            return sample_tokens(logits, temperature)
        return sample_tokens(nucleus(logits.float() / temperature, self.top_p), 1.0)

    @override
    def step(self, x, logits, t, s, temperature, final):
        proposal = self.propose(logits, temperature)  # (N,)
        if self.update_proportion >= 1:
            return proposal
        update = torch.rand(x.shape, device=x.device) < self.update_proportion  # (N,) SUNDAE's random subset
        return torch.where(update, proposal, x)

    @override
    def moving(self, old, new, logits):
        # a sequence is done once it is the denoiser's own argmax fixed point; comparing old with new would
        # stop it whenever the random subset happened to leave it unchanged
        return logits.argmax(-1) != old
