"""Every benchmark DataModule on a tiny fixture in the local layout, its Hub mapping (with a stand-in
for ``datasets.load_dataset``), its metrics, the missing-training-split error, evaluation of a trained
checkpoint without the training split, and a smoke run on the real files when they exist."""

from __future__ import annotations

import logging

import pytest
import torch

from diffusion_lm.cli import main
from diffusion_lm.data import IWSLT14, MBPP, WMT14, CommonGen, Multi30k, SQuAD, XSum
from diffusion_lm.errors import DataError

from .benchmark_fixtures import write_all_benchmarks, write_translation
from .conftest import cpu_trainer, tiny_recipe
from .real_data import real_data_root

SMALL = dict(bpe_vocab_size=300, max_src_len=40, max_tgt_len=24, max_tokens=1024, eval_max_tokens=1024, num_workers=0)


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory):
    return write_all_benchmarks(tmp_path_factory.mktemp("bench"))


@pytest.fixture
def offline_hub(monkeypatch):
    """What `datasets.load_dataset` does without network, immediately."""
    import datasets

    def refuse(*args, **kwargs):
        raise ConnectionError(f"Couldn't reach {args[0]!r} on the Hub (offline)")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def fake_hub(monkeypatch, rows_by_split: dict[str, list[dict]]):
    import datasets

    calls = []

    def load(hub_id, config=None, split=None):
        calls.append((hub_id, config, split))
        return rows_by_split[split]

    monkeypatch.setattr(datasets, "load_dataset", load)
    return calls


# ---------------------------------------------------------------------------- translation
def test_wmt14_pairs_directions_and_metrics(bench_root):
    ende = WMT14(data_dir=str(bench_root), **SMALL)
    defr = WMT14(pair="en-fr", direction="reverse", data_dir=str(bench_root), **SMALL)
    a, b = ende.load_split("validation")[0], defr.load_split("validation")[0]
    assert ende.folder.name == "wmt14_en_de" and defr.folder.name == "wmt14_en_fr"
    assert ende.hub_config == "de-en" and defr.hub_config == "fr-en"
    assert b["src"] == defr.load_split("validation")[0]["src"] and b["refs"] == [b["tgt"]]
    assert a["src"].islower() and not b["src"].islower()  # en→de keeps English source; reverse swaps
    assert set(ende.build_metrics()) == {"bleu", "bleu_tok"}
    assert ende.build_metrics()["bleu_tok"].compound_split and not defr.build_metrics()["bleu_tok"].compound_split


def test_fit_without_training_split_is_a_clear_error(bench_root, offline_hub):
    for dm, hub in ((WMT14(data_dir=str(bench_root), **SMALL), "wmt/wmt14"),
                    (IWSLT14(data_dir=str(bench_root), **SMALL), "bbaaaa/iwslt14-de-en-preprocess"),
                    (XSum(data_dir=str(bench_root), **SMALL), "EdinburghNLP/xsum")):
        with pytest.raises(DataError) as e:
            dm.setup("fit")
        msg = str(e.value)
        assert "no train split" in msg and f"{dm.folder}/train.jsonl" in msg and hub in msg
        assert "has no training split" in msg and "validate/test of a trained checkpoint" in msg
        assert "--data.init_args.splits" in msg  # how to make a smoke run


def test_iwslt14_direction_hub_mapping_and_metrics(bench_root, monkeypatch):
    dm = IWSLT14(direction="en-de", data_dir=str(bench_root), **SMALL)
    ex = dm.load_split("test")[0]
    assert ex["src"].isupper() and ex["refs"] == [ex["tgt"]]  # fixture src = lower-case "German"
    assert list(dm.build_metrics()) == ["bleu_tok", "bleu"]
    calls = fake_hub(monkeypatch, {"train": [{"translation": {"de": "hallo welt", "en": "hello world"}}]})
    assert dm.load_split("train") == [{"src": "hello world", "tgt": "hallo welt", "refs": ["hallo welt"]}]
    assert calls == [("bbaaaa/iwslt14-de-en-preprocess", "de-en", "train")]


