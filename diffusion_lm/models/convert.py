"""Hugging Face GPT-2 / Llama-family weights ↔ the shared :class:`Denoiser`: configs and tensor names mapped
both ways, the architecture a pretrained source fixes, and the export back to a causal-LM directory. Pure
format conversion: reading files and tokenizers is :mod:`diffusion_lm.pretrained`'s.

    pre = load_pretrained("path/to/gpt2-dir")      # diffusion_lm.pretrained: a Llama dir, a Hub id, a .ckpt
    model = Denoiser(pre.config); load_into(model, pre.state_dict, pre.source)
    export_hf(model, "out-dir", tokenizer)          # back to a GPT2LMHeadModel / LlamaForCausalLM directory

Mapping (D = d_model). GPT-2 stores its linear layers as ``Conv1D`` (weight (in, out), the transpose of
``nn.Linear``); its fused ``c_attn`` is already ``[q | k | v]`` like our ``attn.qkv``. Llama keeps q/k/v and
gate/up separate: they are concatenated into ``attn.qkv`` and ``mlp.fc`` (SwiGLU reads ``[gate | up]``).
Llama's rotary convention (rotate-half on the HF-permuted q/k weights) is the one in ``layers.apply_rope``,
so no permutation is needed.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Optional, Protocol

import torch

from ..errors import CheckpointError, ConfigError
from .config import DenoiserConfig
from .denoiser import Denoiser
from .state_dict import load_checked

log = logging.getLogger(__name__)

# parameters that only diffusion (or the length head) adds; an AR source never has them
DIFFUSION_ONLY = ("time_embed.", "self_cond_proj.", "length_head.")
# DenoiserConfig fields that are training choices, not architecture: the recipe's value wins on import
TRAINING_FIELDS = ("dropout",)


class TextTokenizer(Protocol):
    """What the export needs of a tokenizer (``diffusion_lm.data.tokenization.TextTokenizer`` has it)."""

    eos_id: int
    pad_id: int

    def save(self, directory: str | Path) -> None: ...


# ---------------------------------------------------------------------- Hugging Face families
class GPT2Family:
    """``GPT2LMHeadModel``: learned positions, pre-LayerNorm, tanh-GELU, biases, tied embeddings."""

    model_type = "gpt2"

    @staticmethod
    def config_from_hf(c) -> DenoiserConfig:
        if c.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ConfigError(f"GPT-2 activation {c.activation_function!r} is not supported (tanh-GELU only)")
        if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
            raise ConfigError("GPT-2 attention scaling other than 1/sqrt(head_dim) is not supported")
        return DenoiserConfig(
            vocab_size=c.vocab_size, d_model=c.n_embd, n_layers=c.n_layer, n_heads=c.n_head,
            d_ff=c.n_inner or 4 * c.n_embd, max_len=c.n_positions, dropout=c.resid_pdrop, attention="causal",
            norm="layernorm", position="learned", mlp="gelu", bias=True, norm_eps=c.layer_norm_epsilon,
            tie_embeddings=bool(getattr(c, "tie_word_embeddings", True)), timestep_embedding=False,
            self_condition=False, length_classes=0,
        )

    @staticmethod
    def config_to_hf(cfg: DenoiserConfig, tokenizer: Optional[TextTokenizer]):
        from transformers import GPT2Config

        eos = tokenizer.eos_id if tokenizer is not None else None
        return GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.max_len, n_embd=cfg.d_model, n_layer=cfg.n_layers,
            n_head=cfg.n_heads, n_inner=cfg.ff_dim, activation_function="gelu_new", layer_norm_epsilon=cfg.norm_eps,
            resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
            tie_word_embeddings=cfg.tie_embeddings, bos_token_id=eos, eos_token_id=eos,
            architectures=["GPT2LMHeadModel"],
        )

    # (hf name inside a block, our name inside a block, transpose?)
    BLOCK = [("ln_1.weight", "ln_1.weight", False), ("ln_1.bias", "ln_1.bias", False),
             ("attn.c_attn.weight", "attn.qkv.weight", True), ("attn.c_attn.bias", "attn.qkv.bias", False),
             ("attn.c_proj.weight", "attn.proj.weight", True), ("attn.c_proj.bias", "attn.proj.bias", False),
             ("ln_2.weight", "ln_2.weight", False), ("ln_2.bias", "ln_2.bias", False),
             ("mlp.c_fc.weight", "mlp.fc.weight", True), ("mlp.c_fc.bias", "mlp.fc.bias", False),
             ("mlp.c_proj.weight", "mlp.proj.weight", True), ("mlp.c_proj.bias", "mlp.proj.bias", False)]
    TOP = [("wte.weight", "wte.weight"), ("wpe.weight", "wpe.weight"), ("ln_f.weight", "ln_f.weight"),
           ("ln_f.bias", "ln_f.bias")]

    @classmethod
    def state_from_hf(cls, sd: dict[str, torch.Tensor], cfg: DenoiserConfig) -> dict[str, torch.Tensor]:
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        out = {ours: sd[hf] for hf, ours in cls.TOP}
        for i in range(cfg.n_layers):
            for hf, ours, t in cls.BLOCK:
                w = sd[f"h.{i}.{hf}"]
                out[f"blocks.{i}.{ours}"] = w.t().contiguous() if t else w
        if not cfg.tie_embeddings:
            out["lm_head.weight"] = sd["lm_head.weight"]
        return out

    @classmethod
    def state_to_hf(cls, sd: dict[str, torch.Tensor], cfg: DenoiserConfig) -> dict[str, torch.Tensor]:
        out = {f"transformer.{hf}": sd[ours] for hf, ours in cls.TOP}
        for i in range(cfg.n_layers):
            for hf, ours, t in cls.BLOCK:
                w = sd[f"blocks.{i}.{ours}"]
                out[f"transformer.h.{i}.{hf}"] = w.t().contiguous() if t else w
        out["lm_head.weight"] = sd["wte.weight"] if cfg.tie_embeddings else sd["lm_head.weight"]
        return out

    @staticmethod
    def matches(cfg: DenoiserConfig) -> bool:
        return (cfg.norm, cfg.position, cfg.mlp, cfg.bias) == ("layernorm", "learned", "gelu", True) \
            and cfg.kv_heads == cfg.n_heads


class LlamaFamily:
    """``LlamaForCausalLM`` (and ``MistralForCausalLM`` without a binding sliding window): RMSNorm, RoPE,
    SwiGLU, grouped-query attention, no biases."""

    model_type = "llama"

    @staticmethod
    def rope_theta(c) -> float:
        params = getattr(c, "rope_parameters", None) or {}
        kind = params.get("rope_type", "default")
        scaling = getattr(c, "rope_scaling", None)
        if kind != "default" or (scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default"):
            raise ConfigError(f"RoPE scaling {params or scaling} is not supported (plain RoPE only)")
        return float(params.get("rope_theta", getattr(c, "rope_theta", 10000.0)))

    @classmethod
    def config_from_hf(cls, c) -> DenoiserConfig:
        if c.hidden_act != "silu":
            raise ConfigError(f"Llama activation {c.hidden_act!r} is not supported (SwiGLU with silu only)")
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        if head_dim * c.num_attention_heads != c.hidden_size:
            raise ConfigError(f"head_dim={head_dim} × {c.num_attention_heads} heads != hidden_size={c.hidden_size}")
        attn_bias, mlp_bias = bool(getattr(c, "attention_bias", False)), bool(getattr(c, "mlp_bias", False))
        if attn_bias != mlp_bias:
            raise ConfigError("attention_bias != mlp_bias is not supported (one bias switch for every linear layer)")
        window = getattr(c, "sliding_window", None)
        if window is not None and window < c.max_position_embeddings:
            warnings.warn(f"sliding_window={window} is ignored: sequences longer than it attend to everything",
                          stacklevel=3)
        return DenoiserConfig(
            vocab_size=c.vocab_size, d_model=c.hidden_size, n_layers=c.num_hidden_layers,
            n_heads=c.num_attention_heads, n_kv_heads=c.num_key_value_heads or c.num_attention_heads,
            d_ff=c.intermediate_size, max_len=c.max_position_embeddings, dropout=float(c.attention_dropout),
            attention="causal", norm="rmsnorm", position="rope", mlp="swiglu", bias=attn_bias,
            norm_eps=c.rms_norm_eps, rope_theta=cls.rope_theta(c),
            tie_embeddings=bool(getattr(c, "tie_word_embeddings", False)), timestep_embedding=False,
            self_condition=False, length_classes=0,
        )

    @staticmethod
    def config_to_hf(cfg: DenoiserConfig, tokenizer: Optional[TextTokenizer]):
        from transformers import LlamaConfig

        eos = tokenizer.eos_id if tokenizer is not None else None
        return LlamaConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ff_dim,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads,
            head_dim=cfg.head_dim, max_position_embeddings=cfg.max_len, rms_norm_eps=cfg.norm_eps,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, attention_bias=cfg.bias,
            mlp_bias=cfg.bias, tie_word_embeddings=cfg.tie_embeddings, bos_token_id=eos, eos_token_id=eos,
            pad_token_id=tokenizer.pad_id if tokenizer is not None else None, architectures=["LlamaForCausalLM"],
        )

    @staticmethod
    def _names(i: int, bias: bool) -> list[tuple[list[str], str]]:
        """(HF tensors concatenated along dim 0, our tensor) for block i."""
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        pairs = [([p + "input_layernorm.weight"], q + "ln_1.weight"),
                 ([p + "post_attention_layernorm.weight"], q + "ln_2.weight")]
        for suffix in ("weight", "bias") if bias else ("weight",):
            pairs += [([p + f"self_attn.{n}_proj.{suffix}" for n in "qkv"], q + f"attn.qkv.{suffix}"),
                      ([p + f"self_attn.o_proj.{suffix}"], q + f"attn.proj.{suffix}"),
                      ([p + f"mlp.gate_proj.{suffix}", p + f"mlp.up_proj.{suffix}"], q + f"mlp.fc.{suffix}"),
                      ([p + f"mlp.down_proj.{suffix}"], q + f"mlp.proj.{suffix}")]
        return pairs

    @classmethod
    def _all_names(cls, cfg: DenoiserConfig) -> list[tuple[list[str], str]]:
        pairs = [(["model.embed_tokens.weight"], "wte.weight"), (["model.norm.weight"], "ln_f.weight")]
        for i in range(cfg.n_layers):
            pairs += cls._names(i, cfg.bias)
        if not cfg.tie_embeddings:
            pairs.append((["lm_head.weight"], "lm_head.weight"))
        return pairs

    @classmethod
    def state_from_hf(cls, sd: dict[str, torch.Tensor], cfg: DenoiserConfig) -> dict[str, torch.Tensor]:
        return {ours: torch.cat([sd[n] for n in hf]) if len(hf) > 1 else sd[hf[0]] for hf, ours in cls._all_names(cfg)}

    @classmethod
    def state_to_hf(cls, sd: dict[str, torch.Tensor], cfg: DenoiserConfig) -> dict[str, torch.Tensor]:
        out = {}
        for hf, ours in cls._all_names(cfg):
            w = sd[ours]
            if len(hf) == 1:
                out[hf[0]] = w
                continue
            if "qkv" in ours:
                sizes = [cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim]
            else:
                sizes = [cfg.ff_dim, cfg.ff_dim]
            out.update({n: part.contiguous() for n, part in zip(hf, w.split(sizes))})
        return out

    @staticmethod
    def matches(cfg: DenoiserConfig) -> bool:
        return (cfg.norm, cfg.position, cfg.mlp) == ("rmsnorm", "rope", "swiglu")


FAMILIES = {"gpt2": GPT2Family, "llama": LlamaFamily, "mistral": LlamaFamily}


# ---------------------------------------------------------------------- into a recipe's denoiser
def adopt_architecture(cfg: DenoiserConfig, source: DenoiserConfig) -> DenoiserConfig:
    """The source's architecture with the recipe's training choices (dropout) from ``cfg``; with RoPE the
    recipe's ``max_len`` is kept too (no position table constrains it). A new config; neither is changed."""
    keep = set(TRAINING_FIELDS) | ({"max_len"} if source.position == "rope" else set())
    values = cfg.to_dict()
    return replace(source, **{name: values[name] for name in keep})


