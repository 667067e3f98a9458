"""`make gpu-check`: what only a GPU can show, in one short run of ≤ 8 minutes (docs/results/gpu_check.md).

    python3 benchmarks/gpu_check.py                    # GPU: writes docs/results/gpu_check.{json,md}
    python3 benchmarks/gpu_check.py --smoke --out-dir runs/gpu_check_smoke     # every part at toy size on CPU

Parts, in order, each in its own subprocess under its own cap (``gpucheck/scale.py``), each appending its
result to the report as soon as it finishes: environment, correctness (bf16 + compile vs fp32 eager), training
speed (bench_train at L = 256), decoding speed (AR vs continuous vs masked diffusion), quality (test BLEU of the
demo diffusion recipe and of the AR recipe after a fixed training time). Needs ``$DIFFUSION_LM_DATA`` with
``multi30k/`` for the correctness and quality parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `benchmarks.…` and `diffusion_lm` from this checkout, installed or not

from benchmarks.gpucheck.registry import BY_NAME
from benchmarks.gpucheck.scale import SCALES


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"  # the bare device machine gets the tree without .git: pass --commit there


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="every part at toy size on the CPU (CI)")
    p.add_argument("--out-dir", type=Path, default=None, help="default: docs/results (GPU), runs/gpu_check_smoke (smoke)")
    p.add_argument("--work-dir", type=Path, default=None, help="the parts' logs and run files (default: a temp dir)")
    p.add_argument("--config", default=str(REPO / "experiments/demo.yaml"), help="the diffusion recipe")
    p.add_argument("--ar-config", default=str(REPO / "experiments/multi30k/autoregressive_demo.yaml"),
                   help="layered over --config for the AR recipe")
    p.add_argument("--scratch-overlay", default=str(REPO / "experiments/quality/masked.yaml"),
                   help="layered over --config for the correctness part: the demo's diffusion stage from scratch "
                        "(the demo itself starts from an AR checkpoint)")
    p.add_argument("--diffusion-args", type=shlex.split, default=[], help="extra CLI overrides of the diffusion run")
    p.add_argument("--ar-args", type=shlex.split, default=[], help="extra CLI overrides of the AR run")
    p.add_argument("--parts", nargs="+", choices=list(BY_NAME), help="run only these (the rest stay 'not run')")
    p.add_argument("--cap", action="append", default=[], metavar="PART=SECONDS", help="change a part's time cap")
    p.add_argument("--commit", default=None, help="the commit measured (default: git rev-parse)")
    p.add_argument("--part", choices=list(BY_NAME), help=argparse.SUPPRESS)  # internal: run one part here
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.config, args.ar_config = str(Path(args.config).resolve()), str(Path(args.ar_config).resolve())
    args.scratch_overlay = str(Path(args.scratch_overlay).resolve())
    return args


def child_args(args: argparse.Namespace) -> list[str]:
    """What a part's subprocess is told: the options that decide what it measures."""
    out = ["--config", args.config, "--ar-config", args.ar_config, "--scratch-overlay", args.scratch_overlay,
           f"--diffusion-args={shlex.join(args.diffusion_args)}", f"--ar-args={shlex.join(args.ar_args)}"]
    return out + (["--smoke"] if args.smoke else [])


def run_one(args: argparse.Namespace) -> None:
    """In a part's subprocess: run it; ``args.emit`` lets a long part leave what it has measured so far, which
    the runner keeps if the cap stops the part before it returns."""
    from benchmarks.gpucheck.report import atomic_write

    args.emit = lambda partial: atomic_write(args.result, json.dumps(partial, indent=2))
    args.emit(BY_NAME[args.part].load()(SCALES["smoke" if args.smoke else "gpu"], args))


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.part:
        run_one(args)
        return {}
    from benchmarks.gpucheck.report import Report
    from benchmarks.gpucheck.runner import run_all

    scale = SCALES["smoke" if args.smoke else "gpu"]
    caps = scale.caps_s | {k: int(v) for k, v in (c.split("=", 1) for c in args.cap)}
    scale = dataclasses.replace(scale, caps_s=caps)
    out_dir = args.out_dir or REPO / ("runs/gpu_check_smoke" if args.smoke else "docs/results")
    header = {"report": "gpu_check", "scale": scale.name,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "commit": args.commit or commit(), "command": shlex.join(["python3", "benchmarks/gpu_check.py", *(argv or sys.argv[1:])]),
              "caps_s": scale.caps_s}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        report = run_all(Report(out_dir, header), scale, child_args(args), args.work_dir or Path(tmp), args.parts)
    print(f"[gpu-check] report: {out_dir}/gpu_check.md", flush=True)
    return report.data


if __name__ == "__main__":
    main()
