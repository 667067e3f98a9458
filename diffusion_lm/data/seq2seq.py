"""Seq2SeqDataModule: (source, target) pairs from local JSONL files or the Hugging Face Hub, laid out
as a prefix LM and batched by token budget.

Rows are read as a stream (never a Python list of the whole split) and tokenised once per (files,
tokenizer, length limits, direction, limit) into an on-disk cache (:mod:`~diffusion_lm.data.pair_cache`)
by ``prepare_data``, in parallel over the cores; ``setup`` of every process then opens that cache (row
offsets memory-mapped, rows read on demand), so no rank holds the text or a per-row Python object.
``token_cache=False`` tokenises into memory instead (the same items; ``predict`` always does, its inputs
are small and often one-off files)."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from ..errors import DataError
from ..metrics.hub import MetricSpec, load_hub_metrics
from ..metrics.text import default_metrics
from .base import DATA_ENV, TokenizedDataModule, resolve_cache_dir, resolve_data_root, stage_splits
from .jsonl import find_split_file, iter_jsonl
from .layout import build_batch
from .loader import ResumableDataLoader
from .pair_cache import (
    PairCache,
    build_or_open,
    cache_digest,
    chunked,
    default_workers,
    encode_examples,
    encode_pairs,
    ordered_map,
    write_pair_cache,
)
from .sampler import BucketBatchSampler
from .tokenization import TextTokenizer

__all__ = ["CachedPairDataset", "PairDataset", "Seq2SeqCollator", "Seq2SeqDataModule", "resolve_cache_dir",
           "resolve_data_root"]

log = logging.getLogger(__name__)


class PairDataset(Dataset):
    """Tokenised pairs in flat arrays (one allocation instead of millions of small lists)."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]], examples: list[dict]) -> None:
        self.src_off = np.cumsum([0] + [len(s) for s in src_ids])
        self.tgt_off = np.cumsum([0] + [len(t) for t in tgt_ids])
        self.src = np.fromiter((i for s in src_ids for i in s), dtype=np.int32, count=int(self.src_off[-1]))
        self.tgt = np.fromiter((i for t in tgt_ids for i in t), dtype=np.int32, count=int(self.tgt_off[-1]))
        self.examples = examples  # dicts with "src", "tgt", "refs" (list of references) and any extra fields

    def __len__(self) -> int:
        return len(self.src_off) - 1

    def src_len(self) -> np.ndarray:
        return np.diff(self.src_off)

    def tgt_len(self) -> np.ndarray:
        return np.diff(self.tgt_off)

    def src_ids(self, i: int) -> np.ndarray:
        return self.src[self.src_off[i] : self.src_off[i + 1]]

    def tgt_ids(self, i: int) -> np.ndarray:
        return self.tgt[self.tgt_off[i] : self.tgt_off[i + 1]]

    def example(self, i: int) -> dict:
        return self.examples[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"src_ids": self.src_ids(i), "tgt_ids": self.tgt_ids(i), "index": i, **self.example(i)}


class CachedPairDataset(PairDataset):
    """The same items, read from a :class:`~diffusion_lm.data.pair_cache.PairCache`; it pickles as its path
    (DataLoader workers and spawned ranks open the files themselves)."""

    def __init__(self, path: str | Path) -> None:
        self._open(Path(path))

    def _open(self, path: Path) -> None:
        self.cache = PairCache(path)
        self.src_off, self.tgt_off = self.cache.src_off, self.cache.tgt_off

    def src_ids(self, i: int) -> np.ndarray:
        return self.cache.src_rows([i])[0]

    def tgt_ids(self, i: int) -> np.ndarray:
        return self.cache.tgt_rows([i])[0]

    def example(self, i: int) -> dict:
        return self.cache.examples_of([i])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """A whole batch at once (``DataLoader`` calls this with a batch sampler): one vectorised offset lookup
        per file and one JSON parse, the same items as ``[self[i] for i in indices]``."""
        rows = [int(i) for i in indices]
        return [{"src_ids": s, "tgt_ids": t, "index": i, **ex} for i, s, t, ex in
                zip(rows, self.cache.src_rows(rows), self.cache.tgt_rows(rows), self.cache.examples_of(rows))]

    def __getstate__(self) -> dict:
        return {"path": str(self.cache.path)}

    def __setstate__(self, state: dict) -> None:
        self._open(Path(state["path"]))


