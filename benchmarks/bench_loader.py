"""How fast the training data pipeline alone delivers batches (real tokens/s), to compare with training tokens/s.

    python benchmarks/bench_loader.py --config experiments/multi30k/from_scratch.yaml --num-workers 0 2 4

Builds the data module of an experiment YAML through the CLI, iterates its training loader for ``--batches`` batches
(tokenisation and worker start-up excluded) and prints real tokens/s, batches/s and the padding share.
If the loader delivers several times the training throughput, data loading cannot starve the GPU
(during training, ``throughput/data_wait`` shows the share of time the loop waited for data).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_lm.cli import build_cli


def build_datamodule(config: Path, overrides: dict):
    """The config's data module as the CLI builds it (interpolation, argument links), with ``data.init_args``
    overrides."""
    args = ["--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.logger=false"]
    return build_cli(args + [f"--data.init_args.{k}={v}" for k, v in overrides.items()], run=False).datamodule


def measure(dm, batches: int) -> dict:
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up
    real = slots = n = 0
    t0 = time.perf_counter()
    for batch in it:
        real += int(batch["valid"].sum())
        slots += batch["valid"].numel()
        n += 1
        if n == batches:
            break
    seconds = time.perf_counter() - t0
    return {"tokens_per_sec": real / seconds, "batches_per_sec": n / seconds, "padding": 1 - real / slots, "batches": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("experiments/multi30k/from_scratch.yaml"))
    p.add_argument("--num-workers", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--max-tokens", type=int, help="override data.max_tokens")
    args = p.parse_args()
    overrides = {"max_tokens": args.max_tokens} if args.max_tokens else {}
    print(f"| {args.config} | workers | real tokens/s | batches/s | padding |\n|---|---:|---:|---:|---:|")
    for workers in args.num_workers:
        dm = build_datamodule(args.config, {**overrides, "num_workers": workers})
        dm.setup("fit")
        r = measure(dm, args.batches)
        print(f"| max_tokens={dm.max_tokens} | {workers} | {r['tokens_per_sec']:,.0f} | {r['batches_per_sec']:.1f} "
              f"| {r['padding']:.1%} |", flush=True)


if __name__ == "__main__":
    main()
