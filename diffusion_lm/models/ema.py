"""Exponential moving average of a module's weights (Polyak averaging), kept as a full copy.

The copy is an ordinary submodule: it moves with ``.to()``, is saved in and restored from the
checkpoint, and is used for validation and generation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from typing_extensions import override


def _forget_host_count(module: "EMA", incompatible_keys) -> None:  # noqa: ARG001 — load_state_dict post-hook
    module._updates_host = None


class EMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        super().__init__()
        self.decay = decay
        self.warmup = warmup
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.model.eval()
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._updates_host: int | None = None  # host mirror of `updates`: reading a GPU buffer each step would sync
        self.register_load_state_dict_post_hook(_forget_host_count)

    @override
    def train(self, mode: bool = True) -> "EMA":  # the copy always runs in eval mode
        return super().train(False)

    def current_decay(self) -> float:
        if self._updates_host is None:
            self._updates_host = int(self.updates)  # once, after construction or loading
        n = self._updates_host
        # bias-free start (as in timm's ModelEmaV2 warmup): average over the first ~10·n steps
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_p = [p for p in self.model.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        float_pairs = [(e, s) for e, s in zip(ema_p, src_p) if e.is_floating_point()]
        if float_pairs:
            torch._foreach_lerp_([e for e, _ in float_pairs], [s for _, s in float_pairs], 1.0 - d)
        for e, s in zip(self.model.buffers(), model.buffers()):
            e.copy_(s)
        self.updates += 1
        self._updates_host = (self._updates_host or 0) + 1
