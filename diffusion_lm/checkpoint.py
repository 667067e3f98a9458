"""Reading checkpoints: one reader, weights-only, with one allow-list.

* :func:`load_checkpoint` is the only place the package calls ``torch.load``. It loads with
  ``weights_only=True`` semantics: tensors, containers and primitives, no arbitrary code. Checkpoints
  written through the CLI hold nothing else; those written from Python may hold this package's own
  config/component objects in their hyper-parameters (``DenoiserConfig``, processes, samplers …):
  classes defined in ``diffusion_lm`` — and only those — are allowed by name, anything else is refused
  with the names of the offending globals.
* The one exception is ``weights_only=False``, which loads any pickle: it exists for a file the user
  declares trusted, and only the user can ask for it (``Trainer.fit/validate/test(..., weights_only=False)``,
  ``--weights_only=false`` on the command line, ``Recipe.load_from_checkpoint(..., weights_only=False)``).
  Nothing in the package passes it on its own.
* :class:`SafeCheckpointIO` makes the Trainer (``fit --ckpt_path …``) load through :func:`load_checkpoint`.
* :func:`read_checkpoint` (a Lightning checkpoint, memory-mapped), :func:`load_recipe` (the recipe a
  checkpoint was written by) and :func:`denoiser_weights` read a framework ``.ckpt`` outside a Trainer.
  The state-dict checker is :func:`diffusion_lm.models.state_dict.check_state_dict`.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .errors import CheckpointError

TRUSTED_PREFIX = "diffusion_lm."


def _trusted_class(name: str) -> type | None:
    """``diffusion_lm.x.y.Class`` → the class, if it is one defined in this package."""
    if not name.startswith(TRUSTED_PREFIX):
        return None
    module, _, attr = name.rpartition(".")
    try:
        obj = vars(importlib.import_module(module)).get(attr)
    except ImportError:
        return None
    return obj if inspect.isclass(obj) and obj.__module__.startswith(TRUSTED_PREFIX) else None


def _existing(path: _PATH) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        hint = " (it is a directory: a sharded FSDP checkpoint is loaded by the Trainer's FSDP strategy)" if p.is_dir() else ""
        raise CheckpointError(f"{p}: checkpoint not found (no such checkpoint file){hint}")
    return p


def trusted_globals(path: _PATH) -> list[type]:
    """The classes of this package that ``path`` pickles (the allow-list); a CheckpointError naming any
    other global it holds."""
    p = _existing(path)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(p)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise _unreadable(p, e) from None
    allowed = [_trusted_class(n) for n in names]
    refused = [n for n, cls in zip(names, allowed) if cls is None]
    if refused:
        raise CheckpointError(
            f"{p} contains objects that weights-only loading refuses: {', '.join(refused)}. "
            "If you trust the file, load it with weights_only=False (Trainer.fit/validate/test(..., "
            "weights_only=False), Recipe.load_from_checkpoint(..., weights_only=False))."
        )
    return [cls for cls in allowed if cls is not None]


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable diffusion_lm checkpoint ({type(e).__name__}: {str(e)[:300]})")


def load_checkpoint(path: _PATH, map_location: Any = "cpu", weights_only: Optional[bool] = True,
                    mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` semantics and the package's allow-list (module docstring);
    ``weights_only=False`` loads anything (only for files the user trusts). ``mmap``: tensors stay on disk
    until used (reading the hyper-parameters of a large checkpoint costs no memory)."""
    p = _existing(path)
    try:
        if weights_only is False:
            return torch.load(p, map_location=map_location, weights_only=False, mmap=mmap)
        with torch.serialization.safe_globals(trusted_globals(p)):
            return torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise _unreadable(p, e) from None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that loads through :func:`load_checkpoint` (``weights_only=None`` → True)."""

    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu",
                               weights_only=False if weights_only is False else True)


def read_checkpoint(path: _PATH) -> dict[str, Any]:
    """A Lightning checkpoint (tensors memory-mapped on the CPU), or a CheckpointError naming the file."""
    ckpt = load_checkpoint(path, mmap=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{Path(path).expanduser()}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def checkpoint_class(ckpt: dict[str, Any], path: _PATH) -> type:
    """The recipe class the CLI recorded in the checkpoint's hyper-parameters (``_class_path``)."""
    name = (ckpt.get("hyper_parameters") or {}).get("_class_path")
    cls = _trusted_class(name) if name else None
    if cls is None:
        raise CheckpointError(f"{path}: no recipe class of diffusion_lm recorded in the checkpoint "
                              f"(hyper_parameters._class_path = {name!r}); write it with `diffusion-lm fit`")
    return cls


def load_recipe(path: _PATH, map_location: Any = "cpu"):
    """(the recipe the checkpoint was written by, restored from it; the checkpoint dict)."""
    ckpt = read_checkpoint(path)
    cls = checkpoint_class(ckpt, path)
    with torch.serialization.safe_globals(trusted_globals(path)):
        return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True), ckpt


def denoiser_weights(ckpt: dict[str, Any], path: _PATH, source: Literal["ema", "raw"] = "ema") -> dict[str, torch.Tensor]:
    """The denoiser's state dict: the EMA copy (``ema.model.*``) if asked for and present, else the raw weights."""
    sd = ckpt["state_dict"]
    for prefix in (("ema.model.", "denoiser.") if source == "ema" else ("denoiser.",)):
        weights = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if weights:
            return weights
    raise CheckpointError(f"{path}: no denoiser weights in the checkpoint (no 'denoiser.*' keys)")
