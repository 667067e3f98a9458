"""FastDiSS: training a continuous diffusion LM for few-step sampling (Nguyen-Cong et al. 2026, arXiv:2604.05551).

Two changes to :class:`GaussianDiffusion` training, both on the per-token timestep path:

* **Self-conditioning perturbation (SCP).** At sampling with K steps the self-conditioning input of
  step t is the x̂_0 the model made one step earlier, at the noisier level t + 1/K, from a sampler
  state, not from a fresh q-sample. Standard self-conditioning trains on the estimate at t itself,
  which is better than anything inference feeds. SCP makes the training estimate as poor:

  - ``shift``: the first (gradient-free) pass sees x_{t'} with t' = min(1, t + Δ), Δ = 1/K, built
    from the same x_0 and the same ε as x_t (a deterministic DDIM trajectory keeps ε);
  - ``noise``: Gaussian noise is added to the estimate, x̃_0 = x̂_0 + σ·ξ, with a fixed σ
    (``noise_std``) or σ(t) = √max(0, e²(t + Δ) − e²(t)), where e²(·) is the running mean squared
    per-dimension error of first-pass estimates measured during training (per bin of t);
  - ``both``: shift, then add noise with the fixed ``noise_std``.

* **Model-aware noise scaling (MANS, token-level noise awareness).** Tokens the first pass already
  predicts confidently — p = exp(−CE) ≥ ``confidence`` with CE the detached rounding cross-entropy —
  get their t raised toward a fixed upper ``anchor``:

      t ← t + min(max_raise, strength · w · max(0, anchor − t)),  w = (p − confidence) / (1 − confidence)

  so t never decreases, never passes the anchor (if it was below it) and never moves by more than
  ``max_raise``. The loss then trains those tokens at the higher noise level, where they still carry
  a learning signal, instead of saturating on easy tokens. Logged: ``mans_mean_raise`` (mean raise
  over target tokens) and ``mans_raised_share`` (share of target tokens raised).

``enabled: false`` turns both off and makes the process exactly :class:`GaussianDiffusion`
(same random stream), so an ablation is one config switch. MANS needs the first pass on every
step (not only on the ``self_condition_prob`` share), which costs one extra gradient-free forward.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.denoiser import Denoiser
from .gaussian import GaussianDiffusion
from .process import masked_mean

Perturbation = Literal["none", "shift", "noise", "both"]


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
        confidence: Probability of the correct token above which a token counts as confident.
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
        strength: float = 1.0,
        max_raise: float = 0.3,
        error_bins: int = 20,
        error_momentum: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if perturbation not in ("none", "shift", "noise", "both"):
            raise ConfigError(f"process.perturbation must be none, shift, noise or both, got {perturbation!r}")
        if sampler_steps < 1:
            raise ConfigError(f"process.sampler_steps must be >= 1, got {sampler_steps}")
        if perturbation == "both" and noise_std is None:
            raise ConfigError("process.perturbation=both needs a fixed process.noise_std")
        if not (0.0 < anchor <= 1.0 and 0.0 <= confidence < 1.0 and strength >= 0 and max_raise >= 0):
            raise ConfigError("process: need 0 < anchor <= 1, 0 <= confidence < 1, strength >= 0, max_raise >= 0")
        self.enabled = enabled
        self.perturbation = perturbation
        self.shift = shift if shift is not None else 1.0 / sampler_steps
        self.noise_std = noise_std
        self.noise_scaling = noise_scaling
        self.anchor, self.confidence, self.strength, self.max_raise = anchor, confidence, strength, max_raise
        self.error_momentum = error_momentum
        self.error_sq = torch.zeros(error_bins)  # running mean squared per-dimension error of x̂_0, per bin of t
        self.error_seen = torch.zeros(error_bins, dtype=torch.bool)

    # ------------------------------------------------------------------ pieces (each testable alone)
    def estimate_timesteps(self, t_tok: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """t' = min(1, t + Δ) on the target in ``shift``/``both`` mode, else t.  (B, L)"""
        if self.perturbation in ("shift", "both"):
            return torch.where(target_mask, (t_tok + self.shift).clamp(max=1.0), t_tok)
        return t_tok

    def raise_timesteps(self, t_tok: torch.Tensor, ce: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """MANS: (B, L) t and detached per-token CE → raised t (never lower, bounded by anchor and max_raise)."""
        p = torch.exp(-ce.float())  # probability of the correct token
        w = ((p - self.confidence) / (1.0 - self.confidence)).clamp(0.0, 1.0)
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
        return self.perturbation == "noise" and self.noise_std is None

    @torch.no_grad()
    def record_error(self, est: torch.Tensor, x0: torch.Tensor, t_est: torch.Tensor, target_mask: torch.Tensor) -> None:
        """Update the per-bin running mean of the squared per-dimension error of the first-pass x̂_0."""
        if not self.measures_error:
            return
        dev = est.device
        self.error_sq, self.error_seen = self.error_sq.to(dev), self.error_seen.to(dev)
        # masked sums over all positions rather than boolean indexing: no data-dependent shape, no host sync
        w = target_mask.flatten().float()  # (B·L,)
        sq = (est.float() - x0.float()).pow(2).mean(-1).flatten() * w  # (B·L,)
        bins = self._bins(t_est.flatten())
        n = self.error_sq.numel()
        sums = torch.zeros(n, device=dev).index_add_(0, bins, sq)
        counts = torch.zeros(n, device=dev).index_add_(0, bins, w)
        mean = sums / counts.clamp(min=1)
        m = self.error_momentum
        updated = torch.where(self.error_seen, m * self.error_sq + (1 - m) * mean, mean)
        hit = counts > 0
        self.error_sq = torch.where(hit, updated, self.error_sq)
        self.error_seen = self.error_seen | hit

    def first_pass(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, noise: torch.Tensor, t_est: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient-free x̂_0 from x_{t_est} (same x_0, same ε) and the per-token rounding CE.  (B, L, E), (B, L)"""
        tmask = batch["target_mask"]
        with torch.no_grad():
            x_est = torch.where(tmask[..., None], self.q_sample(x0, t_est, noise), x0)
            latent = model(inputs_embeds=x_est, timesteps=t_est, self_cond=torch.zeros_like(x0),
                           valid=batch["valid"], prefix_len=batch["prefix_len"]).latent
            est, logits = self.predict_x0(model, latent)
            ce = F.cross_entropy(logits.float().transpose(1, 2), batch["input_ids"], reduction="none")  # (B, L)
        return est.detach(), ce * tmask

    def perturb(self, est: torch.Tensor, t_tok: torch.Tensor, t_est: torch.Tensor, target_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-conditioning input: x̂_0 (+ σ·ξ in noise modes) on the target, 0 on the prompt; and σ (B, L)."""
        sigma = torch.zeros_like(t_tok, dtype=torch.float32)
        if self.perturbation in ("noise", "both"):
            sigma = self.noise_sigma(t_tok, t_est) * target_mask
            est = est + sigma[..., None].to(est.dtype) * torch.randn_like(est)
        return torch.where(target_mask[..., None], est, torch.zeros_like(est)), sigma

    # ------------------------------------------------------------------ GaussianDiffusion hooks
    def recover_noise(self, x0: torch.Tensor, xt: torch.Tensor, t_tok: torch.Tensor) -> torch.Tensor:
        """ε = (x_t − √ᾱ x_0) / √(1 − ᾱ): the noise that built x_t (DDPM eq. 4 solved for ε)."""
        a = self.schedule.alpha_bar(t_tok)[..., None].to(x0.dtype)
        return (xt - a.sqrt() * x0) / (1 - a).sqrt()

    def self_condition_input(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, xt: torch.Tensor, t_tok: torch.Tensor
    ) -> torch.Tensor | None:
        """The perturbed estimate (with probability ``self_condition_prob``; zeros otherwise)."""
        if not self.enabled or self.perturbation == "none":
            return super().self_condition_input(model, batch, x0, xt, t_tok)
        if not model.config.self_condition:
            return None
        if torch.rand(()) >= self.self_condition_prob:
            return torch.zeros_like(x0)
        tmask = batch["target_mask"]
        t_est = self.estimate_timesteps(t_tok, tmask)
        est, _ = self.first_pass(model, batch, x0, self.recover_noise(x0, xt, t_tok), t_est)
        self.record_error(est, x0, t_est, tmask)
        return self.perturb(est, t_tok, t_est, tmask)[0]

    def training_inputs(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, t_tok: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        if not self.enabled or not self.noise_scaling:  # x_t as usual; SCP (if on) via self_condition_input
            return super().training_inputs(model, batch, x0, t_tok)
        tmask = batch["target_mask"]  # (B, L)
        noise = torch.randn_like(x0)  # (B, L, E), shared by the first pass and the trained pass
        use_sc = model.config.self_condition and bool(torch.rand(()) < self.self_condition_prob)
        t_est = self.estimate_timesteps(t_tok, tmask)
        est, ce = self.first_pass(model, batch, x0, noise, t_est)  # always: MANS needs the CE
        self.record_error(est, x0, t_est, tmask)
        raised = self.raise_timesteps(t_tok, ce, tmask)  # (B, L)
        xt = torch.where(tmask[..., None], self.q_sample(x0, raised, noise), x0)
        sc = None
        logs: dict[str, torch.Tensor] = {}
        if model.config.self_condition:
            sc, sigma = self.perturb(est, raised, t_est, tmask) if use_sc else (torch.zeros_like(x0), None)
            if sigma is not None and self.perturbation in ("noise", "both"):
                logs["scp_sigma"] = masked_mean(sigma, tmask).detach()
        delta = raised - t_tok
        logs["mans_mean_raise"] = masked_mean(delta, tmask).detach()
        logs["mans_raised_share"] = masked_mean((delta > 0).float(), tmask).detach()
        return xt, raised, sc, logs
