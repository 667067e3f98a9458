"""TaskAdapt: initialisation from a diffusion_lm checkpoint, freezing, clear errors on mismatches."""

import inspect
import random
from dataclasses import replace

import pytest
import torch

from diffusion_lm.data.tokenization import checkpoint_tokenizer
from diffusion_lm.diffusion import CosineSchedule, DDIMSampler, GaussianDiffusion, ImportanceSampler, LossVariance
from diffusion_lm.errors import CheckpointError, ConfigError
from diffusion_lm.models import DenoiserConfig
from diffusion_lm.recipes import AR2Diff, TaskAdapt

from .conftest import cpu_trainer, tiny_recipe, toy_datamodule, write_jsonl

GAUSSIAN_ARGS = set(inspect.signature(GaussianDiffusion).parameters)


@pytest.fixture(scope="module")
def pretrained(toy_root, tmp_path_factory):
    """A tiny diffusion model trained a few steps on the toy task, saved as a .ckpt."""
    torch.manual_seed(0)
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size, ema_decay=0.9)
    tmp = tmp_path_factory.mktemp("pretrained")
    trainer = cpu_trainer(tmp, max_steps=4, limit_val_batches=0)
    trainer.fit(model, dm)
    path = tmp / "pretrained.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def adapt(path, vocab_size, **kw):
    args = dict(checkpoint=str(path), vocab_size=vocab_size, warmup_steps=1, lr=1e-2, ema_decay=0.0,
                generator=DDIMSampler(steps=2), val_generate_batches=1,
                timestep_sampler=ImportanceSampler(num_bins=4, pilot_steps=1, estimator=LossVariance()))
    args.update(kw)
    return TaskAdapt(**args)


def test_starts_from_the_checkpoint_weights(toy_root, pretrained):
    path, source = pretrained
    vocab = toy_datamodule(toy_root).vocab_size
    ema = adapt(path, vocab)
    raw = adapt(path, vocab, init_weights="raw")
    for (name, p), e, r in zip(ema.denoiser.named_parameters(), source.ema.model.parameters(), source.denoiser.parameters()):
        torch.testing.assert_close(p, e, msg=name)
        torch.testing.assert_close(dict(raw.denoiser.named_parameters())[name], r, msg=name)
    assert ema.denoiser.config == source.denoiser.config  # the architecture comes from the checkpoint
    assert isinstance(TaskAdapt(checkpoint=str(path), vocab_size=vocab).timestep_sampler, ImportanceSampler)


def test_frozen_parameters_do_not_change_and_trainable_ones_do(toy_root, pretrained, tmp_path):
    path, _ = pretrained
    dm = toy_datamodule(toy_root, tokenizer=str(path))
    model = adapt(path, dm.vocab_size)
    before = {n: p.detach().clone() for n, p in model.denoiser.named_parameters()}
    trainable = {n for n, p in model.denoiser.named_parameters() if p.requires_grad}
    assert trainable and trainable == {n for n in before if n.startswith(("time_embed.", "length_head.")) or ".attn." in n}
    trainer = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(model, dm)
    for name, p in model.denoiser.named_parameters():
        if name in trainable:
            assert not torch.equal(p, before[name]), f"{name} was not trained"
        else:
            assert torch.equal(p, before[name]), f"{name} is frozen but changed"
    opt = trainer.optimizers[0]
    in_optimizer = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.denoiser.parameters() if p.requires_grad}  # no state for frozen weights
    assert len(opt.state) == len(in_optimizer)


def test_trainable_counts_are_logged(toy_root, pretrained, tmp_path, capsys):
    from lightning.pytorch.loggers import CSVLogger

    path, _ = pretrained
    dm = toy_datamodule(toy_root, tokenizer=str(path))
    model = adapt(path, dm.vocab_size, trainable=["time_embed.*"])
    cpu_trainer(tmp_path, max_steps=1, limit_val_batches=0, logger=CSVLogger(tmp_path)).fit(model, dm)
    n = sum(p.numel() for n, p in model.denoiser.named_parameters() if n.startswith("time_embed."))
    text = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "params/trainable" in text and str(n) in text


def test_data_module_uses_the_checkpoint_tokenizer(toy_root, pretrained):
    path, source = pretrained
    dm = toy_datamodule(toy_root, tokenizer=str(path))
    assert dm.tokenizer.hf.get_vocab() == source.tokenizer.hf.get_vocab()
    assert checkpoint_tokenizer(path).encode(["red cat"]) == source.tokenizer.encode(["red cat"])


def test_vocabulary_mismatch_is_a_clear_error(pretrained):
    path, source = pretrained
    with pytest.raises(CheckpointError, match=r"vocabulary.*set data.init_args.tokenizer"):
        adapt(path, source.denoiser.config.vocab_size + 7)


