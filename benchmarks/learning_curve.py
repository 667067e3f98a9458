"""Test quality against training steps: how far from the noise floor a recipe is, and how fast it moves.

Each arm (an overlay in ``experiments/quality/``, on ``experiments/demo.yaml``) trains once for ``--steps``
with a checkpoint every ``--every`` steps (``diffusion-lm fit``, TensorBoard under ``<out>/<arm>/tb``, one
validation pass per checkpoint); then every checkpoint decodes the whole test split at each K of ``--ks``, the
last one also at ``--final-ks`` (quality against K, the FastDiSS question). This is what
says which budget a claim needs before its seeds are spent (``benchmarks/claims.py``: the baseline must reach
15 BLEU). Resumable: a fit whose last checkpoint exists and an evaluation already in ``curve.json`` are skipped,
and a killed fit resumes from its ``last.ckpt``.
Wall time per checkpoint is the checkpoint file's time minus the run's start (TensorBoard ``config.yaml``), so
it includes the validation passes (after a resume it counts from the resumed start).

    python benchmarks/learning_curve.py --arms continuous fastdiss --steps 9000 --every 1500 --ks 1 5 20
    python benchmarks/learning_curve.py --gpu --arms continuous fastdiss --steps 40000 --every 5000   # bf16, 16k-token batches

Writes ``<out>/curve.json``, ``<out>/curve.png`` (``--png``, ``--json``: copies elsewhere) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from claims import CLAIMS_FLOOR  # noqa: E402
from claims import FLOOR as NOISE  # noqa: E402 — BLEU below this is noise
from quality import DEMO, generator_with_steps  # noqa: E402

ARMS = ROOT / "experiments" / "quality"
GPU = ["--trainer.accelerator=gpu", "--trainer.devices=1", "--trainer.precision=bf16-mixed", "--data.init_args.max_tokens=16384"]


def fit_command(arm: str, args) -> list[str]:
    """The ``diffusion-lm fit`` of one arm: the demo config, the arm's overlay, checkpoints every ``--every`` steps;
    a killed fit resumes from its ``last.ckpt`` (written with every checkpoint)."""
    out = Path(args.out) / arm
    resume = out / "ckpt" / "last.ckpt"
    return [sys.executable, "-m", "diffusion_lm.cli", "fit", "--config", DEMO, "--config", str(overlay(arm).relative_to(ROOT)),
            f"--seed_everything={args.seed}", f"--trainer.max_steps={args.steps}", "--trainer.max_time=null",
            f"--trainer.val_check_interval={args.every}", "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={out}", "--trainer.logger.init_args.name=tb",
            "--trainer.logger.init_args.version=run", f"--trainer.callbacks.init_args.dirpath={out / 'ckpt'}",
            f"--trainer.callbacks.init_args.every_n_train_steps={args.every}", "--trainer.callbacks.init_args.save_top_k=-1",
            "--trainer.callbacks.init_args.filename=step{step}", "--trainer.callbacks.init_args.auto_insert_metric_name=false",
            *(GPU if args.gpu else []), *([f"--ckpt_path={resume}"] if resume.is_file() else [])]


def overlay(arm: str) -> Path:
    path = ARMS / f"{arm}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in ARMS.glob("*.yaml")))
        raise SystemExit(f"error: no arm {arm!r}: {path} does not exist (known: {known})")
    return path


def checkpoints(arm: str, args) -> list[tuple[int, Path]]:
    ckpt = Path(args.out) / arm / "ckpt"
    return [(s, ckpt / f"step{s}.ckpt") for s in range(args.every, args.steps + 1, args.every)]


def fit(arm: str, args) -> None:
    if checkpoints(arm, args)[-1][1].is_file():
        print(f"[curve] {arm}: trained (skipped)", flush=True)
        return
    (Path(args.out) / arm).mkdir(parents=True, exist_ok=True)
    cmd = fit_command(arm, args)
    print("[curve] " + " ".join(cmd[1:]), flush=True)
    with open(Path(args.out) / arm / "fit.log", "w") as log:
        if subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"error: the fit of {arm} failed: see {Path(args.out) / arm / 'fit.log'}")


def evaluate(arm: str, step: int, path: Path, ks: list[int], args) -> list[dict]:
    """Test BLEU of one checkpoint at every K (the checkpoint's own model, data and tokenizer configuration)."""
    from diffusion_lm.cli import _quiet, build_cli, with_checkpoint_defaults

    _quiet()
    config = with_checkpoint_defaults(["test", "--ckpt_path", str(path)])[1:3]  # ["--config", <checkpoint's config>]
    device = f"--trainer.accelerator={'gpu' if args.gpu else 'cpu'}"
    cli = build_cli(config + [device, "--trainer.devices=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                                       "--trainer.enable_model_summary=false"], run=False)
    start = (Path(args.out) / arm / "tb" / "run" / "config.yaml").stat().st_mtime
    gen_cfg = cli.config.get("model.init_args.generator").as_dict()
    rows = []
    for k in ks:
        cli.model.generator = generator_with_steps(gen_cfg, k)
        scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(path), verbose=False)[0]
        rows.append({"arm": arm, "step": step, "k": k, "bleu": float(scores["test/bleu"]),
                     "test_loss": float(scores["test/loss"]), "wall_s": path.stat().st_mtime - start})
        print(f"[curve] {arm} step {step} K={k}: BLEU {rows[-1]['bleu']:.2f}", flush=True)
    return rows


def plot(rows: list[dict], ks: list[int], path: Path, floor: float) -> None:
    """Left: BLEU against training steps at every ``ks``; right: BLEU against K at the last checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    last = max(r["step"] for r in rows)
    fig, (ax, by_k) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for arm, color in zip(arms, ("C0", "C1", "C2", "C3", "C4")):
        for k, style in zip(ks, ("-", "--", ":", "-.")):
            pts = sorted((r["step"], r["bleu"]) for r in rows if r["arm"] == arm and r["k"] == k)
            ax.plot(*zip(*pts), style, color=color, marker="o", label=f"{arm}, K={k}")
        pts = sorted((r["k"], r["bleu"]) for r in rows if r["arm"] == arm and r["step"] == last)
        by_k.plot(*zip(*pts), color=color, marker="o", label=arm)
    by_k.set_xscale("log")  # before the floor labels, which are placed at the left edge
    for a in (ax, by_k):
        for y, text, style in ((floor, f" claims floor ({floor:g} BLEU)", "-"), (NOISE, f" below {NOISE:g}: noise", ":")):
            a.axhline(y, color="grey", lw=0.8, ls=style)
            a.text(a.get_xlim()[0], y, text, va="bottom", color="grey", fontsize=8)
        a.grid(alpha=0.3)
        a.legend(fontsize=7, ncol=2 if a is ax else 1)
    ax.set_xlabel("training steps")
    ax.set_ylabel("test SacreBLEU (Multi30k test_2016_flickr)")
    ax.set_title("during training", fontsize=9)
    by_k.set_xlabel("sampling steps K")
    by_k.set_title(f"after {last:,} steps", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def save(rows: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=2))
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=["continuous", "fastdiss"], help="overlays in experiments/quality/")
    p.add_argument("--steps", type=int, default=9000)
    p.add_argument("--every", type=int, default=1500, help="steps between checkpoints (each one is evaluated)")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 20], help="sampling steps K tested at every checkpoint")
    p.add_argument("--final-ks", type=int, nargs="*", default=[2, 10, 50], help="more K, tested at the last checkpoint only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu", action="store_true", help="bf16, 16k-token batches")
    p.add_argument("--out", default="runs/learning_curve")
    p.add_argument("--png", default=None, help="where the plot goes (default <out>/curve.png)")
    p.add_argument("--json", default=None, help="also write the plotted rows here (e.g. docs/results/)")
    p.add_argument("--floor", type=float, default=CLAIMS_FLOOR, help="the BLEU line drawn on the plot")
    args = p.parse_args()
    if args.steps % args.every:
        raise SystemExit(f"error: --steps {args.steps} is not a multiple of --every {args.every}")
    for arm in args.arms:
        overlay(arm)
    os.chdir(ROOT)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curve = out / "curve.json"
    rows = json.loads(curve.read_text()) if curve.is_file() else []
    for arm in args.arms:
        fit(arm, args)
        for step, path in checkpoints(arm, args):
            wanted = args.ks + (args.final_ks if step == args.steps else [])
            ks = [k for k in wanted if not any(r["arm"] == arm and r["step"] == step and r["k"] == k for r in rows)]
            if ks:
                rows += evaluate(arm, step, path, ks, args)
                save(rows, curve)
    rows = [r for r in rows if r["arm"] in args.arms and r["step"] <= args.steps]
    plot(rows, args.ks, Path(args.png) if args.png else out / "curve.png", args.floor)
    if args.json:
        save(rows, Path(args.json))
    ks = sorted({r["k"] for r in rows})
    print("| arm | step | wall (min) | " + " | ".join(f"BLEU K={k}" for k in ks) + " |")
    print("|---|---:|---:|" + "---:|" * len(ks))
    for arm in args.arms:
        for step, _ in checkpoints(arm, args):
            at = {r["k"]: r for r in rows if r["arm"] == arm and r["step"] == step}
            wall = next(iter(at.values()))["wall_s"] / 60
            print(f"| {arm} | {step:,} | {wall:.1f} | " + " | ".join(f"{at[k]['bleu']:.2f}" if k in at else "—" for k in ks) + " |")


if __name__ == "__main__":
    main()
