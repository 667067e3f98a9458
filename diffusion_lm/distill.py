"""Sequence-level knowledge distillation (Kim & Rush 2016): the data ``diffusion-lm distill`` writes.

Sequence-level KD (Kim & Rush 2016, §3.2) replaces the teacher's distribution over target sequences by
its mode, approximated by beam search, ŷ ≈ argmax_y p_teacher(y | x), and trains the student on the pairs
(x, ŷ). Non-autoregressive and diffusion translation models are trained this way because ŷ is less
multi-modal than the human references (Gu et al. 2018, "Non-Autoregressive Neural Machine Translation").

    diffusion-lm distill --ckpt_path runs/teacher/last.ckpt --output_dir runs/distill

decodes the training split of the teacher's own data module (read from the checkpoint) with its KV-cache
decoder (:class:`~diffusion_lm.models.decoding.ARDecoder`: greedy by default, ``--beam_size 4``) and writes
a dataset root: ``<output_dir>/<dataset>/train.jsonl.gz`` holds every original row with the target field
replaced by the teacher's output and the reference kept as ``<target field>_orig``; the other split files of
the dataset folder are copied unchanged. ``--data.init_args.data_dir=<output_dir>`` then trains on it.
``<split>.distill.json`` records the teacher's decoding cost (seconds, tokens, device) for budget comparisons.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from .checkpoint import read_checkpoint
from .data.atomic import atomic_output, copy_atomic, write_jsonl_atomic
from .data.jsonl import SPLIT_SUFFIXES, find_split_file
from .data.layout import trim_at_eos
from .data.sampler import token_budget_batches
from .data.seq2seq import Seq2SeqDataModule
from .data.tokenization import TextTokenizer
from .errors import CheckpointError, ConfigError
from .models.convert import load_into
from .models.decoding import ARDecoder
from .models.denoiser import Denoiser
from .pretrained import pretrained_from_checkpoint

AUTOREGRESSIVE_ATTENTION = ("causal", "prefix_causal")  # what the Autoregressive recipe trains with


@dataclass
class Teacher:
    model: Denoiser
    tokenizer: TextTokenizer
    datamodule: Seq2SeqDataModule
    path: str


@dataclass
class DistillReport:
    """What one run wrote and what the teacher's decoding cost (``<split>.distill.json``)."""

    teacher: str
    dataset: str
    split: str
    output: str
    copied: list[str]
    rows: int
    generated_tokens: int  # tokens of the outputs, EOS included
    decoder_steps: int  # decoding steps summed over sources (a beam step counts once per source)
    empty_targets: int  # rows whose first token was EOS
    truncated_sources: int  # sources cut to the teacher's max_src_len before decoding
    beam_size: int
    max_new_tokens: int
    device: str
    precision: str
    decode_seconds: float  # the cost to count: tokenising the sources, the teacher's decoding, detokenising
    wall_seconds: float  # the whole command: loading, decoding, writing

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / max(self.decode_seconds, 1e-9)


# ---------------------------------------------------------------------- the teacher
def load_teacher(path: str | Path, data_dir: Optional[str] = None, weights: Literal["ema", "raw"] = "ema") -> Teacher:
    """The denoiser, tokenizer and seq2seq data module stored in an Autoregressive checkpoint."""
    path = str(path)
    ckpt = read_checkpoint(path)
    pre = pretrained_from_checkpoint(ckpt, path, weights)
    recipe = (ckpt.get("hyper_parameters") or {}).get("_class_path", "a recipe")
    if pre.config.attention not in AUTOREGRESSIVE_ATTENTION:
        # a bidirectional/prefix denoiser (any diffusion recipe) cannot be decoded left to right with a KV cache
        raise CheckpointError(f"{path}: not an autoregressive checkpoint ({recipe} with {pre.config.attention!r} "
                              "attention); distill needs a teacher trained with diffusion_lm.recipes.Autoregressive")
    if pre.tokenizer is None:
        raise CheckpointError(f"{path}: the checkpoint stores no tokenizer (it was trained without a data module)")
    model = Denoiser(pre.config)
    load_into(model, pre.state_dict, path, may_add=())
    return Teacher(model.eval(), pre.tokenizer, checkpoint_datamodule(ckpt, path, data_dir), path)


