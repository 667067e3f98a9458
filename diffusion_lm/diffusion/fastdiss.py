"""FastDiSS: training a continuous diffusion LM for few-step sampling (Nguyen-Cong et al. 2026, arXiv:2604.05551).

Two changes to :class:`GaussianDiffusion` training, both on the per-token timestep path:

* **Self-conditioning perturbation (SCP).** At sampling with K steps the self-conditioning input of
  step t is the x̂_0 the model made one step earlier, at the noisier level t + 1/K, from a sampler
  state, not from a fresh q-sample. Standard self-conditioning trains on the estimate at t itself,
  which is better than anything inference feeds. SCP makes the training estimate as poor:

  - ``shift``: the gradient-free self-conditioning pass sees x_{t'} with t' = min(1, t + Δ), Δ = 1/K,
    built from the same x_0 and the same ε as x_t (a deterministic DDIM trajectory keeps ε);
  - ``noise``: Gaussian noise is added to the estimate made at t, x̃_0 = x̂_0 + σ·ξ, with a fixed σ
    (``noise_std``) or σ(t) = √max(0, e²(t + Δ) − e²(t)), where e²(·) is the running mean squared
    per-dimension error of gradient-free estimates measured during training (per bin of t,
    all-reduced over DDP ranks, stored in the checkpoint);
  - ``both``: shift, then add noise with the fixed ``noise_std``.

  Here t is the level the trained pass sees, token by token (after MANS), so the estimate is never
  made at a lower noise level than the trained input: it is never cleaner than what inference feeds.

* **Model-aware noise scaling (MANS, token-level noise awareness).** A gradient-free pass at the
  sampled t measures the model's own confidence per token, c = max_w p(w | x̂_0) (``max_prob``; or
  ``entropy``: 1 − H(p)/log V). Tokens with c ≥ ``confidence`` get their t raised toward a fixed
  upper ``anchor``:

      t ← t + min(max_raise, strength · w · max(0, anchor − t)),  w = (c − confidence) / (1 − confidence)

  so t never decreases, never passes the anchor (if it was below it) and never moves by more than
  ``max_raise``. The loss then trains those tokens at the higher noise level, where they still carry
  a learning signal, instead of saturating on easy tokens. Logged: ``mans_mean_raise`` (mean raise
  over target tokens) and ``mans_raised_share`` (share of target tokens raised).

  The selection uses the model's confidence, not the probability of the gold token: with the gold
  probability, "this token's t is above the sequence's t" would tell the trained pass "the model
  already got this token right", a label leak that inference never offers. For the same reason the
  self-conditioning estimate is not the confidence pass (made at the un-raised t, so cleaner than the
  raised input and exactly right on the raised tokens) but a second pass at the raised level.

``enabled: false`` turns both off and makes the process exactly :class:`GaussianDiffusion`
(same random stream), so an ablation is one config switch. Validation/test loss
(:meth:`eval_loss`) is always the plain GaussianDiffusion objective and updates no statistics.

Cost per training step, in gradient-free forwards: plain self-conditioning and SCP alone run
``self_condition_prob`` of them; MANS adds one on every step (the confidence pass), i.e.
1 + ``self_condition_prob`` (1.5 by default), because the self-conditioning estimate can only be made
once the raised levels are known.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.denoiser import Denoiser
from .gaussian import GaussianDiffusion
from .process import LossOutput, masked_mean
from .variance import all_reduce_sum

Perturbation = Literal["none", "shift", "noise", "both"]


Confidence = Literal["max_prob", "entropy"]


def max_probability(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) rounding logits → (...) probability of the model's own most likely token."""
    return torch.softmax(logits.float(), -1).amax(-1)


