"""``--ckpt_path FILE``: the checkpoint's own model and data configuration as the defaults of a command."""

from __future__ import annotations

import atexit
import hashlib
import os
import tempfile
from pathlib import Path

import yaml

from ..checkpoint import read_checkpoint
from ..data.seq2seq import resolve_cache_dir
from ..data.tokenization import TextTokenizer
from ..errors import CheckpointError

SUBCOMMANDS = ("fit", "validate", "test", "predict", "calibrate")


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
    """The ``model`` and ``data`` sections the CLI recorded in the checkpoint (``class_path`` + ``init_args``),
    the data's tokenizer pointing to the checkpoint's own (written once to the cache directory)."""
    ckpt = read_checkpoint(path)
    cfg: dict = {}
    for key, section in (("hyper_parameters", "model"), ("datamodule_hyper_parameters", "data")):
        hp = dict(ckpt.get(key) or {})
        hp.pop("_instantiator", None)
        class_path = hp.pop("_class_path", None)
        if class_path:
            cfg[section] = {"class_path": class_path, "init_args": hp}
    if "tokenizer" in ckpt and "data" in cfg:
        digest = hashlib.sha1(ckpt["tokenizer"]["tokenizer_json"].encode()).hexdigest()[:12]
        out = resolve_cache_dir(None) / "checkpoint-tokenizers" / digest
        if not (out / "tokenizer.json").is_file():
            TextTokenizer.from_dict(ckpt["tokenizer"]).save(out)
        cfg["data"]["init_args"]["tokenizer"] = str(out)
    return cfg
