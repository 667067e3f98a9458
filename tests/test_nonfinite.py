"""The non-finite-loss guard: an injected NaN stops training with the step named, or is skipped, and never
reaches the weights or a checkpoint."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

from diffusion_lm.callbacks import NonFiniteGuard, NonFiniteLossError
from diffusion_lm.checkpoint import load_checkpoint
from diffusion_lm.recipes import FromScratch

from .conftest import cpu_trainer, tiny_recipe, toy_datamodule

BAD_STEP = 5


class NaNAt(FromScratch):
    """Makes the loss of one training step NaN."""

    def __init__(self, nan_step: int = BAD_STEP, **kwargs):
        super().__init__(**kwargs)
        self.nan_step = nan_step

    def compute_loss(self, batch, model):
        out = super().compute_loss(batch, model)
        if self.training and self.global_step == self.nan_step:
            out = out._replace(loss=out.loss * float("nan"))
        return out


class WatchStep(L.Callback):
    """Weights right before and right after the bad step."""

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == BAD_STEP:
            self.before = [p.detach().clone() for p in pl_module.denoiser.parameters()]

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == BAD_STEP + 1:
            self.after = [p.detach().clone() for p in pl_module.denoiser.parameters()]


def _fit(toy_root, tmp_path, guard=None, max_steps=8, **recipe_kw):
    dm = toy_datamodule(toy_root)
    args = tiny_recipe(dm.vocab_size).hparams
    model = NaNAt(**{**args, **recipe_kw})
    watch = WatchStep()
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1, save_last=True), watch]
    if guard is not None:
        callbacks.append(guard)
    trainer = cpu_trainer(tmp_path, max_steps=max_steps, limit_val_batches=0, enable_checkpointing=True,
                          callbacks=callbacks)
    return model, trainer, dm, watch


def _all_finite(tensors) -> bool:
    return all(torch.isfinite(t).all() for t in tensors)


@pytest.mark.parametrize("fused", [False, True])  # host check / found_inf handed to the fused AdamW kernel
def test_nan_stops_training_naming_the_step(toy_root, tmp_path, fused):
    model, trainer, dm, watch = _fit(toy_root, tmp_path, fused_adamw=fused)
    with pytest.raises(NonFiniteLossError, match=f"at step {BAD_STEP} "):
        trainer.fit(model, dm)
    assert _all_finite(model.parameters())  # the bad update was never applied
    for a, b in zip(watch.before, watch.after):
        torch.testing.assert_close(a, b)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert "epoch=0-step=4.ckpt" in files and "epoch=0-step=6.ckpt" not in files, files
    for f in (tmp_path / "ckpt").iterdir():
        assert _all_finite(load_checkpoint(f)["state_dict"].values()), f


@pytest.mark.parametrize("fused", [False, True])
def test_nan_step_is_skipped(toy_root, tmp_path, fused):
    guard = NonFiniteGuard(action="skip", check_every_n_steps=1)
    model, trainer, dm, watch = _fit(toy_root, tmp_path, guard=guard, fused_adamw=fused)
    trainer.fit(model, dm)
    assert trainer.global_step == 8 and guard.skipped_steps == 1
    assert _all_finite(model.parameters())
    for a, b in zip(watch.before, watch.after):
        torch.testing.assert_close(a, b)  # the skipped step changed nothing
    state = trainer.optimizers[0].state_dict()["state"][0]
    assert int(state["step"]) == 7  # 8 steps, one of them skipped


def test_too_many_skips_stop(toy_root, tmp_path):
    class AlwaysNaN(NaNAt):
        def compute_loss(self, batch, model):
            out = FromScratch.compute_loss(self, batch, model)
            return out._replace(loss=out.loss * float("nan")) if self.global_step >= 2 else out

    dm = toy_datamodule(toy_root)
    model = AlwaysNaN(**tiny_recipe(dm.vocab_size).hparams)
    trainer = cpu_trainer(tmp_path, max_steps=10, limit_val_batches=0,
                          callbacks=[NonFiniteGuard(action="skip", check_every_n_steps=1, max_skips=3)])
    with pytest.raises(NonFiniteLossError, match="4 training steps .* first at step 2"):
        trainer.fit(model, dm)


def test_guard_is_on_by_default(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size)
    trainer = cpu_trainer(tmp_path, fast_dev_run=1)
    trainer.fit(model, dm)
    assert sum(isinstance(c, NonFiniteGuard) for c in trainer.callbacks) == 1
    custom = NonFiniteGuard(action="skip")
    trainer = cpu_trainer(tmp_path, fast_dev_run=1, callbacks=[custom])
    trainer.fit(model, dm)
    assert [c for c in trainer.callbacks if isinstance(c, NonFiniteGuard)] == [custom]  # the user's replaces the default
