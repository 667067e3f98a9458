"""A behaviour fingerprint of ``make demo``: same seed, same code paths => the same JSON.

Runs the demo's two stages (experiments/demo.yaml; stage 1 through the overlays of the Makefile ``demo``
target) for ``--steps`` training steps each in a temporary directory, stage 2 initialised from the
temporary stage-1 checkpoint, then tests stage 2 on the first ``--test-examples`` test sentences. The JSON
holds the first training losses of each stage, a digest of each stage's trained weights, the test metrics and
the test generations. Two commits that build, train and decode identically write identical files (compare them with ``cmp``).

    PYTHONPATH=$PWD python benchmarks/demo_fingerprint.py --out runs/fingerprint.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from diffusion_lm.cli import build_cli

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "experiments" / "demo.yaml"
STAGE1_OVERLAYS = (ROOT / "experiments" / "multi30k" / "autoregressive_demo.yaml", ROOT / "experiments" / "demo_pretrain.yaml")


class LossRecorder(Callback):
    """The training loss of every step, as a Python float."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))


def _configs(paths) -> list[str]:
    return [a for p in paths for a in ("--config", str(p))]


def _common(steps: int) -> list[str]:
    return [f"--trainer.max_steps={steps}", "--trainer.max_time=null", "--trainer.accelerator=cpu",
            "--trainer.devices=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def weights_digest(model) -> str:
    """SHA-256 over the denoiser's trained tensors (name, dtype, shape, bytes): equal iff the weights are."""
    h = hashlib.sha256()
    for name, t in sorted(model.denoiser.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train(args: list[str]) -> tuple[Any, list[float]]:
    cli = build_cli(args, run=False)
    recorder = LossRecorder()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli, recorder.losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--steps", type=int, default=20, help="training steps of each stage")
    ap.add_argument("--test-examples", type=int, default=64, help="first N test sentences decoded")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    with tempfile.TemporaryDirectory(prefix="demo-fingerprint-") as tmp:
        os.chdir(tmp)  # the demo's runs/… paths (logs, checkpoints) land in the temporary directory
        stage1 = Path(tmp) / "runs" / "demo" / "ar" / "last.ckpt"
        cli1, losses1 = train(_configs((DEMO, *STAGE1_OVERLAYS)) + _common(a.steps))
        cli, losses2 = train(_configs((DEMO,)) + _common(a.steps) + [f"--model.init_args.init_from={stage1}",
                                                                   f"--data.init_args.limit_eval={a.test_examples}"])
        digests = {"stage1_weights_sha256": weights_digest(cli1.model), "stage2_weights_sha256": weights_digest(cli.model)}
        model, generations = cli.model, []
        decode = model.decode_predictions

        def recording(batch, m):
            preds = decode(batch, m)
            generations.extend(zip(batch["index"].tolist(), batch["src_text"], preds))
            return preds

        model.decode_predictions = recording
        metrics = cli.trainer.test(model, cli.datamodule, verbose=False)[0]
    result = {
        "stage1_losses": losses1[: a.steps],
        "stage2_losses": losses2[: a.steps],
        **digests,
        "test_metrics": {k: float(v) for k, v in sorted(metrics.items())},
        "test_generations": [{"index": i, "source": s, "prediction": p} for i, s, p in sorted(generations)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(losses1)} + {len(losses2)} losses, {len(generations)} generations")


if __name__ == "__main__":
    main()
