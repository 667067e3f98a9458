"""XSum extreme summarisation (Narayan et al. 2018): one-sentence summaries of BBC articles."""

from __future__ import annotations

from typing import Any

from torchmetrics import Metric

from ...metrics.rouge import ROUGE
from ..seq2seq import Seq2SeqDataModule
from .common import no_local_train_hint


class XSum(Seq2SeqDataModule):
    """XSum: document → summary (204k train, 11,332 validation, 11,334 test).

    Local layout: ``<root>/xsum/test.jsonl.gz`` (the shipped copy holds a 1,000-example sample of the
    official test split, nothing else); train/validation come from the Hub dataset ``EdinburghNLP/xsum``
    (fields ``document``, ``summary``). Documents are long (≈ 430 words): they are cut to
    ``max_src_len`` tokens and summaries to ``max_tgt_len`` (512 / 64 in ``experiments/xsum``), and the
    number of truncated examples is logged per split.
    Metric: ROUGE-1/2/L F1 with stemming (``rouge1``, ``rouge2``, ``rougeL``).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs["dataset"] = kwargs.get("dataset") or "xsum"
        kwargs["hub_id"] = kwargs.get("hub_id") or "EdinburghNLP/xsum"
        super().__init__(**kwargs)

    def from_hub_row(self, row: dict) -> dict:
        return {"src": row["document"], "tgt": row["summary"], "id": row.get("id")}

    def missing_split_hint(self, split: str) -> str:
        how = "run with network access (the Hub dataset EdinburghNLP/xsum is then downloaded automatically)"
        smoke = "--data.init_args.splits='{train: test, validation: test}'"
        if split == "validation":
            return f"The local copy of XSum has only a 1,000-example test sample: {how}, or for a smoke run only use {smoke}."
        return no_local_train_hint(self, split, how, smoke)

    def task_metrics(self) -> dict[str, Metric]:
        return {"rouge": ROUGE()}
