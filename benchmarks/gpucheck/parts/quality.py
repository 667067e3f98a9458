"""Part 5: quality — a recipe trained for a fixed time at GPU scale in bf16, then scored on the test split
(SacreBLEU, the data module's own metric). The diffusion run is the demo recipe: its AR stage
(``experiments/multi30k/autoregressive_demo.yaml`` over the demo config) for half the time, then the demo
config's masked-diffusion stage from those weights; the AR run is the AR stage alone for its own time."""

from __future__ import annotations

import time
from pathlib import Path

from ..recipe import build
from ..scale import Scale


def train_and_test(configs: list[str], overrides: list[str], emit, pretrained: dict | None = None) -> dict:
    cli = build(configs, overrides)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    out = {"recipe": type(cli.model).__name__, "configs": [Path(c).name for c in configs], "overrides": overrides,
           "train_s": time.perf_counter() - t0, "steps": cli.trainer.global_step}
    if pretrained is not None:  # the AR stage counts in the budget
        out |= {"pretrain": pretrained, "train_s": out["train_s"] + pretrained["train_s"]}
    emit(out)  # what was trained, should the cap stop the test
    t0 = time.perf_counter()
    scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return out | {"test_s": time.perf_counter() - t0, "test_bleu": float(scores["test/bleu"]),
                  "test": {k: float(v) for k, v in scores.items()}}


def pretrain(scale: Scale, opts, path: Path) -> dict:
    """The demo recipe's first stage: the same denoiser trained autoregressively, saved to ``path``."""
    cli = build([opts.config, opts.ar_config], [*scale.demo_overrides, *scale.quality_pretrain, *opts.ar_args])
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    cli.trainer.save_checkpoint(path)
    return {"train_s": time.perf_counter() - t0, "steps": cli.trainer.global_step}


def diffusion(scale: Scale, opts) -> dict:
    """The demo recipe (AR2Diff within the budget): AR stage, then masked diffusion from its weights."""
    ckpt = Path("quality_pretrain.ckpt").resolve()  # in the part's work dir
    first = pretrain(scale, opts, ckpt)
    opts.emit({"pretrain": first})
    return train_and_test([opts.config], [*scale.demo_overrides, *scale.quality_diffusion, *opts.diffusion_args,
                                          f"--model.init_args.init_from={ckpt}"], opts.emit, pretrained=first)


def autoregressive(scale: Scale, opts) -> dict:
    return train_and_test([opts.config, opts.ar_config], [*scale.demo_overrides, *scale.quality_ar, *opts.ar_args], opts.emit)
