"""The parts of the check, in the order they run; each runs in its own subprocess under its own cap.

A part names its function as ``module:function`` under ``gpucheck.parts``, imported only in the part's own
subprocess: the parent process that schedules the parts and writes the report never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    target: str  # "module:function" in gpucheck.parts; (Scale, options) -> dict of JSON-ready figures

    def load(self) -> Callable:
        module, fn = self.target.split(":")
        return getattr(importlib.import_module(f"benchmarks.gpucheck.parts.{module}"), fn)


PARTS = [
    Part("environment", "1. Environment", "environment:run"),
    Part("correctness", "2. Correctness: bf16 + torch.compile vs fp32 eager", "correctness:run"),
    Part("training", "3. Training speed: Lightning vs bare loop", "training:run"),
    Part("decoding", "4. Decoding speed: AR vs diffusion", "decoding:run"),
    Part("quality_diffusion", "5a. Quality: diffusion (demo recipe)", "quality:diffusion"),
    Part("quality_ar", "5b. Quality: autoregressive", "quality:autoregressive"),
]
BY_NAME = {p.name: p for p in PARTS}
