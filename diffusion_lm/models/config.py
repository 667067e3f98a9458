"""Typed configuration of the shared denoiser (its docstring is the ``--help`` text)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Optional

AttentionMode = Literal["bidirectional", "prefix", "causal", "prefix_causal"]


@dataclass
class DenoiserConfig:
    """Transformer used by every recipe.

    Args:
        vocab_size: Size of the token vocabulary (filled in from the data module by the CLI).
        d_model: Width of the residual stream.
        n_layers: Number of transformer blocks.
        n_heads: Attention heads.
        n_kv_heads: Key/value heads (grouped-query attention); ``None`` = ``n_heads``.
        d_ff: Hidden width of the MLP; ``None`` = 4 · d_model.
        embed_dim: Width of the token embedding / diffusion latent. ``None`` = d_model (GPT-2 layout,
            no projections). Continuous diffusion usually works in a smaller space (e.g. 128).
        max_len: Number of learned positions (the longest ``[src] [SEP] [tgt]`` sequence).
        dropout: Dropout on embeddings, attention output and MLP output.
        attention: ``prefix`` (source attends to source, target attends to all), ``bidirectional``,
            ``causal``, or ``prefix_causal`` (prefix-LM for autoregressive decoding: the source attends
            to the whole source, each target position to the source and the earlier target).
        norm: ``layernorm`` (GPT-2) or ``rmsnorm`` (Llama).
        position: ``learned`` absolute positions (GPT-2) or ``rope`` (Llama).
        mlp: ``gelu`` (GPT-2, tanh approximation) or ``swiglu`` (Llama).
        bias: Biases in linear layers (GPT-2: yes, Llama: no).
        norm_eps: Epsilon of the normalisation layers.
        rope_theta: RoPE base frequency.
        tie_embeddings: Share the output projection with the token embedding.
        timestep_embedding: Add a per-token timestep embedding (diffusion); off for a pure AR model.
        self_condition: Accept a self-conditioning input (previous x̂0 estimate).
        length_classes: Size of the target-length classifier head (0 = no head).
        segment_embedding: Add a learned vector to every target position (a BERT-style segment embedding;
            zero-initialised), so source and target tokens can be told apart without counting positions.
        activation_checkpointing: Recompute each block's activations in the backward pass instead of
            storing them (less memory, ~1/3 more compute); changes no weights or results.
    """

    vocab_size: int = 0
    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: Optional[int] = None
    d_ff: Optional[int] = None
    embed_dim: Optional[int] = None
    max_len: int = 256
    dropout: float = 0.1
    attention: AttentionMode = "prefix"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    position: Literal["learned", "rope"] = "learned"
    mlp: Literal["gelu", "swiglu"] = "gelu"
    bias: bool = True
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    timestep_embedding: bool = True
    self_condition: bool = True
    length_classes: int = 0
    segment_embedding: bool = False
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        kv = self.kv_heads
        if self.n_heads % kv:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={kv}")
        if self.attention not in ("bidirectional", "prefix", "causal", "prefix_causal"):
            raise ValueError(f"attention must be bidirectional, prefix, causal or prefix_causal, got {self.attention!r}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ff_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def latent_dim(self) -> int:
        return self.embed_dim or self.d_model

    def to_dict(self) -> dict:
        return asdict(self)
