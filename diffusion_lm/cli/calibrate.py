"""``diffusion-lm calibrate --config … --ckpt_path …``: the ε sweep of adaptive early stopping
(:mod:`diffusion_lm.diffusion.calibration`) on the validation set, its outputs, and the chosen ε in the
checkpoint.

The curve goes to ``calibration.json``, ``calibration.png`` and TensorBoard (``calibrate/…``); the chosen ε
is written into the checkpoint (generator state), where every
:class:`~diffusion_lm.diffusion.AdaptiveDDIMSampler` with ``epsilon: null`` picks it up in
``test``/``predict``/``validate``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.loggers import TensorBoardLogger

from ..checkpoint import load_checkpoint
from ..diffusion.calibration import (
    DEFAULT_EPSILONS,
    DEFAULT_TOLERANCE,
    CalibrationPoint,
    as_adaptive,
    select_epsilon,
    sweep_epsilons,
    warn_if_at_grid_edge,
)
from ..errors import ConfigError
from ..recipes.diffusion import DiffusionRecipe


def store_in_checkpoint(ckpt_path: str | Path, epsilon: float, record: dict[str, Any]) -> None:
    """Write the chosen ε into the checkpoint's generator state (atomically: temp file + rename)."""
    path = Path(ckpt_path)
    ckpt = load_checkpoint(path)
    state = dict(ckpt.get("generator") or {})
    state["calibrated_epsilon"] = float(epsilon)
    ckpt["generator"] = state
    ckpt["calibration"] = record
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def plot_curve(points: Sequence[CalibrationPoint], chosen: CalibrationPoint, metric: str, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [p.mean_steps for p in points]
    ax1.plot(steps, [p.metric for p in points], "o-")
    for p in points:
        ax1.annotate(f"ε={p.epsilon:g}", (p.mean_steps, p.metric), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax1.scatter([chosen.mean_steps], [chosen.metric], s=120, facecolors="none", edgecolors="red", label=f"chosen ε={chosen.epsilon:g}")
    ax1.set_xlabel("mean denoising steps per sequence")
    ax1.set_ylabel(f"validation {metric}")
    ax1.legend()
    ax2.plot([p.epsilon for p in points], [p.wall_time for p in points], "o-")
    ax2.set_xscale("symlog", linthresh=min([p.epsilon for p in points if p.epsilon > 0] or [1e-3]))
    ax2.set_xlabel("ε")
    ax2.set_ylabel("decoding wall time (s)")
    fig.suptitle("adaptive early stopping: ε sweep on validation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def log_to_tensorboard(trainer, points: Sequence[CalibrationPoint], fig, metric: str) -> None:
    if not isinstance(trainer.logger, TensorBoardLogger):
        return
    exp = trainer.logger.experiment
    for i, p in enumerate(points):  # x axis: sweep index, in the order of ε
        exp.add_scalar("calibrate/epsilon", p.epsilon, i)
        exp.add_scalar(f"calibrate/{metric}", p.metric, i)
        exp.add_scalar("calibrate/mean_steps", p.mean_steps, i)
        exp.add_scalar("calibrate/wall_time_s", p.wall_time, i)
    exp.add_figure("calibrate/curve", fig, 0)
    exp.flush()


def format_table(points: Sequence[CalibrationPoint], chosen: CalibrationPoint, metric: str) -> str:
    rows = [f"| ε | {metric} | mean steps | decode time (s) |", "|---|---|---|---|"]
    for p in points:
        mark = " ← chosen" if p is chosen else ""
        rows.append(f"| {p.epsilon:g} | {p.metric:.2f} | {p.mean_steps:.2f} | {p.wall_time:.1f}{mark} |")
    return "\n".join(rows)


def calibrate(
    trainer,
    model,
    datamodule=None,
    ckpt_path: Optional[str] = None,
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    tolerance: float = DEFAULT_TOLERANCE,
    metric: str = "bleu",
    higher_is_better: bool = True,
    min_steps: Optional[int] = None,
    output_dir: Optional[str] = None,
    store: bool = True,
) -> dict[str, Any]:
    """Sweep ε, choose it, write the outputs and (``store``) the chosen ε into ``ckpt_path``; returns the record."""
    if not isinstance(model, DiffusionRecipe):
        raise ConfigError("calibrate needs a diffusion recipe (model.init_args.generator)")
    adaptive = as_adaptive(model.generator, min_steps)
    points = sweep_epsilons(trainer, model, adaptive, datamodule, ckpt_path, epsilons, metric)
    chosen = select_epsilon(points, tolerance, higher_is_better)
    edge = warn_if_at_grid_edge(points, chosen)
    adaptive.epsilon, adaptive.calibrated_epsilon = None, chosen.epsilon
    record = {"chosen": asdict(chosen), "at_grid_edge": edge, "tolerance": tolerance, "metric": metric,
              "steps": adaptive.steps, "min_steps": adaptive.min_steps, "criterion": adaptive.criterion,
              "curve": [asdict(p) for p in points]}

    out = Path(output_dir or trainer.log_dir or trainer.default_root_dir) / "calibration"
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.json").write_text(json.dumps(record, indent=2) + "\n")
        fig = plot_curve(points, chosen, metric, out / "calibration.png")
        log_to_tensorboard(trainer, points, fig, metric)
        if store and ckpt_path:
            store_in_checkpoint(ckpt_path, chosen.epsilon, record)
        print(format_table(points, chosen, metric))
        print(f"chosen ε = {chosen.epsilon:g}; curve in {out}" + (f"; stored in {ckpt_path}" if store and ckpt_path else ""))
    return record
