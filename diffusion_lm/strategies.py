"""FSDP for denoisers that do not fit one GPU (large AR2Diff models).

    trainer:
      strategy:
        class_path: diffusion_lm.strategies.BlockFSDPStrategy
        init_args: {sharding_strategy: FULL_SHARD, activation_checkpointing: true}

Lightning's ``FSDPStrategy`` with the settings this package needs: every transformer ``Block`` (of the
denoiser and of its EMA copy) is its own FSDP unit, so parameters, gradients and optimizer state are
sharded block by block; ``use_orig_params=True``, because the outermost unit holds both trainable weights
and the frozen EMA weights; optional activation checkpointing of each block. Mixed precision follows
``trainer.precision`` (``bf16-mixed``). See docs/scaling.md.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import FSDPStrategy

from .models.layers import Block


class BlockFSDPStrategy(FSDPStrategy):
    """Args:
        activation_checkpointing: Recompute each block's activations in the backward pass.
        sharding_strategy: ``FULL_SHARD`` (ZeRO-3), ``SHARD_GRAD_OP`` (ZeRO-2), ``HYBRID_SHARD`` (full within a
            node, replicated across nodes), ``NO_SHARD``.
        state_dict_type: ``full`` (one checkpoint file, gathered on rank 0) or ``sharded`` (a directory, one
            shard per rank: faster and lighter for very large models).
        **kwargs: Any other argument of ``lightning.pytorch.strategies.FSDPStrategy``.
    """

    def __init__(self, activation_checkpointing: bool = False, sharding_strategy: str = "FULL_SHARD",
                 state_dict_type: str = "full", **kwargs: Any) -> None:
        kwargs.setdefault("auto_wrap_policy", {Block})
        kwargs.setdefault("use_orig_params", True)
        if activation_checkpointing:
            kwargs.setdefault("activation_checkpointing_policy", {Block})
        super().__init__(sharding_strategy=sharding_strategy, state_dict_type=state_dict_type, **kwargs)
