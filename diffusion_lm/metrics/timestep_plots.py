"""Per-noise-level view in TensorBoard, under ``timestep/``.

:class:`TimestepBoard` ``.log(logger, {"loss_mean": …, "loss_var": …, "v": …, "p": …}, step)`` writes

* one scalar per bin and curve, ``timestep/<curve>/bin_XX`` (bin k covers t ∈ [k/K, (k+1)/K)), for scripts
  and for comparing runs bin by bin;
* an image ``timestep/curves`` (IMAGES tab, one per logging step, the slider walks through training):
  left, the training loss mean and variance against t at this step, on their own labelled axes; middle,
  v(t) normalised to sum 1 and p(t) against t, with the uniform 1/K for reference (which noise levels the
  importance sampler favours, and why); right, a heat-map of the loss mean over t (rows) and training
  step (columns), each column divided by its mean so that the *shape* over t stays visible while the loss
  falls.

The scalars go to any Lightning logger; the image needs a :class:`~lightning.pytorch.loggers.TensorBoardLogger`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

NAMESPACE = "timestep"
LABELS = {"loss_mean": "loss mean", "loss_var": "loss variance", "v": "v(t) (normalised)", "p": "p(t)"}


class TimestepBoard:
    """Writes the per-bin curves of each logging step and keeps the loss history for the heat-map."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.loss_history: list[np.ndarray] = []  # (K,) loss mean per bin, one per logging step

    def log(self, logger: Any, curves: dict[str, torch.Tensor], step: int) -> None:
        metrics = {}
        for name, values in curves.items():
            for i, v in enumerate(values.tolist()):
                if not math.isnan(v):  # empty bins are left out
                    metrics[f"{NAMESPACE}/{name}/bin_{i:02d}"] = v
        if metrics:
            logger.log_metrics(metrics, step=step)
        if "loss_mean" in curves:
            self.steps.append(step)
            self.loss_history.append(curves["loss_mean"].double().numpy())
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(f"{NAMESPACE}/curves", self.image(curves, step), step, dataformats="HWC")

    def image(self, curves: dict[str, torch.Tensor], step: int) -> np.ndarray:
        """(H, W, 3) uint8 rendering of the three panels."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(13, 3.6), dpi=80)
        loss_ax, sampler_ax, heat_ax = fig.subplots(1, 3)
        draw_loss(loss_ax, curves)
        draw_sampler(sampler_ax, curves, step)
        self.draw_heatmap(fig, heat_ax)
        fig.tight_layout()
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def draw_heatmap(self, fig, ax) -> None:
        ax.set_title("loss mean over training (÷ column mean)")
        if not self.loss_history:
            ax.axis("off")
            return
        grid = np.stack(self.loss_history, axis=1)  # (K, n_logs)
        grid = grid / np.nanmean(grid, axis=0, keepdims=True)
        K = grid.shape[0]
        im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                       extent=(-0.5, grid.shape[1] - 0.5, 0.0, 1.0))
        ticks = np.arange(0, grid.shape[1], max(1, math.ceil(grid.shape[1] / 6)))  # ≤ 6 evenly spaced labels
        ax.set_xticks(ticks, [str(self.steps[i]) for i in ticks])
        ax.set_xlabel("training step")
        ax.set_ylabel(f"t ({K} bins)")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)


def _centres(values: torch.Tensor) -> np.ndarray:
    K = values.numel()
    return (np.arange(K) + 0.5) / K


def draw_loss(ax, curves: dict[str, torch.Tensor]) -> None:
    axes = {"loss_mean": (ax, "tab:blue", "o-"), "loss_var": (ax.twinx() if "loss_var" in curves else None, "tab:orange", "s--")}
    for name, (a, color, style) in axes.items():
        if name in curves and a is not None:
            a.plot(_centres(curves[name]), curves[name].numpy(), style, ms=3, color=color, label=LABELS[name])
            a.set_ylabel(LABELS[name], color=color)
            a.tick_params(axis="y", labelcolor=color)
    ax.set_xlabel("t (noise level)")
    ax.set_title("training loss per noise level")


def draw_sampler(ax, curves: dict[str, torch.Tensor], step: int) -> None:
    if "v" in curves:
        v = curves["v"].double()
        ax.plot(_centres(v), (v / v.nansum()).numpy(), "s-", ms=3, color="tab:green", label=LABELS["v"])
    if "p" in curves:
        p = curves["p"].double()
        ax.plot(_centres(p), p.numpy(), "o-", ms=3, color="tab:red", label=LABELS["p"])
        ax.axhline(1.0 / p.numel(), color="grey", ls="--", lw=1, label="uniform 1/K")
    if "v" in curves or "p" in curves:
        ax.legend(fontsize=8)
        ax.set_ylabel("probability / share")
    else:
        ax.text(0.5, 0.5, "uniform t (no importance sampler)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("t (noise level)")
    ax.set_title(f"timestep sampler (step {step})")
