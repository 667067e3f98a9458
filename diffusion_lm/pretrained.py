"""Pretrained sources a recipe starts from (``init_from``): a Hugging Face GPT-2 / Llama-family directory
or Hub id, or a ``.ckpt`` of this framework (AR2Diff stage 1 → 2 → 3, the AR baseline, TaskAdapt).

    pre = load_pretrained("runs/…/last.ckpt")      # or "path/to/gpt2-dir", a Llama dir, a Hub id (network)
    model = Denoiser(pre.config); load_into(model, pre.state_dict, pre.source)

A ``.ckpt`` is read by :func:`diffusion_lm.checkpoint.read_checkpoint` (weights-only); a Hugging Face
directory through the format mapping of :mod:`diffusion_lm.models.convert`. Each source comes with its
tokenizer when it has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, Optional

import torch

from .checkpoint import denoiser_weights, load_checkpoint, read_checkpoint
from .data.tokenization import TextTokenizer, load_pretrained_tokenizer, tokenizer_from_checkpoint
from .errors import CheckpointError, ConfigError
from .models.config import DenoiserConfig
from .models.convert import FAMILIES


@dataclass
class Pretrained:
    config: DenoiserConfig  # architecture of the source (its attention mode as it was trained)
    state_dict: dict[str, torch.Tensor]  # keys of :class:`Denoiser`
    tokenizer: Optional[TextTokenizer]
    source: str
    hyper_parameters: dict  # the recipe's hyper-parameters of a .ckpt source ({} for a Hugging Face one)


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors or PyTorch-bin checkpoint directory."""
    from safetensors.torch import load_file

    for index_name, single, loader in (
        ("model.safetensors.index.json", "model.safetensors", load_file),
        ("pytorch_model.bin.index.json", "pytorch_model.bin", load_checkpoint),
    ):
        if (directory / single).is_file():
            return loader(str(directory / single))
        if (directory / index_name).is_file():
            shards = sorted(set(json.loads((directory / index_name).read_text())["weight_map"].values()))
            sd: dict[str, torch.Tensor] = {}
            for shard in shards:
                sd.update(loader(str(directory / shard)))
            return sd
    raise CheckpointError(f"{directory}: no model.safetensors, pytorch_model.bin or sharded index found")


def _resolve_hf_directory(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a Hugging Face checkpoint directory (no config.json)")
        return path
    try:  # a Hub id, when the network allows
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as e:  # noqa: BLE001 — offline, unknown id, gated model …
        raise CheckpointError(
            f"{source!r} is neither a local checkpoint (directory or .ckpt) nor a reachable Hub model "
            f"({type(e).__name__}: {e})"
        ) from None


def load_hf(source: str) -> Pretrained:
    """A ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` directory (or Hub id) with its tokenizer."""
    from transformers import AutoConfig

    directory = _resolve_hf_directory(source)
    hf_cfg = AutoConfig.from_pretrained(str(directory))
    family = FAMILIES.get(hf_cfg.model_type)
    if family is None:
        raise ConfigError(f"{source}: model_type {hf_cfg.model_type!r} is not supported; "
                          f"supported: {sorted(FAMILIES)}")
    cfg = family.config_from_hf(hf_cfg)
    raw = _read_hf_weights(directory)
    try:
        sd = family.state_from_hf(raw, cfg)
    except KeyError as e:
        raise CheckpointError(f"{source}: tensor {e.args[0]!r} is missing from the checkpoint") from None
    has_tokenizer = any((directory / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json"))
    tokenizer = load_pretrained_tokenizer(str(directory)) if has_tokenizer else None
    return Pretrained(cfg, sd, tokenizer, str(source), {})


def load_ckpt(path: str, weights: Literal["ema", "raw"] = "ema") -> Pretrained:
    """A ``.ckpt`` written by any recipe of this framework: the architecture comes from its hyper-parameters,
    every optional module (timestep embedding, self-conditioning input, length head, output head) from the
    tensors actually present; ``weights="ema"`` takes the EMA copy when there is one."""
    return pretrained_from_checkpoint(read_checkpoint(path), path, weights)


def pretrained_from_checkpoint(ckpt: dict, path: str, weights: Literal["ema", "raw"] = "ema") -> Pretrained:
    """:func:`load_ckpt` of a checkpoint dict already read (by :func:`read_checkpoint`) from ``path``."""
    if "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint of a diffusion_lm recipe")
    sd = denoiser_weights(ckpt, path, weights)
    hp = ckpt["hyper_parameters"]
    base = hp.get("denoiser") or DenoiserConfig()
    values = base.to_dict() if isinstance(base, DenoiserConfig) else dict(base)
    values.update(
        vocab_size=sd["wte.weight"].shape[0],
        timestep_embedding=any(k.startswith("time_embed.") for k in sd),
        self_condition="self_cond_proj.weight" in sd,
        length_classes=sd["length_head.weight"].shape[0] if "length_head.weight" in sd else 0,
        tie_embeddings="lm_head.weight" not in sd,
    )
    if "wpe.weight" in sd:
        values["max_len"] = sd["wpe.weight"].shape[0]
    if hp.get("attention"):  # the Autoregressive recipe's own attention switch
        values["attention"] = hp["attention"]
    cfg = DenoiserConfig(**{f.name: values[f.name] for f in fields(DenoiserConfig) if f.name in values})
    return Pretrained(cfg, sd, tokenizer_from_checkpoint(ckpt), str(path), dict(hp))


def load_pretrained(source: str, weights: Literal["ema", "raw"] = "ema") -> Pretrained:
    """A ``.ckpt`` of this framework, a Hugging Face directory, or a Hub id."""
    if str(source).endswith(".ckpt"):
        return load_ckpt(source, weights)
    return load_hf(source)
