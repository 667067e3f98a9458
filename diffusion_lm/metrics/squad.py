"""SQuAD v1.1 exact match and F1 (Rajpurkar et al. 2016), the official ``evaluate-v1.1.py`` rules:
answers are normalised (lower-case, punctuation and the articles a/an/the removed, whitespace
collapsed); EM and token-level F1 take the maximum over all gold answers; both are averaged over
questions and reported on a 0–100 scale."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics import Metric

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


class SQuADScore(Metric):
    """``update(predictions, references)`` with all gold answers of a question as its references;
    ``compute()`` → ``{"exact_match", "f1"}``. Sums are all-reduced under DDP."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("em_sum", "f1_sum", "total"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        for pred, golds in zip(predictions, references, strict=True):
            if not golds:
                raise ValueError("a SQuAD question needs at least one gold answer")
            self.em_sum += max(exact_match(pred, g) for g in golds)
            self.f1_sum += max(f1(pred, g) for g in golds)
            self.total += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.total.clamp_min(1)
        return {"exact_match": 100.0 * self.em_sum / n, "f1": 100.0 * self.f1_sum / n}
