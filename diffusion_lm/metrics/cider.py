"""CIDEr and CIDEr-D (Vedantam, Zitnick & Parikh 2015, "CIDEr: Consensus-based Image Description
Evaluation"), corpus-level, as CommonGen evaluates them.

For every example i with candidate c_i and references S_i = {s_i1 … s_im}, each sentence is turned
into TF-IDF vectors g^n over its n-grams (n = 1…4):

    g^n_k(s) = h_k(s) · log(|I| / max(1, df_k))                            (Eq. 1)

with h_k the count of n-gram k in s, |I| the number of examples in the corpus and df_k the number
of examples whose *references* contain k (the IDF is corpus-level: all examples, all ranks).

    CIDEr_n(c, S)   = 1/m Σ_j  g^n(c)·g^n(s_j) / (‖g^n(c)‖ ‖g^n(s_j)‖)            (Eq. 2)
    CIDEr(c, S)     = 1/N Σ_n CIDEr_n                                          (Eq. 3)
    CIDEr-D_n(c, S) = 10/m Σ_j exp(−Δ_j² / 2σ²) · Σ_k min(g^n_k(c), g^n_k(s_j)) g^n_k(s_j)
                                                   / (‖g^n(c)‖ ‖g^n(s_j)‖)      (Eq. 4)
    CIDEr-D(c, S)   = 1/N Σ_n CIDEr-D_n,   σ = 6

CIDEr-D adds to CIDEr (i) the clipping ``min(g(c), g(s))`` so that repeating a frequent n-gram does not
pay, (ii) the Gaussian length penalty on Δ = l(c) − l(s), and (iii) the factor 10. The corpus score is
the mean over examples.

``pycocoevalcap.cider.Cider`` — the scorer the COCO-caption and CommonGen evaluations call "CIDEr" —
computes **CIDEr-D** exactly as above; :func:`cider_d` reproduces it to floating-point precision
(tested), including its length convention: l(s) is the number of *bigrams* of s, which equals the
word-length difference for non-empty sentences. :func:`cider` is the plain CIDEr of Eq. 3 (no clipping,
no penalty, no factor 10), for comparison with papers that report it.

Sentences are tokenised by :func:`caption_tokens` (words and punctuation split apart, in the spirit
of the PTB/spaCy tokenisation those evaluations run first; pycocoevalcap's own PTB tokenizer needs Java).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

from ..stats.ngrams import ngram_counts
from .corpus import CorpusMetric

Ngrams = list[Counter]  # per order n = 1 … N: n-gram tuple → count

_TOKEN = re.compile(r"[A-Za-z0-9\u00C0-\uFFFF]+(?:['’][A-Za-z]+)?|[^\sA-Za-z0-9\u00C0-\uFFFF]")


def caption_tokens(text: str, lowercase: bool = False) -> list[str]:
    """Words (with an attached clitic such as ``'s``) and single punctuation marks."""
    return _TOKEN.findall(text.lower() if lowercase else text)


def _tfidf(counts: Ngrams, df: Counter, log_n_docs: float, n: int) -> tuple[list[dict], list[float]]:
    """TF-IDF vector and its norm per n-gram order (Eq. 1)."""
    vec = [{gram: tf * (log_n_docs - math.log(max(1.0, df[gram]))) for gram, tf in order.items()} for order in counts[:n]]
    return vec, [math.sqrt(sum(v * v for v in order.values())) for order in vec]


def _bigram_length(counts: Ngrams) -> int:
    """coco-caption's sentence length for the CIDEr-D penalty: the number of bigrams."""
    return sum(counts[1].values()) if len(counts) > 1 else 0


def _document_frequency(refs: list[list[Ngrams]]) -> Counter:
    df: Counter = Counter()
    for example_refs in refs:
        df.update({gram for r in example_refs for order in r for gram in order})
    return df


def _scores(cands: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int, sigma: float,
            clipped: bool) -> list[float]:
    if len(cands) != len(refs):
        raise ValueError(f"{len(cands)} candidates but {len(refs)} reference lists")
    if any(len(r) == 0 for r in refs):
        raise ValueError("every example needs at least one reference")
    c_counts = [ngram_counts(c, n) for c in cands]
    r_counts = [[ngram_counts(r, n) for r in rs] for rs in refs]
    df = _document_frequency(r_counts)
    log_n_docs = math.log(float(len(cands)))
    scores = []
    for cc, rcs in zip(c_counts, r_counts):
        vc, nc = _tfidf(cc, df, log_n_docs, n)
        total = 0.0
        for rc in rcs:
            vr, nr = _tfidf(rc, df, log_n_docs, n)
            penalty = math.exp(-((_bigram_length(cc) - _bigram_length(rc)) ** 2) / (2 * sigma**2)) if clipped else 1.0
            for k in range(n):
                if nc[k] == 0 or nr[k] == 0:
                    continue
                if clipped:
                    dot = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vc[k].items())
                else:
                    dot = sum(w * vr[k].get(g, 0.0) for g, w in vc[k].items())
                total += penalty * dot / (nc[k] * nr[k]) / n  # mean over n-gram orders
        scores.append(total / len(rcs) * (10.0 if clipped else 1.0))
    return scores


def cider_d(cands: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int = 4,
            sigma: float = 6.0) -> tuple[float, list[float]]:
    """Corpus CIDEr-D (Eq. 4) of tokenised candidates against tokenised references: (mean, per example)."""
    s = _scores(cands, refs, n, sigma, clipped=True)
    return (sum(s) / len(s) if s else 0.0), s


def cider(cands: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int = 4) -> tuple[float, list[float]]:
    """Corpus CIDEr (Eq. 3, no clipping, no length penalty): (mean, per example)."""
    s = _scores(cands, refs, n, 0.0, clipped=False)
    return (sum(s) / len(s) if s else 0.0), s


class CIDErD(CorpusMetric):
    """CIDEr-D as a torchmetrics Metric (the number pycocoevalcap's ``Cider`` gives on the same tokens).

    Every prediction and its references are kept (and all-gathered under DDP) because the IDF is
    computed over the whole corpus on ``compute()``.

    Args:
        n: Longest n-gram.
        sigma: Standard deviation of the Gaussian length penalty.
        lowercase: Lower-case before tokenising.
    """

    def __init__(self, n: int = 4, sigma: float = 6.0, lowercase: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n, self.sigma, self.lowercase = n, sigma, lowercase

    def tokenized_corpus(self) -> tuple[list[list[str]], list[list[list[str]]]]:
        preds, refs = self.corpus()
        tok = lambda s: caption_tokens(s, self.lowercase)  # noqa: E731 — one-line local helper
        return [tok(p) for p in preds], [[tok(r) for r in rs] for rs in refs]

    def compute(self) -> torch.Tensor:
        cands, refs = self.tokenized_corpus()
        return torch.tensor(cider_d(cands, refs, self.n, self.sigma)[0] if cands else 0.0, dtype=torch.float64)


class CIDEr(CIDErD):
    """Plain CIDEr (Eq. 3): cosine similarity of TF-IDF n-gram vectors, no clipping, no length penalty."""

    def compute(self) -> torch.Tensor:
        cands, refs = self.tokenized_corpus()
        return torch.tensor(cider(cands, refs, self.n)[0] if cands else 0.0, dtype=torch.float64)
