from .ar2diff import AR2Diff
from .autoregressive import Autoregressive
from .base import BaseRecipe
from .diffusion import DiffusionRecipe
from .from_scratch import FromScratch
from .task_adapt import TaskAdapt

__all__ = ["AR2Diff", "Autoregressive", "BaseRecipe", "DiffusionRecipe", "FromScratch", "TaskAdapt"]
