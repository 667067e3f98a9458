from .adaptive import AdaptiveDDIMSampler
from .adaptive_mask_predict import AdaptiveMaskPredictSampler
from .discrete import DiscreteDiffusion, DiscreteSampler
from .fastdiss import FastDiSSDiffusion
from .gaussian import GaussianDiffusion
from .generate import DDIMSampler, GenerationResult, Generator
from .glancing import GlancingMaskedDiffusion
from .importance import ImportanceSampler
from .length_beam import LengthBeam
from .mask_predict import MaskPredictSampler
from .mbr import MBRGenerator
from .mdlm import MaskedDiffusion
from .process import DiffusionProcess, LossOutput
from .schedule import CosineSchedule, LinearSchedule, LogLinearSchedule, NoiseSchedule, SqrtSchedule, TruncatedSchedule
from .scp import NoisePerturbation, SelfConditionPerturbation, ShiftNoisePerturbation, ShiftPerturbation
from .sundae import UniformDiffusion
from .timesteps import TimestepSampler, UniformSampler
from .variance import GradVariance, LossSecondMoment, LossVariance, VarianceEstimator

__all__ = [
    "AdaptiveDDIMSampler", "AdaptiveMaskPredictSampler", "CosineSchedule", "DDIMSampler", "DiffusionProcess", "FastDiSSDiffusion",
    "GaussianDiffusion",
    "GenerationResult", "Generator", "LinearSchedule", "LossOutput", "MBRGenerator", "NoiseSchedule", "SqrtSchedule", "TruncatedSchedule",
    "TimestepSampler", "UniformSampler",
    "NoisePerturbation", "SelfConditionPerturbation", "ShiftNoisePerturbation", "ShiftPerturbation",
    "GradVariance", "ImportanceSampler", "LossSecondMoment", "LossVariance", "VarianceEstimator",
    "DiscreteDiffusion", "DiscreteSampler", "GlancingMaskedDiffusion", "LengthBeam", "MaskPredictSampler", "LogLinearSchedule",
    "MaskedDiffusion", "UniformDiffusion",
]