def test_denoiser_changes_only_the_dropout(pretrained):
    path, source = pretrained
    wider = DenoiserConfig(d_model=64, n_layers=2, n_heads=2, embed_dim=16, max_len=56, dropout=0.2)
    model = adapt(path, source.denoiser.config.vocab_size, denoiser=wider)
    assert model.denoiser.config == replace(source.denoiser.config, dropout=0.2)  # the rest is the checkpoint's
    for (name, p), e in zip(model.denoiser.named_parameters(), source.ema.model.parameters()):
        torch.testing.assert_close(p, e, msg=name)


def test_process_comes_from_the_checkpoint_or_must_agree(pretrained):
    path, source = pretrained
    vocab = source.denoiser.config.vocab_size
    stored = adapt(path, vocab).process
    assert type(stored) is type(source.process) and stored.trained_settings() == source.process.trained_settings()
    same = GaussianDiffusion(**{k: v for k, v in vars(source.process).items() if k in GAUSSIAN_ARGS})
    assert adapt(path, vocab, process=same).process is same
    other = GaussianDiffusion(**{**{k: v for k, v in vars(source.process).items() if k in GAUSSIAN_ARGS},
                                 "embed_scale": 2.0})
    with pytest.raises(CheckpointError, match=r"another process \(embed_scale: 1.0 in the checkpoint, 2.0 given\)"):
        adapt(path, vocab, process=other)
    with pytest.raises(CheckpointError, match=r"schedule: .*SqrtSchedule.* in the checkpoint, .*CosineSchedule.* given"):
        adapt(path, vocab, process=GaussianDiffusion(schedule=CosineSchedule()))


def test_other_tokenizer_of_the_same_size_is_a_clear_error(pretrained, tmp_path):
    path, source = pretrained
    rng = random.Random(0)
    words = [f"w{rng.randrange(10**6)}x{rng.randrange(10**6)}" for _ in range(300)]
    rows = [{"src": " ".join(rng.sample(words, 5)), "tgt": " ".join(rng.sample(words, 5))} for _ in range(400)]
    for split in ("train", "validation"):
        write_jsonl(tmp_path / "other" / f"{split}.jsonl.gz", rows)
    dm = toy_datamodule(tmp_path, dataset="other")
    assert dm.vocab_size == source.denoiser.config.vocab_size  # same size, different tokens
    model = adapt(path, dm.vocab_size)
    with pytest.raises(CheckpointError, match="not the one stored in"):
        cpu_trainer(tmp_path, fast_dev_run=1).fit(model, dm)
    # the same check guards every recipe's init_from (here AR2Diff from the same diffusion checkpoint)
    ar2diff = AR2Diff(init_from=str(path), vocab_size=dm.vocab_size, generator=DDIMSampler(steps=2), ema_decay=0.0)
    with pytest.raises(CheckpointError, match=rf"not the one stored in {path} .*data.init_args.tokenizer: {path}"):
        cpu_trainer(tmp_path, fast_dev_run=1).fit(ar2diff, dm)
    ours = toy_datamodule(tmp_path, dataset="other", tokenizer=str(path))  # the fix the message names
    cpu_trainer(tmp_path, fast_dev_run=1).fit(AR2Diff(init_from=str(path), vocab_size=ours.vocab_size,
                                                      generator=DDIMSampler(steps=2), ema_decay=0.0), ours)


def test_bad_inputs_name_the_problem(pretrained, tmp_path):
    path, source = pretrained
    with pytest.raises(CheckpointError, match="not found"):
        adapt(tmp_path / "missing.ckpt", 10)
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        adapt(tmp_path / "junk.ckpt", 10)
    with pytest.raises(ConfigError, match="'decoder.*' matches no parameter"):
        adapt(path, source.denoiser.config.vocab_size, trainable=["decoder.*"])


def test_stored_process_builds_the_cli_class_path():
    from diffusion_lm.diffusion import MaskedDiffusion
    from diffusion_lm.pretrained import Pretrained
    from diffusion_lm.recipes.task_adapt import stored_process

    spec = {"class_path": "diffusion_lm.diffusion.MaskedDiffusion",
            "init_args": {"schedule": {"class_path": "diffusion_lm.diffusion.CosineSchedule", "init_args": {"s": 0.01}}}}
    proc = stored_process(Pretrained(DenoiserConfig(), {}, None, "x.ckpt", {"process": spec}))
    assert isinstance(proc, MaskedDiffusion) and isinstance(proc.schedule, CosineSchedule) and proc.schedule.s == 0.01
    with pytest.raises(CheckpointError, match="x.ckpt: its process hyper-parameter cannot be built"):
        stored_process(Pretrained(DenoiserConfig(), {}, None, "x.ckpt", {"process": {"class_path": "no.such.Process"}}))
