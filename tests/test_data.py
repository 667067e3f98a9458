import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lm.data.jsonl import iter_jsonl
from diffusion_lm.data.layout import build_batch, source_rows, target_rows, trim_at_eos
from diffusion_lm.data.sampler import BucketBatchSampler
from diffusion_lm.errors import DataError

from .conftest import toy_datamodule, write_jsonl


def test_layout_prefix_lm():
    b = build_batch([[5, 6], [7]], [[8], [9, 10, 11]], sep_id=1, eos_id=2, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 1, 8, 2, 0], [7, 1, 9, 10, 11, 2]]
    assert b["prefix_len"].tolist() == [3, 2] and b["tgt_len"].tolist() == [2, 4]
    assert b["target_mask"].tolist() == [[False, False, False, True, True, False], [False, False, True, True, True, True]]
    assert b["valid"].tolist() == [[True] * 5 + [False], [True] * 6]
    assert source_rows(b) == [[5, 6], [7]]
    assert target_rows(b["input_ids"], b["target_mask"]) == [[8, 2], [9, 10, 11, 2]]
    g = build_batch([[5, 6]], None, sep_id=1, eos_id=2, pad_id=0, tgt_lengths=[3], placeholder_id=4)
    assert g["input_ids"].tolist() == [[5, 6, 1, 4, 4, 4]] and g["target_mask"].sum() == 3
    assert trim_at_eos([3, 0, 4, 2, 5], eos_id=2, pad_id=0) == [3, 4]


def test_datamodule_on_local_fixture(toy_root):
    dm = toy_datamodule(toy_root)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.vocab_size <= 300 and dm.tokenizer.sep_id != dm.tokenizer.eos_id
    batch = next(iter(dm.train_dataloader()))
    B, L = batch["input_ids"].shape
    assert B * L <= 512 and len(batch["refs"]) == B and len(batch["src_text"]) == B
    # every example round-trips through the tokenizer
    tok = dm.tokenizer
    ex = dm.load_split("validation")[0]
    assert tok.decode(tok.encode([ex["tgt"]])[0]) == ex["tgt"]
    # the tokenizer is cached: a second data module reuses it
    assert toy_datamodule(toy_root).tokenizer.vocab_size == dm.vocab_size
    # validation and test (plain .jsonl) both load
    dm.setup("test")
    assert len(dm.datasets["test"]) == 40


def test_swap_direction(toy_root):
    fwd, rev = toy_datamodule(toy_root), toy_datamodule(toy_root, swap=True)
    a, b = fwd.load_split("validation")[0], rev.load_split("validation")[0]
    assert a["src"] == b["tgt"] and a["tgt"] == b["src"] and b["refs"] == [a["src"]]


def test_truncation_is_counted(toy_root):
    dm = toy_datamodule(toy_root, max_src_len=3, max_tgt_len=3)
    dm.setup("validate")
    assert dm.truncated["validation"] > 0
    assert dm.datasets["validation"].src_len().max() <= 3


def _bad_root(tmp_path, rows_text):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.jsonl").write_text(rows_text, encoding="utf-8")
    return tmp_path


def test_malformed_line_names_file_and_line(tmp_path):
    root = _bad_root(tmp_path, '{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": \n')
    with pytest.raises(DataError, match=r"train\.jsonl:2: malformed JSON"):
        toy_datamodule(root, dataset="bad").load_split("train")


def test_missing_field_names_file_line_and_field(tmp_path):
    root = _bad_root(tmp_path, '{"src": "a", "tgt": "b"}\n\n{"src": "a", "target": "b"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl:3: missing field 'tgt'"):
        toy_datamodule(root, dataset="bad").load_split("train")


def test_empty_split(tmp_path):
    root = _bad_root(tmp_path, "\n")
    with pytest.raises(DataError, match="split is empty"):
        toy_datamodule(root, dataset="bad").load_split("train")


def test_missing_directory_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=r"no train split .*nowhere/train\.jsonl.*DIFFUSION_LM_DATA"):
        toy_datamodule(tmp_path, dataset="nowhere").load_split("train")


def test_hub_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dm = toy_datamodule(tmp_path, dataset="nowhere", hub_id="no-such-user/no-such-dataset")
    with pytest.raises(DataError, match="could not be loaded"):
        dm.load_split("train")


def test_data_root_from_environment(toy_root, monkeypatch):
    from diffusion_lm.data import Seq2SeqDataModule

    monkeypatch.setenv("DIFFUSION_LM_DATA", str(toy_root))
    assert len(Seq2SeqDataModule(dataset="toy").load_split("validation")) == 40


def test_gzip_corruption_is_a_data_error(tmp_path):
    p = tmp_path / "x.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"src": "a", "tgt": "b"}) + "\n")
    p.write_bytes(p.read_bytes()[:-12])  # truncated archive
    with pytest.raises(DataError, match="x.jsonl.gz"):
        list(iter_jsonl(p))


