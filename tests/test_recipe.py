import math

import pytest
import torch

from diffusion_lm.errors import ConfigError
from diffusion_lm.models.ema import EMA
from diffusion_lm.recipes import FromScratch
from diffusion_lm.recipes.base import lr_lambda

from .conftest import cpu_trainer, tiny_recipe, toy_datamodule


def test_lr_schedule():
    assert lr_lambda(0, 10, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_lambda(9, 10, 100, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_lambda(100, 10, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_lambda(55, 10, 100, "linear", 0.0) == pytest.approx(0.5)
    assert lr_lambda(55, 10, 100, "constant", 0.0) == 1.0
    vals = [lr_lambda(s, 10, 100, "cosine", 0.1) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_ema_tracks_and_warms_up():
    lin = torch.nn.Linear(2, 2)
    ema = EMA(lin, decay=0.99)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        lin.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(lin)
    torch.testing.assert_close(ema.model.weight, 0.1 * before + 0.9 * lin.weight)
    assert not any(p.requires_grad for p in ema.model.parameters())
    ema.train()
    assert not ema.model.training


def test_fast_dev_run_fit_validate_test(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size)
    trainer = cpu_trainer(tmp_path, fast_dev_run=2)
    trainer.fit(model, dm)
    assert trainer.global_step == 2
    assert model.tokenizer is dm.tokenizer
    trainer.validate(model, dm)
    res = trainer.test(model, dm)[0]
    assert {"test/loss", "test/bleu", "test/decode_steps"} <= set(res)
    assert res["test/decode_steps"] == 3
    assert 0.0 <= res["test/bleu"] <= 100.0


def test_learns_the_toy_task(toy_root, tmp_path):
    """A few hundred steps on the toy word-mapping task must beat a random model clearly."""
    torch.manual_seed(0)
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size, lr=3e-3, warmup_steps=20, ema_decay=0.0, val_generate_batches=-1)
    trainer = cpu_trainer(tmp_path, max_steps=250, limit_val_batches=0)
    trainer.fit(model, dm)
    loss = trainer.callback_metrics["train/loss"].item()
    res = trainer.test(model, dm, verbose=False)[0]
    assert loss < 3.0 and res["test/loss"] < 3.0, (loss, res)


def test_checkpoint_round_trip_restores_weights_tokenizer_and_ema(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size)
    trainer = cpu_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = FromScratch.load_from_checkpoint(path, weights_only=False)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert loaded.tokenizer is not None and loaded.tokenizer.vocab_size == dm.vocab_size
    assert int(loaded.ema.updates) == 3


def test_vocab_mismatch_is_a_config_error(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size + 5)
    with pytest.raises(ConfigError, match="tokenizer has"):
        cpu_trainer(tmp_path, fast_dev_run=1).fit(model, dm)


def test_max_len_too_small_is_a_config_error(toy_root, tmp_path):
    from diffusion_lm.models import DenoiserConfig

    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size, denoiser=DenoiserConfig(d_model=32, n_layers=1, n_heads=2, max_len=20))
    with pytest.raises(ConfigError, match="max_len"):
        cpu_trainer(tmp_path, fast_dev_run=1).fit(model, dm)


def test_timestep_statistics_are_logged(toy_root, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size, timestep_log_every=2, timestep_bins=4)
    trainer = cpu_trainer(tmp_path, max_steps=4, limit_val_batches=0, logger=CSVLogger(tmp_path))
    trainer.fit(model, dm)
    text = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "timestep/loss_mean/bin_" in text and "timestep/loss_var/bin_" in text


def test_oracle_length_generation(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size, length_source="oracle")
    res = cpu_trainer(tmp_path, limit_test_batches=1).test(model, dm, verbose=False)[0]
    assert math.isfinite(res["test/bleu"])


@pytest.mark.timeout(300)
def test_ddp_spawn_two_cpu_processes(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size)
    trainer = cpu_trainer(tmp_path, strategy="ddp_spawn", devices=2, max_steps=3, limit_val_batches=1,
                          val_check_interval=3, check_val_every_n_epoch=None)
    before = [p.detach().clone() for p in model.denoiser.parameters()]
    trainer.fit(model, dm)  # weights and metrics come back from the spawned workers
    assert any(not torch.equal(a, b) for a, b in zip(before, model.denoiser.parameters()))
    assert "val/bleu" in trainer.callback_metrics and "train/loss" in trainer.callback_metrics


def test_a_normalised_embedding_table_is_not_weight_decayed():
    from diffusion_lm.diffusion import GaussianDiffusion, MaskedDiffusion, MaskPredictSampler

    def decayed_names(recipe):
        recipe.trainer = None
        names = {id(p): n for n, p in recipe.denoiser.named_parameters()}
        groups = recipe.configure_optimizers()["optimizer"].param_groups
        return {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}

    gaussian = tiny_recipe(50, process=GaussianDiffusion(embed_norm=True))
    assert "wte.weight" not in decayed_names(gaussian) and "blocks.0.attn.qkv.weight" in decayed_names(gaussian)
    raw = tiny_recipe(50, process=GaussianDiffusion(embed_norm=False))
    assert "wte.weight" in decayed_names(raw)
    masked = tiny_recipe(50, process=MaskedDiffusion(mask_id=4), generator=MaskPredictSampler(steps=2))
    assert "wte.weight" in decayed_names(masked)  # token ids: the table is an ordinary matrix