def with_training_fields(source: DenoiserConfig, requested: Optional[DenoiserConfig]) -> DenoiserConfig:
    """The source's architecture exactly, with only the training choices (dropout) of ``requested`` if one is
    given: fine-tuning a model keeps every shape, ``max_len`` included."""
    if requested is None:
        return replace(source)
    values = requested.to_dict()
    return replace(source, **{name: values[name] for name in TRAINING_FIELDS})


def load_into(model: Denoiser, sd: dict[str, torch.Tensor], source: str, may_add: tuple[str, ...] = DIFFUSION_ONLY) -> list[str]:
    """Loads ``sd`` into ``model``; parameters the model has and the source lacks must start with one of
    ``may_add`` (they keep their initialisation: zero for the timestep embedding). Returns their names."""
    return load_checked(model, sd, source, may_add)


# ---------------------------------------------------------------------- export
def family_of(cfg: DenoiserConfig):
    for family in (GPT2Family, LlamaFamily):
        if family.matches(cfg):
            return family
    raise ConfigError(
        "only GPT-2 layouts (layernorm, learned positions, gelu, bias, no GQA) and Llama layouts "
        f"(rmsnorm, rope, swiglu) can be exported; this model has norm={cfg.norm}, position={cfg.position}, "
        f"mlp={cfg.mlp}, bias={cfg.bias}, n_kv_heads={cfg.n_kv_heads}"
    )


def export_hf(model: Denoiser, directory: str | os.PathLike, tokenizer: Optional[TextTokenizer] = None) -> Path:
    """Writes a Hugging Face causal-LM directory (``save_pretrained``) for an autoregressive denoiser."""
    cfg = model.config
    if cfg.latent_dim != cfg.d_model:
        raise ConfigError(f"embed_dim={cfg.embed_dim} != d_model={cfg.d_model}: HF causal LMs have no projections")
    family = family_of(cfg)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # a zero timestep / self-conditioning output layer adds nothing: such a model is still a plain causal LM
    used = [name for name, m in (("time_embed", model.time_embed and model.time_embed.fc2),
                                 ("self_cond_proj", model.self_cond_proj)) if m is not None and any(p.any() for p in m.parameters())]
    if used:
        raise ConfigError(f"the model uses diffusion inputs ({', '.join(used)}): only autoregressive models export")
    if cfg.attention != "causal":
        warnings.warn(f"the model was trained with attention={cfg.attention!r}; the HF model is purely causal",
                      stacklevel=2)
    from transformers import AutoModelForCausalLM

    hf_cfg = family.config_to_hf(cfg, tokenizer)
    hf = AutoModelForCausalLM.from_config(hf_cfg)
    hf_sd = family.state_to_hf(sd, cfg)
    missing, unexpected = hf.load_state_dict(hf_sd, strict=False)
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise CheckpointError(f"export mapping incomplete (missing {missing[:5]}, unexpected {unexpected[:5]})")
    out = Path(directory)
    hf.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save(out)
    log.info("exported a %s model to %s", family.model_type, out)
    return out
