"""``diffusion-lm predict``: generations for a split or a file, written to JSONL.

Each line is ``{"index", "source", "prediction", "references", "steps"}`` (``steps`` = denoiser
evaluations the example took, e.g. fewer with adaptive early stopping), in the input order.
Lines are appended per batch to ``<output>.rank<r>.partial`` while decoding (Lightning's progress
bar shows the progress) and merged, sorted and de-duplicated (DDP pads the last batches) into
``<output>`` at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from typing_extensions import override


class JSONLPredictionWriter(Callback):
    """Args:
        output: Path of the JSONL file to write.
    """

    def __init__(self, output: str | Path) -> None:
        self.output = Path(output)
        self._file = None

    def _partial(self, rank: int) -> Path:
        return self.output.with_name(f"{self.output.name}.rank{rank}.partial")

    @override
    def on_predict_start(self, trainer, pl_module) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._partial(trainer.global_rank), "w", encoding="utf-8")  # noqa: SIM115 — open across hooks, closed in on_predict_end

    @override
    def on_predict_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        for rec in outputs or []:
            self._file.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._file.flush()

    @override
    def on_predict_end(self, trainer, pl_module) -> None:
        self._file.close()
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        records: dict[int, str] = {}
        for rank in range(trainer.world_size):
            part = self._partial(rank)
            for line in part.read_text(encoding="utf-8").splitlines():
                records.setdefault(json.loads(line)["index"], line)
            part.unlink()
        with open(self.output, "w", encoding="utf-8") as f:
            for i in sorted(records):
                f.write(records[i] + "\n")
        print(f"wrote {len(records)} generations to {self.output}")
