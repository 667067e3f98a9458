from .base import BaseRecipe
from .diffusion import DiffusionRecipe
from .from_scratch import FromScratch

__all__ = ["BaseRecipe", "DiffusionRecipe", "FromScratch"]
