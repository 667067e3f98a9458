"""Training throughput: real tokens/s, model FLOPs utilisation and GPU memory, under ``throughput/``.

Unlike Lightning's ``ThroughputMonitor`` (which synchronises the device every step to time it), the
counts are accumulated *on the device* (two small reductions per step, no host read) and read once
per logging interval; that read is the only synchronisation, so the timing over a window is exact
and the steps in between run asynchronously. Time spent in validation is left out of the window.

Logged every ``log_every_n_steps`` optimizer steps to every logger and to the progress bar:

* ``throughput/tokens_per_sec`` — real (non-padding) source + target tokens per second, all ranks;
* ``throughput/tokens_per_sec_per_device``;
* ``throughput/tflops_per_device`` and ``throughput/mfu`` (when the peak is known: Lightning's table of
  datasheet dense peaks for the trainer's precision, or ``peak_tflops``);
* ``throughput/padding`` — padded share of the positions the model computed;
* ``throughput/data_wait`` — share of the window the training loop waited for the data loader
  (when the loader reports it, see :class:`~diffusion_lm.data.loader.ResumableDataLoader`);
* ``throughput/gpu_mem_peak_gib``, ``throughput/gpu_mem_reserved_gib`` (CUDA only).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import lightning as L
import torch
from typing_extensions import override

from ..data.loader import ResumableDataLoader
from ..flops import CountsFlops, StepFlops

PROG_BAR = ("throughput/tokens_per_sec", "throughput/mfu", "throughput/gpu_mem_peak_gib")


def device_peak_flops(trainer: L.Trainer) -> Optional[float]:
    """Dense peak FLOP/s of one device at the trainer's precision (None where unknown, e.g. CPU)."""
    from lightning.fabric.utilities.throughput import _plugin_to_compute_dtype, get_available_flops

    device = trainer.strategy.root_device
    if device.type != "cuda":
        return None
    try:
        dtype = _plugin_to_compute_dtype(trainer.precision_plugin)
    except (RuntimeError, NotImplementedError):
        return None
    flops = get_available_flops(device, dtype)
    return float(flops) if flops else None


class ThroughputMonitor(L.Callback):
    """Args:
        log_every_n_steps: Optimizer steps per measurement window (``None`` = the trainer's ``log_every_n_steps``).
        peak_tflops: Peak dense TFLOP/s of one device for MFU (``None`` = look it up for CUDA devices).
        prog_bar: Also show tokens/s, MFU and GPU memory in the progress bar.
    """

    def __init__(self, log_every_n_steps: Optional[int] = None, peak_tflops: Optional[float] = None,
                 prog_bar: bool = True) -> None:
        self.log_every_n_steps = log_every_n_steps
        self.peak_tflops = peak_tflops
        self.prog_bar = prog_bar
        self.flops: StepFlops | None = None
        self.last_metrics: dict[str, float] = {}
        self._peak: float | None = None
        self._last_step = -1
        self._val_t0: float | None = None
        self._reset_counters(None)

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if isinstance(pl_module, CountsFlops):
            self.flops = pl_module.step_flops()
        self._peak = self.peak_tflops * 1e12 if self.peak_tflops else device_peak_flops(trainer)

    def _reset_counters(self, device: torch.device | None) -> None:
        zeros = (lambda: torch.zeros((), dtype=torch.float64, device=device)) if device is not None else (lambda: None)
        self._tokens = zeros()  # real positions
        self._token_len = zeros()  # Σ tokens · padded length (attention FLOPs)
        self._head_tokens = zeros()  # positions that get logits (the target)
        self._slots = 0  # B · L positions computed (host: from shapes)
        self._excluded = 0.0  # seconds spent outside training (validation)
        self._wait0 = None
        self._t0: float | None = None

    def _every(self, trainer: L.Trainer) -> int:
        return self.log_every_n_steps or trainer.log_every_n_steps or 50

    # ------------------------------------------------------------------ per step (no host reads)
    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._t0 is None:
            self._start_window(trainer, pl_module.device)
        if not isinstance(batch, dict) or "input_ids" not in batch:
            return
        ids = batch["input_ids"]  # (B, L)
        valid = batch.get("valid")
        target = batch.get("target_mask")
        n = valid.sum(dtype=torch.float64) if valid is not None else float(ids.numel())  # device op / host number
        self._tokens += n
        self._token_len += n * ids.shape[1]
        self._head_tokens += target.sum(dtype=torch.float64) if target is not None else n
        self._slots += ids.numel()

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == 0 or step % self._every(trainer) or step == self._last_step:
            return
        self._last_step = step
        metrics = self._measure(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        if self.prog_bar:
            for k in PROG_BAR:
                if k in metrics:
                    # a CPU tensor: the progress bar reads it after every step without touching the device
                    pl_module.log(k, torch.tensor(metrics[k]), prog_bar=True, logger=False, on_step=True, on_epoch=False)
        self.last_metrics = metrics
        self._start_window(trainer, pl_module.device)

    # ------------------------------------------------------------------ windows
    def _start_window(self, trainer: L.Trainer, device: torch.device) -> None:
        self._reset_counters(device)
        self._wait0 = self._loader_wait(trainer)
        self._t0 = time.perf_counter()

    @staticmethod
    def _loader_wait(trainer: L.Trainer) -> float | None:
        loader = trainer.train_dataloader
        return loader.wait_seconds if isinstance(loader, ResumableDataLoader) else None

    def _measure(self, trainer: L.Trainer) -> dict[str, float]:
        counts = torch.stack([self._tokens, self._token_len, self._head_tokens])
        counts = trainer.strategy.reduce(counts, reduce_op="sum")  # all ranks (a collective: every rank logs here)
        tokens, token_len, head_tokens = counts.tolist()  # the only host read of the window
        seconds = max(time.perf_counter() - self._t0 - self._excluded, 1e-9)
        world = trainer.world_size
        slots = self._slots * world
        m = {
            "throughput/tokens_per_sec": tokens / seconds,
            "throughput/tokens_per_sec_per_device": tokens / seconds / world,
            "throughput/padding": 1.0 - tokens / max(slots, 1),
        }
        if self.flops is not None and tokens > 0:
            flops = self.flops(tokens, token_len / tokens, head_tokens) / seconds / world
            m["throughput/tflops_per_device"] = flops / 1e12
            if self._peak:
                m["throughput/mfu"] = flops / self._peak
        wait = self._loader_wait(trainer)
        if wait is not None and self._wait0 is not None:
            m["throughput/data_wait"] = (wait - self._wait0) / seconds
        device = trainer.strategy.root_device
        if device.type == "cuda":
            m["throughput/gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30  # since the start
            m["throughput/gpu_mem_reserved_gib"] = torch.cuda.memory_reserved(device) / 2**30
        return m

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_t0 = time.perf_counter()

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_t0 is not None and self._t0 is not None:  # inside a training window
            self._excluded += time.perf_counter() - self._val_t0
        self._val_t0 = None
