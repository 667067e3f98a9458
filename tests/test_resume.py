"""Exact resume: a run killed mid-epoch and resumed from ``last`` ends exactly where the uninterrupted run ends."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

from diffusion_lm.callbacks.resume import collect_rng_states, set_rng_states
from diffusion_lm.checkpoint import SafeCheckpointIO, load_checkpoint
from diffusion_lm.data.loader import ResumableDataLoader
from diffusion_lm.data.sampler import BucketBatchSampler
from diffusion_lm.models import DenoiserConfig

from .conftest import TINY_DENOISER, cpu_trainer, tiny_recipe, toy_datamodule


class Killed(Exception):
    pass


class KillAt(L.Callback):
    """Simulates a crash: dies at the start of the step after ``step`` (its checkpoint is on disk by then)."""

    def __init__(self, step: int) -> None:
        self.step = step

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Killed


class Record(L.Callback):
    """Which examples each step trained on, and the loss of each step."""

    def __init__(self) -> None:
        self.indices, self.losses = [], []

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.indices.append(batch["index"].tolist())
        self.losses.append(float(outputs["loss"]))


def _run(root, tmp_path, max_steps, callbacks, ckpt_path=None, every=5):
    torch.manual_seed(0)  # as seed_everything would
    dm = toy_datamodule(root, max_tokens=1024)
    # dropout on: the RNG streams matter; EMA on: its state must come back too
    model = tiny_recipe(dm.vocab_size, denoiser=DenoiserConfig(**{**TINY_DENOISER, "dropout": 0.1}), ema_decay=0.9,
                        warmup_steps=4)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=every, save_last=True, save_top_k=-1)
    trainer = cpu_trainer(tmp_path, max_steps=max_steps, limit_val_batches=0, enable_checkpointing=True,
                          callbacks=[ckpt, *callbacks], plugins=[SafeCheckpointIO()])
    try:
        trainer.fit(model, dm, ckpt_path=ckpt_path)
    except Killed:
        pass
    return model, trainer


TOTAL = 20  # an epoch of the toy data is 12 batches of 1024 tokens


@pytest.fixture(scope="module")
def straight(toy_root, tmp_path_factory):
    """The uninterrupted run."""
    rec = Record()
    model, trainer = _run(toy_root, tmp_path_factory.mktemp("straight"), TOTAL, [rec])
    assert trainer.num_training_batches < TOTAL
    return rec, model.state_dict(), trainer.optimizers[0].state_dict(), trainer.num_training_batches


@pytest.mark.parametrize("kill_at", [7, 15])  # mid-epoch 0 / mid-epoch 1
def test_killed_and_resumed_run_equals_uninterrupted_run(toy_root, tmp_path, straight, kill_at):
    straight_rec, straight_state, straight_opt, epoch_len = straight
    assert kill_at % epoch_len not in (0, 1)

    first_rec, resumed_rec = Record(), Record()
    _run(toy_root, tmp_path, TOTAL, [first_rec, KillAt(kill_at)], every=kill_at)
    assert len(first_rec.indices) == kill_at
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    resumed, trainer = _run(toy_root, tmp_path, TOTAL, [resumed_rec], ckpt_path="last", every=kill_at)

    assert trainer.global_step == TOTAL
    assert first_rec.indices + resumed_rec.indices == straight_rec.indices  # same data order
    assert first_rec.losses + resumed_rec.losses == pytest.approx(straight_rec.losses, rel=1e-5)
    for (k, a), b in zip(straight_state.items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)  # weights and EMA
    opt = trainer.optimizers[0].state_dict()
    assert opt["param_groups"][0]["lr"] == pytest.approx(straight_opt["param_groups"][0]["lr"])  # LR schedule
    for sa, sb in zip(straight_opt["state"].values(), opt["state"].values()):
        torch.testing.assert_close(sa["exp_avg"], sb["exp_avg"])


def test_checkpoint_holds_loader_position_and_rng_and_loads_weights_only(toy_root, tmp_path):
    _run(toy_root, tmp_path, 5, [])
    ck = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")  # weights_only semantics
    assert ck["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches_served": 5}]
    assert len(ck["rng_states"]) == 1 and set(ck["rng_states"][0]) == {"torch", "cuda", "numpy", "python"}
    assert "timestep_sampler" in ck and "tokenizer" in ck


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = collect_rng_states()
    a = (torch.rand(3), np.random.rand(), random.random())
    set_rng_states(state)
    b = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_resumable_loader_counts_served_batches_and_skips_them():
    lengths = [5 + i % 7 for i in range(200)]
    sampler = BucketBatchSampler(None, lengths, max_tokens=64, seed=2)
    loader = ResumableDataLoader(list(range(200)), batch_sampler=sampler, collate_fn=lambda b: b, num_workers=0)
    full = list(loader)
    it = iter(loader)
    for _ in range(4):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches_served": 4}

    sampler2 = BucketBatchSampler(None, lengths, max_tokens=64, seed=2)
    loader2 = ResumableDataLoader(list(range(200)), batch_sampler=sampler2, collate_fn=lambda b: b)
    loader2.load_state_dict(state)
    assert list(loader2) == full[4:]
    assert loader2.state_dict()["batches_served"] == len(full)
    assert list(loader2) == full  # the next epoch starts from the beginning
    assert loader2.wait_seconds > 0
