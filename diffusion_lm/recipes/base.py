"""BaseRecipe: what every training recipe shares.

A recipe is a LightningModule around the one :class:`~diffusion_lm.models.Denoiser`. The base
class owns the optimiser (AdamW, warm-up + decay), the EMA copy of the weights, validation and
test generation scored by the data module's metrics, sample logging, and the tokenizer stored in
the checkpoint. Subclasses implement :meth:`compute_loss` and :meth:`generate_tokens`.

Construction is explicit: each recipe's ``__init__`` first resolves the denoiser's architecture with a
pure function of its arguments (:func:`requested_architecture`, ``diffusion_architecture``,
``autoregressive_architecture`` …) and passes the result to ``BaseRecipe.__init__``, which builds it.
Resolving is idempotent, so a recipe rebuilt from its stored hyper-parameters gets the same model.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch import nn
from torchmetrics import MeanMetric
from typing_extensions import override

from ..callbacks import default_callbacks
from ..data.base import TokenizedDataModule
from ..data.layout import trim_at_eos
from ..data.tokenization import TextTokenizer
from ..diffusion.process import ForwardPasses, LossOutput
from ..errors import CheckpointError, ConfigError
from ..flops import CountsFlops, StepFlops
from ..metrics.text import default_metrics
from ..models.config import DenoiserConfig
from ..models.denoiser import Denoiser
from ..models.ema import EMA
from ..models.state_dict import check_state_dict
from .fast_dev_run import FAST_DEV_RUN_TOKENS, head_rows


def lr_lambda(step: int, warmup: int, total: int, kind: str, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine / linear decay to ``min_ratio`` at ``total`` (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return min_ratio + (1 - min_ratio) * (1 - progress)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _unwrapped(name: str) -> str:
    """A parameter name without the prefixes of FSDP / activation-checkpointing wrappers."""
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


def requested_architecture(denoiser: Optional[DenoiserConfig | dict], vocab_size: int = 0) -> DenoiserConfig:
    """The architecture a recipe was given, as a new config: the default one if none, a dict (hyper-parameters
    restored from a checkpoint) converted, and the data's vocabulary size filled in when known."""
    if isinstance(denoiser, dict):
        denoiser = DenoiserConfig(**denoiser)
    cfg = copy.deepcopy(denoiser) if denoiser is not None else DenoiserConfig()
    if vocab_size:
        cfg.vocab_size = vocab_size
    return cfg


