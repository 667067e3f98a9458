"""FastDiSS: training a continuous diffusion LM for few-step sampling (Nguyen-Cong et al. 2026, arXiv:2604.05551).

Two changes to :class:`GaussianDiffusion` training, both on the per-token timestep path:

* **Self-conditioning perturbation (SCP).** At sampling with K steps the self-conditioning input of
  step t is the x̂_0 the model made one step earlier, at the noisier level t + 1/K; standard
  self-conditioning trains on the better estimate at t itself. The ``perturbation`` component
  (:mod:`.scp`, by ``class_path``) makes the training estimate as poor: made at t + Δ
  (:class:`~.scp.ShiftPerturbation`, the default), noised (:class:`~.scp.NoisePerturbation`), both
  (:class:`~.scp.ShiftNoisePerturbation`) or left alone (:class:`~.scp.SelfConditionPerturbation`).

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

The ablation is the class: :class:`GaussianDiffusion` with the same arguments (FastDiSS without a
perturbation and without noise scaling is exactly it, same random stream). Validation/test loss
(:meth:`eval_loss`) is always the plain GaussianDiffusion objective and updates no statistics.

Cost per training step, in gradient-free forwards: plain self-conditioning and SCP alone run
``self_condition_prob`` of them; MANS adds one on every step (the confidence pass), i.e.
1 + ``self_condition_prob`` (1.5 by default), because the self-conditioning estimate can only be made
once the raised levels are known.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch

from ..errors import ConfigError
from ..models.denoiser import Denoiser
from .gaussian import GaussianDiffusion
from .process import LossOutput, masked_mean
from .scp import SelfConditionPerturbation, ShiftPerturbation

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
        perturbation: Self-conditioning perturbation (``class_path``, :mod:`.scp`). Default:
            :class:`~.scp.ShiftPerturbation` with K = 10 (estimate at t + 1/10).
        noise_scaling: Model-aware noise scaling on / off.
        anchor: Upper anchor level that confident tokens are moved toward.
        confidence: Model confidence (see ``confidence_measure``) above which a token counts as confident.
        confidence_measure: ``max_prob`` (probability of the model's most likely token) or
            ``entropy`` (1 − H/log V) of the rounding distribution.
        strength: Fraction of the distance to the anchor a fully confident token moves.
        max_raise: Largest increase of any token's t.
        **kwargs: See :class:`GaussianDiffusion`.
    """

    def __init__(
        self,
        perturbation: Optional[SelfConditionPerturbation] = None,
        noise_scaling: bool = True,
        anchor: float = 0.9,
        confidence: float = 0.9,
        confidence_measure: Confidence = "max_prob",
        strength: float = 1.0,
        max_raise: float = 0.3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        perturbation = ShiftPerturbation() if perturbation is None else perturbation
        if not isinstance(perturbation, SelfConditionPerturbation):
            raise ConfigError(f"process.perturbation must be a self-conditioning perturbation "
                              f"(class_path: diffusion_lm.diffusion.ShiftPerturbation, NoisePerturbation, "
                              f"ShiftNoisePerturbation or SelfConditionPerturbation), got {perturbation!r}")
        if confidence_measure not in CONFIDENCE_MEASURES:
            raise ConfigError(f"process.confidence_measure must be one of {sorted(CONFIDENCE_MEASURES)}, "
                              f"got {confidence_measure!r}")
        # strength > 1 would move a token past the anchor (and past t = 1 with anchor = 1)
        if not (0.0 < anchor <= 1.0 and 0.0 <= confidence < 1.0 and 0.0 <= strength <= 1.0 and max_raise >= 0):
            raise ConfigError("process: need 0 < anchor <= 1, 0 <= confidence < 1, 0 <= strength <= 1, max_raise >= 0")
        self.perturbation = perturbation
        self.noise_scaling = noise_scaling
        self.anchor, self.confidence, self.strength, self.max_raise = anchor, confidence, strength, max_raise
        self.token_confidence = CONFIDENCE_MEASURES[confidence_measure]

    # ------------------------------------------------------------------ pieces (each testable alone)
    def raise_timesteps(self, t_tok: torch.Tensor, conf: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """MANS: (B, L) t and the model's detached per-token confidence → raised t (never lower,
        bounded by anchor and max_raise)."""
        w = ((conf.float() - self.confidence) / (1.0 - self.confidence)).clamp(0.0, 1.0)
        room = (self.anchor - t_tok).clamp(min=0.0)
        raise_by = torch.minimum(self.strength * w * room, torch.full_like(room, self.max_raise))
        return torch.where(target_mask, t_tok + raise_by, t_tok)

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

    def scaled_timesteps(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, noise: torch.Tensor, t_tok: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MANS: the confidence pass at the sampled t, then the raised per-token t and its logs.  (B, L)"""
        tmask = batch["target_mask"]
        est, conf = self.estimate(model, batch, x0, noise, t_tok)
        self.perturbation.observe(est, x0, t_tok, tmask)  # every step, on every rank: this pass always runs
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
        tmask = batch["target_mask"]  # (B, L)
        noise = torch.randn_like(x0)  # (B, L, E): one ε for every pass of the step, as along a DDIM trajectory
        use_sc = model.config.self_condition and bool(torch.rand(()) < self.self_condition_prob)
        logs: dict[str, torch.Tensor] = {}
        if self.noise_scaling:
            t_tok, logs = self.scaled_timesteps(model, batch, x0, noise, t_tok)  # raised: (B, L)
        xt = torch.where(tmask[..., None], self.q_sample(x0, t_tok, noise), x0)
        if not model.config.self_condition:
            return xt, t_tok, None, logs
        records = not self.noise_scaling  # else the confidence pass fed the perturbation's error statistics
        if not use_sc:
            if records:  # keep the DDP collective in step with ranks that did draw a self-conditioned step
                self.perturbation.observe_nothing(x0.device)
            return xt, t_tok, torch.zeros_like(x0), logs
        t_est = self.perturbation.estimate_timesteps(t_tok, tmask)  # ≥ the trained level, token by token
        est, _ = self.estimate(model, batch, x0, noise, t_est)
        if records:
            self.perturbation.observe(est, x0, t_est, tmask)
        sc, sigma = self.perturbation.perturb(est, t_tok, t_est, tmask)
        if sigma is not None:
            logs["scp_sigma"] = masked_mean(sigma, tmask).detach()
        return xt, t_tok, sc, logs

    def eval_loss(self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, weights: torch.Tensor) -> LossOutput:
        """The plain :class:`GaussianDiffusion` objective (no SCP, no MANS, no statistics update), so that
        val/test loss compares with a GaussianDiffusion run (the ablation)."""
        return self.denoising_loss(model, batch, t, weights, super().training_inputs)

    def grad_free_passes(self, self_condition: bool) -> float:
        sc = super().grad_free_passes(self_condition)
        return sc + 1.0 if self.noise_scaling else sc

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return self.perturbation.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perturbation.load_state_dict(state)
