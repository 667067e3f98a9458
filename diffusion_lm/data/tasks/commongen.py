"""CommonGen (Lin et al. 2020): generate an everyday sentence that uses every concept of a set."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from torchmetrics import Metric

from ...errors import DataError
from ...metrics.cider import CIDErD
from ...metrics.text import SacreBLEU
from ..seq2seq import Seq2SeqDataModule


class CommonGen(Seq2SeqDataModule):
    """Concept set → sentence; evaluation is multi-reference: one example per concept set, all human
    sentences as references.

    Local layout (v1.0, public test references): ``<root>/commongen/train.jsonl.gz`` (one row per (set,
    sentence) pair) and ``{validation,test}.jsonl.gz`` (one row per set, ``references`` = all sentences).
    Hub fallback: ``allenai/common_gen`` (v1.1; its rows are pairs, grouped here by ``concept_set_idx``;
    its test references are hidden, so it has no usable test split). Metrics: CIDEr-D as in the
    CommonGen / COCO evaluation (``cider``, pycocoevalcap scale) and multi-reference SacreBLEU (``bleu``).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs["dataset"] = kwargs.get("dataset") or "commongen"
        kwargs["hub_id"] = kwargs.get("hub_id") or "allenai/common_gen"
        super().__init__(**kwargs)

    def required_fields(self) -> list[str]:
        return [self.src_field, self.tgt_field]  # `references` exists only in the evaluation splits

    def to_example(self, row: dict) -> dict:
        refs = [str(r) for r in row.get("references") or [row[self.tgt_field]]]
        return {"src": str(row[self.src_field]), "tgt": str(row[self.tgt_field]), "refs": refs}

    def hub_rows(self, split_file: str) -> list[dict]:
        import datasets

        ds = datasets.load_dataset(self.hub_id, self.hub_config, split=split_file)
        if split_file == "train":
            return [{"src": " ".join(r["concepts"]), "tgt": r["target"]} for r in ds]
        groups: dict[int, dict] = defaultdict(lambda: {"references": []})
        for r in ds:
            g = groups[r["concept_set_idx"]]
            g["src"] = " ".join(r["concepts"])
            if r["target"]:
                g["references"].append(r["target"])
        rows = [dict(g, tgt=g["references"][0]) for g in groups.values() if g["references"]]
        if not rows:
            raise DataError(f"the Hub split {split_file!r} of {self.hub_id} has no references (hidden test set): "
                            "evaluate on validation, or on the local v1.0 test split")
        return rows

    def task_metrics(self) -> dict[str, Metric]:
        return {"cider": CIDErD(), "bleu": SacreBLEU()}
