"""Noise schedules for continuous time t ∈ [0, 1].

Pure math, no state: every schedule maps a time tensor of any shape to ᾱ(t), the signal
fraction of the variance-preserving forward process

    q(x_t | x_0) = N(√ᾱ(t) · x_0, (1 − ᾱ(t)) · I)        (DDPM, Ho et al. 2020, eq. 4)

ᾱ is monotonically decreasing from ᾱ(0) ≈ 1 (clean) to ᾱ(1) ≈ 0 (pure noise) and is clamped
to [ALPHA_BAR_MIN, ALPHA_BAR_MAX] so that √ᾱ, √(1 − ᾱ) and log-SNR stay finite at both ends.
For discrete diffusion the same object gives the corruption rate 1 − ᾱ(t).
"""

from __future__ import annotations

import math

import torch

ALPHA_BAR_MIN = 1e-5
ALPHA_BAR_MAX = 1.0 - 1e-5


class NoiseSchedule:
    """Base class: subclasses implement :meth:`_alpha_bar` on t ∈ [0, 1]."""

    name = "base"

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ(t), same shape as ``t`` (t is clamped into [0, 1])."""
        t = t.float().clamp(0.0, 1.0)
        return self._alpha_bar(t).clamp(ALPHA_BAR_MIN, ALPHA_BAR_MAX)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ / (1 − ᾱ) (Kingma et al. 2021, eq. 2)."""
        a = self.alpha_bar(t)
        return a / (1.0 - a)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return torch.log(self.snr(t))

    def corruption_rate(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is corrupted at time t (discrete processes): 1 − ᾱ(t)."""
        return 1.0 - self.alpha_bar(t)

    def time_at_corruption_rate(self, rate: torch.Tensor, iters: int = 24) -> torch.Tensor:
        """The t with ``corruption_rate(t) = rate`` (any shape), by bisection on [0, 1]: every schedule's
        rate grows monotonically in t, few have a closed-form inverse. Rates beyond the clamped range map to
        the ends of [0, 1]; 24 halvings resolve t to 6e-8."""
        lo, hi = torch.zeros_like(rate, dtype=torch.float32), torch.ones_like(rate, dtype=torch.float32)
        for _ in range(iters):
            mid = (lo + hi) / 2
            below = self.corruption_rate(mid) < rate
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}()"


class SqrtSchedule(NoiseSchedule):
    """ᾱ(t) = 1 − √(t + s)  (Diffusion-LM, Li et al. 2022, §4.2; used by DiffuSeq).

    Adds noise fast at small t, which suits discrete data embedded in continuous space:
    a little noise does not change the nearest token, so low-noise steps are wasted otherwise.
    """

    name = "sqrt"

    def __init__(self, s: float = 1e-4) -> None:
        self.s = s

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.sqrt(t + self.s)


class CosineSchedule(NoiseSchedule):
    """ᾱ(t) = f(t) / f(0), f(t) = cos²(((t + s) / (1 + s)) · π/2)  (Nichol & Dhariwal 2021, eq. 17)."""

    name = "cosine"

    def __init__(self, s: float = 0.008) -> None:
        self.s = s

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        f = torch.cos((t + self.s) / (1.0 + self.s) * math.pi / 2) ** 2
        f0 = math.cos(self.s / (1.0 + self.s) * math.pi / 2) ** 2
        return f / f0


class LinearSchedule(NoiseSchedule):
    """DDPM's linear β schedule in continuous time (Song et al. 2021, VP-SDE, eq. 33):

    ᾱ(t) = exp(−(β_min · t + ½ (β_max − β_min) · t²)),  β_min = 0.1, β_max = 20.
    """

    name = "linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min = beta_min
        self.beta_max = beta_max

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))


class LogLinearSchedule(NoiseSchedule):
    """ᾱ(t) = 1 − t: the corruption rate of discrete diffusion grows linearly in t (MDLM's log-linear
    noise σ(t) = −log(1 − t), Sahoo et al. 2024, §3.2.1; SUNDAE's uniformly drawn corruption rate)."""

    name = "loglinear"

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - t


class TruncatedSchedule(NoiseSchedule):
    """A base schedule restricted to t ∈ [t_min, 1]: ᾱ(t) = ᾱ_base(t_min + (1 − t_min) · t).

    DINOISER (Ye et al. 2023, §4.1) clips the noise scale from below: with embeddings of unit
    variance, rounding x_t to the nearest embedding is already right for almost every token at low
    noise, so those levels carry no learning signal and training steps spent there are wasted.
    Truncating the schedule moves every training t and every sampler step into [t_min, 1] at once
    (t = 0 still means "the clean prompt" to the process, which never noises the prompt), so the
    sampler's step placement follows the training distribution without any change to the sampler.

    Args:
        base: The schedule being truncated (default: sqrt).
        t_min: The lowest noise level of the base schedule that is ever used.
    """

    name = "truncated"

    def __init__(self, base: NoiseSchedule | None = None, t_min: float = 0.5) -> None:
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {t_min}")
        self.base = base or SqrtSchedule()
        self.t_min = t_min

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.base._alpha_bar(self.t_min + (1.0 - self.t_min) * t)


SCHEDULES = {cls.name: cls for cls in (SqrtSchedule, CosineSchedule, LinearSchedule, LogLinearSchedule)}


def get_schedule(name: str) -> NoiseSchedule:
    try:
        return SCHEDULES[name]()
    except KeyError:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
