"""``diffusion-lm`` — the LightningCLI entry point.

    diffusion-lm fit --config experiments/multi30k/from_scratch.yaml --trainer.max_steps 2000
    diffusion-lm test --config experiments/multi30k/from_scratch.yaml --ckpt_path runs/…/last.ckpt
    diffusion-lm fit --config … --print_config
    diffusion-lm calibrate --config … --ckpt_path runs/…/last.ckpt      (ε of adaptive early stopping)
    diffusion-lm predict --config … --ckpt_path runs/…/last.ckpt --output generations.jsonl
    diffusion-lm distill --ckpt_path runs/…/teacher.ckpt --output_dir runs/distill   (sequence-level KD data)
    diffusion-lm prepare --config experiments/wmt14/from_scratch.yaml   (tokenise the splits into the data cache)

Configs are OmegaConf-resolved YAML (``${…}`` interpolation inside one file); components are
injected with ``class_path``. Errors caused by the user's input (data, config values,
checkpoints) end with one ``error: …`` line and exit code 2.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from .data.seq2seq import resolve_cache_dir
from .errors import CheckpointError, DiffusionLMError
from .recipes.base import BaseRecipe
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


class DiffusionLMCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The Trainer, loading checkpoints with weights-only semantics
        (:class:`~diffusion_lm.checkpoint.SafeCheckpointIO`) unless a config set its own checkpoint I/O.
        Set here rather than as a ``trainer.plugins`` default, which would not serialise into config.yaml."""
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        from .checkpoint import SafeCheckpointIO

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


SUBCOMMANDS = ("fit", "validate", "test", "predict", "calibrate")


def _distill(argv: list[str]) -> None:
    from .distill import main as distill_main

    distill_main(argv)


def _prepare(argv: list[str]) -> None:
    from .prepare import main as prepare_main

    prepare_main(argv)


# commands with their own argument parser: they build no Trainer, so LightningCLI does not parse them
STANDALONE_COMMANDS = {"distill": _distill, "prepare": _prepare}


def _ckpt_path_arg(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--ckpt_path" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--ckpt_path="):
            return a.split("=", 1)[1]
    return None


def with_checkpoint_defaults(args: list[str]) -> list[str]:
    """``--ckpt_path FILE``: the checkpoint's model and data configuration (and its tokenizer) become
    a config file inserted right after the subcommand, so every ``--config`` and ``--key value`` the
    user gives still wins. ``diffusion-lm test --ckpt_path last.ckpt`` then needs nothing else."""
    if not args or args[0] not in SUBCOMMANDS:
        return args
    path = _ckpt_path_arg(args)
    if path is None or path in ("last", "best", "hpc", "registry") or not Path(path).is_file():
        if path is not None and path not in ("last", "best", "hpc", "registry"):
            raise CheckpointError(f"checkpoint not found: {path}")
        return args
    cfg = checkpoint_config(path)
    if not cfg:
        return args
    fd, tmp = tempfile.mkstemp(prefix="ckpt-config-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(cfg, f)
    atexit.register(os.remove, tmp)
    return [args[0], "--config", tmp, *args[1:]]


def checkpoint_config(path: str) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - not a zip, truncated, pickled objects …
        raise CheckpointError(f"{path}: not a readable diffusion_lm checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    cfg: dict = {}
    for key, section in (("hyper_parameters", "model"), ("datamodule_hyper_parameters", "data")):
        hp = dict(ckpt.get(key) or {})
        hp.pop("_instantiator", None)
        class_path = hp.pop("_class_path", None)
        if class_path:
            cfg[section] = {"class_path": class_path, "init_args": hp}
    if "tokenizer" in ckpt and "data" in cfg:
        from .data.tokenization import TextTokenizer

        digest = hashlib.sha1(ckpt["tokenizer"]["tokenizer_json"].encode()).hexdigest()[:12]
        out = resolve_cache_dir(None) / "checkpoint-tokenizers" / digest
        if not (out / "tokenizer.json").is_file():
            TextTokenizer.from_dict(ckpt["tokenizer"]).save(out)
        cfg["data"]["init_args"]["tokenizer"] = str(out)
    return cfg


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
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    _quiet()
    try:
        args = list(sys.argv[1:] if args is None else args)
        if args and args[0] in STANDALONE_COMMANDS:
            STANDALONE_COMMANDS[args[0]](args[1:])
            return
        build_cli(with_checkpoint_defaults(args))
    except DiffusionLMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
