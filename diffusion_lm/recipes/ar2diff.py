"""AR2Diff (Han et al. 2024, "Transfer Learning for Text Diffusion Models", §4): turn an autoregressive
decoder into a diffusion model.

Stage (2): ``init_from`` an AR checkpoint (the :class:`Autoregressive` recipe's ``.ckpt``, or a Hugging
Face GPT-2 / Llama directory); the same weights now run with ``prefix`` (or ``bidirectional``) attention
and a zero-initialised timestep embedding (so the first forward pass equals the AR model's), and are
trained with a diffusion process on a corpus (:class:`~diffusion_lm.data.TextCorpus`, ``objective:
prefix_lm``). Stage (3): ``init_from`` the stage-2 ``.ckpt`` and fine-tune on the task — the usual
:class:`DiffusionRecipe` (any process, sampler and length head), only initialised from it.
"""

from __future__ import annotations

from typing import Any, Literal

from ..models.config import DenoiserConfig
from ..models.convert import DIFFUSION_ONLY
from .diffusion import DiffusionRecipe
from .pretrained import FromPretrained


class AR2Diff(FromPretrained, DiffusionRecipe):
    """Args:
        init_from: The AR source (``.ckpt`` of :class:`Autoregressive`, HF directory or Hub id) for stage 2,
            or the stage-2 ``.ckpt`` for stage 3.
        init_weights: ``ema`` or ``raw`` weights of a ``.ckpt`` source.
        attention: ``prefix`` (source attends to the source, target to everything) or ``bidirectional``.
        **kwargs: See :class:`DiffusionRecipe` (``process``, ``generator``, ``length_source`` …).
    """

    def __init__(
        self,
        init_from: str,
        init_weights: Literal["ema", "raw"] = "ema",
        attention: Literal["prefix", "bidirectional"] = "prefix",
        **kwargs: Any,
    ) -> None:
        self.attention = attention
        self.read_pretrained(init_from, init_weights)
        super().__init__(**kwargs)
        self.load_pretrained_weights(may_add=DIFFUSION_ONLY)

    def configure_denoiser(self, cfg: DenoiserConfig) -> None:
        self.adopt_pretrained(cfg)
        cfg.attention = self.attention
        cfg.timestep_embedding = True  # zero-initialised output layer: adds exactly 0 at first
        super().configure_denoiser(cfg)  # length head when lengths are predicted
