"""Part 5: quality — a recipe trained for a fixed time at GPU scale in bf16, then scored on the test split
(SacreBLEU, the data module's own metric). The diffusion run is the demo config; the AR run is the same
config with the recipe swapped (``experiments/multi30k/autoregressive_demo.yaml``)."""

from __future__ import annotations

import time
from pathlib import Path

from ..recipe import build
from ..scale import Scale


def train_and_test(configs: list[str], overrides: list[str], emit) -> dict:
    cli = build(configs, overrides)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    out = {"recipe": type(cli.model).__name__, "configs": [Path(c).name for c in configs], "overrides": overrides,
           "train_s": time.perf_counter() - t0, "steps": cli.trainer.global_step}
    emit(out)  # what was trained, should the cap stop the test
    t0 = time.perf_counter()
    scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return out | {"test_s": time.perf_counter() - t0, "test_bleu": float(scores["test/bleu"]),
                  "test": {k: float(v) for k, v in scores.items()}}


def diffusion(scale: Scale, opts) -> dict:
    return train_and_test([opts.config], [*scale.demo_overrides, *scale.quality_diffusion, *opts.diffusion_args], opts.emit)


def autoregressive(scale: Scale, opts) -> dict:
    return train_and_test([opts.config, opts.ar_config], [*scale.demo_overrides, *scale.quality_ar, *opts.ar_args], opts.emit)
