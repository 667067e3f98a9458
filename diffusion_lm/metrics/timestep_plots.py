"""Per-noise-level curves in TensorBoard, under ``timestep/``.

``log_timestep_curves(logger, {"loss_mean": …, "loss_var": …, "v": …, "p": …}, step)`` writes

* one scalar per bin and curve, ``timestep/<curve>/bin_XX`` (bin k covers t ∈ [k/K, (k+1)/K));
* once per run, a custom-scalars layout with one multi-line chart per curve (all bins of a curve in
  one chart, over training steps: the CUSTOM SCALARS tab);
* an image ``timestep/curves``: every curve against t at this step (loss mean and variance on the
  left; v(t) normalised to sum 1, p(t) and the uniform 1/K on the right), so one glance shows which
  noise levels the sampler favours and why.

Any Lightning logger gets the scalars; the layout and the image need a TensorBoard ``SummaryWriter``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

NAMESPACE = "timestep"
LABELS = {"loss_mean": "loss mean", "loss_var": "loss variance", "v": "v(t) (normalised)", "p": "p(t)"}


def log_timestep_curves(logger: Any, curves: dict[str, torch.Tensor], step: int) -> None:
    metrics = {}
    for name, values in curves.items():
        for i, v in enumerate(values.tolist()):
            if not math.isnan(v):  # empty bins are left out
                metrics[f"{NAMESPACE}/{name}/bin_{i:02d}"] = v
    if metrics:
        logger.log_metrics(metrics, step=step)
    writer = getattr(logger, "experiment", None)
    if not hasattr(writer, "add_custom_scalars"):
        return
    if not getattr(writer, "_timestep_layout_written", False):
        layout = {NAMESPACE: {LABELS.get(n, n): ["Multiline", [rf"{NAMESPACE}/{n}/bin_\d+"]] for n in curves}}
        writer.add_custom_scalars(layout)
        writer._timestep_layout_written = True
    writer.add_image(f"{NAMESPACE}/curves", curves_image(curves, step), step, dataformats="HWC")


def _centres(values: torch.Tensor) -> np.ndarray:
    K = values.numel()
    return (np.arange(K) + 0.5) / K


def curves_image(curves: dict[str, torch.Tensor], step: int) -> np.ndarray:
    """(H, W, 3) uint8 rendering of the curves against t."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=80)
    loss_ax, sampler_ax = fig.subplots(1, 2)
    for name, ax in (("loss_mean", loss_ax), ("loss_var", loss_ax.twinx() if "loss_var" in curves else None)):
        if name in curves and ax is not None:
            color = "tab:blue" if name == "loss_mean" else "tab:orange"
            ax.plot(_centres(curves[name]), curves[name].numpy(), "o-", ms=3, color=color, label=LABELS[name])
            ax.set_ylabel(LABELS[name], color=color)
    loss_ax.set_xlabel("t")
    loss_ax.set_title("per-bin training loss")
    if "v" in curves:
        v = curves["v"].double()
        sampler_ax.plot(_centres(v), (v / v.nansum()).numpy(), "s-", ms=3, color="tab:green", label=LABELS["v"])
    if "p" in curves:
        p = curves["p"].double()
        sampler_ax.plot(_centres(p), p.numpy(), "o-", ms=3, color="tab:red", label=LABELS["p"])
        sampler_ax.axhline(1.0 / p.numel(), color="grey", ls="--", lw=1, label="uniform")
    if "v" in curves or "p" in curves:
        sampler_ax.legend(fontsize=8)
    sampler_ax.set_xlabel("t")
    sampler_ax.set_title(f"timestep sampler (step {step})")
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
