"""The interface every diffusion process implements (Gaussian-embedding, discrete uniform, masked).

A process owns the math of corruption and the training loss; it holds no parameters (those live
in the shared :class:`~diffusion_lm.models.Denoiser`). Target-length prediction is shared by all
processes: the length head reads the SEP position of a source-only view, so it never sees the
target it predicts.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F

from ..models.denoiser import Denoiser, DenoiserOutput
from .schedule import NoiseSchedule, SqrtSchedule


class LossOutput(NamedTuple):
    loss: torch.Tensor  # scalar that backward() sees (sampler weights applied)
    per_example: torch.Tensor  # (B,) detached, unweighted denoising loss per example
    logs: dict[str, torch.Tensor]  # detached scalars for logging


class ForwardPasses(NamedTuple):
    """Denoiser forward passes per training step, for FLOP counts: ``trained`` ones (each also costs a
    backward pass) and expected ``grad_free`` ones (self-conditioning estimates, confidence passes)."""

    trained: float = 1.0
    grad_free: float = 0.0


def schedule_settings(schedule: NoiseSchedule) -> dict[str, Any]:
    """A schedule as plain values: its class and its numeric parameters (a wrapped schedule nested)."""
    params = {k: schedule_settings(v) if isinstance(v, NoiseSchedule) else v
              for k, v in sorted(vars(schedule).items()) if isinstance(v, (NoiseSchedule, int, float, str, bool))}
    return {"class": type(schedule).__name__, **params}


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: Optional[int] = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp_min(1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1)


def target_index(batch: dict[str, Any]) -> torch.Tensor:
    """(N,) flat positions of the target tokens: from the collator when present (no host synchronisation),
    else computed from ``target_mask`` (``nonzero`` waits for the device)."""
    idx = batch.get("target_index")
    return idx if idx is not None else batch["target_mask"].flatten().nonzero().squeeze(1)


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, L, …) → (N, …) at flat positions ``idx``: the same as ``x[target_mask]`` without a synchronisation."""
    return x.flatten(0, 1).index_select(0, idx)


