"""The decoder-only prefix-LM layout shared by every recipe::

    [src tokens] [SEP] [tgt tokens] [EOS] [PAD] …

* ``prefix_len`` = len(src) + 1 positions are the prompt (never noised, no loss);
* ``target_mask`` marks the target tokens and the EOS (noised, loss);
* ``valid`` is False at right padding;
* ``target_index`` lists the flat positions (row · L + column) of ``target_mask``, computed here on the
  host so that the loss can gather the target positions without a device→host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def build_batch(
    srcs: Sequence[Sequence[int]],
    tgts: Sequence[Sequence[int]] | None,
    *,
    sep_id: int,
    eos_id: int,
    pad_id: int,
    tgt_lengths: Sequence[int] | torch.Tensor | None = None,
    placeholder_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pads a list of (src, tgt) token lists into the layout above.

    For generation pass ``tgts=None`` and ``tgt_lengths`` (target positions per example, EOS
    included): the target region is filled with ``placeholder_id`` (default PAD) for the sampler
    to overwrite.
    """
    n = len(srcs)
    if tgts is not None:
        tgt_rows = [list(t) + [eos_id] for t in tgts]
    else:
        if tgt_lengths is None:
            raise ValueError("build_batch needs tgts or tgt_lengths")
        fill = pad_id if placeholder_id is None else placeholder_id
        tgt_rows = [[fill] * int(k) for k in tgt_lengths]
    src_rows = [list(s) + [sep_id] for s in srcs]
    lengths = [len(s) + len(t) for s, t in zip(src_rows, tgt_rows)]
    L = max(lengths)
    input_ids = torch.full((n, L), pad_id, dtype=torch.long)
    target_mask = torch.zeros((n, L), dtype=torch.bool)
    for i, (s, t) in enumerate(zip(src_rows, tgt_rows)):
        input_ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        input_ids[i, len(s) : len(s) + len(t)] = torch.as_tensor(t, dtype=torch.long)
        target_mask[i, len(s) : len(s) + len(t)] = True
    lengths_t = torch.as_tensor(lengths)
    return {
        "input_ids": input_ids,  # (B, L)
        "valid": torch.arange(L)[None, :] < lengths_t[:, None],  # (B, L)
        "target_mask": target_mask,  # (B, L)
        "prefix_len": torch.as_tensor([len(s) for s in src_rows]),  # (B,)
        "tgt_len": torch.as_tensor([len(t) for t in tgt_rows]),  # (B,) EOS included
        "target_index": target_mask.flatten().nonzero().squeeze(1),  # (N,) N = target positions
    }


def source_rows(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    """The source tokens of each example (without SEP), e.g. to re-layout for generation."""
    ids, plen = batch["input_ids"].tolist(), batch["prefix_len"].tolist()
    return [row[: p - 1] for row, p in zip(ids, plen)]


def target_rows(tokens: torch.Tensor, target_mask: torch.Tensor) -> list[list[int]]:
    """Target-region tokens of each example, in order."""
    return [row[m].tolist() for row, m in zip(tokens, target_mask)]


def trim_at_eos(ids: Sequence[int], eos_id: int, pad_id: int) -> list[int]:
    """Cut at the first EOS and drop padding."""
    out = []
    for i in ids:
        if i == eos_id:
            break
        if i != pad_id:
            out.append(int(i))
    return out
