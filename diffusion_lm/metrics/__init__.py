from .cider import CIDEr, CIDErD
from .corpus import CorpusMetric
from .hub import HubMetric, load_hub_metrics
from .pass_at_k import PassAtK
from .rouge import ROUGE
from .squad import SQuADScore
from .text import SacreBLEU, TokenizedBLEU, default_metrics
from .timestep_stats import TimestepLossStats

__all__ = ["CIDEr", "CIDErD", "CorpusMetric", "HubMetric", "PassAtK", "ROUGE", "SQuADScore", "SacreBLEU",
           "TimestepLossStats", "TokenizedBLEU", "default_metrics", "load_hub_metrics"]
