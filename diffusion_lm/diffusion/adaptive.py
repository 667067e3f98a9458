"""Adaptive early stopping for the continuous sampler (seed paper 1, adaptive step scheduling).

After each DDIM step k every sequence measures how much it still moves,

    Δ_k = ‖x_k − x_{k−1}‖ / √(target tokens)

(Frobenius norm over its target positions, i.e. the root-mean-square per-token change), and a
sequence with Δ_k < ε after at least ``min_steps`` steps is finished: its tokens are the rounding of
its last x̂_0 and it is **removed from the batch** — the next denoiser call runs on the remaining rows
only (and on the columns they need), so the compute is really saved. With ε = 0 nothing stops
early and the result is identical to :class:`DDIMSampler` (same noise, same arithmetic).

What x_k is: ``criterion: x0`` tracks the model's clean estimate x̂_0 (default: it stops changing
once the model has made up its mind, whatever K is); ``criterion: xt`` tracks the sampler state x_t
itself (the literal reading; its change also shrinks with the step size 1/K).

``epsilon: null`` uses the ε that ``diffusion-lm calibrate`` stored in the checkpoint (0 if none).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch

from ..models.denoiser import Denoiser
from .gaussian import GaussianDiffusion
from .generate import DDIMSampler, GenerationResult, rounding_score


class AdaptiveDDIMSampler(DDIMSampler):
    """Args:
        steps: K, the most denoiser evaluations a sequence gets.
        epsilon: Stop a sequence when Δ_k < ε; ``None`` = the calibrated ε from the checkpoint (else 0).
        min_steps: Steps every sequence takes before it may stop.
        criterion: ``x0`` (track x̂_0) or ``xt`` (track the sampler state x_t).
        self_condition: Feed the previous step's x̂_0 as self-conditioning input.
        clamp: Diffusion-LM's clamping trick (see :class:`DDIMSampler`).
    """

    def __init__(
        self,
        steps: int = 20,
        epsilon: Optional[float] = None,
        min_steps: int = 2,
        criterion: Literal["x0", "xt"] = "x0",
        self_condition: bool = True,
        clamp: bool = False,
    ) -> None:
        super().__init__(steps=steps, self_condition=self_condition, clamp=clamp)
        if epsilon is not None and epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        if min_steps < 1:
            raise ValueError(f"min_steps must be >= 1, got {min_steps}")
        if criterion not in ("x0", "xt"):
            raise ValueError(f"criterion must be x0 or xt, got {criterion!r}")
        self.epsilon = epsilon
        self.min_steps = min_steps
        self.criterion = criterion
        self.calibrated_epsilon: float | None = None

    @property
    def effective_epsilon(self) -> float:
        if self.epsilon is not None:
            return self.epsilon
        return self.calibrated_epsilon or 0.0

    def state_dict(self) -> dict[str, Any]:
        return {} if self.calibrated_epsilon is None else {"calibrated_epsilon": self.calibrated_epsilon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "calibrated_epsilon" in state:
            self.calibrated_epsilon = float(state["calibrated_epsilon"])

    @staticmethod
    def change(new: torch.Tensor, old: torch.Tensor, tmask: torch.Tensor) -> torch.Tensor:
        """Δ per row: ‖new − old‖ over target positions / √(target tokens).  (b, L, E) → (b,)"""
        sq = (new.float() - old.float()).pow(2).sum(-1) * tmask  # (b, L)
        return (sq.sum(-1) / tmask.sum(-1).clamp(min=1)).sqrt()

    @torch.no_grad()
    def generate(self, model: Denoiser, process: GaussianDiffusion, batch: dict[str, Any]) -> GenerationResult:
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        B = ids.shape[0]
        eps = self.effective_epsilon
        x0_prompt = process.embed(model, ids)  # (B, L, E)
        x = torch.where(tmask[..., None], torch.randn_like(x0_prompt), x0_prompt)  # x_1 ~ N(0, I) on the target
        use_sc = self.self_condition and model.config.self_condition
        sc = torch.zeros_like(x) if use_sc else None
        prev = x.clone() if self.criterion == "xt" else None  # (B, L, E) tracked quantity of the last step
        tokens = ids.clone()
        steps = torch.full((B,), self.steps, dtype=torch.long, device=ids.device)
        row_len = batch["valid"].sum(-1)  # (B,) real positions per row
        active = torch.arange(B, device=ids.device)  # rows still being denoised
        times = torch.linspace(1.0, 0.0, self.steps + 1, device=ids.device)
        scores = torch.zeros(B, device=ids.device)  # (B,) mean log-probability of each row's last rounding
        for k in range(self.steps):
            Lk = int(row_len[active].max())  # columns the remaining rows need
            a_ids, a_tm = ids[active, :Lk], tmask[active, :Lk]
            tm3 = a_tm[..., None]  # (b, Lk, 1)
            a_prompt, a_x = x0_prompt[active, :Lk], x[active, :Lk]
            t_tok = process.token_timesteps(times[k].expand(len(active)), a_tm)  # (b, Lk)
            latent = model(inputs_embeds=a_x, timesteps=t_tok, self_cond=None if sc is None else sc[active, :Lk],
                           valid=batch["valid"][active, :Lk], prefix_len=batch["prefix_len"][active]).latent
            x0_hat, logits = process.predict_x0(model, latent)
            x0_hat = x0_hat.float()
            if self.clamp:
                x0_hat = process.embedding_table(model)[logits.argmax(-1)]
            x0_hat = torch.where(tm3, x0_hat, a_prompt)
            new_x = torch.where(tm3, self.ddim_step(process, a_x, x0_hat, times[k], times[k + 1]), a_prompt)
            x[active, :Lk] = new_x
            if use_sc:
                sc[active, :Lk] = torch.where(tm3, x0_hat, torch.zeros_like(x0_hat))
            tokens[active, :Lk] = torch.where(a_tm, logits.argmax(-1), a_ids)
            scores[active] = rounding_score(logits, a_tm)

            tracked = x0_hat if self.criterion == "x0" else new_x
            if prev is not None and eps > 0 and k + 1 >= self.min_steps and k + 1 < self.steps:
                done = self.change(tracked, prev[active, :Lk], a_tm) < eps  # (b,)
                if done.any():
                    steps[active[done]] = k + 1
                    active = active[~done]
                    if len(active) == 0:
                        break
                    tracked = tracked[~done]
            if prev is None:
                prev = torch.zeros_like(x)
            prev[active, :Lk] = tracked
        return GenerationResult(tokens=tokens, steps=steps, scores=scores)
