"""Reading this framework's own ``.ckpt`` files outside a Trainer: the pretrained denoiser a recipe
starts from (architecture + weights) and the tokenizer stored with it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import torch

from .data.tokenization import TextTokenizer
from .errors import CheckpointError
from .models.config import DenoiserConfig


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (tensors memory-mapped on the CPU), or a CheckpointError naming the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        # weights_only=False: the hyper-parameters hold config objects (DenoiserConfig, processes);
        # only load checkpoints you produced or trust.
        ckpt = torch.load(p, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(f"{p}: cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{p}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def checkpoint_tokenizer(path: str | Path) -> TextTokenizer:
    ckpt = read_checkpoint(path)
    if "tokenizer" not in ckpt:
        raise CheckpointError(f"{path}: the checkpoint stores no tokenizer (it was trained without a data module)")
    return TextTokenizer.from_dict(ckpt["tokenizer"])


def denoiser_config(ckpt: dict[str, Any], path: str | Path) -> DenoiserConfig:
    """The architecture the checkpoint was trained with (vocabulary size filled in)."""
    hp = ckpt.get("hyper_parameters") or {}
    cfg = hp.get("denoiser")
    if isinstance(cfg, dict):
        cfg = DenoiserConfig(**cfg)
    if not isinstance(cfg, DenoiserConfig):
        raise CheckpointError(f"{path}: not a diffusion_lm recipe checkpoint (no 'denoiser' hyper-parameter)")
    cfg = copy.deepcopy(cfg)
    if hp.get("vocab_size"):
        cfg.vocab_size = int(hp["vocab_size"])
    return cfg


def denoiser_weights(ckpt: dict[str, Any], path: str | Path, source: Literal["ema", "raw"] = "ema") -> dict[str, torch.Tensor]:
    """The denoiser's state dict: the EMA copy (``ema.model.*``) if asked for and present, else the raw weights."""
    sd = ckpt["state_dict"]
    for prefix in (("ema.model.", "denoiser.") if source == "ema" else ("denoiser.",)):
        weights = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if weights:
            return weights
    raise CheckpointError(f"{path}: no denoiser weights in the checkpoint (no 'denoiser.*' keys)")


def load_matching(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path, hint: str = "") -> None:
    """``model.load_state_dict(weights)`` with one clear error listing the missing, unexpected or
    differently shaped tensors (and ``hint``)."""
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in own]
    problems += [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    if problems:
        more = f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""
        raise CheckpointError(f"{path} does not fit the denoiser being built: {'; '.join(problems[:6])}{more}{hint}")
    model.load_state_dict(weights)