def test_wmt14_hub_rows(bench_root, monkeypatch):
    fake_hub(monkeypatch, {"train": [{"translation": {"en": "a house", "fr": "une maison"}}]})
    dm = WMT14(pair="en-fr", data_dir=str(bench_root), **SMALL)
    assert dm.load_split("train")[0] == {"src": "a house", "tgt": "une maison", "refs": ["une maison"]}


def test_multi30k_still_maps_the_hub_fields(monkeypatch, tmp_path):
    fake_hub(monkeypatch, {"train": [{"en": "a dog", "de": "ein Hund"}]})
    assert Multi30k(data_dir=str(tmp_path), **SMALL).load_split("train")[0]["tgt"] == "ein Hund"


# ---------------------------------------------------------------------------- XSum
def test_xsum_truncation_is_counted_and_logged(bench_root, caplog):
    dm = XSum(data_dir=str(bench_root), **{**SMALL, "max_src_len": 20, "tokenizer": None})
    dm._tokenizer = WMT14(data_dir=str(bench_root), **SMALL, splits={"train": "validation"}).tokenizer
    with caplog.at_level(logging.WARNING):
        dm.setup("test")
    assert dm.truncated["test"] == 30  # every fixture document is longer than 20 tokens
    assert "truncated 30 of 30 examples" in caplog.text
    assert dm.datasets["test"].src_len().max() == 20
    assert set(dm.build_metrics()) == {"rouge"}


def test_xsum_hub_rows_and_validation_hint(bench_root, monkeypatch, offline_hub):
    dm = XSum(data_dir=str(bench_root), **SMALL)
    with pytest.raises(DataError, match=r"only a 1,000-example test sample.*splits='\{train: test, validation: test\}'"):
        dm.load_split("validation")
    fake_hub(monkeypatch, {"validation": [{"document": "long text", "summary": "short", "id": "7"}]})
    assert dm.load_split("validation")[0] == {"src": "long text", "tgt": "short", "refs": ["short"]}


# ---------------------------------------------------------------------------- CommonGen
def test_commongen_multi_reference(bench_root):
    dm = CommonGen(data_dir=str(bench_root), **SMALL)
    train, val = dm.load_split("train"), dm.load_split("validation")
    assert train[0]["refs"] == [train[0]["tgt"]] and len(train) == 120
    assert len(val) == 20 and all(len(ex["refs"]) >= 2 and ex["refs"][0] == ex["tgt"] for ex in val)
    assert set(dm.build_metrics()) == {"cider", "bleu"}


def test_commongen_hub_groups_pairs_into_concept_sets(monkeypatch, tmp_path):
    rows = [{"concept_set_idx": 0, "concepts": ["dog", "run"], "target": "A dog runs."},
            {"concept_set_idx": 0, "concepts": ["dog", "run"], "target": "The dog is running."},
            {"concept_set_idx": 1, "concepts": ["cat", "sit"], "target": "A cat sits."}]
    hidden = [{"concept_set_idx": 0, "concepts": ["dog", "run"], "target": ""}]
    fake_hub(monkeypatch, {"train": rows, "validation": rows, "test": hidden})
    dm = CommonGen(data_dir=str(tmp_path), **SMALL)
    assert len(dm.load_split("train")) == 3
    val = dm.load_split("validation")
    assert val[0] == {"src": "dog run", "tgt": "A dog runs.", "refs": ["A dog runs.", "The dog is running."]}
    with pytest.raises(DataError, match="hidden test set"):
        dm.load_split("test")


