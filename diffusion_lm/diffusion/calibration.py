"""ε calibration of adaptive early stopping (:mod:`.adaptive`; the adaptive inference of
"Cheaper and Better Diffusion Language Model via Task-Specific Training" (ACL 2025)): the ε sweep on validation and the rule that picks ε.

The validation set is decoded once with the fixed-step sampler (ε = 0) and once per ε of a sweep,
recording (metric, mean steps, decoding wall time) per ε. The chosen ε is the one with the **smallest
mean number of steps whose metric stays within ``tolerance`` of the fixed-step metric**; the default
tolerance, 0.1 (absolute, in the metric's units: BLEU points), is the drop the adaptive-stopping method
accepts. A chosen ε that is the largest of the sweep is flagged: a larger ε might stop earlier within the
tolerance, so the sweep may be too short. ``diffusion-lm calibrate`` (:mod:`diffusion_lm.cli.calibrate`)
runs it and stores the chosen ε in the checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..errors import ConfigError
from .adaptive import AdaptiveDDIMSampler
from .adaptive_mask_predict import AdaptiveMaskPredictSampler
from .generate import DDIMSampler, GenerationResult, Generator
from .mask_predict import MaskPredictSampler

log = logging.getLogger(__name__)

# Δ is an RMS per-token change of x̂0 (unit-variance embeddings): measured on Multi30k, a softmax-x̂0 model
# settles below 0.1 in its last steps, an x0-regression model keeps moving by 0.2–0.7, hence the range.
DEFAULT_EPSILONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
DEFAULT_TOLERANCE = 0.1  # metric loss against the fixed-step sampler that is accepted (BLEU points)


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


def sweep_epsilons(trainer, model, adaptive: AdaptiveDDIMSampler, datamodule=None, ckpt_path: Optional[str] = None,
                   epsilons: Sequence[float] = DEFAULT_EPSILONS, metric: str = "bleu") -> list[CalibrationPoint]:
    """Validates ``model`` (a diffusion recipe whose generator is ``adaptive``, timed here) at ε = 0 and at every
    ε > 0 of ``epsilons``, decoding every validation batch; one point per ε, in increasing ε."""
    if any(e < 0 for e in epsilons):
        raise ConfigError(f"calibrate.epsilons must be >= 0, got {list(epsilons)}")
    if trainer.limit_val_batches == 0:
        raise ConfigError("calibrate decodes the validation set but trainer.limit_val_batches is 0: "
                          "pass --trainer.limit_val_batches=1.0 (or a fraction / number of batches)")
    timed = TimedGenerator(adaptive)
    model.generator = timed
    generate_batches = model.hparams.val_generate_batches
    model.hparams.val_generate_batches = -1  # decode every validation batch (trainer.limit_val_batches limits them)
    points = []
    try:
        for i, eps in enumerate([0.0] + sorted({float(e) for e in epsilons if e > 0})):
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
        model.generator = adaptive
    return points
