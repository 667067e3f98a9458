"""TaskAdapt: task-specific partial fine-tuning of a pretrained diffusion model, from
"Cheaper and Better Diffusion Language Model via Task-Specific Training" (ACL 2025).

The denoiser takes the architecture and the weights (EMA copy by default) of a diffusion_lm
checkpoint, through the ``init_from`` path every recipe shares (:mod:`.pretrained`); ``denoiser`` may only
change the training choices (``denoiser: {dropout: 0.2}`` changes the dropout and nothing else). The
process settings the weights depend on (embedding space, prediction, embedding norm/scale, schedule:
``DiffusionProcess.trained_settings``) come from the checkpoint: with ``process`` unset the checkpoint's
process is used, a given one must agree on them. Only the parameters whose names match ``trainable`` are
trained, all others are frozen (``requires_grad=False``: no gradients, no optimizer state). The timestep
sampler defaults to the importance sampler, whose pilot phase measures v(t) with the pretrained model on
the new task.

The data must be tokenised exactly as in pretraining: point the data module at the same file,
``data.init_args.tokenizer: <the .ckpt>`` (it then uses the tokenizer stored in the checkpoint).
A different vocabulary, tokenizer or process stops with a CheckpointError naming the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Optional

from lightning.pytorch.utilities import rank_zero_info

from ..diffusion.gaussian import GaussianDiffusion
from ..diffusion.importance import ImportanceSampler
from ..diffusion.process import DiffusionProcess
from ..diffusion.timesteps import TimestepSampler
from ..errors import CheckpointError
from ..models.config import DenoiserConfig
from ..models.convert import with_training_fields
from ..models.params import TIMESTEP_AND_ATTENTION, matching_parameters
from ..pretrained import Pretrained, load_pretrained
from .diffusion import DiffusionRecipe
from .pretrained import FromPretrained

# The paper's choice (timestep embedding + self-attention) plus the target-length head, which is
# task-specific by construction (the paper's models had none).
DEFAULT_TRAINABLE = (*TIMESTEP_AND_ATTENTION, "length_head.*")


def stored_process(pre: Pretrained) -> DiffusionProcess:
    """The process the checkpoint's recipe was built with: its ``process`` hyper-parameter (a ``class_path``
    dict as the CLI stores it, or the object), or :class:`DiffusionRecipe`'s default when it names none."""
    spec = pre.hyper_parameters.get("process")
    if spec is None:
        return GaussianDiffusion()
    if isinstance(spec, DiffusionProcess):
        return spec
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--process", type=DiffusionProcess)
    try:
        return parser.instantiate_classes(parser.parse_object({"process": spec})).process
    except Exception as e:  # noqa: BLE001 — jsonargparse reports bad specs with several exception types
        raise CheckpointError(f"{pre.source}: its process hyper-parameter cannot be built ({e})") from None


def checkpoint_process(pre: Pretrained, requested: Optional[DiffusionProcess]) -> DiffusionProcess:
    """``requested`` if it agrees with the checkpoint's process on :meth:`DiffusionProcess.trained_settings`,
    the checkpoint's process if none is requested; a one-line CheckpointError naming the difference otherwise."""
    stored = stored_process(pre)
    if requested is None:
        return stored
    want, got = stored.trained_settings(), requested.trained_settings()
    diff = [f"{k}: {want.get(k)!r} in the checkpoint, {got.get(k)!r} given" for k in sorted(set(want) | set(got))
            if want.get(k) != got.get(k)]
    if diff:
        raise CheckpointError(f"{pre.source} was trained with another process ({'; '.join(diff)}): leave "
                              "model.init_args.process unset to take the checkpoint's, or give the same settings")
    return requested


class TaskAdapt(FromPretrained, DiffusionRecipe):
    """Args:
        checkpoint: A ``.ckpt`` written by a diffusion recipe of this framework (e.g. pretraining on a
            related corpus). Its architecture and process settings are used; ``denoiser`` may be given
            only to change the training choices (dropout).
        trainable: Glob patterns of the trained parameter names (``Denoiser.named_parameters()``);
            everything else is frozen. Default: timestep embedding, self-attention, length head.
        init_weights: ``ema`` (the checkpoint's EMA copy, if it has one) or ``raw``.
        timestep_sampler: Default: :class:`~diffusion_lm.diffusion.ImportanceSampler` with its defaults.
        process: Default: the checkpoint's; a given one must agree with it on ``trained_settings()``.
        denoiser: Only its training choices (dropout) count: the architecture is the checkpoint's.
        vocab_size: The data's vocabulary size: must be the checkpoint's.
        **kwargs: See :class:`DiffusionRecipe` and :class:`BaseRecipe`.
    """

    def __init__(
        self,
        checkpoint: str,
        trainable: Sequence[str] = DEFAULT_TRAINABLE,
        init_weights: Literal["ema", "raw"] = "ema",
        timestep_sampler: Optional[TimestepSampler] = None,
        process: Optional[DiffusionProcess] = None,
        denoiser: Optional[DenoiserConfig] = None,
        vocab_size: int = 0,
        **kwargs: Any,
    ) -> None:
        pre = load_pretrained(str(checkpoint), init_weights)
        vocab = vocab_size
        if vocab and vocab != pre.config.vocab_size:
            raise CheckpointError(
                f"{checkpoint} was trained with a {pre.config.vocab_size}-token vocabulary but the data's tokenizer "
                f"has {vocab} tokens: set data.init_args.tokenizer: {checkpoint} so that the data is tokenised with "
                "the checkpoint's own tokenizer"
            )
        architecture = with_training_fields(pre.config, denoiser)
        super().__init__(timestep_sampler=timestep_sampler or ImportanceSampler(), denoiser=architecture,
                         process=checkpoint_process(pre, process), vocab_size=pre.config.vocab_size, **kwargs)
        self.init_from_pretrained(pre)
        trained = set(matching_parameters(self.denoiser, trainable, "TaskAdapt.trainable"))
        for name, p in self.denoiser.named_parameters():
            p.requires_grad_(name in trained)

    def on_fit_start(self) -> None:
        n_train = self.denoiser.num_parameters(trainable_only=True)
        total = self.denoiser.num_parameters()
        rank_zero_info(f"TaskAdapt: training {n_train:,} of {total:,} parameters ({100 * n_train / total:.1f}%), "
                       f"patterns {list(self.hparams.trainable)}; the rest is frozen")
        if self.logger is not None and self.trainer.is_global_zero:
            self.logger.log_metrics({"params/trainable": n_train, "params/total": total}, step=self.global_step)
