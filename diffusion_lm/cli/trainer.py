"""The Trainer behind ``diffusion-lm``: Lightning's, plus ``calibrate`` and a JSONL-writing ``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L

from ..diffusion.calibration import DEFAULT_EPSILONS, DEFAULT_TOLERANCE
from ..recipes.base import BaseRecipe
from .calibrate import calibrate
from .predict import JSONLPredictionWriter


class DiffusionLMTrainer(L.Trainer):
    def calibrate(
        self,
        model,
        datamodule=None,
        ckpt_path: Optional[str] = None,
        epsilons: list[float] = list(DEFAULT_EPSILONS),  # noqa: B006 — a default jsonargparse shows; never mutated
        tolerance: float = DEFAULT_TOLERANCE,
        metric: str = "bleu",
        higher_is_better: bool = True,
        min_steps: Optional[int] = None,
        output_dir: Optional[str] = None,
        store: bool = True,
    ) -> dict[str, Any]:
        """Sweep the adaptive sampler's ε on the validation set and store the chosen ε in the checkpoint.

        Args:
            model: The recipe (its generator: DDIMSampler, MaskPredictSampler or their adaptive versions; K is kept).
            datamodule: Supplies the validation set (``--trainer.limit_val_batches`` uses a subset).
            ckpt_path: Checkpoint to evaluate; the chosen ε is written into it (unless ``store`` is false).
            epsilons: ε values to try besides 0 (the fixed-step reference).
            tolerance: Largest metric loss against the fixed-step sampler that is accepted (absolute, in the
                metric's units; default 0.1, the BLEU drop the task-specific training paper accepts).
            metric: Validation metric (``val/<metric>``) to compare.
            higher_is_better: Direction of the metric.
            min_steps: Override the sampler's minimum number of steps.
            output_dir: Where ``calibration/{calibration.json,calibration.png}`` go (default: the log dir).
            store: Write the chosen ε into ``ckpt_path``.
        """
        return calibrate(self, model, datamodule, ckpt_path, epsilons, tolerance, metric, higher_is_better,
                         min_steps, output_dir, store)

    def predict(
        self,
        model=None,
        dataloaders=None,
        datamodule=None,
        return_predictions: Optional[bool] = None,
        ckpt_path: Optional[str] = None,
        weights_only: Optional[bool] = None,
        output: Optional[str] = None,
    ):
        """Generate for the data module's predict split/file and write JSONL.

        Args:
            output: JSONL file to write (default: ``predictions.jsonl`` in the log directory).
                Choose the input with ``--data.init_args.predict_split`` or ``--data.init_args.predict_file``.
        """
        if output is None and isinstance(model, BaseRecipe):
            output = str(Path(self.log_dir or self.default_root_dir) / "predictions.jsonl")
        writer = None
        if output is not None:
            writer = JSONLPredictionWriter(output)
            self.callbacks.append(writer)
            if return_predictions is None:
                return_predictions = False
        try:
            return super().predict(model, dataloaders, datamodule, return_predictions, ckpt_path, weights_only)
        finally:
            if writer is not None:
                self.callbacks.remove(writer)