@contextmanager
def seeded(seed: int, device: torch.device):
    """Deterministic randomness for evaluation without disturbing the training RNG streams."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class BaseRecipe(CountsFlops, L.LightningModule):
    """Args:
        denoiser: Architecture of the shared transformer (as each recipe resolves it, see the module docstring).
        vocab_size: Vocabulary size (linked from ``data.vocab_size`` by the CLI).
        lr: Peak learning rate.
        weight_decay: AdamW weight decay (matrices only; biases, norms and gains are not decayed).
        betas: AdamW betas.
        warmup_steps: Linear warm-up steps.
        lr_decay: ``cosine``, ``linear`` or ``constant`` after warm-up.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        fused_adamw: Use the fused AdamW kernel (``None`` = on CUDA).
        ema_decay: EMA decay of the weights used for evaluation (0 = off).
        val_generate_batches: Validation batches that are also decoded and scored (−1 = all, 0 = none).
        num_logged_samples: Source/reference/prediction triples written to TensorBoard per validation.
        compile: ``torch.compile`` the denoiser (in place: the state-dict keys do not change).
        compile_mode: ``torch.compile`` mode (e.g. ``max-autotune-no-cudagraphs``); ``None`` = default.
        eval_seed: Seed of the evaluation noise (the same samples at every validation).
    """

    def __init__(
        self,
        denoiser: Optional[DenoiserConfig] = None,
        vocab_size: int = 0,
        lr: float = 5e-4,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        weight_decay: float = 0.01,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        betas: tuple[float, float] = (0.9, 0.98),  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        warmup_steps: int = 1000,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        lr_decay: Literal["cosine", "linear", "constant"] = "cosine",  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        min_lr_ratio: float = 0.1,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        fused_adamw: Optional[bool] = None,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        ema_decay: float = 0.9999,
        val_generate_batches: int = 4,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        num_logged_samples: int = 8,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        compile: bool = False,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        eval_seed: int = 1234,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
        compile_mode: Optional[str] = None,  # noqa: ARG002 — read back through self.hparams (save_hyperparameters)
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.denoiser = Denoiser(requested_architecture(denoiser, vocab_size))
        # biases and gains, by name from the shapes at construction (FSDP flattens the parameters it shards)
        self._vector_names = {n for n, p in self.denoiser.named_parameters() if p.dim() < 2}
        self.ema = EMA(self.denoiser, ema_decay) if ema_decay > 0 else None
        self.tokenizer: TextTokenizer | None = None
        self.tokenizer_source: str | None = None  # where pretrained weights' tokenizer came from (init_from)
        self.metrics = nn.ModuleDict(default_metrics())
        self.eval_loss = MeanMetric()
        self.eval_steps = MeanMetric()
        self._samples: list[tuple[str, str, str]] = []

    # ------------------------------------------------------------------ what subclasses implement
    def no_weight_decay(self) -> set[str]:
        """Names of denoiser matrices that AdamW must not decay (besides biases and gains)."""
        return set()

    def compute_loss(self, batch: dict[str, Any], model: Denoiser) -> LossOutput:
        raise NotImplementedError

    def generate_tokens(self, batch: dict[str, Any], model: Denoiser) -> tuple[list[list[int]], torch.Tensor]:
        """Target token rows (before EOS trimming) and the number of model evaluations per example (B,)."""
        raise NotImplementedError

    def forward_passes(self) -> ForwardPasses:
        """Denoiser forward passes per training step (with and without gradient): one trained pass by default."""
        return ForwardPasses()

    def step_flops(self) -> StepFlops:
        """FLOPs of one training step as a function of its tokens (:class:`~diffusion_lm.flops.StepFlops`)."""
        passes = self.forward_passes()
        return StepFlops(self.denoiser.config, grad_free_passes=passes.grad_free, trained_passes=passes.trained)

    # ------------------------------------------------------------------ set-up
    @property
    def eval_model(self) -> Denoiser:
        return self.ema.model if self.ema is not None else self.denoiser

    @override
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if not isinstance(dm, TokenizedDataModule):
            return
        cfg = self.denoiser.config
        if self.tokenizer_source is not None and self.tokenizer is not None and not self.tokenizer.same_tokens(dm.tokenizer):
            # the size check below cannot see this: two BPEs of one size give the same ids to different text
            raise CheckpointError(
                f"the data module's tokenizer is not the one stored in {self.tokenizer_source} (same size, different "
                f"tokens): set data.init_args.tokenizer: {self.tokenizer_source}"
            )
        self.tokenizer = dm.tokenizer
        if self.tokenizer.vocab_size != cfg.vocab_size:
            raise ConfigError(
                f"the data's tokenizer has {self.tokenizer.vocab_size} tokens but the model was built for "
                f"{cfg.vocab_size} (model.init_args.vocab_size / the checkpoint): use the same tokenizer"
            )
        if dm.max_len > cfg.max_len:
            raise ConfigError(
                f"data.max_src_len + data.max_tgt_len + 2 = {dm.max_len} exceeds the denoiser's max_len={cfg.max_len}: "
                "raise model.init_args.denoiser.max_len or lower the data lengths"
            )
        self.metrics = nn.ModuleDict(dm.build_metrics())

    def configure_model(self) -> None:
        if self.hparams.compile:
            self.denoiser.compile(mode=self.hparams.get("compile_mode"))

    def configure_callbacks(self) -> list[L.Callback]:
        """Throughput/MFU, the non-finite-loss guard and RNG state for exact resume (see ``diffusion_lm.callbacks``)."""
        return default_callbacks(self.trainer)

    def configure_optimizers(self):
        hp = self.hparams
        # decay matrices only; decided by name from the shapes at construction, because FSDP flattens the
        # parameters it shards (and prefixes their names with its wrappers)
        decay, no_decay = [], []
        exempt = self._vector_names | self.no_weight_decay()
        for name, p in self.denoiser.named_parameters():
            if p.requires_grad:
                (no_decay if _unwrapped(name) in exempt else decay).append(p)
        params = decay + no_decay
        fused = hp.fused_adamw if hp.fused_adamw is not None else all(p.is_cuda for p in params)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr, betas=tuple(hp.betas), fused=fused or None,
        )
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 0
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, hp.warmup_steps, total, hp.lr_decay, hp.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def smoke_sized(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Under ``trainer.fast_dev_run`` the batch cut to a smoke-run size (:mod:`.fast_dev_run`), else as it is."""
        if self._trainer is not None and self.trainer.fast_dev_run:
            return head_rows(batch, FAST_DEV_RUN_TOKENS)
        return batch

    # ------------------------------------------------------------------ training
    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        batch = self.smoke_sized(batch)
        out = self.compute_loss(batch, self.denoiser)
        B = batch["input_ids"].shape[0]
        self.log("train/loss", out.loss, batch_size=B)
        for k, v in out.logs.items():
            self.log(f"train/{k}", v, batch_size=B)
        if self._logs_this_step():
            # Lightning turns every progress-bar value into a Python number after *every* step, and a float
            # logged here becomes a device tensor: either makes the host wait for the GPU. So the bar gets a
            # CPU copy of the loss, and the LR is logged, only on the steps that are written to the loggers.
            loss = out.loss.item()  # the host read, on logged steps only
            self.log("loss", torch.tensor(loss), prog_bar=True, logger=False, batch_size=B)
            if self.trainer.lr_scheduler_configs:
                self.log("train/lr", self.trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0])
        return out.loss

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes this training step's metrics to the loggers."""
        if self._trainer is None:
            return False
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)  # runs only on real steps (gradient accumulation respected)
        if self.ema is not None:
            self.ema.update(self.denoiser)

    # ------------------------------------------------------------------ evaluation
    def decode_predictions(self, batch: dict[str, Any], model: Denoiser) -> list[str]:
        rows, steps = self.generate_tokens(batch, model)
        self.eval_steps.update(steps.float())
        tok = self.require_tokenizer()
        return [tok.decode(trim_at_eos(r, tok.eos_id, tok.pad_id)) for r in rows]

    def require_tokenizer(self) -> TextTokenizer:
        if self.tokenizer is None:
            raise ConfigError("no tokenizer: attach a data module or load a checkpoint that stores one")
        return self.tokenizer

    def _eval_step(self, batch: dict[str, Any], batch_idx: int, generate: bool) -> None:
        batch = self.smoke_sized(batch)
        model = self.eval_model
        with seeded(self.hparams.eval_seed + batch_idx, self.device):
            self.eval_loss.update(self.compute_loss(batch, model).loss.detach())
            if not generate:
                return
            preds = self.decode_predictions(batch, model)
        for m in self.metrics.values():
            m.update(preds, batch["refs"])
        room = self.hparams.num_logged_samples - len(self._samples)
        if room > 0:
            self._samples.extend(zip(batch["src_text"][:room], [r[0] for r in batch["refs"][:room]], preds[:room]))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        n = self.hparams.val_generate_batches
        self._eval_step(batch, batch_idx, generate=n < 0 or batch_idx < n)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, generate=True)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """JSON-ready generations of one batch (``diffusion-lm predict`` writes them to JSONL)."""
        batch = self.smoke_sized(batch)
        with seeded(self.hparams.eval_seed + batch_idx, self.device):
            rows, steps = self.generate_tokens(batch, self.eval_model)
        tok = self.require_tokenizer()
        return [{"index": int(i), "source": src, "prediction": tok.decode(trim_at_eos(r, tok.eos_id, tok.pad_id)),
                 "references": refs, "steps": int(n)}
                for i, src, r, refs, n in zip(batch["index"].tolist(), batch["src_text"], rows, batch["refs"], steps.tolist())]

    def _eval_epoch_end(self, prefix: str) -> None:
        self.log(f"{prefix}/loss", self.eval_loss.compute(), sync_dist=False)
        self.eval_loss.reset()
        if self.eval_steps.update_count:
            self.log(f"{prefix}/decode_steps", self.eval_steps.compute())
            for name, m in self.metrics.items():
                value = m.compute()  # a scalar, or a dict of scalars (e.g. ROUGE: rouge1/rouge2/rougeL)
                for key, v in (value.items() if isinstance(value, dict) else [(name, value)]):
                    self.log(f"{prefix}/{key}", v, prog_bar=True)
        self.eval_steps.reset()
        for m in self.metrics.values():
            m.reset()
        self._log_samples(prefix)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def _log_samples(self, prefix: str) -> None:
        samples, self._samples = self._samples, []
        if not samples or not self.trainer.is_global_zero:
            return
        if prefix == "test":  # the researcher sees what the model writes, not only a number
            for i, (s, r, p) in enumerate(samples, 1):
                print(f"--- example {i}\n  source:    {s}\n  reference: {r}\n  generated: {p}")
        if isinstance(self.logger, TensorBoardLogger):
            exp = self.logger.experiment
            rows = "\n".join(f"| {s} | {r} | {p} |" for s, r, p in samples)
            exp.add_text(f"{prefix}/samples", "| source | reference | generated |\n|---|---|---|\n" + rows, self.global_step)

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        if "state_dict" in checkpoint and (trainer is None or isinstance(trainer.strategy, (SingleDeviceStrategy, DDPStrategy))):
            source = f"checkpoint {trainer.ckpt_path}" if trainer is not None and trainer.ckpt_path else "the checkpoint"
            check_state_dict(self, checkpoint["state_dict"], source=source, strict=self.strict_loading)  # clear error
        if "tokenizer" in checkpoint and self.tokenizer is None:
            self.tokenizer = TextTokenizer.from_dict(checkpoint["tokenizer"])
