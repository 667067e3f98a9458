"""``diffusion-lm distill``: sequence-level knowledge distillation data (Kim & Rush 2016) from an
autoregressive teacher checkpoint (:mod:`diffusion_lm.distill`).

    diffusion-lm distill --ckpt_path runs/teacher/last.ckpt --output_dir runs/distill [--beam_size 4]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..distill import distill, summary
from ..errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffusion-lm distill", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt_path", required=True, help="Autoregressive teacher checkpoint (.ckpt of this framework)")
    p.add_argument("--output_dir", required=True, help="data root to write: <output_dir>/<dataset>/<split>.jsonl.gz")
    p.add_argument("--split", default="train", help="split to distill (train, validation, test)")
    p.add_argument("--beam_size", type=int, default=1, help="1 = greedy; Kim & Rush decode with a beam (e.g. 4)")
    p.add_argument("--max_new_tokens", type=int, default=None, help="default: the data's max_tgt_len + 1 (EOS)")
    p.add_argument("--length_penalty", type=float, default=1.0, help="beam ranking log p / length^α")
    p.add_argument("--max_tokens", type=int, default=65536, help="per batch: rows · beams · (prompt + new tokens)")
    p.add_argument("--max_batch_size", type=int, default=512)
    p.add_argument("--limit", type=int, default=0, help="distill only the first N rows (0 = all)")
    p.add_argument("--data_dir", default=None, help="data root of the source split (default: the checkpoint's)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--precision", choices=("32", "bf16"), default=None, help="default: bf16 on cuda, else 32")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    p.add_argument("--no_gzip", action="store_true", help="write .jsonl instead of .jsonl.gz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing distilled split")
    p.add_argument("--no_progress", action="store_true")
    return p


def main(argv: Sequence[str]) -> None:
    """Errors are raised as :class:`~diffusion_lm.errors.DiffusionLMError` for the CLI to print."""
    a = build_parser().parse_args(list(argv))
    if a.beam_size < 1 or (a.max_new_tokens is not None and a.max_new_tokens < 1):
        raise ConfigError("--beam_size and --max_new_tokens must be ≥ 1")
    report = distill(a.ckpt_path, a.output_dir, split=a.split, beam_size=a.beam_size, max_new_tokens=a.max_new_tokens,
                     length_penalty=a.length_penalty, max_tokens=a.max_tokens, max_batch_size=a.max_batch_size,
                     limit=a.limit, data_dir=a.data_dir, device=a.device, precision=a.precision, weights=a.weights,
                     gzip=not a.no_gzip, overwrite=a.overwrite, progress=not a.no_progress)
    print(summary(report, a.output_dir))
