"""Continuous (Gaussian-embedding) diffusion — the Diffusion-LM (Li et al. 2022) / DiffuSeq (Gong et al. 2023) /
Difformer (Gao et al. 2022) line.

Tokens are embedded, x_0 = Emb(w) (layer-normalised so every token has per-dimension variance 1
and the noise schedule means the same thing for every vocabulary); only target positions are
noised; the denoiser predicts x̂_0; the loss is the x_0-prediction MSE (DiffuSeq eq. 4, L_simple)
plus the rounding cross-entropy −log p(w | x̂_0) with p ∝ exp(x̂_0 · Emb(w)) (Diffusion-LM eq. 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

from ..models.denoiser import Denoiser
from .process import DiffusionProcess, LossOutput, masked_mean, scatter, take, target_index
from .schedule import NoiseSchedule

# (model, batch, x_0, per-token t) → (x_t, per-token t, self-conditioning input, extra logs)
TrainingInputs = Callable[
    [Denoiser, dict[str, Any], torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], dict[str, torch.Tensor]],
]


class GaussianDiffusion(DiffusionProcess):
    """Args:
        schedule: ᾱ(t). Default: sqrt (Diffusion-LM).
        self_condition_prob: Probability of a self-conditioned training step (Chen et al. 2022, Analog Bits §3).
        rounding_weight: Weight of the rounding cross-entropy on x̂_0.
        embed_norm: Layer-normalise the embeddings (no affine) before scaling.
        embed_scale: Multiplier of the (normalised) embeddings: larger = higher SNR at every t.
        prediction: ``x0`` — the denoiser's latent *is* x̂_0 (DiffuSeq); ``softmax`` — the latent gives
            token logits and x̂_0 = softmax(logits) · Emb is their expected embedding (CDCD, Dieleman et
            al. 2022, §3.1), which trains faster because the cross-entropy drives everything.
        mse_weight: Weight of the x_0 MSE.
        length_weight: Weight of the target-length loss.
    """

    def __init__(
        self,
        schedule: Optional[NoiseSchedule] = None,
        self_condition_prob: float = 0.5,
        rounding_weight: float = 1.0,
        embed_norm: bool = True,
        embed_scale: float = 1.0,
        prediction: Literal["x0", "softmax"] = "x0",
        mse_weight: float = 1.0,
        length_weight: float = 0.1,
    ) -> None:
        super().__init__(schedule, length_weight)
        self.prediction = prediction
        self.mse_weight = mse_weight
        self.self_condition_prob = self_condition_prob
        self.rounding_weight = rounding_weight
        self.embed_norm = embed_norm
        self.embed_scale = embed_scale

    # ------------------------------------------------------------------ embedding space
    def _normalise(self, e: torch.Tensor) -> torch.Tensor:
        if self.embed_norm:
            e = F.layer_norm(e, e.shape[-1:], eps=1e-6)
        return e * self.embed_scale

    def no_weight_decay(self) -> set[str]:
        # x_0 = LayerNorm(Emb(w)): the table's scale is divided out, so decay only raises its effective step size
        return {"wte.weight"} if self.embed_norm else set()

    def embed(self, model: Denoiser, input_ids: torch.Tensor) -> torch.Tensor:
        """x_0 = Emb(w): (B, L) → (B, L, E)."""
        return self._normalise(model.wte(input_ids))

    def embedding_table(self, model: Denoiser) -> torch.Tensor:
        """(V, E) normalised embeddings — the rounding targets."""
        return self._normalise(model.wte.weight)

    def rounding_logits(self, model: Denoiser, latent: torch.Tensor) -> torch.Tensor:
        """(..., E) → (..., V): logits of p(w | x̂_0) ∝ exp(x̂_0 · Emb(w))."""
        return F.linear(latent, self.embedding_table(model))

    def predict_x0(self, model: Denoiser, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoiser latent (..., E) → (x̂_0 (..., E), rounding logits (..., V))."""
        logits = self.rounding_logits(model, latent)
        if self.prediction == "softmax":
            return torch.softmax(logits.float(), -1).to(latent.dtype) @ self.embedding_table(model), logits
        return latent, logits

    def clean_inputs(self, model: Denoiser, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"inputs_embeds": self.embed(model, input_ids)}

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x0: torch.Tensor, t_tok: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ(t) · x_0 + √(1 − ᾱ(t)) · ε   (DDPM eq. 4); t_tok: (B, L)."""
        a = self.schedule.alpha_bar(t_tok)[..., None].to(x0.dtype)  # (B, L, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def noisy_inputs(self, x0: torch.Tensor, t_tok: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Noise only the target; the prompt stays exactly clean (ᾱ(0) < 1 for some schedules)."""
        xt = self.q_sample(x0, t_tok, torch.randn_like(x0))
        return torch.where(target_mask[..., None], xt, x0)

    # ------------------------------------------------------------------ self-conditioning
    def self_condition_input(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, xt: torch.Tensor, t_tok: torch.Tensor
    ) -> torch.Tensor | None:
        """The x̂_0 estimate fed as self-conditioning input (zeros on the prompt and when skipped).

        With probability ``self_condition_prob`` a first, gradient-free pass estimates x̂_0 from x_t
        (Analog Bits, Alg. 1)."""
        if not model.config.self_condition:
            return None
        zeros = torch.zeros_like(x0)
        if torch.rand(()) >= self.self_condition_prob:
            return zeros
        with torch.no_grad():
            latent = model(inputs_embeds=xt, timesteps=t_tok, self_cond=zeros, valid=batch["valid"],
                           prefix_len=batch["prefix_len"]).latent
            est = self.predict_x0(model, latent)[0]
        return torch.where(batch["target_mask"][..., None], est.detach(), zeros)

    def training_inputs(
        self, model: Denoiser, batch: dict[str, Any], x0: torch.Tensor, t_tok: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """What the trained pass sees: (x_t, per-token t, self-conditioning input, extra logs).

        FastDiSS (``diffusion/fastdiss.py``) overrides this to perturb the self-conditioning
        estimate and to raise the noise level of confidently predicted tokens."""
        xt = self.noisy_inputs(x0, t_tok, batch["target_mask"])  # (B, L, E)
        return xt, t_tok, self.self_condition_input(model, batch, x0, xt, t_tok), {}

    def grad_free_passes(self, self_condition: bool) -> float:
        return self.self_condition_prob if self_condition else 0.0

    def trained_settings(self) -> dict[str, Any]:
        return {"space": "gaussian embeddings", "prediction": self.prediction, "embed_norm": self.embed_norm,
                "embed_scale": self.embed_scale, **super().trained_settings()}

    # ------------------------------------------------------------------ loss
    def training_loss(
        self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, weights: torch.Tensor
    ) -> LossOutput:
        return self.denoising_loss(model, batch, t, weights, self.training_inputs)

    def denoising_loss(
        self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, weights: torch.Tensor, inputs: TrainingInputs
    ) -> LossOutput:
        """x_0 MSE + rounding CE (+ length CE) of the pass that sees what ``inputs`` builds (a
        :meth:`training_inputs`-like hook: the training objective and the plain one share this)."""
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        x0 = self.embed(model, ids)  # (B, L, E)
        t_tok = self.token_timesteps(t, tmask)  # (B, L)
        xt, t_tok, sc, extra_logs = inputs(model, batch, x0, t_tok)  # (B, L, E), (B, L), …
        out = model(inputs_embeds=xt, timesteps=t_tok, self_cond=sc, valid=batch["valid"], prefix_len=batch["prefix_len"])
        idx = target_index(batch)  # (N,) flat target positions; N = target tokens
        x0_hat, logits = self.predict_x0(model, take(out.latent, idx))  # (N, E), (N, V)

        mse = scatter((x0_hat.float() - take(x0, idx).float()).pow(2).mean(-1), idx, tmask.shape)  # (B, L)
        ce = scatter(F.cross_entropy(logits.float(), take(ids, idx), reduction="none"), idx, tmask.shape)
        per_token = self.mse_weight * mse + self.rounding_weight * ce  # (B, L)

        per_example = masked_mean(per_token, tmask, dim=1)  # (B,)
        loss = masked_mean(per_token * weights[:, None], tmask)
        length = self.length_loss(model, batch, out)
        loss = loss + self.length_weight * length
        logs = {"mse": masked_mean(mse, tmask).detach(), "rounding_ce": masked_mean(ce, tmask).detach(),
                "length_ce": length.detach(), **extra_logs}
        return LossOutput(loss, per_example.detach(), logs)

    def per_example_loss(
        self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, noise: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(B,) MSE + rounding CE of the first (not self-conditioned) pass, length term excluded,
        attached to the graph. Every position is scored and the prompt masked out afterwards, so no
        shape depends on the data and ``torch.func.vmap`` can take per-example gradients.
        ``noise``: ε of shape (B, L, E), drawn when None."""
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        x0 = self.embed(model, ids)  # (B, L, E)
        t_tok = self.token_timesteps(t, tmask)  # (B, L)
        xt = self.q_sample(x0, t_tok, torch.randn_like(x0) if noise is None else noise)
        xt = torch.where(tmask[..., None], xt, x0)
        sc = torch.zeros_like(x0) if model.config.self_condition else None
        out = model(inputs_embeds=xt, timesteps=t_tok, self_cond=sc, valid=batch["valid"], prefix_len=batch["prefix_len"])
        x0_hat, logits = self.predict_x0(model, out.latent)  # (B, L, E), (B, L, V)
        mse = (x0_hat.float() - x0.float()).pow(2).mean(-1)  # (B, L)
        ce = F.cross_entropy(logits.float().flatten(0, 1), ids.flatten(), reduction="none").view_as(mse)
        return masked_mean(self.mse_weight * mse + self.rounding_weight * ce, tmask, dim=1)
