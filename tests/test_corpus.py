"""TextCorpus: documents from .jsonl/.txt files, EOS between documents, packing, the two layouts."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lm.data import TextCorpus, WikiText
from diffusion_lm.data.corpus import pack
from diffusion_lm.errors import DataError

from .conftest import REPO, WORDS, write_jsonl

REAL_DATA = Path(os.environ.get("DIFFUSION_LM_DATA") or REPO.parent / "shared" / "data")


def corpus_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"text": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 30)))) + ".", "id": i} for i in range(n)]


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory) -> Path:
    """<root>/mini/{train,validation}.jsonl.gz with {"text": …} rows (the lm_corpora layout)."""
    root = tmp_path_factory.mktemp("corpus")
    write_jsonl(root / "mini" / "train.jsonl.gz", corpus_rows(300, 0))
    write_jsonl(root / "mini" / "validation.jsonl.gz", corpus_rows(40, 1))
    return root


def make(root, **kw) -> TextCorpus:
    args = dict(dataset="mini", data_dir=str(root), bpe_vocab_size=300, block_size=16, max_tokens=128)
    args.update(kw)
    return TextCorpus(**args)


def test_stream_has_eos_after_every_document_and_packs_exactly(corpus_root):
    dm = make(corpus_root)
    tok = dm.tokenizer
    stream = np.asarray(dm.token_stream("validation"))
    docs = [r["text"] for r in corpus_rows(40, 1)]
    expected = [i for d in tok.encode(docs) for i in d + [tok.eos_id]]
    assert stream.tolist() == expected
    dm.setup("validate")
    blocks = dm.blocks["validation"]
    assert blocks.shape == (len(expected) // 16, 16)
    assert blocks.reshape(-1).tolist() == expected[: blocks.size]  # lossless, in order, tail dropped
    assert pack(np.arange(10), 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_lm_layout_is_all_target(corpus_root):
    dm = make(corpus_root)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["input_ids"].shape == (8, 16)  # max_tokens // block_size blocks, no padding
    assert b["valid"].all() and b["target_mask"].all() and (b["prefix_len"] == 0).all()
    assert dm.max_len == 16 and dm.vocab_size == dm.tokenizer.vocab_size


def test_prefix_lm_layout_random_split(corpus_root):
    dm = make(corpus_root, objective="prefix_lm", min_prefix=3, min_target=4)
    dm.setup("fit")
    torch.manual_seed(0)
    splits = torch.cat([b["prefix_len"] for b in dm.train_dataloader()])
    assert int(splits.min()) >= 3 and int(splits.max()) <= 12 and len(set(splits.tolist())) > 5
    b = next(iter(dm.val_dataloader()))
    for p, tm in zip(b["prefix_len"], b["target_mask"]):
        assert not tm[:p].any() and tm[p:].all()
    assert (b["tgt_len"] == 16 - b["prefix_len"]).all()
    again = next(iter(dm.val_dataloader()))
    assert again["prefix_len"].equal(b["prefix_len"])  # validation splits are fixed
    tok = dm.tokenizer
    assert b["src_text"][0] == tok.decode(b["input_ids"][0, : b["prefix_len"][0]].tolist())
    assert b["refs"][0] == [tok.decode(b["input_ids"][0, b["prefix_len"][0]:].tolist())]


def test_txt_and_jsonl_files_and_limits(tmp_path, corpus_root):
    txt = tmp_path / "a.txt"
    txt.write_text("first doc line one\nline two\n\nsecond doc\n\n\nthird doc\n")
    jl = tmp_path / "b.jsonl"
    jl.write_text(json.dumps({"body": "fourth doc"}) + "\n")
    dm = TextCorpus(files={"train": [str(txt)], "validation": [str(txt)]}, tokenizer=None, bpe_vocab_size=300,
                    block_size=4, cache_dir=str(tmp_path / "c"))
    assert list(dm.documents("train")) == ["first doc line one\nline two", "second doc", "third doc"]
    dm2 = TextCorpus(files={"train": [str(jl)]}, text_field="body", block_size=4)
    assert list(dm2.documents("train")) == ["fourth doc"]
    limited = make(corpus_root, limit_train_tokens=100)
    assert len(limited.token_stream("train")) == 100
    with pytest.raises(DataError, match="missing field 'text'"):
        TextCorpus(files={"train": [str(jl)]}, block_size=4).tokenizer  # noqa: B018 — the property builds the tokenizer, which raises


def test_missing_split_and_bad_settings_are_clear(tmp_path, corpus_root):
    with pytest.raises(DataError, match="no train split"):
        TextCorpus(dataset="nowhere", data_dir=str(tmp_path), block_size=8).tokenizer  # noqa: B018 — the property builds the tokenizer, which raises
    with pytest.raises(DataError, match="do not fit"):
        make(corpus_root, objective="prefix_lm", min_prefix=10, min_target=10)
    dm = make(corpus_root)
    dm.setup("test")  # the fixture has no test split: nothing to load, and the loader says so
    with pytest.raises(DataError, match="no test split"):
        dm.test_dataloader()


def test_wikitext_maps_to_the_local_folder(tmp_path):
    rows = [{"text": " = Title = \n The article text . \n"}] * 30
    with gzip.open(tmp_path / "v.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    folder = tmp_path / "lm_corpora" / "wikitext103_raw_v1"
    folder.mkdir(parents=True)
    (tmp_path / "v.jsonl.gz").rename(folder / "validation.jsonl.gz")
    dm = WikiText("wikitext-103-raw-v1", data_dir=str(tmp_path), tokenizer=None, block_size=8)
    assert dm.hub_id == "Salesforce/wikitext" and dm.hub_config == "wikitext-103-raw-v1"
    assert len(list(dm.documents("validation"))) == 30
    assert WikiText(data_dir=str(tmp_path)).datasets_names == ["lm_corpora/wikitext2_v1"]


@pytest.mark.skipif(not (REAL_DATA / "lm_corpora").is_dir(), reason="no local lm_corpora")
def test_real_lm_corpora_smoke(tmp_path):
    dm = TextCorpus(dataset=["lm_corpora/nltk_inaugural", "lm_corpora/wikitext2_v1"], data_dir=str(REAL_DATA),
                    tokenizer=None, bpe_vocab_size=500, bpe_train_chars=200_000, block_size=64,
                    limit_train_tokens=5000, limit_eval_blocks=4, cache_dir=str(tmp_path))
    dm.setup("fit")  # wikitext2_v1 has no train split locally: only inaugural feeds training
    assert dm.blocks["train"].shape == (5000 // 64, 64) and dm.blocks["validation"].shape == (4, 64)
