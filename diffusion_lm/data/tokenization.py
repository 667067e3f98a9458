"""Tokenizers: a Hugging Face tokenizer by name/path, or a byte-level BPE trained on the training split.

Every recipe sees the same small interface (:class:`TextTokenizer`): ``encode``/``decode`` without
special tokens, and the ids of PAD, SEP, EOS (and MASK for absorbing diffusion). A tokenizer
serialises to a dict of strings so that checkpoints carry it and load with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..checkpoint import read_checkpoint
from ..errors import CheckpointError, DataError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "sep": "<sep>", "eos": "<eos>", "mask": "<mask>"}


class TextTokenizer:
    """Wraps a ``PreTrainedTokenizerFast``; special ids fall back sensibly for GPT-2-style vocabularies
    (SEP = EOS = PAD = ``<|endoftext|>``)."""

    def __init__(self, hf_tokenizer) -> None:
        self.hf = hf_tokenizer
        t = hf_tokenizer
        eos = t.eos_token_id if t.eos_token_id is not None else t.sep_token_id
        if eos is None:
            raise DataError(f"tokenizer {t.name_or_path!r} has neither an EOS nor a SEP token")
        self.eos_id: int = eos
        self.sep_id: int = t.sep_token_id if t.sep_token_id is not None else (t.bos_token_id if t.bos_token_id is not None else eos)
        self.pad_id: int = t.pad_token_id if t.pad_token_id is not None else eos
        self.mask_id: int | None = t.mask_token_id
        self.special_ids = frozenset(i for i in (self.eos_id, self.sep_id, self.pad_id, self.mask_id) if i is not None)
        self._digest: str | None = None
        self._direct = self._can_encode_directly(hf_tokenizer)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def same_tokens(self, other: "TextTokenizer") -> bool:
        """Same vocabulary (token → id) and the same special ids: ids mean the same text in both."""
        return (self.pad_id, self.sep_id, self.eos_id, self.mask_id) == (other.pad_id, other.sep_id, other.eos_id, other.mask_id) \
            and self.hf.get_vocab() == other.hf.get_vocab()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self._direct:
            return [e.ids for e in self.hf.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        return self.hf(list(texts), add_special_tokens=False)["input_ids"]

    @staticmethod
    def _can_encode_directly(hf_tokenizer) -> bool:
        """Whether ``encode`` may call the Rust tokenizer directly (2.6x faster than ``__call__``, which also
        builds attention masks and a ``BatchEncoding``). It gives the same ids for the plain fast-tokenizer
        class (trained BPEs, checkpoint tokenizers) when the backend adds no truncation, padding or special-token
        splitting of its own (``__call__`` resets those); subclasses keep ``__call__``."""
        from transformers import PreTrainedTokenizerFast

        backend = hf_tokenizer.backend_tokenizer
        return (type(hf_tokenizer) is PreTrainedTokenizerFast and backend.truncation is None and backend.padding is None
                and not hf_tokenizer.split_special_tokens and not backend.encode_special_tokens)

    def digest(self) -> str:
        """Identifies the vocabulary and encoding rules (a hash of ``tokenizer.json``): caches of token ids
        are keyed by it."""
        if self._digest is None:
            self._digest = hashlib.sha1(self.hf.backend_tokenizer.to_str().encode()).hexdigest()[:12]
        return self._digest

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode([int(i) for i in ids if int(i) not in self.special_ids], skip_special_tokens=True).strip()

    def decode_batch(self, rows: Iterable[Iterable[int]]) -> list[str]:
        return [self.decode(r) for r in rows]

    # --- (de)serialisation for checkpoints
    def to_dict(self) -> dict[str, str]:
        t = self.hf
        specials = {k: getattr(t, f"{k}_token") for k in ("pad", "unk", "sep", "eos", "bos", "mask")}
        return {"tokenizer_json": t.backend_tokenizer.to_str(),
                "special_tokens": json.dumps({k: v for k, v in specials.items() if v is not None})}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> "TextTokenizer":
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        specials = {f"{k}_token": v for k, v in json.loads(d["special_tokens"]).items()}
        hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(d["tokenizer_json"]), **specials)
        return cls(hf)

    def save(self, directory: str | Path) -> None:
        self.hf.save_pretrained(str(directory))


def tokenizer_from_checkpoint(checkpoint: dict) -> TextTokenizer | None:
    """The tokenizer a recipe stored in its checkpoint (``BaseRecipe.on_save_checkpoint``), if any."""
    return TextTokenizer.from_dict(checkpoint["tokenizer"]) if "tokenizer" in checkpoint else None


def checkpoint_tokenizer(path: str | Path) -> TextTokenizer:
    """The tokenizer stored in the diffusion_lm checkpoint at ``path``."""
    tok = tokenizer_from_checkpoint(read_checkpoint(path))
    if tok is None:
        raise CheckpointError(f"{path}: the checkpoint stores no tokenizer (it was trained without a data module)")
    return tok


def load_pretrained_tokenizer(name_or_path: str) -> TextTokenizer:
    """A Hugging Face tokenizer (a local directory, or a Hub id when the network allows), or the
    tokenizer stored in a diffusion_lm checkpoint when the path ends in ``.ckpt``."""
    from transformers import AutoTokenizer

    if str(name_or_path).endswith(".ckpt"):
        return checkpoint_tokenizer(name_or_path)

    try:
        hf = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except Exception as e:  # noqa: BLE001 — transformers raises many kinds
        raise DataError(f"cannot load tokenizer {name_or_path!r}: {e}") from None
    return TextTokenizer(hf)


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> TextTokenizer:
    """Byte-level BPE (lossless decoding, no unknown tokens) with PAD/UNK/SEP/EOS/MASK specials."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, **{f"{k}_token": v for k, v in SPECIAL_TOKENS.items()})
    return TextTokenizer(hf)


def cached_bpe(cache_dir: Path, key: str, texts_fn, vocab_size: int) -> TextTokenizer:
    """Trains a BPE once per (data, vocab size) and caches it; a file lock makes concurrent
    DDP processes wait for the first one instead of training it again."""
    from filelock import FileLock
    from transformers import PreTrainedTokenizerFast

    digest = hashlib.sha1(f"{key}|{vocab_size}".encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"bpe-{vocab_size}-{digest}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not (path / "tokenizer.json").is_file():
            log.info("training a %d-token BPE on the training split (cached in %s)", vocab_size, path)
            train_bpe(texts_fn(), vocab_size).save(path)
    return TextTokenizer(PreTrainedTokenizerFast.from_pretrained(str(path)))
