"""``make bench-quality``: every recipe family at one model size, tokenizer and wall-clock budget on Multi30k.

Each recipe is ``experiments/demo.yaml`` with one overlay from ``experiments/quality/`` (or the AR overlay),
built by the project's CLI exactly as ``diffusion-lm fit --config … --config …`` builds it. Per recipe:

1. a short probe measures the seconds per training step, so that ``max_steps`` (which sets how far the
   cosine learning rate decays) fits the budget; ``max_time`` = the budget stays the hard cap;
2. training for the budget (the AR side too: same wall clock, no step cap of its own);
3. the full test set decoded at each K of the sweep (diffusion) or once (AR), SacreBLEU and mean decode steps.

The AR2Diff row (``ar2diff_masked``) spends ``--ar-share`` of the same budget training the AR recipe and
the rest fine-tuning those weights as masked diffusion, so its total wall clock equals every other row's.
The knowledge-distillation row (``masked_kd``) trains on the AR row's greedy decodes of the training split
(``diffusion-lm distill``); the teacher's training and decoding time are added to its budget column.

Every row runs in its own process and is written to ``<out>/rows/<name>.json`` the moment it ends, so a
run that is stopped resumes where it was (finished rows are skipped; ``--force`` redoes them). The
aggregate is ``<out>/results.json``, ``results.md`` and ``results.png``.

    python benchmarks/quality.py                       # CPU settings: 5 min per recipe, ≤ 60 min in all
    python benchmarks/quality.py --gpu                 # GPU settings: bf16, 16k-token batches, 2.5 min per recipe
    python benchmarks/quality.py --recipes autoregressive masked --budget-min 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from typing_extensions import override

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO = "experiments/demo.yaml"
AR = "autoregressive"
# name → overlays on the demo config. The order is the run order: the AR row is the KD teacher.
RECIPES = {
    AR: ["experiments/multi30k/autoregressive_demo.yaml"],
    "continuous": ["experiments/quality/continuous.yaml"],
    "continuous_truncated": ["experiments/quality/continuous_truncated.yaml"],
    "fastdiss": ["experiments/quality/fastdiss.yaml"],
    "masked": ["experiments/quality/masked.yaml"],
    "sundae": ["experiments/quality/sundae.yaml"],
    "ar2diff_masked": ["experiments/quality/ar2diff_masked.yaml"],
    "ar2diff_continuous": ["experiments/quality/ar2diff_continuous.yaml"],
    "masked_kd": ["experiments/quality/masked.yaml"],
}
KD_ROWS = {"masked_kd"}
PRETRAINED_ROWS = {"ar2diff_masked", "ar2diff_continuous"}  # AR first for --ar-share of the same budget (AR2Diff, Han et al. 2024)
CPU_KS = (1, 2, 5, 10, 20, 50)
PROBE_STEPS = 30


def settings(gpu: bool) -> list[str]:
    """CLI overrides of every run: the accelerator, and nothing written that the benchmark does not read."""
    common = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0"]
    if gpu:
        return common + ["--trainer.accelerator=gpu", "--trainer.devices=1", "--trainer.precision=bf16-mixed",
                         "--data.init_args.max_tokens=16384"]
    return common + ["--trainer.accelerator=cpu", "--trainer.devices=1"]


def build(configs: list[str], overrides: list[str], checkpoint_dir: Path | None = None):
    """The CLI's recipe, data module and trainer; the configs' own checkpoint callbacks are replaced by one
    that writes ``last.ckpt`` into ``checkpoint_dir`` (or by none), so nothing outside ``--out`` is written."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from diffusion_lm.cli import _quiet, build_cli

    _quiet()
    cli = build_cli([a for c in [DEMO, *configs] for a in ("--config", c)] + overrides, run=False)
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, ModelCheckpoint)]
    if checkpoint_dir is not None:
        cli.trainer.callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, save_top_k=0))
    return cli


