"""Stop (or skip) on a non-finite loss before the weights, the EMA or a checkpoint are corrupted.

Each optimizer step, after backward (and the DDP all-reduce, so every rank decides alike), the
global gradient norm is checked on the device. A non-finite step is never applied:

* with a fused optimizer (AdamW on CUDA by default) the check costs no host synchronisation: the flag
  is handed to the fused kernel as ``found_inf``, which leaves weights, moments and step count
  untouched — the mechanism ``torch.amp.GradScaler`` uses;
* otherwise the flag is read on the host (free on a CPU) and the step is skipped by dropping the
  gradients (AdamW leaves parameters without a gradient alone).

``action="stop"`` raises :class:`NonFiniteLossError` naming the first bad step at the next check —
every ``check_every_n_steps`` steps and before every checkpoint is written, so no checkpoint ever
holds the state after a bad step. ``action="skip"`` keeps training and stops only after ``max_skips``
skipped steps. The EMA update that follows a skipped step sees unchanged weights.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import FSDPPrecision, MixedPrecision
from lightning.pytorch.strategies import DDPStrategy
from typing_extensions import override

from ..errors import DiffusionLMError


class NonFiniteLossError(DiffusionLMError):
    """Training produced a NaN/Inf loss or gradient."""


def _raw_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    return optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer


def supports_found_inf(optimizer: torch.optim.Optimizer) -> bool:
    """Fused Adam/AdamW/SGD kernels skip the update where ``found_inf`` is set (no host read)."""
    # torch sets this private flag on the instance of the optimizers whose step accepts grad_scale/found_inf
    return bool(vars(optimizer).get("_step_supports_amp_scaling", False)) and bool(optimizer.defaults.get("fused"))


class NonFiniteGuard(L.Callback):
    """Args:
        action: ``stop`` (raise at the next check, naming the first bad step) or ``skip`` (drop the step, go on).
        check_every_n_steps: Optimizer steps between host reads of the flag (``None`` = the trainer's
            ``log_every_n_steps``); a read also happens before every checkpoint.
        max_skips: With ``skip``, the number of skipped steps after which training stops anyway.
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop", check_every_n_steps: Optional[int] = None,
                 max_skips: int = 100) -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self.check_every_n_steps = check_every_n_steps
        self.max_skips = max_skips
        self._first_bad: torch.Tensor | None = None  # step of the first non-finite update, −1 = none
        self._skipped: torch.Tensor | None = None  # skipped steps since the start of this run
        self.skipped_steps = 0  # host copy, refreshed at every check

    def _state(self, device: torch.device) -> None:
        if self._first_bad is None or self._first_bad.device != device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=device)
            self._skipped = torch.zeros((), dtype=torch.long, device=device)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        plugin = trainer.precision_plugin
        if isinstance(plugin, (MixedPrecision, FSDPPrecision)) and plugin.scaler is not None:
            return  # fp16: the GradScaler already skips overflowing steps (and lowers its scale)
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        device = grads[0].device
        self._state(device)
        norms = torch._foreach_norm(grads)  # one pass over the gradients
        bad = (~torch.isfinite(torch.stack([n.to(device, torch.float32) for n in norms]).sum())).float()
        if trainer.world_size > 1 and not isinstance(trainer.strategy, DDPStrategy):
            bad = trainer.strategy.reduce(bad, reduce_op="max")  # sharded gradients (FSDP): agree on the flag
        step = trainer.global_step  # the step as logged (optimizer steps done before this one)
        self._first_bad = torch.where((bad > 0) & (self._first_bad < 0), step, self._first_bad)
        self._skipped += bad.long()
        opt = _raw_optimizer(optimizer)
        if supports_found_inf(opt):
            opt.found_inf = bad  # read by the fused kernel after this hook: the update is skipped on the device
        else:
            if bool(bad):  # host read: a synchronisation on GPUs, free on CPUs
                for group in opt.param_groups:
                    for p in group["params"]:
                        p.grad = None

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        every = self.check_every_n_steps or trainer.log_every_n_steps or 50
        if trainer.global_step % every == 0:
            self.check(trainer)

    @override
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.check(trainer)  # raising here keeps the file from being written

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Reads the flags (one host synchronisation) and raises if training must stop."""
        if self._first_bad is None:
            return
        first, skipped = (int(v) for v in torch.stack([self._first_bad, self._skipped]).tolist())
        self.skipped_steps = skipped
        if first < 0:
            return
        hint = ("Lower the learning rate, enable gradient clipping (trainer.gradient_clip_val), use bf16 instead of "
                "fp16, or inspect the data of that step")
        if self.action == "stop":
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {first} (epoch {trainer.current_epoch}); that update was not "
                f"applied and training stopped before writing any later checkpoint. {hint}. To skip such steps "
                "instead, add the callback diffusion_lm.callbacks.NonFiniteGuard with action: skip."
            )
        if skipped > self.max_skips:
            raise NonFiniteLossError(
                f"{skipped} training steps had a non-finite loss or gradient (the first at step {first}), more "
                f"than max_skips={self.max_skips}. {hint}."
            )
