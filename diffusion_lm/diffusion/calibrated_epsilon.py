"""The stop threshold ε of an adaptive sampler, and the calibrated ε it keeps in the checkpoint.

Shared by :class:`~diffusion_lm.diffusion.AdaptiveDDIMSampler` and
:class:`~diffusion_lm.diffusion.AdaptiveMaskPredictSampler`: ``epsilon`` set explicitly wins; ``epsilon: null``
uses the ε that ``diffusion-lm calibrate`` chose on validation and stored as generator state (0 if none).
"""

from __future__ import annotations

from typing import Any, Optional


class CalibratedEpsilon:
    """Mixin for a generator with an early-stopping threshold ε and a minimum number of steps."""

    def init_epsilon(self, epsilon: Optional[float], min_steps: int) -> None:
        if epsilon is not None and epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        if min_steps < 1:
            raise ValueError(f"min_steps must be >= 1, got {min_steps}")
        self.epsilon = epsilon
        self.min_steps = min_steps
        self.calibrated_epsilon: float | None = None

    @property
    def effective_epsilon(self) -> float:
        if self.epsilon is not None:
            return self.epsilon
        return self.calibrated_epsilon or 0.0

    def state_dict(self) -> dict[str, Any]:
        return {} if self.calibrated_epsilon is None else {"calibrated_epsilon": self.calibrated_epsilon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "calibrated_epsilon" in state:
            self.calibrated_epsilon = float(state["calibrated_epsilon"])