def scatter(values: torch.Tensor, idx: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(N,) values at flat positions ``idx`` of a zero (B, L) tensor (the inverse of :func:`take`)."""
    return values.new_zeros(shape).flatten().index_copy(0, idx, values).view(shape)


class DiffusionProcess:
    """Base class.

    Args:
        schedule: ᾱ(t) (continuous) or the corruption rate 1 − ᾱ(t) (discrete). Default: sqrt.
        length_weight: Weight of the target-length cross-entropy added to the loss.
    """

    def __init__(self, schedule: Optional[NoiseSchedule] = None, length_weight: float = 0.1) -> None:
        self.schedule = schedule or SqrtSchedule()
        self.length_weight = length_weight

    # --- what subclasses implement
    def training_loss(
        self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, weights: torch.Tensor
    ) -> LossOutput:
        """t, weights: (B,) per-example noise level and loss weight from the timestep sampler."""
        raise NotImplementedError

    def eval_loss(self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, weights: torch.Tensor) -> LossOutput:
        """Validation/test loss (t: uniform, from the recipe). The plain objective of the process, so that
        ``val/loss`` compares runs; it must not change any training statistics. Default: :meth:`training_loss`;
        processes that modify their training inputs (FastDiSS) override it."""
        return self.training_loss(model, batch, t, weights)

    def grad_free_passes(self, self_condition: bool) -> float:  # noqa: ARG002 — interface default: no extra pass
        """Expected denoiser forwards without gradient per training step (for FLOP counts)."""
        return 0.0

    def forward_passes_per_step(self, self_condition: bool) -> ForwardPasses:
        """Forward passes of one training step (for FLOP counts / MFU): one trained pass plus
        :meth:`grad_free_passes`; processes that train more than one pass per step override it."""
        return ForwardPasses(1.0, float(self.grad_free_passes(self_condition)))

    def trained_settings(self) -> dict[str, Any]:
        """The settings a trained denoiser's weights depend on (what its inputs and outputs mean): a model
        fine-tuned from a checkpoint (TaskAdapt) must keep them. The schedule here; subclasses add theirs."""
        return {"schedule": schedule_settings(self.schedule)}

    def no_weight_decay(self) -> set[str]:
        """Denoiser parameter names the optimiser must not decay because the process normalises them
        (decay would only shrink their raw norm and so raise their effective learning rate)."""
        return set()

    def state_dict(self) -> dict[str, Any]:
        """Statistics the process learns during training (stored in the checkpoint); none by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: ARG002 — interface default: no statistics
        """Restore :meth:`state_dict` (processes without statistics ignore it)."""

    def per_example_loss(
        self, model: Denoiser, batch: dict[str, Any], t: torch.Tensor, noise: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(B,) denoising loss per example, still attached to the graph, without data-dependent
        shapes so that ``torch.func.vmap`` can take per-example gradients (the importance sampler's
        ``GradVariance``). ``noise``: the corruption randomness in the process's own form, drawn
        inside when None. Optional: processes without it support only the loss-based estimators."""
        raise NotImplementedError(
            f"{type(self).__name__} has no per_example_loss: use the LossVariance or LossSecondMoment estimator"
        )

    def configure_denoiser(self, cfg: Any) -> None:  # noqa: ARG002 — interface default: no adjustment
        """Adjust the denoiser's configuration before it is built (e.g. drop inputs the process never feeds)."""

    def bind_tokenizer(self, tokenizer: Any) -> None:  # noqa: ARG002 — interface default: no special token
        """Called by the recipe once the tokenizer is known (e.g. masked diffusion takes its MASK id)."""

    def clean_inputs(self, model: Denoiser, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: ARG002 — embedding processes use model
        """Model inputs for uncorrupted tokens: ``{"input_ids": …}`` or ``{"inputs_embeds": …}``."""
        return {"input_ids": input_ids}

    # --- shared: per-token timesteps and target length
    @staticmethod
    def token_timesteps(t: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """(B,) → (B, L): the example's t on target positions, 0 on the (clean) prompt."""
        return t[:, None] * target_mask.to(t.dtype)

    @staticmethod
    def sep_positions(batch: dict[str, Any]) -> torch.Tensor:
        return batch["prefix_len"] - 1  # (B,)

    def length_hidden(self, model: Denoiser, batch: dict[str, Any], out: DenoiserOutput | None) -> torch.Tensor:
        """(B, D) hidden state at SEP computed from the source alone.

        With prefix attention the source positions of the training pass never see the target, so
        its hidden state is reused; otherwise a source-only pass is run."""
        rows = torch.arange(batch["input_ids"].shape[0], device=batch["input_ids"].device)
        sep = self.sep_positions(batch)
        if out is None or model.config.attention != "prefix":
            L = batch["input_ids"].shape[1]
            in_prefix = torch.arange(L, device=sep.device)[None, :] <= sep[:, None]
            zeros = torch.zeros(in_prefix.shape, device=sep.device)  # the prompt is clean: t = 0
            out = model(**self.clean_inputs(model, batch["input_ids"]), timesteps=zeros, valid=in_prefix,
                        prefix_len=batch["prefix_len"], attention="bidirectional")
        return out.hidden[rows, sep]

    def length_loss(self, model: Denoiser, batch: dict[str, Any], out: DenoiserOutput | None) -> torch.Tensor:
        if model.length_head is None or self.length_weight == 0:
            return batch["input_ids"].new_zeros((), dtype=torch.float32)
        logits = model.predict_length(self.length_hidden(model, batch, out))  # (B, C)
        target = batch["tgt_len"].clamp(max=logits.shape[-1] - 1)
        return F.cross_entropy(logits.float(), target)

    @torch.no_grad()
    def predict_lengths(self, model: Denoiser, batch: dict[str, Any], max_len: int) -> torch.Tensor:
        """(B,) predicted number of target positions (EOS included), in [2, max_len]."""
        logits = model.predict_length(self.length_hidden(model, batch, None))
        return logits.argmax(-1).clamp(2, max_len)
