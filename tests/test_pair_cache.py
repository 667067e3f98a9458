"""The on-disk token cache of Seq2SeqDataModule: same batches as the in-memory path, a key that follows
the data and the tokenizer, atomic builds, one build shared by concurrent ranks, errors that name the line."""

from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lm.data import Seq2SeqDataModule
from diffusion_lm.data.pair_cache import PairCache
from diffusion_lm.data.seq2seq import reservoir
from diffusion_lm.errors import DataError

from .conftest import make_pairs, toy_datamodule, write_jsonl

TENSORS = ("input_ids", "valid", "target_mask", "prefix_len", "tgt_len", "target_index", "index")


def _batches(loader) -> list[dict]:
    return list(loader)


def _assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and len(a) > 1
    for x, y in zip(a, b):
        for k in TENSORS:
            assert torch.equal(x[k], y[k]), k
        assert x["src_text"] == y["src_text"] and x["refs"] == y["refs"]


def _copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_cached_batches_equal_in_memory_batches(toy_root):
    cached, memory = toy_datamodule(toy_root, seed=3), toy_datamodule(toy_root, seed=3, token_cache=False)
    for dm in (cached, memory):
        dm.prepare_data()
        dm.setup("fit")
        dm.setup("test")
    assert isinstance(cached.datasets["train"].cache, PairCache) and not hasattr(memory.datasets["train"], "cache")
    for epoch in (0, 1):  # the training order of a seed, epoch after epoch
        loaders = [dm.train_dataloader() for dm in (cached, memory)]
        for loader in loaders:
            loader.batch_sampler.set_epoch(epoch)
        _assert_same_batches(*map(_batches, loaders))
    _assert_same_batches(_batches(cached.val_dataloader()), _batches(memory.val_dataloader()))
    _assert_same_batches(_batches(cached.test_dataloader()), _batches(memory.test_dataloader()))
    for i in (0, 17, 399):  # every item field, the example's text and references included
        a, b = cached.datasets["train"][i], memory.datasets["train"][i]
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_cache_is_identical_for_any_number_of_workers(toy_root, tmp_path):
    paths = []
    for workers, sub in ((1, "one"), (2, "two")):
        dm = toy_datamodule(toy_root, cache_dir=str(tmp_path / sub), prepare_workers=workers)
        dm.chunk_rows = 64  # several chunks, so two workers really interleave
        paths.append(dm.build_cache("train"))
    assert paths[0].name == paths[1].name
    for f in sorted(p.name for p in paths[0].iterdir()):
        assert (paths[0] / f).read_bytes() == (paths[1] / f).read_bytes(), f


def test_a_changed_file_invalidates_the_cache(toy_root, tmp_path):
    root = _copy_root(toy_root, tmp_path / "data")
    tok = toy_datamodule(root).tokenizer
    first = toy_datamodule(root, tokenizer=None)
    first._tokenizer = tok
    old = first.build_cache("validation")
    write_jsonl(root / "toy" / "validation.jsonl.gz", make_pairs(40, 9))
    second = toy_datamodule(root)
    second._tokenizer = tok
    new = second.build_cache("validation")
    assert new != old
    second.setup("validate")
    assert second.datasets["validation"].example(0)["src"] == make_pairs(40, 9)[0]["src"]


def test_a_changed_tokenizer_invalidates_the_cache(toy_root, tmp_path):
    tok_dir = tmp_path / "tok"
    paths = []
    for vocab in (300, 280):  # two BPEs saved at the same path, one after the other
        toy_datamodule(toy_root, bpe_vocab_size=vocab, cache_dir=str(tmp_path / f"bpe{vocab}")).tokenizer.save(tok_dir)
        dm = toy_datamodule(toy_root, tokenizer=str(tok_dir))
        dm.setup("validate")
        ids = dm.tokenizer.encode([dm.load_split("validation")[0]["src"]])[0]
        assert dm.datasets["validation"][0]["src_ids"].tolist() == ids[: dm.max_src_len]
        paths.append(dm.cache_path("validation"))
    assert paths[0] != paths[1]


