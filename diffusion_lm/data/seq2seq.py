"""Seq2SeqDataModule: (source, target) pairs from local JSONL files or the Hugging Face Hub,
tokenised once, laid out as a prefix LM and batched by token budget."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from ..errors import DataError
from ..metrics.hub import MetricSpec, load_hub_metrics
from ..metrics.text import default_metrics
from .jsonl import find_split_file, iter_jsonl
from .layout import build_batch
from .loader import ResumableDataLoader
from .sampler import BucketBatchSampler
from .base import TokenizedDataModule
from .tokenization import TextTokenizer, cached_bpe, load_pretrained_tokenizer

log = logging.getLogger(__name__)

DATA_ENV = "DIFFUSION_LM_DATA"
CACHE_ENV = "DIFFUSION_LM_CACHE"


def resolve_data_root(data_dir: Optional[str]) -> Path:
    """``data_dir`` if given, else ``$DIFFUSION_LM_DATA``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_ENV) or "data").expanduser()


def resolve_cache_dir(cache_dir: Optional[str]) -> Path:
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "diffusion_lm").expanduser()


class PairDataset(Dataset):
    """Tokenised pairs in flat arrays (one allocation instead of millions of small lists)."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]], examples: list[dict]) -> None:
        self.src_off = np.cumsum([0] + [len(s) for s in src_ids])
        self.tgt_off = np.cumsum([0] + [len(t) for t in tgt_ids])
        self.src = np.fromiter((i for s in src_ids for i in s), dtype=np.int32, count=int(self.src_off[-1]))
        self.tgt = np.fromiter((i for t in tgt_ids for i in t), dtype=np.int32, count=int(self.tgt_off[-1]))
        self.examples = examples  # dicts with "src", "tgt", "refs" (list of references) and any extra fields

    def __len__(self) -> int:
        return len(self.examples)

    def src_len(self) -> np.ndarray:
        return np.diff(self.src_off)

    def tgt_len(self) -> np.ndarray:
        return np.diff(self.tgt_off)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "src_ids": self.src[self.src_off[i] : self.src_off[i + 1]],
            "tgt_ids": self.tgt[self.tgt_off[i] : self.tgt_off[i + 1]],
            "index": i,
            **self.examples[i],
        }


class Seq2SeqCollator:
    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.sep_id, self.eos_id, self.pad_id = tokenizer.sep_id, tokenizer.eos_id, tokenizer.pad_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = build_batch(
            [it["src_ids"].tolist() for it in items], [it["tgt_ids"].tolist() for it in items],
            sep_id=self.sep_id, eos_id=self.eos_id, pad_id=self.pad_id,
        )
        batch["index"] = torch.as_tensor([it["index"] for it in items])
        batch["src_text"] = [it["src"] for it in items]
        batch["refs"] = [it["refs"] for it in items]
        return batch


class Seq2SeqDataModule(TokenizedDataModule):
    """Source → target pairs.

    Args:
        dataset: Folder name under the data root (``<root>/<dataset>/{train,validation,test}.jsonl[.gz]``).
        data_dir: Data root; default ``$DIFFUSION_LM_DATA`` or ``./data``.
        hub_id: Hugging Face Hub dataset used when the local folder has no such split (needs network).
        hub_config: Hub configuration name (e.g. ``de-en`` for ``wmt/wmt14``).
        src_field: Source field of local rows.
        tgt_field: Target field of local rows.
        refs_field: Optional field holding all references (multi-reference metrics).
        swap: Translate in the other direction (target → source).
        splits: Names of the train/validation/test splits.
        tokenizer: Hugging Face tokenizer name or path, or a diffusion_lm ``.ckpt`` (its stored tokenizer:
            fine-tuning a pretrained model, e.g. TaskAdapt); ``None`` trains a byte-level BPE on the training split.
        bpe_vocab_size: Vocabulary of the trained BPE.
        cache_dir: Where trained tokenizers are cached; default ``$DIFFUSION_LM_CACHE`` or ``~/.cache/diffusion_lm``.
        max_src_len: Source tokens kept (longer sources are truncated and counted).
        max_tgt_len: Target tokens kept (EOS excluded).
        max_tokens: Training batch size in padded tokens.
        eval_max_tokens: Evaluation batch size in padded tokens.
        max_batch_size: Cap on examples per batch.
        limit_train: Use only the first N training examples (0 = all).
        limit_eval: Use only the first N validation/test/predict examples (0 = all).
        predict_split: Split that ``diffusion-lm predict`` generates for.
        predict_file: Or a file to generate for: JSONL rows with the source field (the target field is
            optional), or ``.txt`` with one source per line. Overrides ``predict_split``.
        num_workers: DataLoader worker processes.
        seed: Shuffling seed.
        extra_metrics: Optional Hugging Face ``evaluate`` metrics (names or ``{path, compute_kwargs, …}``), computed
            in addition to the benchmark's own when they can be loaded (see :mod:`diffusion_lm.metrics.hub`).
    """

    def __init__(
        self,
        dataset: str = "",
        data_dir: Optional[str] = None,
        hub_id: Optional[str] = None,
        hub_config: Optional[str] = None,
        src_field: str = "src",
        tgt_field: str = "tgt",
        refs_field: Optional[str] = None,
        swap: bool = False,
        splits: dict[str, str] = {"train": "train", "validation": "validation", "test": "test"},  # noqa: B006
        tokenizer: Optional[str] = None,
        bpe_vocab_size: int = 8000,
        cache_dir: Optional[str] = None,
        max_src_len: int = 128,
        max_tgt_len: int = 128,
        max_tokens: int = 8192,
        eval_max_tokens: int = 16384,
        max_batch_size: int = 512,
        limit_train: int = 0,
        limit_eval: int = 0,
        num_workers: int = 2,
        seed: int = 0,
        extra_metrics: Optional[list[MetricSpec]] = None,
        predict_split: str = "test",
        predict_file: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.dataset_name = dataset
        self.data_root = resolve_data_root(data_dir)
        self.hub_id, self.hub_config = hub_id, hub_config
        self.src_field, self.tgt_field, self.refs_field = src_field, tgt_field, refs_field
        self.swap = swap
        self.splits = splits
        self.tokenizer_name = tokenizer
        self.bpe_vocab_size = bpe_vocab_size
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.max_src_len, self.max_tgt_len = max_src_len, max_tgt_len
        self.max_tokens, self.eval_max_tokens, self.max_batch_size = max_tokens, eval_max_tokens, max_batch_size
        self.limit_train, self.limit_eval = limit_train, limit_eval
        self.num_workers = num_workers
        self.seed = seed
        self.extra_metrics = extra_metrics
        self.predict_split, self.predict_file = predict_split, predict_file
        self._tokenizer: TextTokenizer | None = None
        self._raw: dict[str, list[dict]] = {}
        self.datasets: dict[str, PairDataset] = {}
        self.truncated: dict[str, int] = {}

    # ------------------------------------------------------------------ raw examples
    @property
    def folder(self) -> Path:
        return self.data_root / self.dataset_name

    def local_rows(self, split_file: str) -> list[dict] | None:
        """Rows of a local split, or None when there is no such file."""
        path = find_split_file(self.folder, split_file)
        if path is None:
            return None
        rows = list(iter_jsonl(path, required=self.required_fields()))
        if not rows:
            raise DataError(f"{path}: split is empty")
        return rows

    def required_fields(self) -> list[str]:
        """Fields every local row must have (a missing one is an error naming file and line)."""
        return [self.src_field, self.tgt_field] + ([self.refs_field] if self.refs_field else [])

    def missing_split_hint(self, split: str) -> str:
        """Appended to the error for a split found neither locally nor on the Hub (how to get it)."""
        return ""

    def hub_rows(self, split_file: str) -> list[dict]:
        """Rows of a Hub split converted to the local field layout (override ``from_hub_row``)."""
        import datasets

        ds = datasets.load_dataset(self.hub_id, self.hub_config, split=split_file)
        return [self.from_hub_row(r) for r in ds]

    def from_hub_row(self, row: dict) -> dict:
        """Map a Hub row onto ``{src_field, tgt_field, …}``; the default expects the same fields."""
        return row

    def to_example(self, row: dict) -> dict:
        """A local-layout row → ``{"src", "tgt", "refs"}`` (after ``swap``)."""
        src, tgt = str(row[self.src_field]), str(row[self.tgt_field])
        refs = [str(r) for r in row[self.refs_field]] if self.refs_field else [tgt]
        if self.swap:
            src, tgt, refs = tgt, src, [src]
        return {"src": src, "tgt": tgt, "refs": refs}

    def load_split(self, split: str) -> list[dict]:
        """Examples of ``split`` (train/validation/test): local files first, then the Hub."""
        if split in self._raw:
            return self._raw[split]
        if split == "predict":
            self._raw[split] = self.predict_examples()
            return self._raw[split]
        rows = self.raw_rows(split)
        limit = self.limit_train if split == "train" else self.limit_eval
        if limit:
            rows = rows[:limit]
        self._raw[split] = [self.to_example(r) for r in rows]
        return self._raw[split]

    def raw_rows(self, split: str) -> list[dict]:
        """Every row of ``split`` in the local field layout (all fields, before ``limit_*`` and ``swap``):
        the local file first, then the Hub."""
        split_file = self.splits.get(split, split)
        rows = self.local_rows(split_file)
        return self._rows_from_hub(split, split_file) if rows is None else rows

    def predict_examples(self) -> list[dict]:
        """Examples for ``predict``: ``predict_file`` if set, else the ``predict_split``."""
        if not self.predict_file:
            return self.load_split(self.predict_split)
        path = Path(self.predict_file).expanduser()
        if not path.is_file():
            raise DataError(f"data.predict_file: {path} does not exist")
        src_key, tgt_key = (self.tgt_field, self.src_field) if self.swap else (self.src_field, self.tgt_field)
        if path.suffix == ".txt":
            rows = [{src_key: line.rstrip("\n")} for line in path.open(encoding="utf-8") if line.strip()]
        else:
            rows = list(iter_jsonl(path, required=[src_key]))
        if not rows:
            raise DataError(f"{path}: no examples to predict")
        if self.limit_eval:
            rows = rows[: self.limit_eval]
        defaults = {tgt_key: "", **({self.refs_field: []} if self.refs_field else {})}
        return [self.to_example({**defaults, **r}) for r in rows]

    def _rows_from_hub(self, split: str, split_file: str) -> list[dict]:
        looked = f"{self.folder}/{split_file}.jsonl[.gz]"
        hint = self.missing_split_hint(split)
        hint = f" {hint}" if hint else ""
        if not self.hub_id:
            raise DataError(
                f"no {split} split for dataset {self.dataset_name!r}: {looked} does not exist and no hub_id is set. "
                f"Set data.data_dir or ${DATA_ENV} to the data root.{hint}"
            )
        try:
            return self.hub_rows(split_file)
        except Exception as e:  # noqa: BLE001 - offline, missing split, bad id
            raise DataError(
                f"no {split} split for dataset {self.dataset_name!r}: {looked} does not exist and the Hub dataset "
                f"{self.hub_id!r} (config {self.hub_config!r}) could not be loaded ({type(e).__name__}: {e}). "
                f"Set data.data_dir or ${DATA_ENV} to the data root, or check the network.{hint}"
            ) from None

    # ------------------------------------------------------------------ tokenizer
    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            if self.tokenizer_name:
                self._tokenizer = load_pretrained_tokenizer(self.tokenizer_name)
            else:
                train = self.load_split("train")
                key = f"{self.folder.resolve()}|{self.hub_id}|{self.hub_config}|{self.swap}|{len(train)}|{train[0]['src']}|{train[-1]['tgt']}"
                self._tokenizer = cached_bpe(
                    self.cache_dir, key, lambda: (t for ex in train for t in (ex["src"], ex["tgt"])), self.bpe_vocab_size
                )
        return self._tokenizer

    @property
    def max_len(self) -> int:
        """Longest sequence of the layout: source + SEP + target + EOS."""
        return self.max_src_len + self.max_tgt_len + 2

    def build_metrics(self) -> dict[str, Metric]:
        """Metrics of this benchmark (name → torchmetrics Metric taking ``update(predictions, references)``),
        plus the ``extra_metrics`` that could be loaded."""
        return {**self.task_metrics(), **load_hub_metrics(self.extra_metrics)}

    def task_metrics(self) -> dict[str, Metric]:
        """The benchmark's own metrics (override per benchmark)."""
        return default_metrics()

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: Optional[str] = None) -> None:
        wanted = {"fit": ["train", "validation"], "validate": ["validation"], "test": ["test"], "predict": ["predict"]}
        for split in wanted.get(stage, ["train", "validation", "test"]) if stage else ["train", "validation", "test"]:
            if split not in self.datasets:
                self.datasets[split] = self.tokenize_split(split)

    def tokenize_split(self, split: str) -> PairDataset:
        examples = self.load_split(split)
        tok = self.tokenizer
        src = tok.encode([ex["src"] for ex in examples])
        tgt = tok.encode([ex["tgt"] for ex in examples])
        n_trunc = sum(len(s) > self.max_src_len or len(t) > self.max_tgt_len for s, t in zip(src, tgt))
        self.truncated[split] = n_trunc
        if n_trunc:
            log.warning("%s/%s: truncated %d of %d examples to max_src_len=%d / max_tgt_len=%d",
                        self.dataset_name, split, n_trunc, len(examples), self.max_src_len, self.max_tgt_len)
        src = [s[: self.max_src_len] for s in src]
        tgt = [t[: self.max_tgt_len] for t in tgt]
        return PairDataset(src, tgt, examples)

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self.tokenize_split(split)
        ds = self.datasets[split]
        lengths = ds.src_len() + ds.tgt_len() + 2
        sampler = BucketBatchSampler(
            None, lengths, max_tokens=self.max_tokens if train else self.eval_max_tokens,
            max_batch_size=self.max_batch_size, shuffle=train, seed=self.seed,
        )
        loader_cls = ResumableDataLoader if train else DataLoader  # training resumes mid-epoch exactly
        return loader_cls(
            ds, batch_sampler=sampler, collate_fn=Seq2SeqCollator(self.tokenizer),
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
        )


    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", train=False)
