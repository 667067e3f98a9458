"""``diffusion-lm`` — the command line.

    diffusion-lm fit --config experiments/multi30k/from_scratch.yaml --trainer.max_steps 2000
    diffusion-lm test --config experiments/multi30k/from_scratch.yaml --ckpt_path runs/…/last.ckpt
    diffusion-lm fit --config … --print_config
    diffusion-lm calibrate --config … --ckpt_path runs/…/last.ckpt      (ε of adaptive early stopping)
    diffusion-lm predict --config … --ckpt_path runs/…/last.ckpt --output generations.jsonl
    diffusion-lm distill --ckpt_path runs/…/teacher.ckpt --output_dir runs/distill   (sequence-level KD data)
    diffusion-lm export runs/…/ar.ckpt hf_out/                            (an AR checkpoint as a HF model)
    diffusion-lm prepare --config experiments/wmt14/from_scratch.yaml   (tokenise the splits into the data cache)

Configs are OmegaConf-resolved YAML (``${…}`` interpolation inside one file); components are
injected with ``class_path``. Errors caused by the user's input (data, config values,
checkpoints) end with one ``error: …`` line and exit code 2.

Modules: :mod:`.commands` (:func:`main`: which command goes where), :mod:`.app` (the LightningCLI,
:func:`build_cli`), :mod:`.checkpoint_config` (``--ckpt_path`` defaults), :mod:`.trainer` (the Trainer with
``calibrate`` and a JSONL ``predict``), :mod:`.calibrate`, :mod:`.predict`, :mod:`.distill`, :mod:`.export`,
:mod:`.prepare`.
"""

from .app import DiffusionLMCLI, _quiet, build_cli, trainer_defaults
from .checkpoint_config import checkpoint_config, with_checkpoint_defaults
from .commands import main

__all__ = ["DiffusionLMCLI", "_quiet", "build_cli", "checkpoint_config", "main", "trainer_defaults",
           "with_checkpoint_defaults"]
