from .text import SacreBLEU, default_metrics
from .timestep_stats import TimestepLossStats

__all__ = ["SacreBLEU", "TimestepLossStats", "default_metrics"]
