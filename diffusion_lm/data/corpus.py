"""TextCorpus: plain text for language-model pretraining (AR) and diffusion continued pretraining (AR2Diff).

Documents come from local files — ``<root>/<dataset>/<split>.jsonl[.gz]`` rows ``{"text": …}`` (the layout
of ``lm_corpora/``), or any ``.txt`` / ``.jsonl[.gz]`` files listed per split — or, when a split has no
local file, from a Hugging Face Hub dataset (e.g. ``Salesforce/wikitext``). They are tokenised once
(cached as a token stream), joined with EOS after every document and **packed** into blocks of
``block_size`` tokens (the tail that does not fill a block is dropped), so no position is padding.

How a block maps onto the prefix-LM layout ``[prefix][target]`` of the recipes (``objective``):

* ``lm`` — the whole block is target (``prefix_len = 0``): the Autoregressive recipe predicts every token
  from the previous ones. This is AR pretraining, stage (1) of AR2Diff.
* ``prefix_lm`` — the block is split at a random point s, uniform in [``min_prefix``, ``block_size`` −
  ``min_target``]: tokens before s are the clean prompt (``prefix_len = s``), tokens from s on are the
  target that is noised and denoised (the prefix-LM objective AR2Diff continues pretraining with, and the
  same layout as a seq2seq pair, without a SEP token). Training draws a new split every time a block is
  seen; validation uses a fixed split per block (seeded by its index), so validation losses are comparable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from ..errors import DataError
from ..metrics.text import default_metrics
from .atomic import atomic_output
from .base import DATA_ENV, TokenizedDataModule, resolve_cache_dir, resolve_data_root, stage_splits
from .jsonl import find_split_file, iter_jsonl, open_text
from .tokenization import TextTokenizer

log = logging.getLogger(__name__)


def pack(stream: np.ndarray, block_size: int) -> np.ndarray:
    """(T,) token stream → (T // block_size, block_size) blocks; the incomplete tail is dropped."""
    n = len(stream) // block_size
    return stream[: n * block_size].reshape(n, block_size)


def paragraphs(path: Path) -> Iterator[str]:
    """Documents of a ``.txt`` file: blocks of lines separated by blank lines."""
    with open_text(path) as fh:
        buf: list[str] = []
        for line in fh:
            if line.strip():
                buf.append(line.rstrip("\n"))
            elif buf:
                yield "\n".join(buf)
                buf = []
        if buf:
            yield "\n".join(buf)


class BlockDataset(Dataset):
    """Packed blocks laid out for the recipes (see the module docstring for ``objective``)."""

    def __init__(self, blocks: np.ndarray, objective: str, min_prefix: int, min_target: int, seed: int,
                 fixed_split: bool) -> None:
        self.blocks = blocks  # (N, block_size) int32
        self.objective = objective
        self.min_prefix, self.min_target = min_prefix, min_target
        self.seed = seed
        self.fixed_split = fixed_split

    def __len__(self) -> int:
        return len(self.blocks)

    def split_point(self, i: int) -> int:
        if self.objective == "lm":
            return 0
        lo, hi = self.min_prefix, self.blocks.shape[1] - self.min_target  # s ∈ [lo, hi]
        if self.fixed_split:
            return int(np.random.default_rng([self.seed, i]).integers(lo, hi + 1))
        return int(torch.randint(lo, hi + 1, ()))  # torch's RNG: seeded by Lightning, distinct per worker

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"ids": self.blocks[i], "prefix_len": self.split_point(i), "index": i}