def checkpoint_datamodule(ckpt: dict, path: str, data_dir: Optional[str] = None) -> Seq2SeqDataModule:
    """The data module the checkpoint was trained with (class and arguments as the CLI stored them)."""
    hp = dict(ckpt.get("datamodule_hyper_parameters") or {})
    hp.pop("_instantiator", None)
    class_path = hp.pop("_class_path", None)
    if not class_path:
        raise CheckpointError(f"{path}: the checkpoint stores no data module class (train the teacher with "
                              "`diffusion-lm fit`, which records it)")
    module, _, name = class_path.rpartition(".")
    try:
        cls = vars(importlib.import_module(module)).get(name)
    except ImportError:
        raise CheckpointError(f"{path}: its data module {class_path} cannot be imported") from None
    if not (isinstance(cls, type) and issubclass(cls, Seq2SeqDataModule)):
        raise CheckpointError(f"{path}: its data module {class_path} is not a seq2seq data module "
                              "(distill decodes source → target pairs)")
    if data_dir is not None:
        hp["data_dir"] = data_dir
    return cls(**hp)


def target_field(dm: Seq2SeqDataModule) -> str:
    """The row field the data module trains on as the target (``swap`` reads the source field)."""
    return dm.src_field if dm.swap else dm.tgt_field


# ---------------------------------------------------------------------- decoding
@torch.no_grad()
def decode_sources(teacher: Teacher, sources: Sequence[str], decoder: ARDecoder, max_tokens: int,
                   max_batch_size: int, device: torch.device, precision: str, progress: bool = True,
                   ) -> tuple[list[str], dict[str, int]]:
    """Teacher outputs for ``sources`` (in their order) → (texts, counts: generated_tokens, decoder_steps,
    truncated_sources).

    Prompts are packed longest first into batches with rows · beams · (prompt + new tokens) ≤ ``max_tokens``
    (the KV cache a batch can fill), so rows of a batch need little left padding and an out-of-memory shows
    up in the first batch."""
    from tqdm.auto import tqdm

    tok, dm = teacher.tokenizer, teacher.datamodule
    src = tok.encode(list(sources))
    truncated = sum(len(s) > dm.max_src_len for s in src)
    prompts = [s[: dm.max_src_len] + [tok.sep_id] for s in src]
    lengths = np.array([(len(p) + decoder.max_new_tokens) * decoder.beam_size for p in prompts])
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    batches = token_budget_batches(order, lengths, max_tokens, max_batch_size)
    model = teacher.model.to(device)
    out: list[str] = [""] * len(prompts)
    counts = {"generated_tokens": 0, "decoder_steps": 0, "truncated_sources": truncated}
    bar = tqdm(total=len(prompts), unit="row", desc="distill", disable=not progress, dynamic_ncols=True)
    with bar, torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for batch in batches:
            ids, steps = decoder.decode(model, [prompts[i] for i in batch], tok.eos_id, tok.pad_id)
            counts["generated_tokens"] += sum(len(row) for row in ids)
            counts["decoder_steps"] += int(steps.sum())
            for i, row in zip(batch, ids):
                out[i] = tok.decode(trim_at_eos(row, tok.eos_id, tok.pad_id))
            bar.update(len(batch))
    return out, counts


# ---------------------------------------------------------------------- writing
def split_paths(folder: Path, split_file: str) -> list[Path]:
    """Every file name under which the data module would find ``split_file`` (``find_split_file``)."""
    return [folder / f"{split_file}{suffix}" for suffix in SPLIT_SUFFIXES]


def copy_other_splits(dm: Seq2SeqDataModule, out: Path, split: str) -> list[str]:
    """The data module's other splits, unchanged, into ``out``: local files copied as they are (every file
    of the dataset folder, so extra test sets come along), splits only on the Hub written as JSONL."""
    skip = {p.name for p in split_paths(dm.folder, dm.splits.get(split, split))}
    copied = []
    if dm.folder.is_dir():
        for f in sorted(dm.folder.iterdir()):
            if f.is_file() and f.name not in skip:
                copy_atomic(f, out / f.name)
                copied.append(f.name)
    for other, split_file in dm.splits.items():
        if other != split and find_split_file(out, split_file) is None:
            write_jsonl_atomic(out / f"{split_file}.jsonl.gz", dm.raw_rows(other))
            copied.append(f"{split_file}.jsonl.gz")
    return copied


