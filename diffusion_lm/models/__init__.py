from .config import DenoiserConfig
from .denoiser import Denoiser, DenoiserOutput
from .ema import EMA

__all__ = ["EMA", "Denoiser", "DenoiserConfig", "DenoiserOutput"]
