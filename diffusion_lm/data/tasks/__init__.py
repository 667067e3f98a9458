"""Benchmarks as DataModules: each fixes the folder under the data root, the Hub fallback, the field
mapping, the direction and the metrics (``task_metrics``). See ``docs/benchmarks.md``."""

from .commongen import CommonGen
from .mbpp import MBPP
from .squad import SQuAD
from .summarization import XSum
from .translation import IWSLT14, WMT14, Multi30k

__all__ = ["IWSLT14", "MBPP", "WMT14", "CommonGen", "Multi30k", "SQuAD", "XSum"]
