"""SQuAD v1.1 (Rajpurkar et al. 2016) as generation: question + paragraph → answer span text."""

from __future__ import annotations

from typing import Any

from torchmetrics import Metric

from ...metrics.squad import SQuADScore
from ..seq2seq import Seq2SeqDataModule


class SQuAD(Seq2SeqDataModule):
    """Input ``question: … context: …`` (the question first, so that truncating a long paragraph to
    ``max_src_len`` tokens cuts the end of the context, never the question); target = the first gold
    answer; references = all gold answers (3.3 per dev question on average) for EM/F1.

    Local layout: ``<root>/squad_v1.1/{train,validation}.jsonl.gz`` with ``question``, ``context`` and
    ``answers.text`` (the shipped train is the first 44 of 442 articles, 11,877 questions; validation is the
    full official dev set, which is also the test set: ``splits.test: validation`` in the config).
    Hub fallback: ``rajpurkar/squad`` (same fields). Metrics: ``exact_match`` and ``f1`` (official rules).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs["dataset"] = kwargs.get("dataset") or "squad_v1.1"
        kwargs["hub_id"] = kwargs.get("hub_id") or "rajpurkar/squad"
        super().__init__(**kwargs)

    def required_fields(self) -> list[str]:
        return ["question", "context", "answers"]

    def to_example(self, row: dict) -> dict:
        answers = [str(a) for a in row["answers"]["text"]]
        src = f"question: {row['question'].strip()} context: {row['context'].strip()}"
        return {"src": src, "tgt": answers[0] if answers else "", "refs": answers or [""]}

    def task_metrics(self) -> dict[str, Metric]:
        return {"squad": SQuADScore()}
