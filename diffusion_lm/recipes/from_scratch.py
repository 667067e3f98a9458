"""FromScratch: a diffusion model trained from random initialisation on one task."""

from __future__ import annotations

from .diffusion import DiffusionRecipe


class FromScratch(DiffusionRecipe):
    """Diffusion from scratch: every weight randomly initialised and trained. All arguments are
    those of :class:`DiffusionRecipe` (process, timestep sampler, generator) and :class:`BaseRecipe`."""
