"""CorpusMetric: keeps every prediction and its references, all-gathered under DDP.

Some metrics must see the whole corpus at once: CIDEr's IDF is computed over all references,
and metrics from the Hugging Face ``evaluate`` library take plain lists of strings. torchmetrics
can only all-gather tensors, so the strings are stored as UTF-8 bytes (``uint8``) plus lengths;
``dist_reduce_fx="cat"`` concatenates them rank by rank, and :meth:`corpus` decodes them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def encode_strings(strings: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Strings → (concatenated UTF-8 bytes (N,) uint8, byte length of each string (S,) int64)."""
    raw = [s.encode("utf-8") for s in strings]
    data = torch.frombuffer(bytearray(b"".join(raw)), dtype=torch.uint8) if any(raw) else torch.zeros(0, dtype=torch.uint8)
    return data.clone(), torch.tensor([len(b) for b in raw], dtype=torch.long)


def decode_strings(data: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    raw = bytes(data.cpu().tolist())
    out, pos = [], 0
    for n in lengths.tolist():
        out.append(raw[pos : pos + n].decode("utf-8"))
        pos += n
    return out


class CorpusMetric(Metric):
    """Base class: ``update(predictions, references)`` stores the strings; subclasses implement
    ``compute`` with ``self.corpus()`` → (predictions, references) of every rank, in rank order."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("pred_bytes", "pred_lens", "ref_bytes", "ref_lens", "ref_counts"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
        pb, pl = encode_strings(predictions)
        rb, rl = encode_strings([r for refs in references for r in refs])
        for name, value in (("pred_bytes", pb), ("pred_lens", pl), ("ref_bytes", rb), ("ref_lens", rl),
                            ("ref_counts", torch.tensor([len(r) for r in references], dtype=torch.long))):
            getattr(self, name).append(value.to(self.device))

    def corpus(self) -> tuple[list[str], list[list[str]]]:
        if isinstance(self.pred_lens, list) and not self.pred_lens:
            return [], []
        preds = decode_strings(dim_zero_cat(self.pred_bytes), dim_zero_cat(self.pred_lens))
        flat = decode_strings(dim_zero_cat(self.ref_bytes), dim_zero_cat(self.ref_lens))
        refs, pos = [], 0
        for k in dim_zero_cat(self.ref_counts).tolist():
            refs.append(flat[pos : pos + k])
            pos += k
        return preds, refs
