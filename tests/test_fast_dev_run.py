"""Smoke runs: under fast_dev_run every batch is cut to a few hundred padded tokens; other runs are untouched."""

import torch

from diffusion_lm.data.layout import build_batch
from diffusion_lm.recipes.fast_dev_run import FAST_DEV_RUN_TOKENS, head_rows

from .conftest import cpu_trainer, tiny_recipe, toy_datamodule


def collated(rows: int):
    src = [[5 + i, 6, 7][: 1 + i % 3] for i in range(rows)]
    tgt = [[8, 9, 10, 11][: 1 + i % 4] for i in range(rows)]
    batch = build_batch(src, tgt, sep_id=1, eos_id=2, pad_id=0)
    return {**batch, "refs": [[f"ref {i}"] for i in range(rows)], "src_text": [f"src {i}" for i in range(rows)]}


def test_head_rows_cuts_every_per_row_entry_and_keeps_the_kept_rows_target_positions():
    batch = collated(10)
    B, L = batch["input_ids"].shape
    out = head_rows(batch, 3 * L + 1)  # room for 3 rows
    for key in ("input_ids", "valid", "target_mask", "prefix_len", "tgt_len"):
        assert torch.equal(out[key], batch[key][:3])
    assert out["refs"] == batch["refs"][:3] and out["src_text"] == batch["src_text"][:3]
    torch.testing.assert_close(out["target_index"], out["target_mask"].flatten().nonzero().squeeze(1))
    assert head_rows(batch, 1)["input_ids"].shape[0] == 1  # a row longer than the budget still runs
    assert head_rows(batch, B * L) is batch  # a batch that fits is passed as it is


def test_only_fast_dev_run_cuts_the_batches(tmp_path, toy_root):
    def fit(**trainer_args):
        dm = toy_datamodule(toy_root, max_tokens=4096, eval_max_tokens=4096)
        dm.setup("fit")
        recipe = tiny_recipe(dm.vocab_size)
        seen, loss = [], recipe.compute_loss
        recipe.compute_loss = lambda batch, model: seen.append(batch["input_ids"].numel()) or loss(batch, model)
        cpu_trainer(tmp_path, **trainer_args).fit(recipe, dm)
        return seen

    smoke = fit(fast_dev_run=True)
    assert len(smoke) == 2 and max(smoke) <= FAST_DEV_RUN_TOKENS  # one training and one validation batch
    full = fit(max_steps=1, limit_val_batches=1, val_check_interval=1)
    assert len(full) == 2 and min(full) > FAST_DEV_RUN_TOKENS  # the configured 4,096-token batches
