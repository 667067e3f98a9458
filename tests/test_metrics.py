"""Text metrics against values computed by hand, the string state that makes corpus metrics
DDP-correct, and the optional ``evaluate`` backend."""

import math
import socket

import pytest
import torch

from diffusion_lm.metrics import ROUGE, CorpusMetric, SacreBLEU, SQuADScore, TokenizedBLEU
from diffusion_lm.metrics.corpus import decode_strings, encode_strings
from diffusion_lm.metrics.hub import HubMetric, load_hub_metrics


def test_sacrebleu_hand_computed():
    # p1..p4 = 4/5, 3/4, 2/3, 1/2; equal lengths → BP = 1; BLEU = (4/5·3/4·2/3·1/2)^(1/4)
    m = SacreBLEU()
    m.update(["a b c d e"], [["a b c d f"]])
    assert m.compute().item() == pytest.approx(100 * 0.2**0.25, abs=1e-3)


def test_sacrebleu_multi_reference_takes_the_matching_one():
    m = SacreBLEU()
    m.update(["the cat sat on the mat"], [["a dog ran", "the cat sat on the mat"]])
    assert m.compute().item() == pytest.approx(100.0)


def test_sacrebleu_length_tie_takes_the_shorter_reference():
    """Two references one token from the hypothesis, one longer and one shorter: r is the shorter (no brevity
    penalty), as in sacrebleu, in whichever order they come."""
    from sacrebleu import corpus_bleu

    hyp = ["the cat sat on the mat"]
    for refs in (["the cat sat on the mat today", "the cat sat on mat"], ["the cat sat on mat", "the cat sat on the mat today"]):
        m = SacreBLEU()
        m.update(hyp, [refs])
        assert m.compute().item() == pytest.approx(corpus_bleu(hyp, [[r] for r in refs]).score, abs=1e-4)
        assert m.compute().item() == pytest.approx(100.0)


def test_sacrebleu_matches_sacrebleu_on_a_corpus_with_length_ties():
    """Ragged reference lists (padded for torchmetrics) with length ties in either order."""
    import random

    from sacrebleu import corpus_bleu

    rng = random.Random(0)
    words = "a the cat dog sat ran on mat rug today fast".split()
    preds, refs = [], []
    for _ in range(60):
        hyp = rng.choices(words, k=rng.randint(4, 9))
        preds.append(" ".join(hyp))
        # edits of the hypothesis: one word shorter and one longer (a tie), and some others
        variants = [hyp[:-1], hyp + [rng.choice(words)]] + [
            [w if rng.random() < 0.8 else rng.choice(words) for w in hyp] + rng.choices(words, k=rng.randint(0, 2))
            for _ in range(rng.randint(0, 2))]
        rng.shuffle(variants)
        refs.append([" ".join(v) for v in variants])
    m = SacreBLEU()
    m.update(preds, refs)
    width = max(len(r) for r in refs)
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(width)]  # sacrebleu: None = no reference
    assert m.compute().item() == pytest.approx(corpus_bleu(preds, streams).score, abs=1e-4)


def test_tokenized_bleu_tokens():
    moses = TokenizedBLEU("moses", lang="en")
    assert moses.tokens("Hello, world!") == "Hello , world !"
    assert moses.tokens("a well-known fact") == "a well @-@ known fact"
    split = TokenizedBLEU("moses", lang="de", compound_split=True)
    assert split.tokens("ein gut-bekannter Fakt") == "ein gut @ ##AT##-##AT## @ bekannter Fakt"
    assert TokenizedBLEU("none").tokens("it &apos;s  a  test .") == "it &apos;s a test ."


def test_tokenized_bleu_differs_from_sacrebleu_when_tokenisation_matters():
    # tokenised text: "none" counts `&apos;s` as one token; 13a splits it into `& apos ; s`
    hyp, ref = ["it &apos;s a dog"], [["it &apos;s a cat"]]
    tok, sacre = TokenizedBLEU("none"), SacreBLEU()
    tok.update(hyp, ref)
    sacre.update(hyp, ref)
    # tokens: p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 → 0 without smoothing
    assert tok.compute().item() == pytest.approx(0.0)
    assert sacre.compute().item() > 50  # 7 of 8 13a tokens match


