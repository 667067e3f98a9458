"""The one transformer every recipe shares.

Data flow (nanoGPT style, read top to bottom)::

    ids (B, L) ──wte──▶ e (B, L, E) ─┐                     E = embed_dim (latent), D = d_model
    or inputs_embeds (B, L, E) ──────┴─in_proj─▶ h (B, L, D)
    h += wpe(pos) + time_mlp(t) + self_cond_proj(x̂0_prev)
    h = blocks(h, mask)  ─ln_f─▶ hidden (B, L, D) ─out_proj─▶ latent (B, L, E) ─·wteᵀ─▶ logits (B, L, V)

``latent`` is the x̂0 estimate for continuous diffusion and the pre-logit feature for discrete
diffusion and AR; with ``embed_dim = d_model`` both projections are the identity and the model
is exactly a GPT-2 / Llama decoder (plus a zero-initialised timestep embedding).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import DenoiserConfig
from .layers import Block, KVCache, TimestepEmbedding, make_norm, rope_cos_sin


class DenoiserOutput(NamedTuple):
    latent: torch.Tensor  # (B, L, E)
    hidden: torch.Tensor  # (B, L, D), after the final norm


def attention_mask(
    mode: str,
    valid: torch.Tensor | None,  # (B, L) bool, False at padding
    prefix_len: torch.Tensor | None,  # (B,) number of prefix (source + SEP) positions
    L: int,
    device: torch.device,
) -> tuple[torch.Tensor | None, bool]:
    """Returns ``(mask, is_causal)``; mask is (B, 1, L, L) bool (True = query i may attend to key j).

    * causal: lower-triangular; right padding needs no mask (padded keys lie in every real query's future).
    * bidirectional: every query sees every non-padding key.
    * prefix: source queries see only source keys, target queries see every non-padding key.
    * prefix_causal (prefix LM): every query sees the whole prefix and, causally, the target up to itself.
    """
    if mode == "causal" or (mode == "prefix_causal" and prefix_len is None):
        return None, True
    keys = valid[:, None, None, :] if valid is not None else None  # (B, 1, 1, L)
    if mode == "bidirectional" or prefix_len is None:  # prefix mode without a prefix: all target
        return keys, False
    pos = torch.arange(L, device=device)
    in_prefix = pos[None, :] < prefix_len[:, None]  # (B, L)
    if mode == "prefix_causal":
        # query i may see key j if j is in the prefix or j ≤ i (a prefix query never reaches the target: j > i)
        mask = in_prefix[:, None, None, :] | (pos[None, :] <= pos[:, None])[None, None]  # (B, 1, L, L)
    else:
        # query i may see key j if j is in the prefix, or i is in the target (not in the prefix)
        mask = in_prefix[:, None, None, :] | ~in_prefix[:, None, :, None]  # (B, 1, L, L)
    if keys is not None:
        mask = mask & keys
    return mask, False


class Denoiser(nn.Module):
    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("DenoiserConfig.vocab_size must be set (the CLI links it from the data module)")
        self.config = cfg = config
        E, D = cfg.latent_dim, cfg.d_model
        self.wte = nn.Embedding(cfg.vocab_size, E)
        self.wpe = nn.Embedding(cfg.max_len, D) if cfg.position == "learned" else None
        self.in_proj = nn.Linear(E, D) if E != D else nn.Identity()
        self.time_embed = TimestepEmbedding(D) if cfg.timestep_embedding else None
        self.segment = nn.Parameter(torch.zeros(D)) if cfg.segment_embedding else None  # added on the target
        self.self_cond_proj = nn.Linear(E, D, bias=False) if cfg.self_condition else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.ln_f = make_norm(cfg)
        self.out_proj = nn.Linear(D, E) if E != D else nn.Identity()
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(E, cfg.vocab_size, bias=False)
        self.length_head = nn.Linear(D, cfg.length_classes) if cfg.length_classes > 0 else None
        self.apply(self._init_weights)
        if E != D:
            # Behind projections, std-0.02 weights on both sides of each product — table · in_proj at the input,
            # out_proj · tableᵀ at the tied output — make every factor's gradient proportional to the other's
            # tiny weights (a deep-linear saddle): token identity barely reaches the blocks or the logits.
            # Projections of gain ~1 make the model start like the GPT-2 layout (E = D) it generalises.
            nn.init.normal_(self.in_proj.weight, mean=0.0, std=E ** -0.5)
            nn.init.normal_(self.out_proj.weight, mean=0.0, std=D ** -0.5)
        # GPT-2: residual projections scaled by 1/√(2·n_layers)
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / (2 * cfg.n_layers) ** 0.5)
        if self.time_embed is not None:  # _init_weights reset them: zero again (see TimestepEmbedding)
            nn.init.zeros_(self.time_embed.fc2.weight)
            nn.init.zeros_(self.time_embed.fc2.bias)
        if self.self_cond_proj is not None:
            nn.init.zeros_(self.self_cond_proj.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ helpers
    @property
    def output_embedding(self) -> torch.Tensor:
        """(V, E) matrix that maps latents to logits."""
        return self.wte.weight if self.lm_head is None else self.lm_head.weight

    def logits(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., E) → (..., V). Call it only on the positions that need logits."""
        return F.linear(latent, self.output_embedding)

    def predict_length(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, D) hidden states (at the SEP position) → (N, length_classes) logits."""
        if self.length_head is None:
            raise RuntimeError("this denoiser has no length head (length_classes=0)")
        return self.length_head(hidden)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, L) long
        *,
        inputs_embeds: torch.Tensor | None = None,  # (B, L, E) — continuous diffusion input x_t
        timesteps: torch.Tensor | None = None,  # (B, L) float in [0, 1], 0 at clean positions
        self_cond: torch.Tensor | None = None,  # (B, L, E) previous x̂0 estimate, 0 where absent
        valid: torch.Tensor | None = None,  # (B, L) bool, False at padding
        prefix_len: torch.Tensor | None = None,  # (B,) source+SEP positions (attention="prefix")
        attention: str | None = None,  # override config.attention for this call
        positions: torch.Tensor | None = None,  # (B, L) long; default 0..L-1 (after the cache)
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,  # (B, 1, L, S) bool, True = may attend; overrides the above
    ) -> DenoiserOutput:
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, L, E)
        B, L = x.shape[:2]
        past = cache.length if cache is not None else 0
        if positions is None:
            positions = torch.arange(past, past + L, device=x.device).expand(B, L)
        h = self.in_proj(x)  # (B, L, D)
        if self.wpe is not None:
            h = h + self.wpe(positions)
        if self.time_embed is not None and timesteps is not None:
            h = h + self.time_embed(timesteps)
        if self.segment is not None and prefix_len is not None:
            h = h + (positions >= prefix_len[:, None]).to(h.dtype)[..., None] * self.segment  # (B, L, D)
        if self.self_cond_proj is not None and self_cond is not None:
            h = h + self.self_cond_proj(self_cond.to(h.dtype))
        h = self.drop(h)

        mode = attention or cfg.attention
        if attn_mask is not None:  # e.g. left-padded prompts in batched KV-cache decoding
            mask, is_causal = attn_mask, False
        elif cache is not None and past > 0:
            # incremental decoding: the new queries see every cached key and the causal part of themselves
            if L == 1:
                mask, is_causal = None, False
            else:
                q = torch.arange(past, past + L, device=x.device)[:, None]
                k = torch.arange(past + L, device=x.device)[None, :]
                mask, is_causal = (k <= q)[None, None], False
        else:
            mask, is_causal = attention_mask(mode, valid, prefix_len, L, x.device)
        rope = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta) if cfg.position == "rope" else None
        recompute = cfg.activation_checkpointing and torch.is_grad_enabled() and cache is None
        for block in self.blocks:
            if recompute:  # store only the block inputs; recompute the rest in backward
                h = checkpoint(block, h, mask, is_causal, rope, None, use_reentrant=False)
            else:
                h = block(h, mask, is_causal, rope, cache)
        hidden = self.ln_f(h)  # (B, L, D)
        return DenoiserOutput(latent=self.out_proj(hidden), hidden=hidden)
