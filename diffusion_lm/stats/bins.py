"""Equal-width bins of the noise level t ∈ [0, 1].

The per-timestep loss statistics (``metrics.timestep_stats``), the importance sampler's variance
estimators (``diffusion.variance``) and FastDiSS's measured estimate error (``diffusion.fastdiss``) all
keep one value per bin of t; they must agree on which bin a t falls into.
"""

from __future__ import annotations

import torch


def bin_index(t: torch.Tensor, num_bins: int) -> torch.Tensor:
    """t ∈ [0, 1] → bin in {0 … K−1} (t = 1 falls into the last bin)."""
    return (t.float() * num_bins).long().clamp(0, num_bins - 1)
