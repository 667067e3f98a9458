from .discrete import DiscreteDiffusion, DiscreteSampler, MaskedDiffusion, UniformDiffusion
from .gaussian import GaussianDiffusion
from .generate import DDIMSampler, GenerationResult, Generator
from .process import DiffusionProcess, LossOutput
from .schedule import CosineSchedule, LinearSchedule, LogLinearSchedule, NoiseSchedule, SqrtSchedule
from .timesteps import TimestepSampler, UniformSampler

__all__ = [
    "CosineSchedule", "DDIMSampler", "DiffusionProcess", "GaussianDiffusion", "GenerationResult", "Generator",
    "LinearSchedule", "LossOutput", "NoiseSchedule", "SqrtSchedule", "TimestepSampler", "UniformSampler",
    "DiscreteDiffusion", "DiscreteSampler", "LogLinearSchedule", "MaskedDiffusion", "UniformDiffusion",
]
