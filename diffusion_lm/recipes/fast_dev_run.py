"""Smoke-run batches: under ``trainer.fast_dev_run`` every batch is cut to its first rows.

Lightning's ``fast_dev_run`` runs one batch of each loop to show that the code paths work. The benchmark
configs size their batches for GPUs (16k–64k padded tokens, d512–d768 denoisers, 20 DDIM steps over the
validation batch): on a CPU that single training step and validation batch take minutes. A smoke run tests
the code, not the throughput, so the recipe cuts each batch to the first rows that fit
:data:`FAST_DEV_RUN_TOKENS` padded tokens (at least one row). Runs without ``fast_dev_run`` never pass here.
"""

from __future__ import annotations

from typing import Any

import torch

FAST_DEV_RUN_TOKENS = 512  # padded tokens a smoke-run batch keeps (one row when a single row is longer)


def head_rows(batch: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The first rows of a collated batch that fit ``max_tokens`` padded tokens (at least one).

    Per-row entries (tensors and lists whose first dimension is the batch size B) are cut; ``target_index``
    (flat positions row · L + column of the target, in row order) keeps the positions of the kept rows;
    anything else is passed through."""
    B, L = batch["input_ids"].shape  # (B, L)
    keep = max(1, min(B, max_tokens // L))
    if keep == B:
        return batch
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "target_index":
            out[key] = value[value < keep * L]  # (N',) a prefix: the positions are sorted by row
        elif (torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == B) or (
                isinstance(value, (list, tuple)) and len(value) == B):
            out[key] = value[:keep]
        else:
            out[key] = value
    return out
