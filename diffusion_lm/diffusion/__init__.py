from .gaussian import GaussianDiffusion
from .generate import DDIMSampler, GenerationResult, Generator
from .importance import ImportanceSampler
from .process import DiffusionProcess, LossOutput
from .schedule import CosineSchedule, LinearSchedule, NoiseSchedule, SqrtSchedule
from .timesteps import TimestepSampler, UniformSampler
from .variance import GradVariance, LossSecondMoment, LossVariance, VarianceEstimator

__all__ = [
    "CosineSchedule", "DDIMSampler", "DiffusionProcess", "GaussianDiffusion", "GenerationResult", "Generator",
    "LinearSchedule", "LossOutput", "NoiseSchedule", "SqrtSchedule", "TimestepSampler", "UniformSampler",
    "GradVariance", "ImportanceSampler", "LossSecondMoment", "LossVariance", "VarianceEstimator",
]