def test_write_jsonl_helper(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"src": "x", "tgt": "y"}], gz=False)
    assert list(iter_jsonl(p, required=["src"])) == [{"src": "x", "tgt": "y"}]


# ---------------------------------------------------------------- bucketing
def _lengths(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(3.3, 0.35, n).astype(int), 6, 120)  # Multi30k-like: ~28 ± 10 tokens


def test_bucket_batches_respect_budget_and_cover_everything():
    lengths = _lengths()
    s = BucketBatchSampler(None, lengths, max_tokens=2048, shuffle=True, seed=1)
    seen = []
    for b in s:
        assert len(b) * lengths[b].max() <= 2048
        seen.extend(b)
    assert sorted(seen) == list(range(len(lengths)))
    assert s.padding_fraction() < 0.10


def test_bucket_epochs_differ_and_are_reproducible():
    lengths = _lengths()
    a = BucketBatchSampler(None, lengths, max_tokens=2048, seed=1)
    b = BucketBatchSampler(None, lengths, max_tokens=2048, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_bucket_ddp_ranks_disjoint_and_equal():
    from torch.utils.data import DistributedSampler

    lengths = _lengths()
    ds = list(range(len(lengths)))
    per_rank = [list(BucketBatchSampler(DistributedSampler(ds, num_replicas=3, rank=r), lengths, 2048)) for r in range(3)]
    assert len({len(p) for p in per_rank}) == 1, "every rank must take the same number of steps"
    flat = [set(i for b in p for i in b) for p in per_rank]
    assert not (flat[0] & flat[1]) and not (flat[1] & flat[2])


def test_eval_batches_sorted_and_complete():
    lengths = _lengths(500)
    batches = list(BucketBatchSampler(None, lengths, 4096, shuffle=False))
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert lengths[batches[0]].max() == lengths.max()


def test_budget_smaller_than_an_example():
    with pytest.raises(ValueError, match="max_tokens"):
        BucketBatchSampler(None, [10, 50], max_tokens=20)


def test_mid_epoch_resume_skips_consumed_batches():
    lengths = _lengths(400)
    s = BucketBatchSampler(None, lengths, 1024, seed=3)
    full = list(s)
    s.start_batch = 5
    assert list(s) == full[5:]
    assert list(s) == full  # only the first iteration after a resume skips


def test_collated_batch_types(toy_root):
    dm = toy_datamodule(toy_root)
    dm.setup("validate")
    b = next(iter(dm.val_dataloader()))
    assert b["input_ids"].dtype == torch.long and b["valid"].dtype == torch.bool
    assert b["target_mask"].sum(1).tolist() == b["tgt_len"].tolist()


# ---------------------------------------------------------------- padding at the shipped budgets
def _rank_padding(lengths, max_tokens, world, max_batch_size=512):
    from torch.utils.data import DistributedSampler

    padded = real = 0
    for rank in range(world):
        dist = DistributedSampler(range(len(lengths)), num_replicas=world, rank=rank) if world > 1 else None
        for b in BucketBatchSampler(dist, lengths, max_tokens, max_batch_size=max_batch_size, seed=0):
            padded += len(b) * lengths[b].max()
            real += lengths[b].sum()
    return 1 - real / padded


@pytest.mark.parametrize("max_tokens", [2048, 16384])  # experiments/demo.yaml, experiments/multi30k/from_scratch.yaml
@pytest.mark.parametrize("world", [1, 8])
def test_padding_under_10_percent_on_multi30k_sized_lengths(max_tokens, world):
    lengths = _lengths(29000)  # Multi30k's training set size and length spread
    assert _rank_padding(lengths, max_tokens, world) < 0.10


def test_padding_can_exceed_the_bound_without_bucketing():
    lengths = _lengths(29000)
    assert _rank_padding(lengths, 16384, 1) < 0.10 < 1 - lengths.mean() / lengths.max()  # one global pad would not do


@pytest.mark.skipif(not (Path(os.environ.get("DIFFUSION_LM_DATA", "data")) / "multi30k" / "train.jsonl.gz").is_file(),
                    reason="Multi30k is not in $DIFFUSION_LM_DATA")
@pytest.mark.parametrize("max_tokens", [2048, 16384])
def test_loader_padding_on_real_multi30k(max_tokens):
    """The collated training batches of the real Multi30k split (BPE of the shipped config)."""
    from diffusion_lm.data import Multi30k

    dm = Multi30k(bpe_vocab_size=10000, max_src_len=78, max_tgt_len=78, max_tokens=max_tokens, num_workers=0)
    dm.setup("fit")
    real = slots = 0
    for batch in dm.train_dataloader():
        real += int(batch["valid"].sum())
        slots += batch["valid"].numel()
    ds = dm.datasets["train"]
    assert real == int((ds.src_len() + ds.tgt_len() + 2).sum())  # every real token, once
    assert 1 - real / slots < 0.10, 1 - real / slots
