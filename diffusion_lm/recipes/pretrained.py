"""Initialising a recipe's denoiser from pretrained weights (``init_from``): a Hugging Face GPT-2 /
Llama-family directory or Hub id, or a ``.ckpt`` of this framework (AR2Diff stage 1 → 2 → 3).

The source fixes the architecture (width, depth, heads, norm, positions, vocabulary; only dropout —
and ``max_len`` with RoPE — stay the recipe's); the recipe then switches what it needs (attention mode,
timestep embedding, length head) and the source's weights are loaded. Parameters the source does not
have must be ones the recipe is allowed to add (zero-initialised timestep embedding, length head).
The weights are read again whenever the recipe is built, so ``init_from`` must stay readable; a
checkpoint of the recipe can also be rebuilt with ``init_from: null`` (its hparams hold the architecture).
"""

from __future__ import annotations

import logging
from typing import Literal, Optional

from ..errors import ConfigError
from ..models.config import DenoiserConfig
from ..models.convert import Pretrained, adopt_architecture, load_into, load_pretrained

log = logging.getLogger(__name__)


class FromPretrained:
    """Mixin for :class:`~diffusion_lm.recipes.base.BaseRecipe` subclasses. Call :meth:`read_pretrained`
    before ``super().__init__`` and :meth:`load_pretrained_weights` after it; call :meth:`adopt_pretrained`
    first thing in ``configure_denoiser``."""

    _pretrained: Optional[Pretrained] = None

    def read_pretrained(self, init_from: Optional[str], weights: Literal["ema", "raw"] = "ema") -> None:
        self._pretrained = load_pretrained(init_from, weights) if init_from else None

    def adopt_pretrained(self, cfg: DenoiserConfig) -> None:
        if self._pretrained is not None:
            adopt_architecture(cfg, self._pretrained.config)

    def load_pretrained_weights(self, may_add: tuple[str, ...] = ()) -> None:
        pre, self._pretrained = self._pretrained, None
        if pre is None:
            return
        wanted = self.hparams.get("vocab_size") or pre.config.vocab_size
        if wanted != pre.config.vocab_size:
            raise ConfigError(
                f"the data's tokenizer has {wanted} tokens but init_from={pre.source} has {pre.config.vocab_size}: "
                f"give the data module the source's tokenizer (data.init_args.tokenizer: {pre.source})"
            )
        added = load_into(self.denoiser, pre.state_dict, pre.source, may_add)
        if self.ema is not None:
            self.ema.model.load_state_dict(self.denoiser.state_dict())
        if pre.tokenizer is not None:
            self.tokenizer = pre.tokenizer
        # the checkpoint's hparams describe the real architecture, so `init_from: null` rebuilds it
        # (a plain dict, like the CLI's, so that checkpoints load with weights_only=True)
        self.hparams["denoiser"] = self.denoiser.config.to_dict()
        self.hparams["vocab_size"] = self.denoiser.config.vocab_size
        log.info("initialised from %s (%d tensors; new: %s)", pre.source, len(pre.state_dict),
                 sorted({k.split(".")[0] for k in added}) or "none")
