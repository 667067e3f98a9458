"""The LightningCLI behind ``diffusion-lm`` (see :mod:`diffusion_lm.cli`) and the commands it dispatches."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from ..checkpoint import SafeCheckpointIO
from ..recipes.base import BaseRecipe
from .trainer import DiffusionLMTrainer


def trainer_defaults() -> dict:
    """TensorBoard under ``runs/`` and a ``last.ckpt`` every 1000 steps.
    A config that sets ``trainer.logger`` or ``trainer.callbacks`` replaces these."""
    from jsonargparse import lazy_instance
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    return {
        "logger": lazy_instance(TensorBoardLogger, save_dir="runs", name="diffusion_lm"),
        "callbacks": [
            ModelCheckpoint(save_last=True, save_top_k=0, every_n_train_steps=1000),
        ],
    }


class RunConfig(SaveConfigCallback):
    """Writes the run's ``config.yaml`` into the logger's directory or, without a logger, into
    ``trainer.default_root_dir``. A run with neither (e.g. ``test --trainer.logger=false``) writes nothing:
    Lightning would fall back to the working directory, which is not a run directory."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None or Path(trainer.default_root_dir).resolve() != Path.cwd().resolve():
            super().setup(trainer, pl_module, stage)


class DiffusionLMCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The Trainer, loading checkpoints with weights-only semantics
        (:class:`~diffusion_lm.checkpoint.SafeCheckpointIO`) unless a config set its own checkpoint I/O.
        Set here rather than as a ``trainer.plugins`` default, which would not serialise into config.yaml."""
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = SafeCheckpointIO()
        return trainer

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands plus ``calibrate`` (see :class:`~diffusion_lm.trainer.DiffusionLMTrainer`)."""
        return {**LightningCLI.subcommands(), "calibrate": {"model", "datamodule"}}

    def _parse_ckpt_path(self) -> None:
        """Lightning would apply the checkpoint's hyper-parameters *over* the user's config (so
        ``test --ckpt_path … --model.init_args.generator.init_args.steps 5`` would be ignored);
        :func:`with_checkpoint_defaults` applies them *under* it instead."""


def _quiet() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*in eval mode at the start of training.*")  # the EMA copy
    # main() passes the (checkpoint-completed) arguments explicitly, which LightningCLI warns about
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.INFO)


def build_cli(args: list[str], run: bool = True) -> DiffusionLMCLI:
    """The CLI on ``args``. ``run=False`` takes no subcommand and only builds the recipe, data module and
    trainer from the configs (``cli.model``, ``cli.datamodule``, ``cli.trainer``), for scripts that drive
    them themselves (e.g. ``benchmarks/gpu_check.py``)."""
    return DiffusionLMCLI(
        BaseRecipe,
        LightningDataModule,
        trainer_class=DiffusionLMTrainer,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        trainer_defaults=trainer_defaults(),
        save_config_callback=RunConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )
