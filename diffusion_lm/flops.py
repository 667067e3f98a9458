"""Model FLOPs of the denoiser, from its config (for tokens/s → MFU).

Counted as 2 FLOPs per multiply-add, matmuls only (the PaLM appendix B convention, which is also
what ``torch.utils.flop_counter`` counts): per token and layer, the qkv/out/MLP projections
(2 · their weights) plus attention scores and values (2 · 2 · L · D for a sequence of L keys);
around the blocks the latent in/out projections, the timestep MLP, the self-conditioning projection,
and the output head (V × E), which the recipes apply only to the positions that get a loss.

A trained forward pass costs 3 forward passes (forward, and backward ≈ 2 × forward); a training step
makes one or more of them (SUNDAE's unrolled denoising trains a second pass) plus any gradient-free forward
passes (the self-conditioning estimate, FastDiSS's confidence pass): the recipe reports both through
:meth:`CountsFlops.step_flops`, from its process. Recomputation by activation checkpointing is not counted:
MFU is *model* FLOPs utilisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models.config import DenoiserConfig


def body_params(cfg: DenoiserConfig) -> int:
    """Weights every token multiplies through in one forward pass, without the output head."""
    D, E, hd = cfg.d_model, cfg.latent_dim, cfg.head_dim
    per_layer = (
        D * (cfg.n_heads + 2 * cfg.kv_heads) * hd  # fused qkv
        + D * D  # attention output projection
        + D * cfg.ff_dim * (2 if cfg.mlp == "swiglu" else 1)  # MLP in (gate + up for SwiGLU)
        + cfg.ff_dim * D  # MLP out
    )
    n = cfg.n_layers * per_layer
    if E != D:
        n += 2 * E * D  # in_proj and out_proj
    if cfg.timestep_embedding:
        n += 2 * D * D  # TimestepEmbedding fc1, fc2
    if cfg.self_condition:
        n += E * D  # self_cond_proj
    return n


def head_params(cfg: DenoiserConfig) -> int:
    """Output head / rounding logits: V × E."""
    return cfg.vocab_size * cfg.latent_dim


@dataclass
class StepFlops:
    """FLOPs of one training step, given what the batch holds.

    Args:
        config: The denoiser's architecture.
        grad_free_passes: Expected extra forward passes without gradient per step (e.g. the
            self-conditioning estimate, taken with probability p: 0.5).
        trained_passes: Forward passes with gradient per step (each with its backward pass).
    """

    config: DenoiserConfig
    grad_free_passes: float = 0.0
    trained_passes: float = 1.0

    def forward_per_token(self, seq_len: int) -> float:
        """Forward FLOPs of one token in a sequence of ``seq_len`` positions, head excluded."""
        cfg = self.config
        return 2.0 * body_params(cfg) + 4.0 * cfg.n_layers * cfg.d_model * seq_len

    def __call__(self, tokens: float, seq_len: float, head_tokens: float | None = None) -> float:
        """``tokens`` real positions in batches of padded length ``seq_len`` (or the token-weighted mean
        of it), ``head_tokens`` of which get logits (default: all)."""
        head_tokens = tokens if head_tokens is None else head_tokens
        body = tokens * self.forward_per_token(seq_len)  # type: ignore[arg-type]
        head = 2.0 * head_params(self.config) * head_tokens
        return 3.0 * self.trained_passes * (body + head) + self.grad_free_passes * body


class CountsFlops:
    """A LightningModule whose training step's FLOPs are known (the throughput callback's MFU reads them)."""

    def step_flops(self) -> StepFlops:
        raise NotImplementedError
