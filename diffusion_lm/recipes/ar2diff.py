"""AR2Diff (Han et al. 2024, "Transfer Learning for Text Diffusion Models", §4): turn an autoregressive
decoder into a diffusion model.

Stage (2): ``init_from`` an AR checkpoint (the :class:`Autoregressive` recipe's ``.ckpt``, or a Hugging
Face GPT-2 / Llama directory); the same weights then run with ``prefix`` (or ``bidirectional``) attention
and a zero-initialised timestep embedding (so the first forward pass equals the AR model's), and are
trained with a diffusion process on a corpus (:class:`~diffusion_lm.data.TextCorpus`, ``objective:
prefix_lm``). Stage (3): ``init_from`` the stage-2 ``.ckpt`` and fine-tune on the task — the usual
:class:`DiffusionRecipe` (any process, sampler and length head), only initialised from it.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from ..models.config import DenoiserConfig
from ..models.convert import DIFFUSION_ONLY, adopt_architecture
from .base import requested_architecture
from .diffusion import DiffusionRecipe
from .pretrained import FromPretrained, pretrained_source


def ar2diff_architecture(denoiser: Optional[DenoiserConfig], vocab_size: int, attention: str,
                         source: Optional[DenoiserConfig]) -> DenoiserConfig:
    """The source's architecture (with ``denoiser``'s training choices; ``denoiser`` itself without a source,
    e.g. rebuilt from a checkpoint's hyper-parameters) switched to ``attention`` with a
    timestep embedding — zero-initialised output layer, so it adds exactly 0 at first. :class:`DiffusionRecipe`
    then adjusts it for its process (``diffusion_architecture``: length head, self-conditioning input)."""
    cfg = requested_architecture(denoiser, vocab_size)
    if source is not None:
        cfg = adopt_architecture(cfg, source)
    cfg.attention = attention
    cfg.timestep_embedding = True
    return cfg


class AR2Diff(FromPretrained, DiffusionRecipe):
    """Args:
        init_from: The AR source (``.ckpt`` of :class:`Autoregressive`, HF directory or Hub id) for stage 2,
            or the stage-2 ``.ckpt`` for stage 3; ``None`` rebuilds a checkpoint of this recipe from its
            hyper-parameters alone (they hold the architecture).
        init_weights: ``ema`` or ``raw`` weights of a ``.ckpt`` source.
        attention: ``prefix`` (source attends to the source, target to everything) or ``bidirectional``.
        denoiser: Only its training choices (dropout) count: the architecture is the source's.
        vocab_size: See :class:`BaseRecipe`.
        **kwargs: See :class:`DiffusionRecipe` (``process``, ``generator``, ``length_source`` …).
    """

    def __init__(
        self,
        init_from: Optional[str],
        init_weights: Literal["ema", "raw"] = "ema",
        attention: Literal["prefix", "bidirectional"] = "prefix",
        denoiser: Optional[DenoiserConfig] = None,
        vocab_size: int = 0,
        **kwargs: Any,
    ) -> None:
        pre = pretrained_source(init_from, init_weights, vocab_size)
        architecture = ar2diff_architecture(denoiser, vocab_size, attention, pre.config if pre else None)
        super().__init__(denoiser=architecture, vocab_size=vocab_size, **kwargs)
        self.init_from_pretrained(pre, may_add=DIFFUSION_ONLY)
