"""DiffusionRecipe: a diffusion process, a timestep sampler and a generator around the denoiser."""

from __future__ import annotations

import copy
from typing import Any, Literal, Optional

import torch
from typing_extensions import override

from ..data.layout import build_batch, source_rows, target_rows
from ..diffusion.gaussian import GaussianDiffusion
from ..diffusion.generate import DDIMSampler, Generator
from ..diffusion.process import DiffusionProcess, ForwardPasses, LossOutput
from ..diffusion.timesteps import TimestepSampler, UniformSampler
from ..metrics.timestep_plots import TimestepBoard
from ..metrics.timestep_stats import TimestepLossStats
from ..models.config import DenoiserConfig
from ..models.denoiser import Denoiser
from .base import BaseRecipe, requested_architecture


def for_diffusion(cfg: DenoiserConfig, process: DiffusionProcess) -> DenoiserConfig:
    """``cfg`` adjusted to denoise with ``process`` (a new config): prefix instead of causal attention (the whole
    target is denoised at once), a length head (always built, so ``length_source`` can be switched at test
    time), and what the process needs (e.g. no self-conditioning input for discrete processes)."""
    cfg = copy.deepcopy(cfg)
    if cfg.attention in ("causal", "prefix_causal"):
        cfg.attention = "prefix"
    if cfg.length_classes == 0:
        cfg.length_classes = cfg.max_len + 1
    process.configure_denoiser(cfg)
    return cfg


def diffusion_architecture(denoiser: Optional[DenoiserConfig], vocab_size: int,
                           process: DiffusionProcess) -> DenoiserConfig:
    """The denoiser a :class:`DiffusionRecipe` builds from its arguments."""
    return for_diffusion(requested_architecture(denoiser, vocab_size), process)


class DiffusionRecipe(BaseRecipe):
    """Args:
        process: The diffusion process (``class_path``): Gaussian embedding diffusion by default.
        timestep_sampler: Which t each training example gets (``class_path``): uniform by default.
        generator: The sampler used for validation/test decoding (``class_path``): 20-step DDIM by default.
        length_source: ``predicted`` (length head) or ``oracle`` (reference length; an upper bound for analysis).
        timestep_bins: Bins of t for the per-noise-level loss statistics (default: the sampler's
            ``num_bins`` if it has one, else 20).
        timestep_log_every: Steps between two logs of those statistics and of the sampler's curves
            (``timestep/`` in TensorBoard: per-bin scalars, multi-line charts, an image).
        denoiser: The architecture requested (adjusted for the process by :func:`diffusion_architecture`).
        vocab_size: See :class:`BaseRecipe`.
        **kwargs: See :class:`BaseRecipe`.
    """

    def __init__(
        self,
        process: Optional[DiffusionProcess] = None,
        timestep_sampler: Optional[TimestepSampler] = None,
        generator: Optional[Generator] = None,
        length_source: Literal["predicted", "oracle"] = "predicted",
        timestep_bins: Optional[int] = None,
        timestep_log_every: int = 100,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        denoiser: Optional[DenoiserConfig] = None,
        vocab_size: int = 0,
        **kwargs: Any,
    ) -> None:
        chosen = process or GaussianDiffusion()
        architecture = diffusion_architecture(denoiser, vocab_size, chosen)
        super().__init__(denoiser=architecture, vocab_size=vocab_size, **kwargs)
        self.length_source = length_source
        self.process = chosen
        self.timestep_sampler = timestep_sampler or UniformSampler()
        self.generator = generator or DDIMSampler()
        self.eval_timesteps = UniformSampler()  # val/test loss: uniform t whatever the training sampler
        self.timestep_board = TimestepBoard()
        self.timestep_stats = TimestepLossStats(timestep_bins or self.timestep_sampler.num_bins)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.tokenizer is not None:
            self.process.bind_tokenizer(self.tokenizer)

    def no_weight_decay(self) -> set[str]:
        return self.process.no_weight_decay()

    # ------------------------------------------------------------------ training
    def forward_passes(self) -> ForwardPasses:
        """The process's passes per step (self-conditioning estimate, FastDiSS's confidence pass, SUNDAE's
        unrolled pass); for FLOP counts."""
        return self.process.forward_passes_per_step(self.denoiser.config.self_condition)

    def compute_loss(self, batch: dict[str, Any], model: Denoiser) -> LossOutput:
        B = batch["input_ids"].shape[0]
        train = model is self.denoiser and self.training
        if train:
            self.timestep_sampler.observe(model, self.process, batch, self.global_step)
        t, weights = (self.timestep_sampler if train else self.eval_timesteps).sample(B, self.device)
        # val/test: the process's plain objective at uniform t, with no training statistics updated
        out = (self.process.training_loss if train else self.process.eval_loss)(model, batch, t, weights)
        if train:
            self.timestep_sampler.update(t, out.per_example, self.global_step)
            self.timestep_stats.update(t, out.per_example)
        return out

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self.hparams.timestep_log_every
        if every > 0 and (self.global_step % every == 0) and self.timestep_stats.update_count:
            self.log_timestep_stats()

    def log_timestep_stats(self) -> None:
        stats = self.timestep_stats.compute()  # all-reduced across DDP ranks
        self.timestep_stats.reset()
        if not self.trainer.is_global_zero or self.logger is None:
            return
        curves = {"loss_mean": stats["mean"], "loss_var": stats["var"], **self.timestep_sampler.curves()}
        self.timestep_board.log(self.logger, curves, self.global_step)

    # ------------------------------------------------------------------ generation
    def target_lengths(self, batch: dict[str, Any], model: Denoiser) -> torch.Tensor:
        room = model.config.max_len - batch["prefix_len"]
        if self.length_source == "oracle":
            return torch.minimum(batch["tgt_len"], room)
        return torch.minimum(self.process.predict_lengths(model, batch, model.config.max_len), room).clamp_min(1)

    def generate_tokens(self, batch: dict[str, Any], model: Denoiser) -> tuple[list[list[int]], torch.Tensor]:
        tok = self.require_tokenizer()
        lengths = self.target_lengths(batch, model)
        gen = build_batch(source_rows(batch), None, sep_id=tok.sep_id, eos_id=tok.eos_id, pad_id=tok.pad_id,
                          tgt_lengths=lengths.tolist())
        gen = {k: v.to(self.device) for k, v in gen.items()}
        result = self.generator.generate(model, self.process, gen)
        region = gen["target_mask"] if result.target_mask is None else result.target_mask  # a length beam picks its own
        return target_rows(result.tokens, region), result.steps

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["timestep_sampler"] = self.timestep_sampler.state_dict()
        checkpoint["generator"] = self.generator.state_dict()
        checkpoint["process"] = self.process.state_dict()  # e.g. FastDiSS's measured estimate error

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.tokenizer is not None:
            self.process.bind_tokenizer(self.tokenizer)
        if "timestep_sampler" in checkpoint:
            self.timestep_sampler.load_state_dict(checkpoint["timestep_sampler"])
        self.generator.load_state_dict(checkpoint.get("generator", {}))  # e.g. the calibrated ε
        if "process" in checkpoint:  # absent from checkpoints written before processes had state
            self.process.load_state_dict(checkpoint["process"])
