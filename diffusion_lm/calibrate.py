"""ε calibration for adaptive early stopping (seed paper 1: "ε is calibrated on validation").

``diffusion-lm calibrate --config … --ckpt_path …`` decodes the validation set once with the
fixed-step sampler (ε = 0) and once per ε of a sweep, records (metric, mean steps, decoding wall
time) per ε, and selects the ε with the **smallest mean number of steps whose metric stays within
``tolerance`` of the fixed-step metric**. The default tolerance, 0.1 (absolute, in the metric's units:
BLEU points), is the drop the paper accepts; pass a larger one for noisier metrics or small validation
subsets. A chosen ε that is the largest of the sweep is flagged (a warning and ``at_grid_edge`` in the
record): a larger ε might stop earlier within the tolerance, so the sweep may be too short. The curve goes to ``calibration.json``, ``calibration.png``
and TensorBoard (``calibrate/…``); the chosen ε is written into the checkpoint (generator state), where
every :class:`~diffusion_lm.diffusion.AdaptiveDDIMSampler` with ``epsilon: null`` picks it up in
``test``/``predict``/``validate``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .diffusion.adaptive import AdaptiveDDIMSampler
from .diffusion.adaptive_mask_predict import AdaptiveMaskPredictSampler
from .diffusion.mask_predict import MaskPredictSampler
from .diffusion.generate import DDIMSampler, GenerationResult, Generator
from .errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

# Δ is an RMS per-token change of x̂0 (unit-variance embeddings): measured on Multi30k, a softmax-x̂0 model
# settles below 0.1 in its last steps, an x0-regression model keeps moving by 0.2–0.7, hence the range.
DEFAULT_EPSILONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
DEFAULT_TOLERANCE = 0.1  # metric loss against the fixed-step sampler that is accepted (the paper: −0.1 BLEU)


@dataclass
class CalibrationPoint:
    epsilon: float
    metric: float
    mean_steps: float
    wall_time: float  # seconds spent inside the generator


def select_epsilon(points: Sequence[CalibrationPoint], tolerance: float, higher_is_better: bool = True) -> CalibrationPoint:
    """The point with the fewest mean steps whose metric is within ``tolerance`` of the ε = 0 point
    (ties: the smaller ε). The ε = 0 (fixed-step) point must be among ``points``."""
    base = [p for p in points if p.epsilon == 0]
    if not base:
        raise ValueError("the sweep needs the fixed-step point (epsilon = 0)")
    ref = base[0].metric
    ok = [p for p in points if (p.metric >= ref - tolerance if higher_is_better else p.metric <= ref + tolerance)]
    return min(ok, key=lambda p: (p.mean_steps, p.epsilon))


def at_grid_edge(points: Sequence[CalibrationPoint], chosen: CalibrationPoint) -> bool:
    """Whether the chosen ε is the largest ε > 0 of the sweep (a larger one was never tried)."""
    return chosen.epsilon > 0 and chosen.epsilon == max(p.epsilon for p in points)


def warn_if_at_grid_edge(points: Sequence[CalibrationPoint], chosen: CalibrationPoint) -> bool:
    edge = at_grid_edge(points, chosen)
    if edge:
        log.warning("calibrate: the chosen ε=%g is the largest of the sweep; a larger ε may stop earlier within "
                    "the tolerance: extend --epsilons", chosen.epsilon)
    return edge


class TimedGenerator(Generator):
    """Wraps a generator and adds up the wall time of its ``generate`` calls (device-synchronised)."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.seconds = 0.0

    def generate(self, model, process, batch) -> GenerationResult:
        sync = torch.cuda.synchronize if batch["input_ids"].is_cuda else (lambda: None)
        sync()
        start = time.perf_counter()
        out = self.inner.generate(model, process, batch)
        sync()
        self.seconds += time.perf_counter() - start
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def as_adaptive(generator: Generator, min_steps: Optional[int]) -> AdaptiveDDIMSampler | AdaptiveMaskPredictSampler:
    """The recipe's sampler as an adaptive one (a fixed-step DDIM or Mask-Predict sampler becomes the adaptive
    sampler with its K and settings)."""
    g = generator
    if isinstance(g, (AdaptiveDDIMSampler, AdaptiveMaskPredictSampler)):
        gen = g
    elif isinstance(g, DDIMSampler):
        gen = AdaptiveDDIMSampler(steps=g.steps, self_condition=g.self_condition, clamp=g.clamp)
    elif isinstance(g, MaskPredictSampler):
        gen = AdaptiveMaskPredictSampler(steps=g.steps, remask=g.remask, schedule=g.schedule, temperature=g.temperature,
                                         top_p=g.top_p, confidence_noise=g.confidence_noise)
    else:
        raise ConfigError(
            "calibrate needs a DDIMSampler, MaskPredictSampler or one of their adaptive versions as "
            f"model.init_args.generator, got {type(g).__name__}"
        )
    if min_steps is not None:
        gen.min_steps = min_steps
    return gen