def reservoir(items: Iterable[Any], k: int, seed: int = 0) -> list[Any]:
    """A uniform sample of ``k`` items (Vitter's algorithm R) in their original order; all items when there
    are at most ``k``."""
    rng = random.Random(seed)
    kept: list[tuple[int, Any]] = []
    for i, item in enumerate(items):
        if i < k:
            kept.append((i, item))
        else:
            j = rng.randrange(i + 1)
            if j < k:
                kept[j] = (i, item)
    return [item for _, item in sorted(kept, key=lambda t: t[0])]


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
        bpe_train_samples: Training pairs the BPE is trained on: a uniform sample (seeded, in file order) when
            the split is larger, so training the BPE costs the same at 40 M pairs as at 1 M.
        cache_dir: Where trained tokenizers and tokenised splits are cached; default ``$DIFFUSION_LM_CACHE`` or
            ``~/.cache/diffusion_lm``.
        token_cache: Tokenise each split once into a memory-mapped cache under ``cache_dir`` (``False``: into
            memory, in every process).
        prepare_workers: Processes that tokenise a split into the cache (0 = every available core).
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

    chunk_rows = 8192  # rows per tokenisation task: large enough to amortise the transfer to a worker

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
        splits: dict[str, str] = {"train": "train", "validation": "validation", "test": "test"},  # noqa: B006 — a default jsonargparse shows; never mutated
        tokenizer: Optional[str] = None,
        bpe_vocab_size: int = 8000,
        bpe_train_samples: int = 1_000_000,
        cache_dir: Optional[str] = None,
        token_cache: bool = True,
        prepare_workers: int = 0,
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
        self.bpe_vocab_size, self.bpe_train_samples = bpe_vocab_size, bpe_train_samples
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.token_cache, self.prepare_workers = token_cache, prepare_workers
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

    # ------------------------------------------------------------------ raw rows and examples
    @property
    def folder(self) -> Path:
        return self.data_root / self.dataset_name

    def split_file(self, split: str) -> str:
        return self.splits.get(split, split)

    def local_rows(self, path: Path) -> Iterator[dict]:
        """The rows of a local split file, streamed; an empty split is an error naming the file."""
        n = 0
        for row in iter_jsonl(path, required=self.required_fields()):
            n += 1
            yield row
        if not n:
            raise DataError(f"{path}: split is empty")

    def required_fields(self) -> list[str]:
        """Fields every local row must have (a missing one is an error naming file and line)."""
        return [self.src_field, self.tgt_field] + ([self.refs_field] if self.refs_field else [])

    def missing_split_hint(self, split: str) -> str:  # noqa: ARG002 — interface: tasks hint per split
        """Appended to the error for a split found neither locally nor on the Hub (how to get it)."""
        return ""

    def hub_rows(self, split_file: str) -> Iterable[dict]:
        """Rows of a Hub split converted to the local field layout (override ``from_hub_row``), streamed
        from the memory-mapped Arrow files ``datasets`` keeps."""
        import datasets

        ds = datasets.load_dataset(self.hub_id, self.hub_config, split=split_file)
        return (self.from_hub_row(r) for r in ds)

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

    def repeats(self, split: str) -> int:  # noqa: ARG002 — interface: MBPP repeats the test split
        """Examples made of each row of ``split`` (e.g. several samples per problem for pass@k)."""
        return 1

    def examples_of(self, rows: Iterable[dict], split: str) -> list[dict]:
        k = self.repeats(split)
        return [ex for row in rows for ex in [self.to_example(row)] * k]

    def rows(self, split: str) -> Iterator[dict]:
        """Every row of ``split`` in the local field layout (all fields, before ``limit_*`` and ``swap``),
        streamed: the local file first, then the Hub."""
        path = find_split_file(self.folder, self.split_file(split))
        return self.local_rows(path) if path is not None else self._rows_from_hub(split)

    def raw_rows(self, split: str) -> list[dict]:
        """:meth:`rows` as a list."""
        return list(self.rows(split))

    def limited_rows(self, split: str) -> Iterator[dict]:
        """The rows of ``split`` that become examples (the first ``limit_train`` / ``limit_eval``)."""
        limit = self.limit_train if split == "train" else self.limit_eval
        return itertools.islice(self.rows(split), limit or None)

    def load_split(self, split: str) -> list[dict]:
        """Examples of ``split`` (train/validation/test/predict) in memory: local files first, then the Hub."""
        if split not in self._raw:
            self._raw[split] = (self.predict_examples() if split == "predict"
                                else self.examples_of(self.limited_rows(split), split))
        return self._raw[split]

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

    def _rows_from_hub(self, split: str) -> Iterator[dict]:
        split_file = self.split_file(split)
        looked = f"{self.folder}/{split_file}.jsonl[.gz]"
        hint = self.missing_split_hint(split)
        hint = f" {hint}" if hint else ""
        if not self.hub_id:
            raise DataError(
                f"no {split} split for dataset {self.dataset_name!r}: {looked} does not exist and no hub_id is set. "
                f"Set data.data_dir or ${DATA_ENV} to the data root.{hint}"
            )
        try:
            rows = iter(self.hub_rows(split_file))
            first = next(rows, None)
        except Exception as e:  # noqa: BLE001 — offline, missing split, bad id
            raise DataError(
                f"no {split} split for dataset {self.dataset_name!r}: {looked} does not exist and the Hub dataset "
                f"{self.hub_id!r} (config {self.hub_config!r}) could not be loaded ({type(e).__name__}: {e}). "
                f"Set data.data_dir or ${DATA_ENV} to the data root, or check the network.{hint}"
            ) from None
        if first is not None:
            yield first
            yield from rows

    def source_key(self, split: str) -> str:
        """Identifies the data of ``split``: the local file's path, size and mtime, else the Hub split."""
        path = find_split_file(self.folder, self.split_file(split))
        if path is None:
            return f"hub:{self.hub_id}:{self.hub_config}:{self.split_file(split)}"
        st = path.stat()
        return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"

    # ------------------------------------------------------------------ tokenizer
    def bpe_key(self) -> str:
        fields = f"{self.src_field}|{self.tgt_field}|{self.swap}"
        return (f"{type(self).__qualname__}|{self.source_key('train')}|{fields}|{self.limit_train}|"
                f"{self.bpe_train_samples}")

    def bpe_texts(self) -> Iterator[str]:
        """Source and target of each sampled training pair, in file order."""
        pairs = ((ex["src"], ex["tgt"]) for ex in map(self.to_example, self.limited_rows("train")))
        for src, tgt in reservoir(pairs, self.bpe_train_samples):  # two strings per kept pair, not the row
            yield src
            yield tgt

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

    # ------------------------------------------------------------------ token cache
    def cache_key(self, split: str) -> dict[str, Any]:
        """Everything the tokenised split depends on."""
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}", "source": self.source_key(split),
            "tokenizer": self.tokenizer.digest(), "fields": [self.src_field, self.tgt_field, self.refs_field],
            "swap": self.swap, "max_src_len": self.max_src_len, "max_tgt_len": self.max_tgt_len,
            "limit": self.limit_train if split == "train" else self.limit_eval, "repeats": self.repeats(split),
        }

    def cache_path(self, split: str) -> Path:
        name = (self.dataset_name or type(self).__name__).replace("/", "_")
        return self.cache_dir / "pairs" / f"{name}-{split}-{cache_digest(self.cache_key(split))}"

    def build_cache(self, split: str) -> Path:
        """The cache of ``split``, tokenised by this call unless a complete one exists (any process may call it;
        one builds, the others wait and then map the same files)."""
        path = self.cache_path(split)
        return build_or_open(path, lambda: self._write_cache(split, path))

    def _write_cache(self, split: str, path: Path) -> None:
        tok = self.tokenizer
        workers = self.prepare_workers or default_workers()
        chunks = ordered_map(lambda rows: self._encode_rows(rows, split), chunked(self.limited_rows(split),
                                                                              self.chunk_rows), workers)
        meta = write_pair_cache(path, chunks, tok.vocab_size, self.cache_key(split))
        log.info("%s/%s: %d examples tokenised with %d processes into %s", self.dataset_name, split, meta["rows"],
                 workers, path)

    def _encode_rows(self, rows: list[dict], split: str):
        return encode_examples(self.examples_of(rows, split), self.tokenizer.encode, self.max_src_len, self.max_tgt_len)

    def prepare_splits(self) -> tuple[str, ...]:
        """The splits ``prepare_data`` caches: those of the trainer's stage (fit: train and validation)."""
        trainer = self.trainer
        return stage_splits(trainer.state.fn.value if trainer is not None and trainer.state.fn else "fit")

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """On local rank 0 before any ``setup``: the tokenizer, then the token cache of the stage's splits."""
        super().prepare_data()
        if self.token_cache:
            for split in self.prepare_splits():
                if split != "predict":
                    self.build_cache(split)

    def setup(self, stage: Optional[str] = None) -> None:
        for split in stage_splits(stage):
            if split not in self.datasets:
                self.datasets[split] = self.tokenize_split(split)

    def tokenize_split(self, split: str) -> PairDataset:
        """``split`` tokenised: memory-mapped from the cache, or (``predict``, ``token_cache=False``) in memory."""
        if self.token_cache and split != "predict":
            ds: PairDataset = CachedPairDataset(self.build_cache(split))
            n_trunc = ds.cache.truncated
        else:
            examples = self.load_split(split)
            src, tgt, n_trunc = encode_pairs(examples, self.tokenizer.encode, self.max_src_len, self.max_tgt_len)
            ds = PairDataset(src, tgt, examples)
        self.truncated[split] = n_trunc
        if n_trunc:
            log.warning("%s/%s: truncated %d of %d examples to max_src_len=%d / max_tgt_len=%d",
                        self.dataset_name, split, n_trunc, len(ds), self.max_src_len, self.max_tgt_len)
        return ds

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
