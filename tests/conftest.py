"""Shared fixtures: a tiny synthetic translation dataset in the local JSONL layout, an isolated
tokenizer cache, and helpers to build tiny recipes."""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
WORDS = "red green blue small big cat dog bird runs sits jumps over under the a house tree car".split()
UPPER = {w: w.upper()[::-1] for w in WORDS}  # a deterministic "translation": reversed upper-case words


def make_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        src = [rng.choice(WORDS) for _ in range(rng.randint(2, 7))]
        rows.append({"src": " ".join(src), "tgt": " ".join(UPPER[w] for w in src), "id": i})
    return rows


def write_jsonl(path: Path, rows: list[dict], gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIFFUSION_LM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """<root>/toy/{train,validation,test}.jsonl.gz with a word-level copy-and-transform task."""
    root = tmp_path_factory.mktemp("data")
    write_jsonl(root / "toy" / "train.jsonl.gz", make_pairs(400, 0))
    write_jsonl(root / "toy" / "validation.jsonl.gz", make_pairs(40, 1))
    write_jsonl(root / "toy" / "test.jsonl", make_pairs(40, 2), gz=False)
    return root


def toy_datamodule(root: Path, **kw):
    from diffusion_lm.data import Seq2SeqDataModule

    args = dict(dataset="toy", data_dir=str(root), bpe_vocab_size=300, max_src_len=24, max_tgt_len=24,
                max_tokens=512, eval_max_tokens=512, num_workers=0)
    args.update(kw)
    return Seq2SeqDataModule(**args)


TINY_DENOISER = dict(d_model=32, n_layers=2, n_heads=2, embed_dim=16, max_len=56, dropout=0.0)


def tiny_recipe(vocab_size: int, **kw):
    from diffusion_lm.diffusion import DDIMSampler
    from diffusion_lm.models import DenoiserConfig
    from diffusion_lm.recipes import FromScratch

    args = dict(denoiser=DenoiserConfig(**TINY_DENOISER), vocab_size=vocab_size, warmup_steps=5, lr=3e-3,
                ema_decay=0.9, generator=DDIMSampler(steps=3), val_generate_batches=1)
    args.update(kw)
    return FromScratch(**args)


def cpu_trainer(tmp_path: Path, **kw):
    import lightning as L

    args = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0)
    args.update(kw)
    return L.Trainer(**args)


@pytest.fixture
def seed():
    torch.manual_seed(0)
    random.seed(0)
    return 0


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
