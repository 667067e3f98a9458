"""Random-number streams that survive a resume, and that differ between DDP ranks.

Lightning restores weights, optimizer, LR schedule, loops and callbacks from a checkpoint, but
not the RNG streams; without them a resumed run draws other timesteps, noise and dropout masks
than the run it continues. :class:`RNGState` stores every rank's streams (torch CPU and CUDA,
NumPy, Python) in the checkpoint — gathered from all ranks, in a form ``torch.load(weights_only=True)``
accepts — and puts them back right before the first training batch after the resume, the same
point of the computation at which they were saved.

In a fresh multi-process run it also gives each rank its own stream on the training device
(``seed + rank``): with ``seed_everything`` alone every rank would draw the *same* timesteps and
noise for its examples, so DDP would not be the larger batch it stands for. The CPU stream (which
decides, e.g., whether a step runs the self-conditioning pass) stays shared on GPUs, so all ranks
take the same branch and none waits for another.

The data order is restored by the loader itself (:class:`~diffusion_lm.data.loader.ResumableDataLoader`).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from typing_extensions import override


def collect_rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class RNGState(L.Callback):
    """Args:
        per_rank_streams: In a fresh multi-process run, reseed the device stream with ``seed + rank``.
    """

    KEY = "rng_states"

    def __init__(self, per_rank_streams: bool = True) -> None:
        self.per_rank_streams = per_rank_streams
        self._pending: list[dict[str, Any]] | None = None
        self._started = False

    @override
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = collect_rng_states()
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)  # every rank runs this hook when a checkpoint is written
        else:
            states = [state]
        checkpoint[self.KEY] = states

    @override
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(self.KEY)

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._started:
            return
        self._started = True
        rank, world = trainer.global_rank, trainer.world_size
        if self._pending is not None:
            if len(self._pending) == world:
                set_rng_states(self._pending[rank])
            else:
                from lightning.pytorch.utilities import rank_zero_warn

                rank_zero_warn(f"the checkpoint holds RNG streams of {len(self._pending)} ranks but {world} are running: "
                               "the data order is restored, the random draws continue from fresh streams")
                self._reseed(pl_module.device, rank)
            self._pending = None
        elif self.per_rank_streams and world > 1:
            self._reseed(pl_module.device, rank)

    @staticmethod
    def _reseed(device: torch.device, rank: int) -> None:
        if device.type == "cuda":
            torch.cuda.manual_seed(torch.cuda.initial_seed() + rank)
        else:
            torch.manual_seed(torch.initial_seed() + rank)
