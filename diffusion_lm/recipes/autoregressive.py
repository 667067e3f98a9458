"""Autoregressive recipe: the shared denoiser as a causal (or prefix-LM) decoder.

Language-model pretraining on :class:`~diffusion_lm.data.TextCorpus` blocks and seq2seq fine-tuning use
one loss: position i predicts token i + 1 wherever token i + 1 is a target token (``target_mask``), so a
seq2seq batch is trained on the target (and its EOS) only and an LM block on every token. Decoding uses
the KV cache, greedy or beam search (:class:`~diffusion_lm.models.decoding.ARDecoder`), and is scored by
the same metrics as the diffusion recipes. It is stage (1) of AR2Diff (Han et al. 2024, §4) and the AR baseline.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

from ..data.base import TokenizedDataModule
from ..diffusion.process import LossOutput, masked_mean
from ..errors import ConfigError
from ..models.config import DenoiserConfig
from ..models.convert import adopt_architecture
from ..models.decoding import ARDecoder
from ..models.denoiser import Denoiser
from .base import BaseRecipe, requested_architecture
from .pretrained import FromPretrained, pretrained_source


def autoregressive_architecture(denoiser: Optional[DenoiserConfig], vocab_size: int, attention: str,
                                source: Optional[DenoiserConfig] = None) -> DenoiserConfig:
    """The denoiser an :class:`Autoregressive` recipe builds: ``denoiser`` (or the ``source``'s architecture
    with ``denoiser``'s training choices) as a plain decoder — no timestep embedding (AR2Diff adds it later),
    no self-conditioning input, no length head."""
    cfg = requested_architecture(denoiser, vocab_size)
    if source is not None:
        cfg = adopt_architecture(cfg, source)
    cfg.attention = attention
    cfg.timestep_embedding = False
    cfg.self_condition = False
    cfg.length_classes = 0
    return cfg


class Autoregressive(FromPretrained, BaseRecipe):
    """Args:
        attention: ``causal`` (GPT-style) or ``prefix_causal`` (prefix LM: the source attends bidirectionally).
        decoder: Greedy / beam search settings (``beam_size``, ``max_new_tokens``, ``length_penalty``).
        init_from: Start from a Hugging Face GPT-2 / Llama directory or Hub id, or a ``.ckpt`` of this
            framework (its architecture replaces ``denoiser``'s).
        init_weights: ``ema`` or ``raw`` weights of a ``.ckpt`` source.
        denoiser: The architecture (with ``init_from``: only its training choices, see :mod:`.pretrained`).
        vocab_size: See :class:`BaseRecipe`.
        **kwargs: See :class:`BaseRecipe`.
    """

    def __init__(
        self,
        attention: Literal["causal", "prefix_causal"] = "causal",
        decoder: Optional[ARDecoder] = None,
        init_from: Optional[str] = None,
        init_weights: Literal["ema", "raw"] = "ema",
        denoiser: Optional[DenoiserConfig] = None,
        vocab_size: int = 0,
        **kwargs: Any,
    ) -> None:
        pre = pretrained_source(init_from, init_weights, vocab_size)
        architecture = autoregressive_architecture(denoiser, vocab_size, attention, pre.config if pre else None)
        super().__init__(denoiser=architecture, vocab_size=vocab_size, **kwargs)
        self.decoder = decoder or ARDecoder()
        self.max_target_tokens: Optional[int] = None
        self.init_from_pretrained(pre)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = self.trainer.datamodule
        if isinstance(dm, TokenizedDataModule) and dm.max_tgt_len:
            self.max_target_tokens = dm.max_tgt_len + 1  # + EOS

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: dict[str, Any], model: Denoiser) -> LossOutput:
        ids, tmask = batch["input_ids"], batch["target_mask"]  # (B, L)
        out = model(ids, valid=batch["valid"], prefix_len=batch["prefix_len"])
        predicts = tmask[:, 1:]  # (B, L-1): position i predicts token i+1 when that one is a target token
        logits = model.logits(out.latent[:, :-1][predicts])  # (N, V)
        ce = torch.zeros(predicts.shape, device=ids.device)
        ce[predicts] = F.cross_entropy(logits.float(), ids[:, 1:][predicts], reduction="none")
        loss = masked_mean(ce, predicts)
        return LossOutput(loss, masked_mean(ce, predicts, dim=1).detach(), {"ppl": loss.detach().exp()})

    # ------------------------------------------------------------------ generation
    def generate_tokens(self, batch: dict[str, Any], model: Denoiser) -> tuple[list[list[int]], torch.Tensor]:
        tok = self.require_tokenizer()
        if int(batch["prefix_len"].min()) < 1:
            raise ConfigError("generation needs a prompt: LM blocks without a prefix cannot be decoded "
                              "(set model.init_args.val_generate_batches: 0, or data objective: prefix_lm)")
        prompts = [row[:p] for row, p in zip(batch["input_ids"].tolist(), batch["prefix_len"].tolist())]
        return self.decoder.decode(model, prompts, tok.eos_id, tok.pad_id, self.max_target_tokens)
