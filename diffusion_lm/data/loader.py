"""A training DataLoader whose position in the epoch is saved in the checkpoint.

Lightning stores ``state_dict()`` of every train loader that has one (``fit_loop`` → ``combined_loader``)
and calls ``load_state_dict()`` on resume *before* it creates the iterator. The state is the epoch and
the number of batches handed to the training loop so far (counted in the main process, after the
workers, so prefetched batches do not count); on load the :class:`~diffusion_lm.data.sampler.BucketBatchSampler`
skips exactly those batches of exactly that epoch's order, and the run continues with the batch the
killed run would have trained on next.

The loader also times how long the training loop waits for each batch (``wait_seconds``), which the
throughput monitor reports as ``throughput/data_wait``; a value near 0 means the GPU never starves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a batch sampler with ``epoch``/``start_batch`` (``BucketBatchSampler``).

    Worker seeds come from the loader's own generator, so creating an iterator draws nothing from the
    global torch stream (which the training step uses and :class:`~diffusion_lm.callbacks.RNGState` restores).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator().manual_seed(0)
        super().__init__(*args, **kwargs)
        self.batches_served = 0  # batches of the current epoch handed to the training loop
        self.wait_seconds = 0.0

    def __iter__(self) -> Iterator[Any]:
        sampler = self.batch_sampler
        self.batches_served = getattr(sampler, "start_batch", 0)
        iterator = super().__iter__()
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.wait_seconds += time.perf_counter() - t0
            self.batches_served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(getattr(self.batch_sampler, "epoch", 0)), "batches_served": self.batches_served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.batch_sampler
        if not hasattr(sampler, "start_batch"):
            return
        sampler.epoch = state["epoch"]
        sampler.start_batch = state["batches_served"]
        self.batches_served = state["batches_served"]
