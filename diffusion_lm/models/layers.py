"""Building blocks of the denoiser: norms, rotary positions, attention, MLP, timestep embedding.

GPT-2-compatible by default (pre-LayerNorm, fused qkv with bias, tanh-GELU MLP) and Llama-compatible
by switches (RMSNorm, RoPE, SwiGLU, no bias, grouped-query attention), so that Hugging Face
checkpoints of either family map onto the same modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DenoiserConfig


class RMSNorm(nn.Module):
    """x / rms(x) · g  (Zhang & Sennrich 2019, eq. 4), computed in float32 like Llama."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def make_norm(cfg: DenoiserConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for integer positions (B, L) → cos, sin of shape (B, 1, L, head_dim)  (Su et al. 2021, eq. 34)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[..., None] * inv_freq  # (B, L, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (B, L, hd)
    return emb.cos()[:, None], emb.sin()[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half convention of the Hugging Face Llama implementation. x: (B, H, L, hd)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class KVCache:
    """Per-layer key/value cache for incremental (autoregressive) decoding."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor | None] = []
        self.values: list[torch.Tensor | None] = []

    @property
    def length(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else self.keys[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def select(self, index: torch.Tensor) -> None:
        """Keep only the batch rows in ``index`` (used when sequences finish or beams are reordered)."""
        self.keys = [None if k is None else k.index_select(0, index) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, index) for v in self.values]


class Attention(nn.Module):
    def __init__(self, cfg: DenoiserConfig, layer_idx: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (self.n_heads + 2 * self.n_kv) * self.hd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        mask: torch.Tensor | None,  # (B, 1, L, S) bool, True = may attend; None with is_causal
        is_causal: bool,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        B, L, _ = x.shape
        q, k, v = self.qkv(x).split([self.n_heads * self.hd, self.n_kv * self.hd, self.n_kv * self.hd], dim=-1)
        q = q.view(B, L, self.n_heads, self.hd).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, self.n_kv, self.hd).transpose(1, 2)  # (B, Hkv, L, hd)
        v = v.view(B, L, self.n_kv, self.hd).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, S, hd)
        if self.n_kv != self.n_heads:
            rep = self.n_heads // self.n_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, L, hd)
        return self.proj(y.transpose(1, 2).reshape(B, L, self.n_heads * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        hidden = cfg.ff_dim
        self.fc = nn.Linear(cfg.d_model, 2 * hidden if self.swiglu else hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.swiglu:  # SwiGLU (Shazeer 2020, eq. 6): silu(x W_gate) ⊙ (x W_up)
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.proj(h)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: DenoiserConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = Attention(cfg, layer_idx)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, is_causal, rope, cache):
        x = x + self.drop(self.attn(self.ln_1(x), mask, is_causal, rope, cache))
        return x + self.drop(self.mlp(self.ln_2(x)))


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoids of 1000·t (DDPM's integer-step convention). t: (...) → (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (1000.0 * t.float())[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """Per-token t (B, L) → (B, L, D): sinusoid → Linear → SiLU → Linear (last layer zero-initialised,
    so adding it to a pretrained AR model changes nothing at initialisation)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.fc1 = nn.Linear(d_model, d_model)
        self.fc2 = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.d_model).to(self.fc1.weight.dtype)
        return self.fc2(F.silu(self.fc1(emb)))
