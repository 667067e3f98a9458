"""``diffusion-lm <command>``: Lightning's subcommands go to the LightningCLI (:mod:`.app`); the commands with
their own argument parser (they build no Trainer) go to their modules."""

from __future__ import annotations

import sys

from ..errors import DiffusionLMError
from .app import _quiet, build_cli
from .checkpoint_config import with_checkpoint_defaults
from .distill import main as distill
from .export import main as export
from .prepare import main as prepare

STANDALONE_COMMANDS = {"distill": distill, "export": export, "prepare": prepare}


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
