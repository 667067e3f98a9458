"""``diffusion-lm prepare``: build a config's data caches (tokenizer, tokenised splits) ahead of a run.

    diffusion-lm prepare --config experiments/wmt14/from_scratch.yaml [--splits train validation test]

Reads the same ``--config`` files and ``--data.…`` overrides as ``fit`` (only the data module is built),
trains or loads the tokenizer, tokenises each split into its memory-mapped cache and prints where each
cache is and how big. ``fit`` builds missing caches itself (in ``prepare_data``, rank 0 of each node);
running this first keeps the tokenisation off the accelerators' clock, and on a shared file system one
``prepare`` serves every node.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from lightning.pytorch import LightningDataModule

from ..data.base import SPLITS
from ..data.pair_cache import PairCache, cache_size
from ..data.seq2seq import Seq2SeqDataModule
from ..errors import ConfigError
from ..recipes.base import BaseRecipe
from .app import DiffusionLMCLI


class DataOnlyCLI(DiffusionLMCLI):
    """Parses a training config like ``fit`` and instantiates only its data module (no model, no trainer)."""

    def instantiate_classes(self) -> None:
        cfg = self.config.clone()
        cfg["model"] = None
        self.config_init = self.parser.instantiate(cfg)
        self.datamodule, self.model, self.trainer = self.config_init["data"], None, None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffusion-lm prepare", description=__doc__.split("\n\n")[0],
                                epilog="Every other argument (--config FILE, --data.init_args.KEY VALUE) goes to the "
                                       "config parser of `fit`.")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), help="splits to tokenise (default: %(default)s)")
    return p


def main(argv: Sequence[str]) -> None:
    args, rest = build_parser().parse_known_args(list(argv))
    cli = DataOnlyCLI(BaseRecipe, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                      parser_kwargs={"parser_mode": "omegaconf"}, args=rest, run=False)
    dm = cli.datamodule
    if not isinstance(dm, Seq2SeqDataModule):
        raise ConfigError(f"prepare builds Seq2SeqDataModule caches; {type(dm).__name__} caches its token stream "
                          "on first use")
    t0 = time.perf_counter()
    print(f"tokenizer: vocabulary {dm.tokenizer.vocab_size} ({time.perf_counter() - t0:.1f} s)", flush=True)
    total = 0
    for split in args.splits:
        t0 = time.perf_counter()
        cache = PairCache(dm.build_cache(split))
        size = cache_size(cache.path)
        total += size
        print(f"{split}: {len(cache):,} examples, {cache.truncated:,} truncated, {size / 2**20:,.1f} MiB in "
              f"{cache.path} ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"total {total / 2**20:,.1f} MiB under {dm.cache_dir}")
