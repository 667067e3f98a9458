"""Initialising a recipe's denoiser from pretrained weights: the one ``init_from`` path of every recipe
(AR2Diff and Autoregressive ``init_from``, TaskAdapt ``checkpoint``).

A source (:func:`diffusion_lm.pretrained.load_pretrained`: a Hugging Face GPT-2 / Llama-family directory
or Hub id, or a ``.ckpt`` of this framework) fixes the architecture. The recipe resolves its denoiser from
it with a pure function at the top of its ``__init__`` (what the source fixes, what the recipe switches:
attention mode, timestep embedding, length head), builds it, and loads the source's weights with
:meth:`FromPretrained.init_from_pretrained`. Parameters the source does not have must be ones the recipe
is allowed to add (zero-initialised timestep embedding, length head). The weights are read again whenever
the recipe is built, so the source must stay readable; a checkpoint of the recipe can also be rebuilt
without it (its hyper-parameters hold the architecture).
"""

from __future__ import annotations

import logging
from typing import Literal, Optional

from ..errors import ConfigError
from ..models.convert import load_into
from ..pretrained import Pretrained, load_pretrained

log = logging.getLogger(__name__)


def pretrained_source(init_from: Optional[str], weights: Literal["ema", "raw"], vocab_size: int) -> Optional[Pretrained]:
    """The source named by ``init_from`` (None without one); a ConfigError if the data's vocabulary
    (``vocab_size``, 0 = not known yet) is not the source's."""
    if not init_from:
        return None
    pre = load_pretrained(init_from, weights)
    if vocab_size and vocab_size != pre.config.vocab_size:
        raise ConfigError(
            f"the data's tokenizer has {vocab_size} tokens but init_from={pre.source} has {pre.config.vocab_size}: "
            f"give the data module the source's tokenizer (data.init_args.tokenizer: {pre.source})"
        )
    return pre


class FromPretrained:
    """Mixin for :class:`~diffusion_lm.recipes.base.BaseRecipe` subclasses: loads a source's weights into
    the denoiser built from it."""

    def init_from_pretrained(self, pre: Optional[Pretrained], may_add: tuple[str, ...] = ()) -> None:
        """The source's weights into the denoiser and its EMA copy, its tokenizer as the recipe's, and the
        real architecture into the hyper-parameters (so the checkpoint rebuilds without the source)."""
        if pre is None:
            return
        added = load_into(self.denoiser, pre.state_dict, pre.source, may_add)
        if self.ema is not None:
            self.ema.model.load_state_dict(self.denoiser.state_dict())
        if pre.tokenizer is not None:
            self.tokenizer, self.tokenizer_source = pre.tokenizer, pre.source  # the data's must be this one (setup)
        # a plain dict, like the CLI's, so that checkpoints load with weights_only=True
        self.hparams["denoiser"] = self.denoiser.config.to_dict()
        self.hparams["vocab_size"] = self.denoiser.config.vocab_size
        log.info("initialised from %s (%d tensors; new: %s)", pre.source, len(pre.state_dict),
                 sorted({k.split(".")[0] for k in added}) or "none")
