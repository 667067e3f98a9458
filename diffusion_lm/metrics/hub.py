"""Optional extra metrics from the Hugging Face ``evaluate`` library (METEOR, BERTScore, …).

``evaluate.load`` fetches the metric's code (and often data or model weights) from the Hub at run
time, so these metrics are extras a config may ask for — never the core metrics of a benchmark,
which work offline. A metric that cannot be loaded (no network, missing dependency) is skipped
with a warning; training and evaluation go on::

    data:
      init_args:
        extra_metrics:
          - meteor                                   # evaluate.load("meteor")
          - {path: bertscore, compute_kwargs: {lang: en}}
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torchmetrics import Metric

from .corpus import CorpusMetric

log = logging.getLogger(__name__)

MetricSpec = Union[str, dict[str, Any]]


class HubMetric(CorpusMetric):
    """Wraps an ``evaluate`` module as a DDP-correct torchmetrics Metric: predictions and references
    are all-gathered, then the module scores the whole corpus once on ``compute()``.

    Args:
        path: ``evaluate.load`` path: a Hub metric name (``meteor``) or a local script.
        config_name: The module's configuration.
        name: Prefix of the logged values (default: the last part of ``path``).
        compute_kwargs: Extra arguments of the module's ``compute`` (e.g. ``lang: en`` for BERTScore).
        single_reference: Pass only the first reference of each example (for modules that take one).
    """

    def __init__(self, path: str, config_name: Optional[str] = None, name: Optional[str] = None,
                 compute_kwargs: Optional[dict[str, Any]] = None, single_reference: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        import evaluate

        self.module = evaluate.load(path, config_name, keep_in_memory=True)
        self.name = name or Path(path).stem
        self.compute_kwargs = dict(compute_kwargs or {})
        self.single_reference = single_reference

    def compute(self) -> dict[str, torch.Tensor]:
        preds, refs = self.corpus()
        if not preds:
            return {}
        refs_arg = [r[0] for r in refs] if self.single_reference else refs
        result = self.module.compute(predictions=preds, references=refs_arg, **self.compute_kwargs)
        out = {}
        for key, value in (result or {}).items():
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
                value = sum(value) / len(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[self.name if key == self.name else f"{self.name}_{key}"] = torch.tensor(float(value), dtype=torch.float64)
        return out


def load_hub_metrics(specs: Optional[list[MetricSpec]]) -> dict[str, Metric]:
    """Builds the metrics named in a config; those that cannot be loaded are skipped with a warning."""
    metrics: dict[str, Metric] = {}
    for spec in specs or []:
        kwargs = {"path": spec} if isinstance(spec, str) else dict(spec)
        try:
            metric = HubMetric(**kwargs)
        except Exception as e:  # noqa: BLE001 — offline, unknown metric, missing dependency
            log.warning("extra metric %r skipped: evaluate could not load it (%s: %s)",
                        kwargs.get("path"), type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            continue
        metrics[f"hub_{metric.name}"] = metric
    return metrics
