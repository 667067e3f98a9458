"""Selecting denoiser parameters by name pattern (partial fine-tuning, per-example gradient subsets).

Patterns are shell-style globs matched against the full parameter name, e.g. ``time_embed.*``
(the timestep MLP), ``blocks.*.attn.*`` (every self-attention projection), ``blocks.5.*`` (the last
block of a 6-layer model), ``length_head.*``. ``Denoiser.named_parameters()`` lists the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn

from ..errors import ConfigError

# Timestep conditioning + self-attention: what "Cheaper and Better Diffusion Language Model via Task-Specific Training" (ACL 2025) adapts.
TIMESTEP_AND_ATTENTION = ("time_embed.*", "blocks.*.attn.*")


def matching_parameters(model: nn.Module, patterns: Sequence[str], what: str = "patterns") -> list[str]:
    """Names of the parameters matching any pattern; a pattern that matches nothing is a ConfigError."""
    names = [n for n, _ in model.named_parameters()]
    for pat in patterns:
        if not any(fnmatchcase(n, pat) for n in names):
            raise ConfigError(
                f"{what}: {pat!r} matches no parameter of the denoiser; names look like "
                f"{', '.join(names[:6])}, … (shell-style globs, e.g. 'blocks.*.attn.*')"
            )
    return [n for n in names if any(fnmatchcase(n, pat) for pat in patterns)]
