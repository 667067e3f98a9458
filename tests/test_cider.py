"""CIDEr / CIDEr-D: hand-computed values, and agreement with pycocoevalcap's Cider (which computes
CIDEr-D) on the same tokenised input to 1e-6 — synthetic corpora and, when present, real CommonGen."""

import gzip
import json
import math
import random

import pytest

from diffusion_lm.metrics import CIDEr, CIDErD
from diffusion_lm.metrics.cider import caption_tokens, cider, cider_d

from .real_data import real_data_root

pycoco = pytest.importorskip("pycocoevalcap.cider.cider")


def coco_score(cands: list[list[str]], refs: list[list[list[str]]]) -> tuple[float, list[float]]:
    """pycocoevalcap's score (it supports only n = 4: its n-gram extraction ignores ``n``)."""
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(c)] for i, c in enumerate(cands)}
    score, scores = pycoco.Cider().compute_score(gts, res)
    return float(score), [float(s) for s in scores]


def test_hand_computed_unigram_example():
    """Two examples, unigrams. df: a=1 b=1 c=2 d=1, |I| = 2 → idf a = b = d = ln 2, c = 0.
    A: "a b" vs "a b" → cos 1; vs "a c" → (ln2·ln2)/(√2 ln2 · ln2) = 1/√2  ⇒ (1 + 1/√2)/2.
    B: "c" has idf 0 everywhere → 0.  Corpus CIDEr = (1 + 1/√2)/4; CIDEr-D ×10 (no length penalty:
    coco-caption measures length in bigrams, of which unigram-only vectors have none)."""
    cands = [["a", "b"], ["c"]]
    refs = [[["a", "b"], ["a", "c"]], [["c", "d"]]]
    expected = (1 + 1 / math.sqrt(2)) / 4
    assert cider(cands, refs, n=1)[0] == pytest.approx(expected, abs=1e-12)
    assert cider_d(cands, refs, n=1)[0] == pytest.approx(10 * expected, abs=1e-12)


def test_cider_d_clips_repetition_and_penalises_length_but_cider_does_not():
    refs = [[["a", "man", "rides", "a", "horse"]], [["two", "dogs", "play"]], [["a", "cat", "sleeps"]]]
    good = [["a", "man", "rides", "a", "horse"], ["two", "dogs", "play"], ["a", "cat", "sleeps"]]
    repeated = [["man", "man", "man", "man", "man", "man", "man", "man"], *good[1:]]
    assert cider_d(repeated, refs)[1][0] < cider_d(good, refs)[1][0]
    long_good = [good[0] + ["a", "man", "rides", "a", "horse"] * 3, *good[1:]]
    # the reference repeated four times: plain CIDEr (cosine of TF-IDF vectors) barely notices,
    # CIDEr-D's clipping and Gaussian length penalty (Δ = 15 words, σ = 6) cut it to almost nothing
    assert cider(long_good, refs)[1][0] > 0.85 * cider(good, refs)[1][0]
    assert cider_d(long_good, refs)[1][0] < 0.02 * cider_d(good, refs)[1][0]


def _random_corpus(seed: int, n_examples: int):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30)] + ["the", "a", ".", ","]
    sent = lambda: [rng.choice(vocab) for _ in range(rng.randint(0, 14))]  # noqa: E731 — includes empty sentences
    cands = [sent() for _ in range(n_examples)]
    refs = [[sent() for _ in range(rng.randint(1, 5))] for _ in range(n_examples)]
    return cands, refs


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_pycocoevalcap_on_random_corpora(seed):
    cands, refs = _random_corpus(seed, 60)
    ours, ours_each = cider_d(cands, refs)
    theirs, theirs_each = coco_score(cands, refs)
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert ours_each == pytest.approx(theirs_each, abs=1e-6)


def test_metric_equals_function_across_updates():
    cands, refs = _random_corpus(7, 20)
    text = lambda toks: " ".join(toks)  # noqa: E731 — one-line local helper
    m = CIDErD()
    m.update([text(c) for c in cands[:8]], [[text(r) for r in rs] for rs in refs[:8]])
    m.update([text(c) for c in cands[8:]], [[text(r) for r in rs] for rs in refs[8:]])
    # the IDF is corpus-level: two updates score exactly like one corpus (not like two separate ones)
    assert m.compute().item() == pytest.approx(cider_d(cands, refs)[0], abs=1e-9)
    plain = CIDEr()
    plain.update([text(c) for c in cands], [[text(r) for r in rs] for rs in refs])
    assert plain.compute().item() == pytest.approx(cider(cands, refs)[0], abs=1e-9)


def test_caption_tokens():
    assert caption_tokens("The player's dog, running.") == ["The", "player's", "dog", ",", "running", "."]
    assert caption_tokens("A Dog", lowercase=True) == ["a", "dog"]


def test_agrees_with_pycocoevalcap_on_real_commongen():
    """Validation concept sets of the shipped CommonGen: the first reference of each set plays the system
    output, scored against all references (leave-nothing-out), through our tokenizer."""
    root = real_data_root()
    path = root / "commongen" / "validation.jsonl.gz" if root else None
    if path is None or not path.exists():
        pytest.skip("real CommonGen data not found (set DIFFUSION_LM_DATA)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(300), f)]
    cands = [caption_tokens(r["references"][-1]) for r in rows]
    refs = [[caption_tokens(s) for s in r["references"]] for r in rows]
    ours, theirs = cider_d(cands, refs)[0], coco_score(cands, refs)[0]
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert ours > 1.0  # a human sentence that is among the references scores high
