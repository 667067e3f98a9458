"""A recipe, its data module and its trainer built from configs + CLI-style overrides by the project's CLI,
exactly as ``diffusion-lm fit --config … --key=value`` would build them (nothing is re-declared here)."""

from __future__ import annotations

from diffusion_lm.cli import _quiet, build_cli

# What every run of this check leaves out of the configs: no TensorBoard (nothing reads it, and the timestep
# plots would need matplotlib, which the bare GPU image may lack), no progress bar, no validation during
# fit (the budgets are capped: every second goes to training; quality is scored on the test split).
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--trainer.limit_val_batches=0"]


def build(configs: list[str], overrides: list[str]):
    """→ the built ``DiffusionLMCLI`` (``.model``, ``.datamodule``, ``.trainer``). Later overrides win."""
    _quiet()
    args = [a for c in configs for a in ("--config", c)] + QUIET + list(overrides)
    return build_cli(args, run=False)
