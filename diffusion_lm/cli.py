"""``diffusion-lm`` — the LightningCLI entry point.

    diffusion-lm fit --config experiments/multi30k/from_scratch.yaml --trainer.max_steps 2000
    diffusion-lm test --config experiments/multi30k/from_scratch.yaml --ckpt_path runs/…/last.ckpt
    diffusion-lm fit --config … --print_config

Configs are OmegaConf-resolved YAML (``${…}`` interpolation inside one file); components are
injected with ``class_path``. Errors caused by the user's input (data, config values,
checkpoints) end with one ``error: …`` line and exit code 2.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from .errors import DiffusionLMError
from .recipes.base import BaseRecipe

def trainer_defaults() -> dict:
    """TensorBoard under ``runs/``, a ``last.ckpt`` every 1000 steps, and checkpoints loaded with
    weights-only semantics (``diffusion_lm.checkpoint.SafeCheckpointIO``).
    A config that sets ``trainer.logger`` or ``trainer.callbacks`` replaces these."""
    from jsonargparse import lazy_instance
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from .checkpoint import SafeCheckpointIO

    return {
        "logger": lazy_instance(TensorBoardLogger, save_dir="runs", name="diffusion_lm"),
        "callbacks": [
            ModelCheckpoint(save_last=True, save_top_k=0, every_n_train_steps=1000),
        ],
        "plugins": [lazy_instance(SafeCheckpointIO)],
    }


class DiffusionLMCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")


def _quiet() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`isinstance.*LeafSpec`.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.INFO)


def main(args: list[str] | None = None) -> None:
    _quiet()
    try:
        DiffusionLMCLI(
            BaseRecipe,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_kwargs={"parser_mode": "omegaconf"},
            trainer_defaults=trainer_defaults(),
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except DiffusionLMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
