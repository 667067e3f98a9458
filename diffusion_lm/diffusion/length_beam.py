"""Length beam: decode several candidate target lengths and keep the one the model scores best.

Non-autoregressive decoders fix the output length before they decode, and a wrong length costs a
whole sentence. Mask-Predict (Ghazvininejad et al. 2019, §3.3) decodes the ℓ most probable lengths
of its length head in parallel and keeps the candidate with the highest mean log-probability;
Difformer and DINOISER do the same with their length predictor (~+1 BLEU).

:class:`LengthBeam` wraps any base generator whose result carries ``scores``. Candidate 0 is the
length the batch already has (the recipe's predicted or oracle length), so a beam of width 1 is the
base generator itself; the other candidates are the next most probable lengths of the length head.
All B · W candidates are decoded as one batch.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..errors import ConfigError
from ..models.denoiser import Denoiser
from .generate import GenerationResult, Generator
from .process import DiffusionProcess


def with_target_lengths(batch: dict[str, Any], lengths: torch.Tensor) -> dict[str, torch.Tensor]:
    """A generation batch (B rows) → W rows per example with target lengths ``lengths`` (B, W).

    The prompt of each row is kept; the new target region holds the layout's placeholder, which is
    what the generation layout has at the first target position."""
    ids, plen = batch["input_ids"], batch["prefix_len"]  # (B, L), (B,)
    B, W = lengths.shape
    ids, plen, n = ids.repeat_interleave(W, 0), plen.repeat_interleave(W), lengths.flatten()  # (B·W, …)
    L = int((plen + n).max())
    if L > ids.shape[1]:
        ids = torch.cat([ids, ids.new_zeros(ids.shape[0], L - ids.shape[1])], 1)
    pos = torch.arange(L, device=ids.device)[None, :]  # (1, L)
    placeholder = batch["input_ids"][0, batch["prefix_len"][0]]
    valid = pos < (plen + n)[:, None]  # (B·W, L)
    target_mask = (pos >= plen[:, None]) & valid
    return {
        "input_ids": torch.where(pos < plen[:, None], ids[:, :L], placeholder),
        "valid": valid,
        "target_mask": target_mask,
        "prefix_len": plen,
        "tgt_len": n,
        "target_index": target_mask.flatten().nonzero().squeeze(1),
    }


class LengthBeam(Generator):
    """Args:
        generator: The base sampler (``class_path``); its results must carry ``scores``.
        width: W, candidate lengths per example (Mask-Predict: 5).
    """

    def __init__(self, generator: Optional[Generator] = None, width: int = 3) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if generator is None:
            raise ConfigError("LengthBeam needs a base generator (model.init_args.generator.init_args.generator)")
        self.generator = generator
        self.width = width

    def state_dict(self) -> dict[str, Any]:
        return self.generator.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state)

    def candidate_lengths(self, model: Denoiser, process: DiffusionProcess, batch: dict[str, Any]) -> torch.Tensor:
        """(B, W): the batch's own target length, then the length head's next most probable lengths that fit."""
        current = batch["target_mask"].sum(1)  # (B,)
        if self.width == 1:
            return current[:, None]
        logits = model.predict_length(process.length_hidden(model, batch, None)).float()  # (B, C)
        room = model.config.max_len - batch["prefix_len"]  # (B,)
        classes = torch.arange(logits.shape[1], device=logits.device)[None, :]
        unusable = (classes < 2) | (classes > room[:, None]) | (classes == current[:, None])
        others = logits.masked_fill(unusable, float("-inf")).topk(self.width - 1, dim=1)  # (B, W−1)
        # too few usable lengths: repeat the batch's own (a duplicate candidate cannot win over the original)
        extra = torch.where(torch.isfinite(others.values), others.indices, current[:, None])
        return torch.cat([current[:, None], extra], 1)

    @torch.no_grad()
    def generate(self, model: Denoiser, process: Any, batch: dict[str, Any]) -> GenerationResult:
        lengths = self.candidate_lengths(model, process, batch)  # (B, W)
        B, W = lengths.shape
        cand = with_target_lengths(batch, lengths)
        res = self.generator.generate(model, process, cand)
        if res.scores is None:
            raise ConfigError(f"LengthBeam needs a generator that scores its output; {type(self.generator).__name__} does not")
        pick = res.scores.view(B, W).argmax(1) + torch.arange(0, B * W, W, device=lengths.device)  # (B,) ties: first
        return GenerationResult(tokens=res.tokens[pick], steps=res.steps.view(B, W).sum(1), scores=res.scores[pick],
                                target_mask=cand["target_mask"][pick])