def test_an_interrupted_build_leaves_nothing_that_is_read(toy_root, tmp_path, monkeypatch):
    dm = toy_datamodule(toy_root, prepare_workers=1, cache_dir=str(tmp_path / "cache"))
    dm.chunk_rows = 50
    path = dm.cache_path("train")
    calls = []
    encode = Seq2SeqDataModule._encode_rows

    def interrupted(self, rows, split):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return encode(self, rows, split)

    monkeypatch.setattr(Seq2SeqDataModule, "_encode_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dm.build_cache("train")
    assert not path.exists() and not list(path.parent.glob(f".{path.name}.tmp-*"))
    # a build killed outright (no clean-up) leaves its temporary folder: never read, removed by the next build
    stale = path.parent / f".{path.name}.tmp-killed"
    stale.mkdir()
    (stale / "src.bin").write_bytes(b"\x00" * 7)
    monkeypatch.setattr(Seq2SeqDataModule, "_encode_rows", encode)
    dm.setup("fit")
    assert not stale.exists() and len(dm.datasets["train"]) == 400
    reference = toy_datamodule(toy_root, token_cache=False)
    reference.setup("fit")
    assert all(np.array_equal(dm.datasets["train"][i]["src_ids"], reference.datasets["train"][i]["src_ids"])
               for i in range(400))


def _rank(root: str, cache: str, log: str, barrier, queue) -> None:
    """One DDP rank's data set-up: records each cache build in ``log``."""
    write = Seq2SeqDataModule._write_cache

    def counted(self, split, path):
        with open(log, "a") as f:
            f.write(f"{split}\n")
        write(self, split, path)

    Seq2SeqDataModule._write_cache = counted
    dm = toy_datamodule(Path(root), prepare_workers=2, cache_dir=cache)
    barrier.wait()
    dm.setup("fit")
    ds = dm.datasets["train"]
    queue.put((str(ds.cache.path), sum(int(ds[i]["tgt_ids"].sum()) for i in range(len(ds))), len(ds)))


def test_two_ranks_share_one_cache(toy_root, tmp_path):
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    log = tmp_path / "builds.log"
    procs = [ctx.Process(target=_rank, args=(str(toy_root), str(tmp_path / "cache"), str(log), barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1]  # the same folder and the same data
    assert sorted(log.read_text().split()) == ["train", "validation"]  # each split built once, not once per rank


def _bad(tmp_path: Path, text: str) -> Path:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.jsonl").write_text(text, encoding="utf-8")
    (tmp_path / "bad" / "validation.jsonl").write_text('{"src": "a", "tgt": "b"}\n', encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("text,message", [
    ('{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": \n', r"train\.jsonl:2: malformed JSON"),
    ('{"src": "a", "tgt": "b"}\n\n{"src": "a", "target": "b"}\n', r"train\.jsonl:3: missing field 'tgt'"),
    ("\n", r"train\.jsonl: split is empty"),
])
def test_cached_path_errors_name_file_and_line(tmp_path, toy_root, text, message):
    root = _bad(tmp_path, text)
    tokenizer = tmp_path / "tok"
    toy_datamodule(toy_root).tokenizer.save(tokenizer)  # so the error comes from tokenising, not BPE training
    dm = toy_datamodule(root, dataset="bad", tokenizer=str(tokenizer), prepare_workers=2)
    with pytest.raises(DataError, match=message):
        dm.prepare_data()
    pairs = dm.cache_dir / "pairs"
    assert not [p for p in pairs.glob("*bad-train-*") if p.is_dir()]  # neither a cache nor a temporary folder


def test_hub_rows_stream_into_the_cache(monkeypatch, tmp_path):
    import datasets

    rows = {s: [{"src": r["src"], "tgt": r["tgt"]} for r in make_pairs(n, seed)]
            for s, n, seed in (("train", 300, 0), ("validation", 30, 1))}
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, config=None, split=None: iter(rows[split]))
    kw = dict(dataset="not_local", hub_id="someone/pairs")
    cached, memory = toy_datamodule(tmp_path, **kw), toy_datamodule(tmp_path, token_cache=False, **kw)
    for dm in (cached, memory):
        dm.prepare_data()
        dm.setup("fit")
    assert cached.datasets["train"].cache.path.name.startswith("not_local-train-")
    _assert_same_batches(_batches(cached.train_dataloader()), _batches(memory.train_dataloader()))


def test_bpe_is_trained_on_a_bounded_sample(toy_root):
    rows = [{"i": i} for i in range(1000)]
    sample = [r["i"] for r in reservoir(rows, 50)]
    assert len(sample) == 50 and sample == sorted(set(sample)) and sample[-1] > 500  # spread over the split, in order
    assert reservoir(rows[:30], 50) == rows[:30]  # a split smaller than the sample: every row, in order
    assert len(list(toy_datamodule(toy_root, bpe_train_samples=50).bpe_texts())) == 100  # source and target of 50
    train = toy_datamodule(toy_root).load_split("train")
    assert list(toy_datamodule(toy_root).bpe_texts()) == [t for ex in train for t in (ex["src"], ex["tgt"])]


def test_prepare_command_builds_and_reports_the_caches(toy_root, tmp_path, capsys):
    import yaml

    from diffusion_lm.cli import main

    data = {"class_path": "diffusion_lm.data.Seq2SeqDataModule",
            "init_args": {"dataset": "toy", "data_dir": str(toy_root), "bpe_vocab_size": 300, "max_src_len": 24,
                          "max_tgt_len": 24, "cache_dir": str(tmp_path / "cache")}}
    model = {"class_path": "diffusion_lm.recipes.FromScratch", "init_args": {"denoiser": {"d_model": 32, "n_layers": 1,
                                                                                          "n_heads": 2}}}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": model, "data": data}))
    main(["prepare", "--config", str(cfg), "--splits", "train", "validation", "--data.init_args.max_src_len=20"])
    out = capsys.readouterr().out
    dm = toy_datamodule(toy_root, cache_dir=str(tmp_path / "cache"), max_src_len=20)
    for split, n in (("train", 400), ("validation", 40)):
        path = dm.cache_path(split)
        assert (path / "meta.json").is_file() and f"{split}: {n} examples" in out and str(path) in out
    assert not dm.cache_path("test").exists()


def test_batched_fetch_equals_item_fetch(toy_root):
    dm = toy_datamodule(toy_root)
    dm.setup("validate")
    ds = dm.datasets["validation"]
    rows = [5, 0, 39, 5, 12]
    batch = ds.__getitems__(rows)
    for i, item in zip(rows, batch):
        single = ds[i]
        assert item.keys() == single.keys() and all(np.array_equal(item[k], single[k]) for k in item)
        assert item["src_ids"].dtype == np.int32