# ---------------------------------------------------------------------------- SQuAD
def test_squad_question_first_and_all_gold_answers(bench_root):
    dm = SQuAD(data_dir=str(bench_root), **{**SMALL, "max_src_len": 60}, splits={"test": "validation"})
    ex = dm.load_split("test")[0]
    assert ex["src"].startswith("question: what is the answer ? context: ")
    assert ex["refs"][0] == ex["tgt"] and len(ex["refs"]) == 3
    dm.setup("test")
    tok = dm.tokenizer
    kept = tok.decode(dm.datasets["test"][0]["src_ids"].tolist())
    assert kept.startswith("question: what is the answer ? context:") and len(kept) < len(ex["src"])
    assert dm.truncated["test"] == 20  # the end of every context is cut, never the question
    metric = dm.build_metrics()["squad"]
    metric.update([e["tgt"] for e in dm.load_split("test")], [e["refs"] for e in dm.load_split("test")])
    assert metric.compute()["exact_match"].item() == 100.0


def test_squad_missing_field_names_file_and_line(tmp_path):
    from .conftest import write_jsonl

    write_jsonl(tmp_path / "squad_v1.1" / "train.jsonl", [{"question": "q", "answers": {"text": ["a"]}}], gz=False)
    with pytest.raises(DataError, match=r"train\.jsonl:1: missing field 'context'"):
        SQuAD(data_dir=str(tmp_path), **SMALL).load_split("train")


# ---------------------------------------------------------------------------- MBPP
def test_mbpp_examples_carry_their_tests(bench_root):
    dm = MBPP(data_dir=str(bench_root), **SMALL)
    ex = dm.load_split("test")[0]
    assert ex["src"].startswith("Write a function to add") and "assert add_" in ex["src"]
    assert "\r" not in ex["tgt"] and ex["tgt"].startswith("def add_")
    assert ex["refs"] == ["# MBPP task 11\nassert add_11(1) == 12\nassert add_11(-11) == 0"]
    metric = dm.build_metrics()["pass_at_k"]
    examples = dm.load_split("test")
    wrong = [e["tgt"].replace("return x +", "return x -") for e in examples[:3]]
    metric.update([e["tgt"] for e in examples[3:]] + wrong, [e["refs"] for e in examples[3:] + examples[:3]])
    assert metric.compute()["pass@1"].item() == pytest.approx(70.0)


def test_mbpp_sanitized_and_samples_per_problem(bench_root, monkeypatch):
    dm = MBPP(variant="sanitized", pass_k=[1, 2], samples_per_problem=2, data_dir=str(bench_root), **SMALL)
    assert dm.splits == {"train": "sanitized_train", "validation": "sanitized_validation", "test": "sanitized_test"}
    test = dm.load_split("test")
    assert len(test) == 10 and test[0] == test[1]  # 5 sanitized problems, each twice
    assert test[0]["refs"][0].startswith("# MBPP task 11\nimport math\nassert add_11")
    assert len(dm.load_split("test")) == 10  # repeated once, not on every call
    assert len(dm.load_split("train")) == 20  # training examples are not repeated
    calls = fake_hub(monkeypatch, {"validation": [{"prompt": "p", "code": "pass", "test_list": ["assert True"],
                                                   "test_imports": []}]})
    MBPP(variant="sanitized", data_dir=str(bench_root / "nowhere"), **SMALL).load_split("validation")
    assert calls == [("google-research-datasets/mbpp", "sanitized", "validation")]


# ---------------------------------------------------------------------------- fit / evaluate end to end
@pytest.mark.parametrize("cls,kw", [(CommonGen, {}), (SQuAD, {"splits": {"test": "validation"}}), (MBPP, {})])
def test_fit_and_test_on_fixture(cls, kw, bench_root, tmp_path):
    dm = cls(data_dir=str(bench_root), **SMALL, **kw)
    model = tiny_recipe(dm.vocab_size, denoiser=_tiny_denoiser(dm.max_len))
    trainer = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=1, limit_test_batches=1)
    trainer.fit(model, dm)
    out = trainer.test(model, dm)[0]
    expected = {CommonGen: "test/cider", SQuAD: "test/f1", MBPP: "test/pass@1"}[cls]
    assert expected in out and torch.isfinite(torch.tensor(out[expected]))


