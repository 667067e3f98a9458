"""Quality against the number of sampling steps K, for one or more checkpoints (docs/fast_inference.md).

Loads each checkpoint once, then runs ``trainer.test`` with a K-step DDIM sampler for every K and
reports test BLEU, test loss and the decoding wall time. Large K can be restricted to the first
``--subset`` test examples; every K also runs on that subset, so the columns are comparable.

    python benchmarks/steps_sweep.py --config experiments/fast_inference/multi30k_cpu.yaml \\
        --ckpt baseline=runs/…/baseline/checkpoints/last.ckpt --ckpt fastdiss=runs/…/fastdiss/checkpoints/last.ckpt \\
        --steps 1 2 5 10 20 --subset-steps 1 2 5 10 20 100 1000 --subset 100
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
import warnings

import lightning as L

from diffusion_lm.checkpoint import load_recipe
from diffusion_lm.cli import build_cli
from diffusion_lm.diffusion import AdaptiveDDIMSampler, DDIMSampler
from diffusion_lm.diffusion.calibration import TimedGenerator
from diffusion_lm.recipes import BaseRecipe


def build_class(class_path: str):
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def build_datamodule(config: str, limit_eval: int):
    """The config's data module as the CLI builds it (interpolation, argument links), first ``limit_eval``
    evaluation examples only (0 = all)."""
    args = ["--config", config, f"--data.init_args.limit_eval={limit_eval}", "--trainer.accelerator=cpu",
            "--trainer.devices=1", "--trainer.logger=false"]
    return build_cli(args, run=False).datamodule


def evaluate(model: BaseRecipe, dm, generator, device: str) -> dict:
    timed = TimedGenerator(generator)
    model.generator = timed
    trainer = L.Trainer(accelerator=device, devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    start = time.perf_counter()
    res = trainer.test(model, dm, verbose=False)[0]
    return {"bleu": res["test/bleu"], "loss": res["test/loss"], "mean_steps": res["test/decode_steps"],
            "decode_s": timed.seconds, "total_s": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="training YAML (its data section is used)")
    ap.add_argument("--ckpt", action="append", required=True, help="name=path, repeatable")
    ap.add_argument("--steps", type=int, nargs="*", default=[1, 2, 5, 10, 20], help="K on the whole test split")
    ap.add_argument("--subset-steps", type=int, nargs="*", default=[], help="K on the first --subset examples")
    ap.add_argument("--subset", type=int, default=100)
    ap.add_argument("--adaptive", type=float, nargs="*", default=[],
                    help="also run AdaptiveDDIMSampler(K=max --steps) with these ε on the whole split (-1 = calibrated ε)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows = []
    for spec in args.ckpt:
        name, path = spec.split("=", 1)
        model, ckpt = load_recipe(path)
        calibrated = ckpt.get("generator", {}).get("calibrated_epsilon")
        for subset, ks in ((0, args.steps), (args.subset, args.subset_steps)):
            if not ks:
                continue
            dm = build_datamodule(args.config, subset)
            for k in ks:
                r = evaluate(model, dm, DDIMSampler(steps=k), args.device)
                rows.append({"model": name, "examples": subset or "all", "sampler": f"DDIM K={k}", **r})
                print(json.dumps(rows[-1]), flush=True)
        if args.adaptive:
            dm = build_datamodule(args.config, 0)
            k = max(args.steps)
            for eps in args.adaptive:
                eps = calibrated if eps < 0 else eps
                r = evaluate(model, dm, AdaptiveDDIMSampler(steps=k, epsilon=eps), args.device)
                rows.append({"model": name, "examples": "all", "sampler": f"adaptive K={k} ε={eps:g}", **r})
                print(json.dumps(rows[-1]), flush=True)
    print("| model | examples | sampler | BLEU | test loss | mean steps | decode s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['examples']} | {r['sampler']} | {r['bleu']:.2f} | {r['loss']:.3f} | "
              f"{r['mean_steps']:.2f} | {r['decode_s']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
