"""What several benchmarks share: the explanation when the shipped data has no training split."""

from __future__ import annotations

from ..seq2seq import Seq2SeqDataModule


def no_local_train_hint(dm: Seq2SeqDataModule, split: str, how_to_get: str,
                        smoke: str = "--data.init_args.splits.train=validation") -> str:
    """The part of the missing-split error that says why and what to do (only for the training split)."""
    if split != "train":
        return ""
    return (
        f"The local copy of {type(dm).__name__} has no training split: only its evaluation splits are shipped. "
        f"To train, {how_to_get}, or write {dm.folder}/train.jsonl.gz with one {{\"src\": …, \"tgt\": …}} object "
        "per line. validate/test of a trained checkpoint need no training split (its tokenizer is read from the "
        f"checkpoint). For a smoke run only, train on an evaluation split: {smoke}."
    )