def _tiny_denoiser(max_len: int):
    from diffusion_lm.models import DenoiserConfig

    return DenoiserConfig(d_model=32, n_layers=1, n_heads=2, embed_dim=16, max_len=max_len, dropout=0.0)


def test_evaluate_checkpoint_without_training_split(tmp_path, offline_hub):
    """Train where a training split exists; evaluate where only validation/test exist (as shipped):
    the CLI takes the tokenizer from the checkpoint given as --ckpt_path."""
    train_root, eval_root = tmp_path / "train_root", tmp_path / "eval_root"
    write_translation(train_root, "wmt14_en_de", "en", "de", splits=("train", "validation", "test"), n=60)
    write_translation(eval_root, "wmt14_en_de", "en", "de")
    main(["fit", "--config", str(_cli_config(tmp_path, train_root)), "--trainer.max_steps=2"])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.exists()

    with pytest.raises(DataError, match="has no training split"):
        WMT14(data_dir=str(eval_root), **SMALL).tokenizer  # noqa: B018 — without a checkpoint the BPE needs train
    cfg = _cli_config(tmp_path, eval_root)
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt)])
    main(["validate", "--config", str(cfg), "--ckpt_path", str(ckpt)])


def _cli_config(tmp_path, root):
    import yaml

    cfg = {"trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                       "enable_model_summary": False, "default_root_dir": str(tmp_path), "limit_val_batches": 1,
                       "limit_test_batches": 1, "num_sanity_val_steps": 0,
                       "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                      "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True,
                                                    "save_top_k": 0, "every_n_train_steps": 1}}]},
           "model": {"class_path": "diffusion_lm.recipes.FromScratch",
                     "init_args": {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "embed_dim": 16,
                                                "max_len": 66, "dropout": 0.0},
                                   "generator": {"class_path": "diffusion_lm.diffusion.DDIMSampler",
                                                 "init_args": {"steps": 2}}}},
           "data": {"class_path": "diffusion_lm.data.WMT14", "init_args": {"data_dir": str(root), **SMALL}}}
    path = tmp_path / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------------------- real files
REAL = [(WMT14, {}), (WMT14, {"pair": "en-fr"}), (IWSLT14, {}), (XSum, {}), (CommonGen, {}),
        (SQuAD, {"splits": {"test": "validation"}}), (MBPP, {}), (MBPP, {"variant": "sanitized"})]


@pytest.mark.parametrize("cls,kw", REAL, ids=lambda x: x.__name__ if isinstance(x, type) else str(x))
def test_real_data_smoke(cls, kw, offline_hub):
    """The first 64 examples of each shipped split: fields, tokenizer round trip, one batch, the metric."""
    root = real_data_root()
    if root is None:
        pytest.skip("real data not found (set DIFFUSION_LM_DATA)")
    dm = cls(data_dir=str(root), limit_train=64, limit_eval=64, **{**SMALL, "max_src_len": 256, "max_tgt_len": 128}, **kw)
    if not dm.folder.is_dir():
        pytest.skip(f"{dm.folder} not found")
    split = "test"
    if not (dm.folder / "train.jsonl.gz").exists():  # WMT14 / IWSLT14 / XSum: BPE from an evaluation split
        dm.splits = {"train": split}
    examples = dm.load_split(split)
    assert len(examples) == 64 and all(ex["src"] and ex["refs"] for ex in examples)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["input_ids"].shape[0] == len(batch["refs"]) > 0
    metrics = dm.build_metrics()
    for m in metrics.values():  # the gold targets score (close to) perfectly
        m.update([ex["tgt"] for ex in examples[:16]], [ex["refs"] for ex in examples[:16]])
        value = m.compute()
        best = max(float(v) for v in (value.values() if isinstance(value, dict) else [value]))
        assert best > (1.0 if cls is CommonGen else 90.0), (type(m).__name__, value)
