"""BLEU for the recipes: ``update(predictions, references)`` on strings.

BLEU is Papineni et al. 2002 (modified n-gram precisions, brevity penalty). Two BLEUs are reported and must
not be confused:

* :class:`SacreBLEU` — detokenised corpus BLEU with SacreBLEU's ``13a`` tokenisation (Post 2018):
  the comparable number, logged as ``bleu``.
* :class:`TokenizedBLEU` — BLEU on whitespace tokens after Moses tokenisation (``multi-bleu.perl`` /
  ``fairseq-score`` style), optionally with the ``##AT##`` compound splitting of the fairseq WMT14
  En-De recipe: the number older diffusion papers (DiffuSeq, Difformer, SeqDiffuSeq, DINOISER …)
  report, logged as ``bleu_tok``. It depends on the tokenisation and is usually higher than SacreBLEU.
  On data that is already tokenised (the fairseq IWSLT14 files) use ``tokenize="none"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import Literal

from torchmetrics import Metric
from torchmetrics.text import SacreBLEUScore


class SacreBLEU(SacreBLEUScore):
    """Corpus SacreBLEU (13a tokenisation by default, 0–100 scale) with multi-reference support.

    The brevity penalty's reference length r is, per sentence, the length of the reference closest to the
    hypothesis, the *shorter* one when two are equally close (sacrebleu's ``BLEU._get_closest_ref_len``).
    torchmetrics takes the first of the closest, so the references are handed over shortest first (in
    tokens); their n-gram counts are merged by a maximum, which no order changes. torchmetrics also wants
    the same number of references per prediction: the list is padded with the shortest, which changes
    neither the counts nor r."""

    def __init__(self, tokenize: str = "13a", lowercase: bool = False, **kwargs) -> None:
        super().__init__(tokenize=tokenize, lowercase=lowercase, **kwargs)

    def reference_length(self, ref: str) -> int:
        """Tokens of ``ref`` as torchmetrics counts them (an empty string has none)."""
        return len(self.tokenizer(ref)) if ref else 0

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:  # type: ignore[override]
        target = [sorted(refs, key=self.reference_length) for refs in target]  # stable: order kept on ties
        width = max((len(r) for r in target), default=1)
        target = [r + [r[0]] * (width - len(r)) for r in target]
        super().update(list(preds), target)

    def compute(self):  # noqa: D102 — torchmetrics' compute, rescaled to percent
        return super().compute() * 100.0


_COMPOUND = re.compile(r"(\S)-(\S)")


class TokenizedBLEU(SacreBLEU):
    """Tokenised BLEU: BLEU over the tokens of ``tokenize`` with no further tokenisation.

    Args:
        tokenize: ``moses`` (sacremoses, aggressive dash splits as in fairseq's WMT preparation) or
            ``none`` (the text is already tokenised: split on whitespace).
        lang: Moses language code of the target side.
        compound_split: Split ``a-b`` into ``a ##AT##-##AT## b`` (fairseq's ``compound_split_bleu.sh``,
            used for WMT14 En-De results).
        lowercase: Lower-case hypotheses and references.
    """

    def __init__(self, tokenize: Literal["moses", "none"] = "moses", lang: str = "en", compound_split: bool = False,
                 lowercase: bool = False, **kwargs) -> None:
        super().__init__(tokenize="none", lowercase=lowercase, **kwargs)
        self.pre_tokenize, self.lang, self.compound_split = tokenize, lang, compound_split

    @cached_property
    def _moses(self):
        from sacremoses import MosesTokenizer

        return MosesTokenizer(lang=self.lang)

    def tokens(self, text: str) -> str:
        if self.pre_tokenize == "moses":
            text = self._moses.tokenize(text, aggressive_dash_splits=True, return_str=True, escape=False)
        text = " ".join(text.split())
        if self.compound_split:
            text = _COMPOUND.sub(r"\1 ##AT##-##AT## \2", text)
        return text

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:  # type: ignore[override]
        super().update([self.tokens(p) for p in preds], [[self.tokens(r) for r in refs] for refs in target])


def default_metrics() -> dict[str, Metric]:
    return {"bleu": SacreBLEU()}
