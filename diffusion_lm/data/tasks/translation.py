"""Translation benchmarks: Multi30k, WMT14 (En↔De, En↔Fr), IWSLT14 (De↔En)."""

from __future__ import annotations

from typing import Any, Literal

from torchmetrics import Metric

from ...metrics.text import SacreBLEU, TokenizedBLEU
from ..seq2seq import Seq2SeqDataModule
from .common import no_local_train_hint


def _translation(row: dict, src_lang: str, tgt_lang: str) -> dict:
    """A Hub row with a ``translation`` dict (or top-level language fields) → local ``{src, tgt}``."""
    pair = row.get("translation", row)
    return {"src": pair[src_lang], "tgt": pair[tgt_lang]}


class Multi30k(Seq2SeqDataModule):
    """Multi30k task 1 (Elliott et al. 2016): 29k image captions, English ↔ German.

    Local layout: ``<root>/multi30k/{train,validation,test}.jsonl.gz`` with src = English, tgt = German;
    Hub fallback: ``bentrevett/multi30k`` (fields ``en``, ``de``). Metric: SacreBLEU (``bleu``).

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
        return _translation(row, "en", "de")


class WMT14(Seq2SeqDataModule):
    """WMT14 news translation (Bojar et al. 2014): newstest2013 validation, newstest2014 (full, 3,003) test.

    Local layout: ``<root>/wmt14_en_{de,fr}/{validation,test}.jsonl.gz`` (src = English); the training
    split comes from the Hub dataset ``wmt/wmt14`` (config ``de-en`` / ``fr-en``) or a local ``train.jsonl.gz``.
    Metrics: SacreBLEU 13a (``bleu``) and tokenised BLEU (``bleu_tok``: Moses tokens, with the ``##AT##``
    compound splitting of fairseq's En→De recipe when the target is German).

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
        self.target_lang = "en" if self.swap else other

    def from_hub_row(self, row: dict) -> dict:
        return _translation(row, "en", self.other)

    def missing_split_hint(self, split: str) -> str:
        return no_local_train_hint(self, split, f"run with network access (the Hub dataset wmt/wmt14, config "
                                                f"{self.hub_config}, is then downloaded automatically)")

    def task_metrics(self) -> dict[str, Metric]:
        return {"bleu": SacreBLEU(),
                "bleu_tok": TokenizedBLEU("moses", lang=self.target_lang, compound_split=self.target_lang == "de")}


class IWSLT14(Seq2SeqDataModule):
    """IWSLT14 German ↔ English, TED talks, in fairseq's ``prepare-iwslt14.sh`` preprocessing
    (Moses-tokenised, lower-cased): 160k training pairs, 7,283 validation, 6,750 test.

    Local layout: ``<root>/iwslt14_de_en/{validation,test}.jsonl.gz`` with src = German; the training split
    comes from the Hub dataset ``bbaaaa/iwslt14-de-en-preprocess`` (same preprocessing) or a local
    ``train.jsonl.gz`` written by fairseq's script. Metrics: tokenised BLEU on the already tokenised text
    (``bleu_tok``, the number IWSLT14 papers report) and SacreBLEU 13a of the same strings (``bleu``).

    Args:
        direction: ``de-en`` (default) or ``en-de``.
    """

    def __init__(self, direction: Literal["de-en", "en-de"] = "de-en", **kwargs: Any) -> None:
        kwargs["dataset"] = kwargs.get("dataset") or "iwslt14_de_en"
        kwargs["hub_id"] = kwargs.get("hub_id") or "bbaaaa/iwslt14-de-en-preprocess"
        kwargs["hub_config"] = kwargs.get("hub_config") or "de-en"
        kwargs["swap"] = direction == "en-de"
        super().__init__(**kwargs)
        self.direction = direction

    def from_hub_row(self, row: dict) -> dict:
        return _translation(row, "de", "en")

    def missing_split_hint(self, split: str) -> str:
        return no_local_train_hint(self, split, "run with network access (the Hub dataset "
                                                "bbaaaa/iwslt14-de-en-preprocess is then downloaded automatically) or "
                                                "prepare it with fairseq's examples/translation/prepare-iwslt14.sh")

    def task_metrics(self) -> dict[str, Metric]:
        return {"bleu_tok": TokenizedBLEU("none"), "bleu": SacreBLEU()}
