"""ROUGE-1/2/L F-measure (Lin 2004) as reported for XSum.

torchmetrics' implementation of Google's ``rouge_score`` rules: lower-case, non-alphanumerics become
spaces, Porter stemming of tokens longer than 3 characters (``nltk``'s stemmer is plain code, no data
download), ROUGE-L on the whole summary (not ``rougeLsum``, which needs NLTK's sentence splitter data).
With several references the best score per example is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.text import ROUGEScore

KEYS = ("rouge1", "rouge2", "rougeL")


class ROUGE(ROUGEScore):
    """``compute()`` → ``{"rouge1", "rouge2", "rougeL"}`` F-measures on a 0–100 scale.

    Args:
        use_stemmer: Porter-stem tokens (the XSum / PEGASUS / BART setting).
    """

    def __init__(self, use_stemmer: bool = True, **kwargs) -> None:
        super().__init__(use_stemmer=use_stemmer, rouge_keys=KEYS, accumulate="best", **kwargs)

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:  # type: ignore[override]
        super().update(list(preds), [list(r) for r in target])

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        scores = super().compute()
        return {k: scores[f"{k}_fmeasure"] * 100.0 for k in KEYS}
