"""Benchmarks as DataModules: each one fixes the folder, the Hub id, the field mapping and the direction."""

from __future__ import annotations

from typing import Any, Literal

from .seq2seq import Seq2SeqDataModule


class Multi30k(Seq2SeqDataModule):
    """Multi30k task 1 (Elliott et al. 2016): 29k image captions, English ↔ German.

    Local layout: ``<root>/multi30k/{train,validation,test}.jsonl.gz`` with src = English, tgt = German;
    Hub fallback: ``bentrevett/multi30k`` (fields ``en``, ``de``).

    Args:
        direction: ``en-de`` (default) or ``de-en``.
    """

    def __init__(self, direction: Literal["en-de", "de-en"] = "en-de", **kwargs: Any) -> None:
        kwargs["dataset"] = kwargs.get("dataset") or "multi30k"
        kwargs["hub_id"] = kwargs.get("hub_id") or "bentrevett/multi30k"
        kwargs["swap"] = direction == "de-en"
        super().__init__(**kwargs)
        self.direction = direction

    def from_hub_row(self, row: dict) -> dict:
        return {"src": row["en"], "tgt": row["de"]}


class WMT14(Seq2SeqDataModule):
    """WMT14 news translation (Bojar et al. 2014): newstest2013 validation, newstest2014 test.

    Local layout: ``<root>/wmt14_{en_de,en_fr}/{train,validation,test}.jsonl.gz`` (src = English);
    the training split normally comes from the Hub dataset ``wmt/wmt14`` (config ``de-en`` / ``fr-en``).

    Args:
        pair: ``en-de`` or ``en-fr`` (the language pair).
        direction: ``forward`` (English → other) or ``reverse``.
    """

    def __init__(self, pair: Literal["en-de", "en-fr"] = "en-de", direction: Literal["forward", "reverse"] = "forward",
                 **kwargs: Any) -> None:
        other = pair.split("-")[1]
        kwargs["dataset"] = kwargs.get("dataset") or f"wmt14_en_{other}"
        kwargs["hub_id"] = kwargs.get("hub_id") or "wmt/wmt14"
        kwargs["hub_config"] = kwargs.get("hub_config") or f"{other}-en"
        kwargs["swap"] = direction == "reverse"
        super().__init__(**kwargs)
        self.pair, self.other = pair, other

    def from_hub_row(self, row: dict) -> dict:
        return {"src": row["translation"]["en"], "tgt": row["translation"][self.other]}