def store_in_checkpoint(ckpt_path: str | Path, epsilon: float, record: dict[str, Any]) -> None:
    """Write the chosen ε into the checkpoint's generator state (atomically: temp file + rename)."""
    path = Path(ckpt_path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read the checkpoint to store the calibrated epsilon ({e})") from None
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
    exp = getattr(trainer.logger, "experiment", None) if trainer.logger is not None else None
    if not hasattr(exp, "add_scalar"):
        return
    for i, p in enumerate(points):  # x axis: sweep index, in the order of ε
        exp.add_scalar("calibrate/epsilon", p.epsilon, i)
        exp.add_scalar(f"calibrate/{metric}", p.metric, i)
        exp.add_scalar("calibrate/mean_steps", p.mean_steps, i)
        exp.add_scalar("calibrate/wall_time_s", p.wall_time, i)
    exp.add_figure("calibrate/curve", fig, 0)
    exp.flush()


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
    if not hasattr(model, "generator"):
        raise ConfigError("calibrate needs a diffusion recipe (model.init_args.generator)")
    if any(e < 0 for e in epsilons):
        raise ConfigError(f"calibrate.epsilons must be >= 0, got {list(epsilons)}")
    if trainer.limit_val_batches == 0:
        raise ConfigError("calibrate decodes the validation set but trainer.limit_val_batches is 0: "
                          "pass --trainer.limit_val_batches=1.0 (or a fraction / number of batches)")
    adaptive = as_adaptive(model.generator, min_steps)
    timed = TimedGenerator(adaptive)
    model.generator = timed
    generate_batches = model.hparams.val_generate_batches
    model.hparams.val_generate_batches = -1  # decode every validation batch (trainer.limit_val_batches limits them)
    sweep = [0.0] + sorted({float(e) for e in epsilons if e > 0})
    points = []
    try:
        for i, eps in enumerate(sweep):
            adaptive.epsilon = eps
            timed.seconds = 0.0
            res = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path if i == 0 else None, verbose=False)[0]
            key = f"val/{metric}"
            if key not in res:
                raise ConfigError(f"calibrate.metric={metric!r}: validation logged no {key} (it logged {sorted(res)})")
            points.append(CalibrationPoint(eps, float(res[key]), float(res["val/decode_steps"]), timed.seconds))
            p = points[-1]
            log.info("calibrate: ε=%g  %s=%.3f  mean steps=%.2f  decode time=%.1fs", eps, metric, p.metric, p.mean_steps, p.wall_time)
    finally:
        model.hparams.val_generate_batches = generate_batches
    chosen = select_epsilon(points, tolerance, higher_is_better)
    edge = warn_if_at_grid_edge(points, chosen)
    adaptive.epsilon, adaptive.calibrated_epsilon = None, chosen.epsilon
    model.generator = adaptive
    record = {"chosen": asdict(chosen), "at_grid_edge": edge, "tolerance": tolerance, "metric": metric,
              "steps": adaptive.steps, "min_steps": adaptive.min_steps, "criterion": adaptive.criterion, "curve": [asdict(p) for p in points]}

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


def format_table(points: Sequence[CalibrationPoint], chosen: CalibrationPoint, metric: str) -> str:
    rows = [f"| ε | {metric} | mean steps | decode time (s) |", "|---|---|---|---|"]
    for p in points:
        mark = " ← chosen" if p is chosen else ""
        rows.append(f"| {p.epsilon:g} | {p.metric:.2f} | {p.mean_steps:.2f} | {p.wall_time:.1f}{mark} |")
    return "\n".join(rows)
