"""Text-generation metrics used by the recipes: ``update(predictions, references)`` on strings."""

from __future__ import annotations

from collections.abc import Sequence

from torchmetrics import Metric
from torchmetrics.text import SacreBLEUScore


class SacreBLEU(SacreBLEUScore):
    """Corpus SacreBLEU (13a tokenisation by default, 0–100 scale) with multi-reference support.

    torchmetrics wants the same number of references per prediction; this pads with the first."""

    def __init__(self, tokenize: str = "13a", lowercase: bool = False, **kwargs) -> None:
        super().__init__(tokenize=tokenize, lowercase=lowercase, **kwargs)

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:  # type: ignore[override]
        width = max((len(r) for r in target), default=1)
        target = [list(r) + [r[0]] * (width - len(r)) for r in target]
        super().update(list(preds), target)

    def compute(self):  # noqa: D102
        return super().compute() * 100.0


def default_metrics() -> dict[str, Metric]:
    return {"bleu": SacreBLEU()}
