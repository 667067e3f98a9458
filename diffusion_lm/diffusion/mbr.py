"""Minimum-Bayes-risk decoding over N samples (Kumar & Byrne 2004; DiffuSeq §4.3 for diffusion LMs).

Draw N candidates per example with any base generator (different initial noise), then return the
candidate with the highest mean sentence BLEU to the other N − 1: the "consensus" sample,

    ŷ = argmax_i  1/(N−1) Σ_{j≠i} BLEU(y_i, y_j).

Candidates are compared as token-id sequences of their target region, cut at ``eos_id`` when it is
given (the region has the predicted length, so the model puts EOS at its end and little comes after).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..models.denoiser import Denoiser
from ..stats.ngrams import bleu_from_counts, ngram_counts
from .generate import DDIMSampler, GenerationResult, Generator


def mbr_select(candidates: list[list[int]], max_order: int = 4) -> tuple[int, list[float]]:
    """Index of the candidate with the highest mean BLEU to the others (first on ties) and every mean."""
    n = len(candidates)
    if n == 1:
        return 0, [0.0]
    counts = [ngram_counts(c, max_order) for c in candidates]
    means = []
    for i in range(n):
        s = sum(bleu_from_counts(counts[i], len(candidates[i]), counts[j], len(candidates[j])) for j in range(n) if j != i)
        means.append(s / (n - 1))
    return max(range(n), key=lambda i: (means[i], -i)), means


class MBRGenerator(Generator):
    """Args:
        generator: The base sampler (``class_path``), e.g. DDIM or the adaptive sampler.
        num_samples: N, candidates per example (drawn in one batch of B·N rows).
        eos_id: Cut candidates at this token before comparing (``None`` = compare the whole target region).
    """

    def __init__(self, generator: Optional[Generator] = None, num_samples: int = 5, eos_id: Optional[int] = None) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.generator = generator or DDIMSampler()
        self.num_samples = num_samples
        self.eos_id = eos_id

    def state_dict(self) -> dict[str, Any]:
        return self.generator.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state)

    def _cut(self, row: list[int]) -> list[int]:
        return row[: row.index(self.eos_id)] if self.eos_id is not None and self.eos_id in row else row

    @torch.no_grad()
    def generate(self, model: Denoiser, process: Any, batch: dict[str, Any]) -> GenerationResult:
        N = self.num_samples
        B = batch["input_ids"].shape[0]
        big = {k: v.repeat_interleave(N, dim=0) if torch.is_tensor(v) else v for k, v in batch.items()}  # (B·N, …)
        res = self.generator.generate(model, process, big)
        tokens = res.tokens.view(B, N, -1)  # (B, N, L)
        tmask = batch["target_mask"]
        chosen = []
        for b in range(B):
            cands = [self._cut(row[tmask[b]].tolist()) for row in tokens[b]]
            chosen.append(mbr_select(cands)[0])
        pick = torch.as_tensor(chosen, device=tokens.device)
        out = tokens[torch.arange(B, device=tokens.device), pick]  # (B, L)
        return GenerationResult(tokens=out, steps=res.steps.view(B, N).sum(1))  # all N samples' evaluations
