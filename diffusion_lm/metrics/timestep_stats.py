"""Per-noise-level loss statistics: count, mean and variance of the per-example loss in K bins of t.

A torchmetrics ``Metric`` so that the sums are all-reduced across DDP ranks on ``compute()``;
the recipe logs the result under ``timestep/`` in TensorBoard.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from ..stats.bins import bin_index


class TimestepLossStats(Metric):
    full_state_update = False

    def __init__(self, num_bins: int = 20, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_bins = num_bins
        for name in ("count", "total", "total_sq"):
            self.add_state(name, default=torch.zeros(num_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        idx = bin_index(t.detach(), self.num_bins)
        x = losses.detach().to(torch.float64)
        self.count.index_add_(0, idx, torch.ones_like(x))
        self.total.index_add_(0, idx, x)
        self.total_sq.index_add_(0, idx, x * x)

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1)
        mean = self.total / n
        var = (self.total_sq / n - mean**2).clamp_min(0) * n / (n - 1).clamp_min(1)  # unbiased
        empty = self.count == 0
        nan = torch.full_like(mean, float("nan"))
        return {"count": self.count, "mean": torch.where(empty, nan, mean), "var": torch.where(self.count < 2, nan, var)}
