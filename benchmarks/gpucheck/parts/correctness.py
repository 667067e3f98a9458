"""Part 2: the demo's diffusion stage (masked diffusion, from scratch) trained in bf16-mixed + ``torch.compile``
against fp32 eager, on the same batches.

Both runs start from the same weights (the config's seed) and read the same batches in the same order; dropout
is set to 0 so the only difference is arithmetic (bf16 autocast, compiled kernels). Measured:

* the two loss curves, their first-step and last-window relative gaps (``TOLERANCE``);
* graph breaks and graphs of the compiled denoiser (dynamo's counters);
* host synchronisations inside the training step: a few more compiled steps with
  ``torch.cuda.set_sync_debug_mode("error")`` on from the start of each step to its end, after warm-up
  (a sync raises; the first one is reported with the frame that made it). CUDA only.
"""

from __future__ import annotations

import traceback

import lightning as L
import torch
from typing_extensions import override

from ..recipe import build
from ..scale import Scale

# Same weights and the same first batch: only rounding differs, so the first losses must nearly agree. Over
# the last 10 steps bf16's noisier updates may move the curve a little, not away.
TOLERANCE = {"first_step_rel": 0.02, "last_window_rel": 0.05}
WINDOW = 10


class LossRecorder(L.Callback):
    """Every step's loss, kept on the device (a host read per step would be a sync of its own)."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().float())

    def values(self) -> list[float]:
        return torch.stack(self.losses).tolist() if self.losses else []


class SyncGuard(L.Callback):
    """``set_sync_debug_mode("error")`` from step ``start`` on, for the span of each training step only."""

    def __init__(self, start: int) -> None:
        self.start = start

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.start:
            torch.cuda.set_sync_debug_mode("error")

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.set_sync_debug_mode(0)


def train(scale: Scale, opts, precision: str, steps: int, backend: str | None, *callbacks: L.Callback):
    overrides = [*scale.demo_overrides, f"--trainer.precision={precision}", f"--trainer.max_steps={steps}",
                 "--trainer.max_time=null", "--trainer.log_every_n_steps=1000000",  # no logged step: no .item()
                 "--model.init_args.denoiser.dropout=0.0", "--model.init_args.compile=false"]
    cli = build([opts.config, opts.scratch_overlay], overrides)
    if backend:  # in place, as the recipe's `compile: true` does, but with the backend of this scale
        cli.model.denoiser.compile(backend=backend)
    cli.trainer.callbacks.extend(callbacks)
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli.trainer.global_step


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def sync_check(scale: Scale, opts) -> dict:
    if scale.device != "cuda":
        return {"status": "not applicable (CPU)"}
    warm = 3  # compilation and allocator warm-up are allowed to synchronise
    try:
        train(scale, opts, "bf16-mixed", warm + scale.sync_check_steps, scale.compile_backend, SyncGuard(warm))
    except RuntimeError as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if "diffusion_lm" in f.filename]
        where = f"{frames[-1].filename.split('diffusion_lm')[-1]}:{frames[-1].lineno} {frames[-1].line}" if frames else ""
        return {"status": "sync in step", "host_syncs_ok": False, "first_sync": f"{str(e)[:200]} at {where}"}
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return {"status": "no sync", "host_syncs_ok": True, "checked_steps": scale.sync_check_steps}


def run(scale: Scale, opts) -> dict:
    from torch._dynamo.utils import counters

    eager = LossRecorder()
    train(scale, opts, "32-true", scale.correctness_steps, None, eager)
    torch._dynamo.reset()
    counters.clear()
    fast = LossRecorder()
    train(scale, opts, "bf16-mixed", scale.correctness_steps, scale.compile_backend, fast)
    breaks = dict(counters["graph_break"])
    graphs = int(counters["stats"]["unique_graphs"])
    a, b = fast.values(), eager.values()
    n = min(len(a), len(b))
    w = min(WINDOW, n)
    first, last = rel(a[0], b[0]), rel(sum(a[n - w:n]) / w, sum(b[n - w:n]) / w)
    result = {
        "steps": n,
        "compile_backend": scale.compile_backend,
        "loss_fp32_eager": b[:n],
        "loss_bf16_compiled": a[:n],
        "first_step_rel_gap": first,
        "last_window_rel_gap": last,
        "window": w,
        "tolerance": TOLERANCE,
        "within_tolerance": first <= TOLERANCE["first_step_rel"] and last <= TOLERANCE["last_window_rel"],
        "graph_breaks": sum(breaks.values()),
        "graph_break_reasons": sorted(breaks)[:5],
        "graphs": graphs,
    }
    opts.emit(result)  # the curves survive a cap that stops the sync check
    return result | {"sync_check": sync_check(scale, opts)}
