"""Training callbacks: throughput/MFU, the non-finite-loss guard, RNG streams for exact resume.

Every recipe adds them by default (:func:`default_callbacks`, from ``BaseRecipe.configure_callbacks``);
one configured in ``trainer.callbacks`` (e.g. ``NonFiniteGuard`` with ``action: skip``) takes the place
of the default of its class.
"""

from __future__ import annotations

import lightning as L

from .nonfinite import NonFiniteGuard, NonFiniteLossError
from .resume import RNGState
from .throughput import ThroughputMonitor

__all__ = ["NonFiniteGuard", "NonFiniteLossError", "RNGState", "ThroughputMonitor", "default_callbacks"]


def default_callbacks(trainer: L.Trainer) -> list[L.Callback]:
    """The defaults missing from ``trainer.callbacks``."""
    wanted = [ThroughputMonitor(), NonFiniteGuard(), RNGState()]
    return [c for c in wanted if not any(isinstance(p, type(c)) for p in trainer.callbacks)]
