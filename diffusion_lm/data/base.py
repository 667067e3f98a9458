"""What every DataModule of this package shares: a tokenizer built on first use (trained or loaded,
then cached), the vocabulary size the CLI links into the model, and loaders made by one ``_loader``."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from .tokenization import TextTokenizer


class TokenizedDataModule(L.LightningDataModule):
    @property
    def tokenizer(self) -> TextTokenizer:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def prepare_data(self) -> None:
        self.tokenizer  # noqa: B018 - trains and caches the BPE once, on rank 0

    def _loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
