"""What every DataModule of this package shares: where the data and caches live, which splits a stage
needs, a tokenizer built on first use (loaded by name, or a BPE trained on the training text and cached),
the vocabulary size the CLI links into the model, and loaders made by one ``_loader``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import lightning as L
from torch.utils.data import DataLoader

from .tokenization import TextTokenizer, cached_bpe, load_pretrained_tokenizer

DATA_ENV = "DIFFUSION_LM_DATA"
CACHE_ENV = "DIFFUSION_LM_CACHE"

SPLITS = ("train", "validation", "test")
# the splits each Lightning stage reads (``setup(stage)``; ``None`` = every split)
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",), "predict": ("predict",)}


def resolve_data_root(data_dir: Optional[str]) -> Path:
    """``data_dir`` if given, else ``$DIFFUSION_LM_DATA``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_ENV) or "data").expanduser()


def resolve_cache_dir(cache_dir: Optional[str]) -> Path:
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "diffusion_lm").expanduser()


def stage_splits(stage: Optional[str]) -> tuple[str, ...]:
    """The splits ``setup(stage)`` prepares."""
    return STAGE_SPLITS.get(stage, SPLITS) if stage else SPLITS


class TokenizedDataModule(L.LightningDataModule):
    """Subclasses set ``tokenizer_name``, ``bpe_vocab_size`` and ``cache_dir`` and say what a trained BPE
    learns from (``bpe_texts``) and what its cache key covers (``bpe_key``)."""

    tokenizer_name: Optional[str]
    bpe_vocab_size: int
    cache_dir: Path
    _tokenizer: Optional[TextTokenizer] = None

    @property
    def tokenizer(self) -> TextTokenizer:
        """``tokenizer_name`` (a Hugging Face name/path or a ``.ckpt``), else a BPE trained once on
        ``bpe_texts()`` and cached under ``cache_dir`` by ``bpe_key()``."""
        if self._tokenizer is None:
            if self.tokenizer_name:
                self._tokenizer = load_pretrained_tokenizer(self.tokenizer_name)
            else:
                self._tokenizer = cached_bpe(self.cache_dir, self.bpe_key(), self.bpe_texts, self.bpe_vocab_size)
        return self._tokenizer

    def bpe_key(self) -> str:
        """Everything the trained BPE depends on besides its vocabulary size (files, fields, sample size)."""
        raise NotImplementedError

    def bpe_texts(self) -> Iterator[str]:
        """The bounded sample of training text the BPE is trained on."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def prepare_data(self) -> None:
        self.tokenizer  # noqa: B018 — trains and caches the BPE once, on rank 0

    def _loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
