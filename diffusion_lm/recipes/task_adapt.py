"""TaskAdapt: task-specific partial fine-tuning of a pretrained diffusion model (task-specific training paper).

The denoiser takes the architecture and the weights (EMA copy by default) of a diffusion_lm
checkpoint; only the parameters whose names match ``trainable`` are trained, all others are frozen
(``requires_grad=False``: no gradients, no optimizer state). The timestep sampler defaults to the
importance sampler, whose pilot phase measures v(t) with the pretrained model on the new task.

The data must be tokenised exactly as in pretraining: point the data module at the same file,
``data.init_args.tokenizer: <the .ckpt>`` (it then uses the tokenizer stored in the checkpoint).
A different vocabulary, tokenizer or architecture stops with a CheckpointError naming the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Optional

from lightning.pytorch.utilities import rank_zero_info

from ..checkpoint import denoiser_config, denoiser_weights, load_matching, read_checkpoint
from ..data.tokenization import TextTokenizer
from ..diffusion.importance import ImportanceSampler
from ..diffusion.timesteps import TimestepSampler
from ..errors import CheckpointError
from ..models.params import TIMESTEP_AND_ATTENTION, matching_parameters
from .diffusion import DiffusionRecipe

# The paper's choice (timestep embedding + self-attention) plus the target-length head, which is
# task-specific by construction (the paper's models had none).
DEFAULT_TRAINABLE = (*TIMESTEP_AND_ATTENTION, "length_head.*")


class TaskAdapt(DiffusionRecipe):
    """Args:
        checkpoint: A ``.ckpt`` written by a diffusion recipe of this framework (e.g. pretraining on a
            related corpus). Its architecture is used; ``denoiser`` may be given only to change
            shape-free settings (dropout) and must otherwise match.
        trainable: Glob patterns of the trained parameter names (``Denoiser.named_parameters()``);
            everything else is frozen. Default: timestep embedding, self-attention, length head.
        init_weights: ``ema`` (the checkpoint's EMA copy, if it has one) or ``raw``.
        timestep_sampler: Default: :class:`~diffusion_lm.diffusion.ImportanceSampler` with its defaults.
        **kwargs: See :class:`DiffusionRecipe` and :class:`BaseRecipe`.
    """

    def __init__(
        self,
        checkpoint: str,
        trainable: Sequence[str] = DEFAULT_TRAINABLE,
        init_weights: Literal["ema", "raw"] = "ema",
        timestep_sampler: Optional[TimestepSampler] = None,
        **kwargs: Any,
    ) -> None:
        ckpt = read_checkpoint(checkpoint)
        cfg = denoiser_config(ckpt, checkpoint)
        vocab = kwargs.get("vocab_size") or 0
        if vocab and vocab != cfg.vocab_size:
            raise CheckpointError(
                f"{checkpoint} was trained with a {cfg.vocab_size}-token vocabulary but the data's tokenizer has "
                f"{vocab} tokens: set data.init_args.tokenizer: {checkpoint} so that the data is tokenised with "
                "the checkpoint's own tokenizer"
            )
        kwargs["denoiser"] = kwargs.get("denoiser") or cfg
        kwargs["vocab_size"] = cfg.vocab_size
        super().__init__(timestep_sampler=timestep_sampler or ImportanceSampler(), **kwargs)
        hint = ". TaskAdapt takes the architecture from the checkpoint: leave model.init_args.denoiser unset"
        load_matching(self.denoiser, denoiser_weights(ckpt, checkpoint, init_weights), checkpoint, hint)
        if self.ema is not None:
            self.ema.model.load_state_dict(self.denoiser.state_dict())
        self.checkpoint_path = checkpoint
        self._pretrained_tokenizer = ckpt.get("tokenizer")
        trained = set(matching_parameters(self.denoiser, trainable, "TaskAdapt.trainable"))
        for name, p in self.denoiser.named_parameters():
            p.requires_grad_(name in trained)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self._pretrained_tokenizer is None or self.tokenizer is None:
            return
        pre = TextTokenizer.from_dict(self._pretrained_tokenizer)
        same = pre.hf.get_vocab() == self.tokenizer.hf.get_vocab() and \
            (pre.pad_id, pre.sep_id, pre.eos_id) == (self.tokenizer.pad_id, self.tokenizer.sep_id, self.tokenizer.eos_id)
        if not same:
            raise CheckpointError(
                f"the data module's tokenizer is not the one stored in {self.checkpoint_path} (same size, different "
                f"tokens): set data.init_args.tokenizer: {self.checkpoint_path}"
            )

    def on_fit_start(self) -> None:
        n_train = self.denoiser.num_parameters(trainable_only=True)
        total = self.denoiser.num_parameters()
        rank_zero_info(f"TaskAdapt: training {n_train:,} of {total:,} parameters ({100 * n_train / total:.1f}%), "
                       f"patterns {list(self.hparams.trainable)}; the rest is frozen")
        if self.logger is not None and self.trainer.is_global_zero:
            self.logger.log_metrics({"params/trainable": n_train, "params/total": total}, step=self.global_step)
