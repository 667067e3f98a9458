from .base import BaseRecipe
from .diffusion import DiffusionRecipe
from .from_scratch import FromScratch
from .task_adapt import TaskAdapt

__all__ = ["BaseRecipe", "DiffusionRecipe", "FromScratch", "TaskAdapt"]