class StepClock:
    """Lightning callback: wall time of every training step end and the tokens (source + target) seen."""

    def __new__(cls):
        import lightning as L

        class _Clock(L.Callback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self.tokens = 0

            @override
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                self.times.append(time.perf_counter())
                self.tokens += int(batch["valid"].sum())

        return _Clock()


def seconds_per_step(configs: list[str], overrides: list[str]) -> float:
    """Median step time over the probe's second half (the first steps warm up allocators and caches)."""
    cli = build(configs, overrides + [f"--trainer.max_steps={PROBE_STEPS}", "--trainer.logger=false"])
    clock = StepClock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    gaps = sorted(b - a for a, b in zip(clock.times[PROBE_STEPS // 2:], clock.times[PROBE_STEPS // 2 + 1:]))
    return gaps[len(gaps) // 2]


def hms(seconds: float) -> str:
    """Lightning's DD:HH:MM:SS duration (whole seconds)."""
    s = int(round(seconds))
    return f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def generator_with_steps(config: dict, steps: int):
    """The recipe's generator rebuilt from its config with K = ``steps`` (in the innermost generator that has
    a ``steps`` argument: a length beam or MBR wraps the sampler that takes the steps)."""
    from jsonargparse import ArgumentParser

    from diffusion_lm.diffusion import Generator

    config = copy.deepcopy(config)
    node = config
    while "generator" in node.get("init_args", {}):
        node = node["init_args"]["generator"]
    node.setdefault("init_args", {})["steps"] = steps
    parser = ArgumentParser()
    parser.add_argument("--generator", type=Generator)
    return parser.instantiate_classes(parser.parse_object({"generator": config})).generator


def train(configs: list[str], overrides: list[str], budget_s: float, ckpt_dir: Path):
    """Probe, then fit for ``budget_s`` of wall clock → (cli, what to record)."""
    sps = seconds_per_step(configs, overrides)
    steps = max(50, int(0.97 * budget_s / sps))
    cli = build(configs, overrides + [f"--trainer.max_steps={steps}", f"--trainer.max_time={hms(budget_s)}",
                                      "--trainer.logger=false"], checkpoint_dir=ckpt_dir)
    clock = StepClock()
    cli.trainer.callbacks.append(clock)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli, {"probe_s_per_step": sps, "max_steps": steps, "steps": cli.trainer.global_step,
                 "tokens_seen": clock.tokens, "train_s": time.perf_counter() - t0}


def run_row(name: str, args) -> dict:
    import torch

    out = Path(args.out)
    # the CLI saves each run's config.yaml into default_root_dir: keep it under --out
    overrides = settings(args.gpu) + [f"--seed_everything={args.seed}", f"--trainer.default_root_dir={out / 'runs' / name}"]
    extra_budget_s = 0.0
    if name in KD_ROWS:
        extra_budget_s, data_root = distilled_data(out, args)
        overrides.append(f"--data.init_args.data_dir={data_root}")
    budget_s = args.budget_min * 60
    stages = []
    if name in PRETRAINED_ROWS:  # AR for a share of the budget, then the diffusion stage from its weights
        first = budget_s * args.ar_share
        _, rec = train(RECIPES[AR], overrides, first, out / "checkpoints" / f"{name}_ar")
        stages.append(rec)
        overrides.append(f"--model.init_args.init_from={out / 'checkpoints' / f'{name}_ar' / 'last.ckpt'}")
        budget_s -= first
    configs = RECIPES[name]
    cli, rec = train(configs, overrides, budget_s, out / "checkpoints" / name)
    stages.append(rec)
    model, dm = cli.model, cli.datamodule
    row = {"recipe": name, "class": type(model).__name__, "overlays": configs, "seed": args.seed,
           "steps": sum(r["steps"] for r in stages), "tokens_seen": sum(r["tokens_seen"] for r in stages),
           "train_s": sum(r["train_s"] for r in stages), "budget_s": args.budget_min * 60, "teacher_s": extra_budget_s,
           "stages": stages, "device": "cuda" if torch.cuda.is_available() and args.gpu else "cpu",
           "params": model.denoiser.num_parameters()}
    gen_cfg = cli.config.get("model.init_args.generator") if hasattr(model, "generator") else None
    ks = [None] if gen_cfg is None else args.ks
    row["by_k"] = []
    for k in ks:
        if k is not None:
            model.generator = generator_with_steps(gen_cfg.as_dict(), k)
        t0 = time.perf_counter()
        scores = cli.trainer.test(model, datamodule=dm, verbose=False)[0]
        row["by_k"].append({"k": k, "bleu": float(scores["test/bleu"]), "decode_steps": float(scores["test/decode_steps"]),
                            "test_loss": float(scores["test/loss"]), "test_s": time.perf_counter() - t0})
        print(f"[bench-quality] {name} K={k}: BLEU {row['by_k'][-1]['bleu']:.2f}", flush=True)
    row["default_k"] = None if gen_cfg is None else innermost_steps(gen_cfg.as_dict())
    return row


def innermost_steps(config: dict):
    while "generator" in config.get("init_args", {}):
        config = config["init_args"]["generator"]
    return config.get("init_args", {}).get("steps")


def distilled_data(out: Path, args) -> tuple[float, Path]:  # noqa: ARG001 — called as distilled_data(out, args) (also by claims.py)
    """The AR row's checkpoint decodes the training split once (``diffusion-lm distill``); returns the
    teacher's cost (its training time + the decoding time) and the distilled data root."""
    teacher = json.loads((out / "rows" / f"{AR}.json").read_text()) if (out / "rows" / f"{AR}.json").is_file() else None
    if teacher is None:
        raise SystemExit(f"error: the KD row needs the {AR} row first (its checkpoint is the teacher)")
    root = out / "distilled"
    report = root / "multi30k" / "train.distill.json"
    if not report.is_file():
        cmd = [sys.executable, "-m", "diffusion_lm.cli", "distill", "--ckpt_path",
               str(out / "checkpoints" / AR / "last.ckpt"), "--output_dir", str(root), "--no_progress", "--overwrite"]
        subprocess.run(cmd, check=True, cwd=ROOT)
    decode_s = json.loads(report.read_text())["decode_seconds"]
    return teacher["train_s"] + decode_s, root


def aggregate(out: Path, names: list[str] | None = None) -> list[dict]:
    """Every row written so far (of ``names``, default all recipes), in the recipes' order."""
    names = list(RECIPES) if names is None else names
    rows = [json.loads((out / "rows" / f"{n}.json").read_text()) for n in names if (out / "rows" / f"{n}.json").is_file()]
    ar = next((r for r in rows if r["recipe"] == AR), None)
    ar_bleu = ar["by_k"][0]["bleu"] if ar else None
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps({"rows": rows, "ar_bleu": ar_bleu}, indent=1))
    os.replace(tmp, out / "results.json")
    lines = ["| recipe | seed | steps | tokens seen | train wall (s) | + teacher (s) | K | mean decode steps | test BLEU | ÷ AR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for e in r["by_k"]:
            ratio = f"{e['bleu'] / ar_bleu:.2f}" if ar_bleu else "—"  # no AR row, or it scored 0
            default = " (default)" if e["k"] == r.get("default_k") else ""
            lines.append(f"| {r['recipe']} | {r['seed']} | {r['steps']} | {r['tokens_seen']:,} | {r['train_s']:.0f} | "
                         f"{r['teacher_s']:.0f} | {e['k'] if e['k'] is not None else 'greedy'}{default} | "
                         f"{e['decode_steps']:.1f} | {e['bleu']:.2f} | {ratio} |")
    tmp = out / "results.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "results.md")
    plot(out, rows, ar_bleu)
    return rows


def plot(out: Path, rows: list[dict], ar_bleu) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    best = [max(e["bleu"] for e in r["by_k"]) for r in rows]
    a.bar([r["recipe"] for r in rows], best, color=["#444" if r["recipe"] == AR else "#3a7" for r in rows])
    a.set_ylabel("test SacreBLEU (best K)")
    a.set_title("Multi30k en→de, equal wall-clock budget")
    plt.setp(a.get_xticklabels(), rotation=40, ha="right", fontsize=8)
    for r in rows:
        pts = [(e["k"], e["bleu"]) for e in r["by_k"] if e["k"] is not None]
        if pts:
            b.plot(*zip(*pts), marker="o", label=r["recipe"])
    if ar_bleu is not None:
        b.axhline(ar_bleu, color="#444", linestyle="--", label="autoregressive (greedy)")
    b.set_xscale("log")
    b.set_xlabel("K (denoising steps)")
    b.set_ylabel("test SacreBLEU")
    b.set_title("BLEU vs K")
    b.legend(fontsize=8)
    fig.tight_layout()
    tmp = out / "results.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out / "results.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--budget-min", type=float, default=None, help="training wall clock per recipe (CPU 5, GPU 2.5)")
    p.add_argument("--ks", type=int, nargs="+", default=list(CPU_KS), help="K sweep of the diffusion rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ar-share", type=float, default=0.5, help="share of the budget the AR2Diff row trains as AR")
    p.add_argument("--gpu", action="store_true", help="GPU settings: bf16-mixed, 16k-token batches, 2.5 min per recipe")
    p.add_argument("--out", default="runs/bench_quality")
    p.add_argument("--force", action="store_true", help="redo rows that are already written")
    p.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row in this process
    args = p.parse_args()
    args.budget_min = args.budget_min or (2.5 if args.gpu else 5.0)
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    if args.row:
        row = run_row(args.row, args)
        tmp = out / "rows" / f"{args.row}.json.tmp"
        tmp.write_text(json.dumps(row, indent=1))
        os.replace(tmp, out / "rows" / f"{args.row}.json")
        return
    t_all = time.perf_counter()
    for i, name in enumerate(args.recipes, 1):
        path = out / "rows" / f"{name}.json"
        if path.is_file() and not args.force:
            print(f"[bench-quality] {i}/{len(args.recipes)} {name}: done before, skipped ({path})", flush=True)
            continue
        print(f"[bench-quality] {i}/{len(args.recipes)} {name}: training {args.budget_min:g} min …", flush=True)
        cmd = [sys.executable, __file__, "--row", name, "--out", str(out), "--budget-min", str(args.budget_min),
               "--seed", str(args.seed), "--ar-share", str(args.ar_share), "--ks", *map(str, args.ks)] + (["--gpu"] if args.gpu else [])
        subprocess.run(cmd, check=True, cwd=ROOT)
        aggregate(out)
    aggregate(out)
    print(f"[bench-quality] all rows in {time.perf_counter() - t_all:.0f} s:\n{(out / 'results.md').read_text()}"
          f"results: {out / 'results.json'}, {out / 'results.png'}", flush=True)


if __name__ == "__main__":
    main()
