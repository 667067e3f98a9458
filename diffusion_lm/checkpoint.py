"""Loading checkpoints safely, and refusing ones that do not fit the model — with one clear message.

* :func:`load_checkpoint` reads a file with ``torch.load(weights_only=True)``: tensors, containers and
  primitives only, no arbitrary code. Checkpoints written through the CLI hold nothing else. Those written
  from Python may hold this package's own config/component objects in their hyper-parameters
  (``DenoiserConfig``, samplers, …): those classes — and only classes defined in ``diffusion_lm`` — are
  allowed by name; anything else is refused with the names of the offending globals.
* :class:`SafeCheckpointIO` makes the Trainer (``fit --ckpt_path …``) load that way.
* :func:`check_state_dict` compares a state dict with a model before loading, and names the
  parameters whose shapes differ (e.g. another vocabulary or width) instead of PyTorch's wall of
  ``size mismatch`` lines.
* :func:`read_checkpoint`, :func:`checkpoint_tokenizer`, :func:`denoiser_config`, :func:`denoiser_weights`
  read a framework ``.ckpt`` outside a Trainer: the pretrained denoiser a recipe starts from
  (architecture + weights) and the tokenizer stored with it.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from .data.tokenization import TextTokenizer, tokenizer_from_checkpoint
from .errors import CheckpointError
from .models.config import DenoiserConfig

TRUSTED_PREFIX = "diffusion_lm."


def _trusted_class(name: str) -> type | None:
    """``diffusion_lm.x.y.Class`` → the class, if it is one defined in this package."""
    if not name.startswith(TRUSTED_PREFIX):
        return None
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    return obj if inspect.isclass(obj) and obj.__module__.startswith(TRUSTED_PREFIX) else None


def load_checkpoint(path: _PATH, map_location: Any = "cpu", weights_only: Optional[bool] = True) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` semantics (see the module docstring); ``weights_only=False``
    loads anything (only for files you trust)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" + (" (it is a directory: a sharded FSDP checkpoint "
                              "is loaded by the Trainer's FSDP strategy)" if path.is_dir() else ""))
    try:
        if weights_only is False:
            return torch.load(path, map_location=map_location, weights_only=False)
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        allowed = [_trusted_class(n) for n in unsafe]
        refused = [n for n, cls in zip(unsafe, allowed) if cls is None]
        if refused:
            raise CheckpointError(
                f"{path} contains objects that weights-only loading refuses: {', '.join(refused)}. "
                "If you trust the file, load it with weights_only=False (Trainer.fit/validate/test(..., "
                "weights_only=False), Recipe.load_from_checkpoint(..., weights_only=False))."
            )
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:300]})") from None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that loads through :func:`load_checkpoint` (``weights_only=None`` → True)."""

    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu",
                               weights_only=False if weights_only is False else True)


def _shapes(state: Union[nn.Module, Mapping[str, Any]]) -> dict[str, tuple[int, ...]]:
    items = state.state_dict().items() if isinstance(state, nn.Module) else state.items()
    return {k: tuple(v.shape) for k, v in items if isinstance(v, torch.Tensor)}


def _hint(key: str, want: tuple[int, ...], got: tuple[int, ...]) -> str:
    if key.endswith("wte.weight") and want[1:] == got[1:]:
        return f" — another vocabulary: {got[0]} tokens in the checkpoint, {want[0]} in the model"
    if key.endswith("wpe.weight") and want[1:] == got[1:]:
        return f" — another max_len: {got[0]} positions in the checkpoint, {want[0]} in the model"
    if key.endswith("length_head.weight"):
        return " — another number of length classes (max_len / length_classes)"
    return ""


def check_state_dict(model: Union[nn.Module, Mapping[str, Any]], state_dict: Mapping[str, Any],
                     source: str = "the checkpoint", strict: bool = True, limit: int = 5) -> None:
    """Raises :class:`CheckpointError` if ``state_dict`` does not fit ``model`` (shapes always; with
    ``strict``, also missing and unexpected keys), naming the first ``limit`` offenders of each kind."""
    want, got = _shapes(model), _shapes(state_dict)
    problems = []
    mismatched = [k for k in want if k in got and want[k] != got[k]]
    if mismatched:
        rows = [f"{k}: {got[k]} in the checkpoint, {want[k]} in the model{_hint(k, want[k], got[k])}"
                for k in mismatched[:limit]]
        problems.append(f"{len(mismatched)} parameter(s) of another shape ({'; '.join(rows)})")
    if strict:
        missing = [k for k in want if k not in got]
        unexpected = [k for k in got if k not in want]
        if missing:
            problems.append(f"{len(missing)} missing from the checkpoint ({', '.join(missing[:limit])})")
        if unexpected:
            problems.append(f"{len(unexpected)} not in the model ({', '.join(unexpected[:limit])})")
    if problems:
        raise CheckpointError(
            f"{source} does not fit this model: {'; '.join(problems)}. Build the model with the checkpoint's "
            "architecture and tokenizer (its hyper-parameters are stored in it), or start from scratch."
        )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (tensors memory-mapped on the CPU), or a CheckpointError naming the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found (no such checkpoint file)")
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
    tok = tokenizer_from_checkpoint(read_checkpoint(path))
    if tok is None:
        raise CheckpointError(f"{path}: the checkpoint stores no tokenizer (it was trained without a data module)")
    return tok


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
