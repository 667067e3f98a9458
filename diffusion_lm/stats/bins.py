"""Equal-width bins of the noise level t ∈ [0, 1]: the per-timestep loss statistics (``metrics``) and the
per-noise-level estimators of the importance sampler (``diffusion.variance``) bin t the same way."""

from __future__ import annotations

import torch


def bin_index(t: torch.Tensor, num_bins: int) -> torch.Tensor:
    """t ∈ [0, 1] → bin in {0 … K−1} (t = 1 falls into the last bin)."""
    return (t.float() * num_bins).long().clamp(0, num_bins - 1)