def normalised_negentropy(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) → (...) 1 − H(p)/log V: 1 for a one-hot p, 0 for the uniform one."""
    logp = torch.log_softmax(logits.float(), -1)
    entropy = -(logp.exp() * logp).sum(-1)
    return 1.0 - entropy / torch.log(torch.tensor(float(logits.shape[-1])))


CONFIDENCE_MEASURES = {"max_prob": max_probability, "entropy": normalised_negentropy}


class FastDiSSDiffusion(GaussianDiffusion):
    """Args:
        enabled: Master switch; ``false`` = plain :class:`GaussianDiffusion` (ablation baseline).
        perturbation: Self-conditioning perturbation: ``shift`` (estimate at t + Δ), ``noise``
            (add noise matched to the measured error gap), ``both`` or ``none``.
        sampler_steps: K, the number of sampling steps the model is trained for; Δ = 1/K.
        shift: Δ directly (overrides ``sampler_steps``).
        noise_std: Fixed σ of the noise added to the estimate (per dimension, in units of the
            normalised embedding); ``None`` = measured σ(t) (``noise`` mode only).
        noise_scaling: Model-aware noise scaling on / off.
        anchor: Upper anchor level that confident tokens are moved toward.
        confidence: Model confidence (see ``confidence_measure``) above which a token counts as confident.
        confidence_measure: ``max_prob`` (probability of the model's most likely token) or
            ``entropy`` (1 − H/log V) of the rounding distribution.
        strength: Fraction of the distance to the anchor a fully confident token moves.
        max_raise: Largest increase of any token's t.
        error_bins: Bins of t for the measured estimate error (``noise`` mode with ``noise_std: null``).
        error_momentum: EMA momentum of those error statistics.
        **kwargs: See :class:`GaussianDiffusion`.
    """

    def __init__(
        self,
        enabled: bool = True,
        perturbation: Perturbation = "shift",
        sampler_steps: int = 10,
        shift: Optional[float] = None,
        noise_std: Optional[float] = None,
        noise_scaling: bool = True,
        anchor: float = 0.9,
        confidence: float = 0.9,
        confidence_measure: Confidence = "max_prob",
        strength: float = 1.0,
        max_raise: float = 0.3,
        error_bins: int = 20,
        error_momentum: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if perturbation not in ("none", "shift", "noise", "both"):
            raise ConfigError(f"process.perturbation must be none, shift, noise or both, got {perturbation!r}")
        if confidence_measure not in CONFIDENCE_MEASURES:
            raise ConfigError(f"process.confidence_measure must be one of {sorted(CONFIDENCE_MEASURES)}, "
                              f"got {confidence_measure!r}")
        if sampler_steps < 1:
            raise ConfigError(f"process.sampler_steps must be >= 1, got {sampler_steps}")
        if perturbation == "both" and noise_std is None:
            raise ConfigError("process.perturbation=both needs a fixed process.noise_std")
        # strength > 1 would move a token past the anchor (and past t = 1 with anchor = 1)
        if not (0.0 < anchor <= 1.0 and 0.0 <= confidence < 1.0 and 0.0 <= strength <= 1.0 and max_raise >= 0):
            raise ConfigError("process: need 0 < anchor <= 1, 0 <= confidence < 1, 0 <= strength <= 1, max_raise >= 0")
        self.enabled = enabled
        self.perturbation = perturbation
        self.shift = shift if shift is not None else 1.0 / sampler_steps
        self.noise_std = noise_std
        self.noise_scaling = noise_scaling
        self.anchor, self.confidence, self.strength, self.max_raise = anchor, confidence, strength, max_raise
        self.token_confidence = CONFIDENCE_MEASURES[confidence_measure]
        self.error_momentum = error_momentum
        self.error_sq = torch.zeros(error_bins)  # running mean squared per-dimension error of x̂_0, per bin of t
        self.error_seen = torch.zeros(error_bins, dtype=torch.bool)

    # ------------------------------------------------------------------ pieces (each testable alone)
    def estimate_timesteps(self, t_tok: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Level of the self-conditioning estimate for a trained input at t: min(1, t + Δ) on the
        target in ``shift``/``both`` mode, else t; never below t.  (B, L)"""
        if self.perturbation in ("shift", "both"):
            return torch.where(target_mask, (t_tok + self.shift).clamp(max=1.0), t_tok)
        return t_tok

    def raise_timesteps(self, t_tok: torch.Tensor, conf: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """MANS: (B, L) t and the model's detached per-token confidence → raised t (never lower,
        bounded by anchor and max_raise)."""
        w = ((conf.float() - self.confidence) / (1.0 - self.confidence)).clamp(0.0, 1.0)
        room = (self.anchor - t_tok).clamp(min=0.0)
        raise_by = torch.minimum(self.strength * w * room, torch.full_like(room, self.max_raise))
        return torch.where(target_mask, t_tok + raise_by, t_tok)

    def _bins(self, t: torch.Tensor) -> torch.Tensor:
        n = self.error_sq.numel()
        return (t.float() * n).long().clamp(0, n - 1)

    def noise_sigma(self, t_tok: torch.Tensor, t_est: torch.Tensor) -> torch.Tensor:
        """σ per token (B, L): fixed, or √max(0, e²(t + Δ) − e²(t_est)) from the measured error."""
        if self.noise_std is not None:
            return torch.full_like(t_tok, self.noise_std, dtype=torch.float32)
        err = self.error_sq.to(t_tok.device)
        gap = err[self._bins((t_tok + self.shift).clamp(max=1.0))] - err[self._bins(t_est)]
        return gap.clamp(min=0.0).sqrt()

    @property
    def measures_error(self) -> bool:
        return self.enabled and self.perturbation == "noise" and self.noise_std is None

    def error_sums(self, est: torch.Tensor, x0: torch.Tensor, t_est: torch.Tensor, target_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-bin Σ of the squared per-dimension error of x̂_0 and the number of target tokens.  (n,), (n,)"""
        # masked sums over all positions rather than boolean indexing: no data-dependent shape, no host sync
        w = target_mask.flatten().float()  # (B·L,)
        sq = (est.float() - x0.float()).pow(2).mean(-1).flatten() * w  # (B·L,)
        bins = self._bins(t_est.flatten())
        n = self.error_sq.numel()
        sums = torch.zeros(n, device=est.device).index_add_(0, bins, sq)
        return sums, torch.zeros(n, device=est.device).index_add_(0, bins, w)

    @torch.no_grad()
    def record_error(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Fold one step's per-bin error sums into the running means, summed over DDP ranks first.

        Every rank must call this on the same steps (it is a collective): a rank without an estimate
        this step passes zeros."""
        flat = all_reduce_sum(torch.cat([sums, counts]).float())  # one collective for both
        sums, counts = flat.chunk(2)
        self.error_sq, self.error_seen = self.error_sq.to(sums.device), self.error_seen.to(sums.device)
        mean = sums / counts.clamp(min=1)
        m = self.error_momentum
        updated = torch.where(self.error_seen, m * self.error_sq + (1 - m) * mean, mean)
        hit = counts > 0
        self.error_sq = torch.where(hit, updated, self.error_sq)
        self.error_seen = self.error_seen | hit

    def estimate(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, noise: torch.Tensor, t_est: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient-free x̂_0 from x_{t_est} (same x_0, same ε; no self-conditioning) and the model's
        per-token confidence in its own rounding (0 on the prompt).  (B, L, E), (B, L)"""
        tmask = batch["target_mask"]
        with torch.no_grad():
            x_est = torch.where(tmask[..., None], self.q_sample(x0, t_est, noise), x0)
            latent = model(inputs_embeds=x_est, timesteps=t_est, self_cond=torch.zeros_like(x0),
                           valid=batch["valid"], prefix_len=batch["prefix_len"]).latent
            est, logits = self.predict_x0(model, latent)
            conf = self.token_confidence(logits) * tmask  # (B, L)
        return est.detach(), conf

    def perturb(self, est: torch.Tensor, t_tok: torch.Tensor, t_est: torch.Tensor, target_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-conditioning input: x̂_0 (+ σ·ξ in noise modes) on the target, 0 on the prompt; and σ (B, L)."""
        sigma = torch.zeros_like(t_tok, dtype=torch.float32)
        if self.perturbation in ("noise", "both"):
            sigma = self.noise_sigma(t_tok, t_est) * target_mask
            est = est + sigma[..., None].to(est.dtype) * torch.randn_like(est)
        return torch.where(target_mask[..., None], est, torch.zeros_like(est)), sigma

    def scaled_timesteps(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, noise: torch.Tensor, t_tok: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MANS: the confidence pass at the sampled t, then the raised per-token t and its logs.  (B, L)"""
        tmask = batch["target_mask"]
        est, conf = self.estimate(model, batch, x0, noise, t_tok)
        if self.measures_error:  # every step, on every rank: this pass runs unconditionally
            self.record_error(*self.error_sums(est, x0, t_tok, tmask))
        raised = self.raise_timesteps(t_tok, conf, tmask)
        delta = raised - t_tok
        logs = {"mans_mean_raise": masked_mean(delta, tmask).detach(),
                "mans_raised_share": masked_mean((delta > 0).float(), tmask).detach()}
        return raised, logs

    # ------------------------------------------------------------------ GaussianDiffusion hooks
    def training_inputs(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, t_tok: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """x_t at the (MANS-raised) per-token t, that t, and the (SCP-perturbed) self-conditioning estimate
        made at a level ≥ it."""
        if not self.enabled:
            return super().training_inputs(model, batch, x0, t_tok)
        tmask = batch["target_mask"]  # (B, L)
        noise = torch.randn_like(x0)  # (B, L, E): one ε for every pass of the step, as along a DDIM trajectory
        use_sc = model.config.self_condition and bool(torch.rand(()) < self.self_condition_prob)
        logs: dict[str, torch.Tensor] = {}
        if self.noise_scaling:
            t_tok, logs = self.scaled_timesteps(model, batch, x0, noise, t_tok)  # raised: (B, L)
        xt = torch.where(tmask[..., None], self.q_sample(x0, t_tok, noise), x0)
        if not model.config.self_condition:
            return xt, t_tok, None, logs
        records = self.measures_error and not self.noise_scaling  # else the confidence pass recorded
        if not use_sc:
            if records:  # keep the DDP collective in step with ranks that did draw a self-conditioned step
                zeros = torch.zeros(self.error_sq.numel(), device=x0.device)
                self.record_error(zeros, zeros)
            return xt, t_tok, torch.zeros_like(x0), logs
        t_est = self.estimate_timesteps(t_tok, tmask)  # ≥ the trained level, token by token
        est, _ = self.estimate(model, batch, x0, noise, t_est)
        if records:
            self.record_error(*self.error_sums(est, x0, t_est, tmask))
        sc, sigma = self.perturb(est, t_tok, t_est, tmask)
        if self.perturbation in ("noise", "both"):
            logs["scp_sigma"] = masked_mean(sigma, tmask).detach()
        return xt, t_tok, sc, logs

    def eval_loss(self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, weights: torch.Tensor) -> LossOutput:
        """The plain :class:`GaussianDiffusion` objective (no SCP, no MANS, no statistics update), so that
        val/test loss compares with a GaussianDiffusion run and with the ``enabled: false`` ablation."""
        return self.denoising_loss(model, batch, t, weights, super().training_inputs)

    def grad_free_passes(self, self_condition: bool) -> float:
        sc = super().grad_free_passes(self_condition)
        return sc + 1.0 if self.enabled and self.noise_scaling else sc

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"error_sq": self.error_sq.detach().cpu().clone(), "error_seen": self.error_seen.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:  # a checkpoint of a process without statistics: nothing measured yet
            return
        for key in ("error_sq", "error_seen"):
            if key not in state:
                raise ConfigError(f"the checkpoint's process state has no {key!r}: "
                                  "it was not written by FastDiSSDiffusion")
        n = self.error_sq.numel()
        if state["error_sq"].numel() != n:
            raise ConfigError(f"the checkpoint's FastDiSS error statistics have {state['error_sq'].numel()} bins but "
                              f"process.error_bins={n}: resume with the same error_bins")
        self.error_sq = state["error_sq"].float().clone()
        self.error_seen = state["error_seen"].bool().clone()