def test_rouge_hand_computed():
    # stemmed: "the cat are run" vs "the cat run": P = 3/4, R = 1 → F = 6/7; bigrams 1/3 vs 1/2 → F = 0.4;
    # the other reference ("a cat is run fast") scores lower on every key and is not kept.
    m = ROUGE()
    m.update(["the cats are running"], [["a cat is running fast", "the cat runs"]])
    out = m.compute()
    assert out["rouge1"].item() == pytest.approx(100 * 6 / 7, abs=1e-3)
    assert out["rouge2"].item() == pytest.approx(40.0, abs=1e-3)
    assert out["rougeL"].item() == pytest.approx(100 * 6 / 7, abs=1e-3)


def test_squad_hand_computed():
    m = SQuADScore()
    m.update(["the Denver Broncos", "Denver"], [["Denver Broncos", "Broncos"], ["Denver Broncos"]])
    out = m.compute()
    assert out["exact_match"].item() == pytest.approx(50.0)
    assert out["f1"].item() == pytest.approx(100 * (1 + 2 / 3) / 2)  # second: P = 1, R = 1/2


def test_squad_normalisation_and_max_over_golds():
    m = SQuADScore()
    m.update(["An apple!"], [["banana", "apple"]])
    assert m.compute()["exact_match"].item() == 100.0


@pytest.mark.parametrize("strings", [["", "é ü 漢字", "a\nb"], [], ["x"]])
def test_string_encoding_round_trip(strings):
    assert decode_strings(*encode_strings(strings)) == strings


class _Collect(CorpusMetric):
    def compute(self):
        return self.corpus()


def test_corpus_metric_keeps_order_and_reference_groups():
    m = _Collect()
    m.update(["p1", "p2"], [["r1a", "r1b"], ["r2"]])
    m.update(["p3"], [["r3a", "r3b", "r3c"]])
    assert m.compute() == (["p1", "p2", "p3"], [["r1a", "r1b"], ["r2"], ["r3a", "r3b", "r3c"]])
    m.reset()
    assert m.compute() == ([], [])


EXACT_SCRIPT = '''
import datasets
import evaluate

class Exact(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="exact", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        hits = [float(p in r) for p, r in zip(predictions, references)]
        return {"exact": sum(hits) / len(hits), "per_example": hits, "note": "not a number"}
'''


def test_hub_metric_through_evaluate_with_a_local_module(tmp_path, monkeypatch):
    """The `evaluate` path end to end, offline: a local metric script instead of a Hub one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    script = tmp_path / "exact.py"
    script.write_text(EXACT_SCRIPT)
    try:
        m = HubMetric(str(script))
    except Exception as e:  # noqa: BLE001 — any failure to load the module means evaluate cannot run it here
        pytest.skip(f"evaluate cannot load a local module here: {e}")
    m.update(["a", "b"], [["a"], ["c", "d"]])
    m.update(["c"], [["c"]])
    out = m.compute()
    assert out["exact"].item() == pytest.approx(2 / 3)
    assert out["exact_per_example"].item() == pytest.approx(2 / 3)  # lists of numbers are averaged
    assert "exact_note" not in out


def test_unloadable_hub_metric_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    with caplog.at_level("WARNING"):
        metrics = load_hub_metrics([str(tmp_path / "no_such_metric.py"), {"path": str(tmp_path / "nope.py")}])
    assert metrics == {}
    assert "extra metric" in caplog.text and "skipped" in caplog.text


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_real_hub_metric_when_the_network_allows():
    """METEOR from the Hub: skipped cleanly offline (the core metrics never need it)."""
    if not _hub_reachable():
        pytest.skip("no network: the Hub cannot be reached")
    metrics = load_hub_metrics(["meteor"])
    if not metrics:
        pytest.skip("the Hub metric 'meteor' cannot be loaded (offline)")
    m = metrics["hub_meteor"]
    m.update(["the cat sat on the mat"], [["the cat sat on the mat"]])
    assert m.compute()["meteor"].item() > 0.9


def test_metrics_are_finite_on_empty_predictions():
    for m in (SacreBLEU(), TokenizedBLEU("none"), ROUGE(), SQuADScore()):
        m.update([""], [["a reference"]])
        value = m.compute()
        values = value.values() if isinstance(value, dict) else [value]
        assert all(math.isfinite(float(v)) for v in values) and all(float(v) == 0 for v in values)
        assert isinstance(value, (dict, torch.Tensor))