class BlockCollator:
    """Blocks → the batch dict of ``data.layout`` (every position valid; the target after the prefix)."""

    def __init__(self, tokenizer: TextTokenizer, with_text: bool) -> None:
        self.tokenizer = tokenizer
        self.with_text = with_text

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        ids = torch.as_tensor(np.stack([it["ids"] for it in items]), dtype=torch.long)  # (B, L)
        B, L = ids.shape
        prefix_len = torch.as_tensor([it["prefix_len"] for it in items])
        target_mask = torch.arange(L)[None, :] >= prefix_len[:, None]
        batch: dict[str, Any] = {
            "input_ids": ids, "valid": torch.ones((B, L), dtype=torch.bool), "target_mask": target_mask,
            "prefix_len": prefix_len, "tgt_len": L - prefix_len, "index": torch.as_tensor([it["index"] for it in items]),
        }
        if self.with_text:  # for generation during evaluation: prompt text and the true continuation
            tok = self.tokenizer
            rows = ids.tolist()
            batch["src_text"] = [tok.decode(r[:p]) for r, p in zip(rows, prefix_len.tolist())]
            batch["refs"] = [[tok.decode(r[p:])] for r, p in zip(rows, prefix_len.tolist())]
        return batch


class TextCorpus(TokenizedDataModule):
    """Plain-text corpus, tokenised, packed into fixed-length blocks.

    Args:
        dataset: Folder(s) under the data root holding ``{train,validation,test}.jsonl[.gz]`` with a text
            field (e.g. ``lm_corpora/enwiki_2015_wikiextractor``); a list mixes several corpora (a split
            missing from one folder is skipped there).
        files: Explicit files per split, e.g. ``{train: [a.txt, b.jsonl.gz]}``: ``.txt`` files hold documents
            separated by blank lines, ``.jsonl[.gz]`` files one ``{text_field: …}`` object per line.
        data_dir: Data root; default ``$DIFFUSION_LM_DATA`` or ``./data``.
        text_field: Field of the text in JSONL rows and Hub rows.
        hub_id: Hugging Face Hub dataset used for a split with no local file (needs network).
        hub_config: Its configuration (e.g. ``wikitext-103-raw-v1``).
        splits: Names of the train/validation/test splits in the files / on the Hub.
        tokenizer: Hugging Face tokenizer name/path or a diffusion_lm ``.ckpt`` (its stored tokenizer);
            ``None`` trains a byte-level BPE on the training text (cached).
        bpe_vocab_size: Vocabulary of the trained BPE.
        bpe_train_chars: Characters of training text the BPE is trained on.
        cache_dir: Tokenizer and token-stream cache; default ``$DIFFUSION_LM_CACHE`` or ``~/.cache/diffusion_lm``.
        block_size: Tokens per packed block (= the model's sequence length).
        objective: ``lm`` (whole block is target) or ``prefix_lm`` (random split into prompt and target).
        min_prefix: Fewest prompt tokens with ``prefix_lm``.
        min_target: Fewest target tokens with ``prefix_lm``.
        max_tokens: Training batch size in tokens (blocks per batch = max_tokens // block_size).
        eval_max_tokens: Evaluation batch size in tokens.
        limit_train_tokens: Tokenise only about this many training tokens (0 = all).
        limit_eval_blocks: Use only the first N validation/test blocks (0 = all).
        num_workers: DataLoader worker processes.
        seed: Shuffling and split-point seed.
    """

    def __init__(
        self,
        dataset: Union[str, list[str], None] = None,
        files: Optional[dict[str, list[str]]] = None,
        data_dir: Optional[str] = None,
        text_field: str = "text",
        hub_id: Optional[str] = None,
        hub_config: Optional[str] = None,
        splits: dict[str, str] = {"train": "train", "validation": "validation", "test": "test"},  # noqa: B006 — a default jsonargparse shows; never mutated
        tokenizer: Optional[str] = None,
        bpe_vocab_size: int = 8000,
        bpe_train_chars: int = 20_000_000,
        cache_dir: Optional[str] = None,
        block_size: int = 128,
        objective: Literal["lm", "prefix_lm"] = "lm",
        min_prefix: int = 8,
        min_target: int = 8,
        max_tokens: int = 8192,
        eval_max_tokens: int = 16384,
        limit_train_tokens: int = 0,
        limit_eval_blocks: int = 0,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if dataset is None and not files and not hub_id:
            raise DataError("TextCorpus needs data.init_args.dataset, files or hub_id")
        if objective == "prefix_lm" and not 1 <= min_prefix <= block_size - max(min_target, 1):
            raise DataError(f"min_prefix={min_prefix} and min_target={min_target} do not fit block_size={block_size}")
        self.datasets_names = [dataset] if isinstance(dataset, str) else list(dataset or [])
        self.files = {k: [Path(p).expanduser() for p in v] for k, v in (files or {}).items()}
        self.data_root = resolve_data_root(data_dir)
        self.text_field = text_field
        self.hub_id, self.hub_config = hub_id, hub_config
        self.splits = splits
        self.tokenizer_name = tokenizer
        self.bpe_vocab_size, self.bpe_train_chars = bpe_vocab_size, bpe_train_chars
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.block_size = block_size
        self.objective = objective
        self.min_prefix, self.min_target = min_prefix, min_target
        self.max_tokens, self.eval_max_tokens = max_tokens, eval_max_tokens
        self.limit_train_tokens, self.limit_eval_blocks = limit_train_tokens, limit_eval_blocks
        self.num_workers = num_workers
        self.seed = seed
        self._tokenizer: TextTokenizer | None = None
        self.blocks: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ documents
    def local_files(self, split: str) -> list[Path]:
        name = self.splits.get(split, split)
        found = list(self.files.get(split, []))
        for ds in self.datasets_names:
            path = find_split_file(self.data_root / ds, name)
            if path is not None:
                found.append(path)
        missing = [p for p in found if not p.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: file not found")
        return found

    def documents(self, split: str) -> Iterator[str]:
        """Every non-empty document of ``split``: local files first, else the Hub."""
        paths = self.local_files(split)
        if paths:
            for path in paths:
                if path.suffix == ".txt" or path.name.endswith(".txt.gz"):
                    yield from paragraphs(path)
                    continue
                for row in iter_jsonl(path, required=[self.text_field]):
                    text = str(row[self.text_field])
                    if text.strip():
                        yield text
            return
        yield from self._hub_documents(split)

    def _hub_documents(self, split: str) -> Iterator[str]:
        looked = [str(self.data_root / ds / f"{self.splits.get(split, split)}.jsonl[.gz]") for ds in self.datasets_names]
        where = f"{', '.join(looked) or 'no local dataset/files'}"
        if not self.hub_id:
            raise DataError(f"no {split} split: {where} (set data.data_dir or ${DATA_ENV}, or hub_id)")
        try:
            import datasets

            ds = datasets.load_dataset(self.hub_id, self.hub_config, split=self.splits.get(split, split))
        except Exception as e:  # noqa: BLE001 — offline, missing split, bad id
            raise DataError(f"no {split} split: {where}; the Hub dataset {self.hub_id!r} (config {self.hub_config!r}) "
                            f"could not be loaded ({type(e).__name__}: {e})") from None
        for row in ds:
            text = str(row[self.text_field])
            if text.strip():
                yield text

    def has_split(self, split: str) -> bool:
        return bool(self.local_files(split)) or bool(self.hub_id)

    def _source_key(self, split: str) -> str:
        parts = [f"{p.resolve()}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in self.local_files(split)]
        return "|".join(parts) or f"hub:{self.hub_id}:{self.hub_config}:{self.splits.get(split, split)}"

    # ------------------------------------------------------------------ tokenizer
    def bpe_key(self) -> str:
        return f"corpus|{self._source_key('train')}|{self.bpe_train_chars}"

    def bpe_texts(self) -> Iterator[str]:
        """Training documents up to ``bpe_train_chars`` characters."""
        n = 0
        for doc in self.documents("train"):
            yield doc
            n += len(doc)
            if n >= self.bpe_train_chars:
                return

    @property
    def max_len(self) -> int:
        return self.block_size

    @property
    def max_tgt_len(self) -> int:
        """Longest target (EOS excluded, as for seq2seq data): the block after the shortest prefix, minus one."""
        return self.block_size - (self.min_prefix if self.objective == "prefix_lm" else 0) - 1

    def build_metrics(self) -> dict[str, Metric]:
        return default_metrics()

    # ------------------------------------------------------------------ token streams
    def token_stream(self, split: str) -> np.ndarray:
        """All documents of ``split`` tokenised, each followed by EOS (cached on disk)."""
        from filelock import FileLock

        tok = self.tokenizer
        limit = self.limit_train_tokens if split == "train" else 0
        digest = hashlib.sha1(f"{self._source_key(split)}|{self.text_field}|{limit}|{tok.digest()}".encode()).hexdigest()[:16]
        path = self.cache_dir / f"corpus-{split}-{digest}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.is_file():
                stream = self._tokenize(self.documents(split), limit)
                with atomic_output(path) as f:  # an interrupted save leaves no .npy that a later run would read
                    np.save(f, stream)
                log.info("%s: %d tokens tokenised (cached in %s)", split, len(stream), path)
        return np.load(path, mmap_mode="r")

    def _tokenize(self, docs: Iterator[str], limit: int, chunk_chars: int = 1_000_000) -> np.ndarray:
        """Encodes in chunks of about ``chunk_chars`` characters; stops after ``limit`` tokens (0 = all)."""
        tok, parts, total = self.tokenizer, [], 0
        buf: list[str] = []
        buf_chars = 0
        for doc in docs:
            buf.append(doc)
            buf_chars += len(doc)
            if buf_chars < chunk_chars:
                continue
            for ids in tok.encode(buf):
                parts.append(np.asarray(ids + [tok.eos_id], dtype=np.int32))
                total += len(parts[-1])
            buf, buf_chars = [], 0
            if limit and total >= limit:
                break
        for ids in tok.encode(buf) if buf else []:
            parts.append(np.asarray(ids + [tok.eos_id], dtype=np.int32))
        if not parts:
            raise DataError("the corpus has no text")
        stream = np.concatenate(parts)
        return stream[:limit] if limit else stream

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: Optional[str] = None) -> None:
        for split in stage_splits(stage):
            if split in self.blocks or (split != "train" and not self.has_split(split)):
                continue
            blocks = pack(self.token_stream(split), self.block_size)
            if split != "train" and self.limit_eval_blocks:
                blocks = blocks[: self.limit_eval_blocks]
            if len(blocks) == 0:
                raise DataError(f"the {split} split has fewer than block_size={self.block_size} tokens")
            self.blocks[split] = blocks

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.blocks:
            self.setup(None)
        if split not in self.blocks:
            raise DataError(f"no {split} split in {self.datasets_names or self.files or self.hub_id}")
        ds = BlockDataset(self.blocks[split], self.objective, self.min_prefix, self.min_target,
                          self.seed, fixed_split=not train)
        budget = self.max_tokens if train else self.eval_max_tokens
        return DataLoader(
            ds, batch_size=max(1, budget // self.block_size), shuffle=train, drop_last=train,
            collate_fn=BlockCollator(self.tokenizer, with_text=not train), num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
        )



class WikiText(TextCorpus):
    """WikiText (Merity et al. 2016). Local: ``<root>/lm_corpora/<variant folder>/`` (e.g. ``wikitext2_v1``,
    which holds validation and test only); any other split from the Hub dataset ``Salesforce/wikitext``.

    Args:
        variant: ``wikitext-2-v1``, ``wikitext-2-raw-v1``, ``wikitext-103-v1`` or ``wikitext-103-raw-v1``.
        **kwargs: See :class:`TextCorpus`.
    """

    def __init__(self, variant: Literal["wikitext-2-v1", "wikitext-2-raw-v1", "wikitext-103-v1", "wikitext-103-raw-v1"]
                 = "wikitext-2-v1", **kwargs: Any) -> None:
        folder = "lm_corpora/" + variant.replace("wikitext-", "wikitext").replace("-", "_")
        kwargs.setdefault("dataset", folder)
        kwargs.setdefault("hub_id", "Salesforce/wikitext")
        kwargs.setdefault("hub_config", variant)
        super().__init__(**kwargs)
        self.variant = variant