def distill(ckpt_path: str | Path, output_dir: str | Path, split: str = "train", beam_size: int = 1,
            max_new_tokens: Optional[int] = None, length_penalty: float = 1.0, max_tokens: int = 65536,
            max_batch_size: int = 512, limit: int = 0, data_dir: Optional[str] = None, device: Optional[str] = None,
            precision: Optional[str] = None, weights: Literal["ema", "raw"] = "ema", gzip: bool = True,
            overwrite: bool = False, progress: bool = True) -> DistillReport:
    """Decodes ``split`` with the teacher and writes the distilled dataset root (see the module docstring)."""
    start = time.perf_counter()
    teacher = load_teacher(ckpt_path, data_dir, weights)
    dm = teacher.datamodule
    out = Path(output_dir).expanduser() / dm.dataset_name
    if out.resolve() == dm.folder.resolve():
        raise ConfigError(f"--output_dir {output_dir} is the teacher's data root: the distilled split would replace "
                          f"{dm.folder}; choose another folder")
    split_file = dm.splits.get(split, split)
    dest = out / f"{split_file}{'.jsonl.gz' if gzip else '.jsonl'}"
    existing = [p for p in split_paths(out, split_file) if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} exists (pass --overwrite to replace it)")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = precision or ("bf16" if dev.type == "cuda" else "32")
    decoder = ARDecoder(beam_size=beam_size, max_new_tokens=max_new_tokens or dm.max_tgt_len + 1,
                        length_penalty=length_penalty)

    rows = dm.raw_rows(split)
    rows = rows[:limit] if limit else rows
    copied = copy_other_splits(dm, out, split)  # before decoding: a split missing from the Hub fails early
    t0 = time.perf_counter()
    hyps, counts = decode_sources(teacher, [dm.to_example(r)["src"] for r in rows], decoder,
                                                max_tokens, max_batch_size, dev, precision, progress)
    decode_seconds = time.perf_counter() - t0

    key = target_field(dm)
    orig = f"{key}_orig"  # the human reference; a row distilled twice keeps the first one
    written = write_jsonl_atomic(dest, ({**r, key: h, orig: r.get(orig, r[key])} for r, h in zip(rows, hyps)))
    for stale in existing:  # another suffix would shadow the new file in find_split_file
        if stale != dest:
            stale.unlink()
    report = DistillReport(
        teacher=str(ckpt_path), dataset=dm.dataset_name, split=split, output=str(dest), copied=copied, rows=written,
        empty_targets=sum(not h for h in hyps), **counts,
        beam_size=beam_size, max_new_tokens=decoder.max_new_tokens,
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type, precision=precision,
        decode_seconds=round(decode_seconds, 3), wall_seconds=round(time.perf_counter() - start, 3),
    )
    meta = {**asdict(report), "tokens_per_second": round(report.tokens_per_second, 1)}
    with atomic_output(out / f"{split_file}.distill.json") as f:
        f.write((json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return report


def summary(report: DistillReport, output_dir: str | Path) -> str:
    search = "greedy" if report.beam_size == 1 else f"beam {report.beam_size}"
    return "\n".join([
        f"distilled {report.rows} rows of {report.dataset}/{report.split} with {report.teacher} "
        f"({search}, ≤ {report.max_new_tokens} new tokens, {report.device}, {report.precision})",
        f"teacher decode time: {report.decode_seconds:.1f} s for {report.generated_tokens} tokens "
        f"({report.tokens_per_second:.0f} tokens/s, {report.rows / max(report.decode_seconds, 1e-9):.1f} rows/s); "
        f"wall time {report.wall_seconds:.1f} s",
        f"empty targets: {report.empty_targets}; sources truncated: {report.truncated_sources}",
        f"wrote {report.output}" + (f" (copied: {', '.join(report.copied)})" if report.copied else ""),
        f"train on it: --data.init_args.data_dir={output_dir}",
    ])
