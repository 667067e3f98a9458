"""Checkpoints load with weights-only semantics; a checkpoint of another shape is one clear error."""

import os
import pickle

import pytest
import torch

from diffusion_lm.checkpoint import SafeCheckpointIO, load_checkpoint
from diffusion_lm.errors import CheckpointError
from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.state_dict import check_state_dict
from diffusion_lm.recipes import FromScratch

from .conftest import TINY_DENOISER, cpu_trainer, tiny_recipe, toy_datamodule


def test_python_api_checkpoint_loads_weights_only(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size)
    trainer = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(model, dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):  # plain weights-only torch.load refuses the DenoiserConfig in the hparams
        torch.load(path, weights_only=True)
    ck = load_checkpoint(path)  # ... the classes of this package are allowed by name
    assert isinstance(ck["hyper_parameters"]["denoiser"], DenoiserConfig)
    # and the Trainer loads through it
    resumed = cpu_trainer(tmp_path, max_steps=3, limit_val_batches=0, plugins=[SafeCheckpointIO()])
    resumed.fit(tiny_recipe(dm.vocab_size), dm, ckpt_path=path)
    assert resumed.global_step == 3


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_foreign_objects_are_refused_by_name(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="posix.system|os.system"):
        load_checkpoint(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)


def _denoiser(**kw):
    return Denoiser(DenoiserConfig(**{**TINY_DENOISER, "vocab_size": 50, **kw}))


def test_shape_mismatch_names_the_vocabulary():
    with pytest.raises(CheckpointError, match=r"another vocabulary: 60 tokens in the checkpoint, 50 in the model"):
        check_state_dict(_denoiser(), _denoiser(vocab_size=60).state_dict())
    with pytest.raises(CheckpointError, match=r"35 parameter\(s\) of another shape "
                                              r"\(wpe\.weight: \(56, 64\) in the checkpoint, \(56, 32\)"):
        check_state_dict(_denoiser(), _denoiser(d_model=64).state_dict())
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint \(blocks\.1\."):
        check_state_dict(_denoiser(), _denoiser(n_layers=1).state_dict())
    check_state_dict(_denoiser(), _denoiser(n_layers=1).state_dict(), strict=False)  # shapes agree
    check_state_dict(_denoiser(), _denoiser().state_dict())


def test_resuming_a_checkpoint_of_another_vocabulary_is_a_checkpoint_error(toy_root, tmp_path):
    import lightning

    dm = toy_datamodule(toy_root)
    other = tiny_recipe(dm.vocab_size + 7)
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": other.state_dict(), "pytorch-lightning_version": lightning.__version__}, path)
    model = tiny_recipe(dm.vocab_size)
    with pytest.raises(CheckpointError, match=rf"another vocabulary: {dm.vocab_size + 7} tokens"):
        model.on_load_checkpoint(load_checkpoint(path))
    with pytest.raises(CheckpointError, match="another vocabulary"):
        FromScratch.load_from_checkpoint(path, weights_only=True, **tiny_recipe(dm.vocab_size).hparams)
