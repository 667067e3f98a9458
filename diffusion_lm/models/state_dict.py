"""The one state-dict checker: does a state dict fit a module, and which parameters does it lack?

Used wherever weights are loaded into a model that was built separately: resuming or testing a checkpoint
(``BaseRecipe.on_load_checkpoint``), ``init_from`` a pretrained source (AR2Diff, Autoregressive,
TaskAdapt) and the distillation teacher. It names the offending parameters — with a hint for the usual
causes (another vocabulary, ``max_len`` or number of length classes) — instead of PyTorch's wall of
``size mismatch`` lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from ..errors import CheckpointError


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
                     source: str = "the checkpoint", strict: bool = True, may_add: tuple[str, ...] = (),
                     limit: int = 5) -> list[str]:
    """Raises :class:`CheckpointError` if ``state_dict`` does not fit ``model``: shapes always; with
    ``strict`` also keys the model lacks, and keys the state dict lacks unless they start with one of
    ``may_add`` (parameters the model adds, e.g. a zero-initialised timestep embedding). Names the first
    ``limit`` offenders of each kind. Returns the model's keys that the state dict lacks."""
    want, got = _shapes(model), _shapes(state_dict)
    problems = []
    mismatched = [k for k in want if k in got and want[k] != got[k]]
    if mismatched:
        rows = [f"{k}: {got[k]} in the checkpoint, {want[k]} in the model{_hint(k, want[k], got[k])}"
                for k in mismatched[:limit]]
        problems.append(f"{len(mismatched)} parameter(s) of another shape ({'; '.join(rows)})")
    missing = [k for k in want if k not in got]
    if strict:
        not_added = [k for k in missing if not k.startswith(may_add)]
        unexpected = [k for k in got if k not in want]
        if not_added:
            problems.append(f"{len(not_added)} missing from the checkpoint ({', '.join(not_added[:limit])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected, not in the model ({', '.join(unexpected[:limit])})")
    if problems:
        raise CheckpointError(
            f"{source} does not fit this model: {'; '.join(problems)}. Build the model with the checkpoint's "
            "architecture and tokenizer (its hyper-parameters are stored in it), or start from scratch."
        )
    return missing


def load_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                 may_add: tuple[str, ...] = ()) -> list[str]:
    """``model.load_state_dict(state_dict)`` after :func:`check_state_dict` (strict, ``may_add`` allowed to
    be missing: they keep their initialisation). Returns those added parameters' names."""
    added = check_state_dict(model, state_dict, source, strict=True, may_add=may_add)
    model.load_state_dict(state_dict, strict=not added)
    return added
