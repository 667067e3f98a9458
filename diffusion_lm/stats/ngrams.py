"""N-gram counts of token sequences (ids or words) and sentence-level BLEU from them.

The counts serve CIDEr (``metrics.cider``) and sentence BLEU; sentence BLEU serves MBR selection
(``diffusion.mbr``), which compares every pair of candidates, so each side is counted once.

BLEU = BP · exp(Σ_n log p_n / N)  (Papineni et al. 2002, eq. 1–2) with clipped n-gram precisions
p_n, brevity penalty BP = min(1, exp(1 − r / c)), NIST "exp" smoothing for orders without a match
(p_n = 1 / (2^k · total_n) for the k-th such order; Chen & Cherry 2014, method 3) and the effective
order N = the highest n with at least one hypothesis n-gram — the sentence-BLEU conventions of
sacrebleu's ``sentence_bleu``. Scale 0–100.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence


def ngram_counts(tokens: Sequence[Hashable], max_order: int = 4) -> list[Counter]:
    """Counts of the n-grams of ``tokens`` for n = 1 … ``max_order``: element n − 1 maps n-gram tuples to counts."""
    return [Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)) for n in range(1, max_order + 1)]


def sentence_bleu(hyp: Sequence[Hashable], ref: Sequence[Hashable], max_order: int = 4) -> float:
    return bleu_from_counts(ngram_counts(hyp, max_order), len(hyp), ngram_counts(ref, max_order), len(ref))


def bleu_from_counts(hyp_ngrams: list[Counter], hyp_len: int, ref_ngrams: list[Counter], ref_len: int) -> float:
    """BLEU from precomputed n-gram counts (MBR compares every pair, so each side is counted once)."""
    correct = [sum(min(c, r[g]) for g, c in h.items()) for h, r in zip(hyp_ngrams, ref_ngrams)]
    total = [max(0, hyp_len - n) for n in range(len(hyp_ngrams))]
    if hyp_len == 0 or not any(correct):
        return 0.0
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    log_sum, order, smooth = 0.0, 0, 1.0
    for c, t in zip(correct, total):
        if t == 0:
            break
        order += 1
        if c == 0:
            smooth *= 2
            log_sum += math.log(1.0 / (smooth * t))
        else:
            log_sum += math.log(c / t)
    return 100.0 * bp * math.exp(log_sum / order)
