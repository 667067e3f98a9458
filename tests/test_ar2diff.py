"""The Autoregressive and AR2Diff recipes: losses, initialisation from AR / HF checkpoints, and the three
AR2Diff stages chained through real checkpoint files."""

import pytest
import torch
import torch.nn.functional as F

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import DiscreteSampler, UniformDiffusion
from diffusion_lm.errors import ConfigError
from diffusion_lm.models import DenoiserConfig
from diffusion_lm.models.convert import export_hf
from diffusion_lm.models.decoding import ARDecoder
from diffusion_lm.recipes import AR2Diff, Autoregressive

from .conftest import cpu_trainer, toy_datamodule, write_jsonl
from .test_corpus import corpus_rows, make

AR_DENOISER = dict(d_model=32, n_layers=2, n_heads=2, max_len=56, dropout=0.0)


def ar_recipe(vocab_size, **kw):
    args = dict(denoiser=DenoiserConfig(**AR_DENOISER), vocab_size=vocab_size, warmup_steps=2, lr=3e-3,
                ema_decay=0.9, val_generate_batches=1, decoder=ARDecoder(max_new_tokens=30))
    args.update(kw)
    return Autoregressive(**args)


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory, toy_root):
    """The toy translation task plus a {"text": …} corpus of the same words (shared BPE)."""
    root = toy_root
    if not (root / "mini").exists():
        write_jsonl(root / "mini" / "train.jsonl.gz", corpus_rows(300, 0))
        write_jsonl(root / "mini" / "validation.jsonl.gz", corpus_rows(40, 1))
    return root


def test_ar_loss_is_next_token_ce_on_the_target_only():
    torch.manual_seed(0)
    rec = ar_recipe(50)
    model = rec.denoiser.eval()
    assert model.config.attention == "causal" and model.time_embed is None and model.length_head is None
    b = build_batch([[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14]], sep_id=2, eos_id=3, pad_id=0)
    out = rec.compute_loss(b, model)
    logits = model.logits(model(b["input_ids"]).latent)
    terms = []
    for i in range(2):  # target tokens and EOS, each predicted from the position before it
        for j in b["target_mask"][i].nonzero().flatten().tolist():
            terms.append(F.cross_entropy(logits[i, j - 1], b["input_ids"][i, j]))
    torch.testing.assert_close(out.loss, torch.stack(terms).mean())
    assert out.per_example.shape == (2,)


def test_ar_prefix_causal_source_is_bidirectional():
    rec = ar_recipe(50, attention="prefix_causal")
    assert rec.denoiser.config.attention == "prefix_causal"
    b = build_batch([[5, 6, 7]], [[10, 11]], sep_id=2, eos_id=3, pad_id=0)
    m = rec.denoiser.eval()
    ref = m(b["input_ids"], prefix_len=b["prefix_len"]).latent
    changed = b["input_ids"].clone()
    changed[0, 2] = 20  # the last source token changes what the first source position computes
    assert not torch.allclose(m(changed, prefix_len=b["prefix_len"]).latent[0, 0], ref[0, 0])


def test_ar_fit_validate_test_with_kv_cache_and_beam(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = ar_recipe(dm.vocab_size)
    trainer = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=0, limit_test_batches=1)
    trainer.fit(model, dm)
    res = trainer.test(model, dm, verbose=False)[0]
    assert {"test/loss", "test/bleu", "test/decode_steps"} <= set(res)
    assert 1 <= res["test/decode_steps"] <= dm.max_tgt_len + 1  # capped by the data's target length
    model.decoder = ARDecoder(beam_size=3, max_new_tokens=30)
    assert "test/bleu" in trainer.test(model, dm, verbose=False)[0]


def test_lm_pretraining_cannot_generate_without_a_prompt(mixed_root, tmp_path):
    dm = make(mixed_root, block_size=32)
    model = ar_recipe(dm.vocab_size)
    with pytest.raises(ConfigError, match="prompt"):
        cpu_trainer(tmp_path, fast_dev_run=1).fit(model, dm)
    model = ar_recipe(dm.vocab_size, val_generate_batches=0)
    cpu_trainer(tmp_path, fast_dev_run=1).fit(model, dm)


def save_ar_checkpoint(root, tmp_path, steps=3):
    dm = make(root, block_size=32)
    model = ar_recipe(dm.vocab_size, val_generate_batches=0)
    trainer = cpu_trainer(tmp_path, max_steps=steps, limit_val_batches=0)
    trainer.fit(model, dm)
    path = tmp_path / "ar.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_ar2diff_initialisation_changes_only_the_added_modules(mixed_root, tmp_path):
    path, ar = save_ar_checkpoint(mixed_root, tmp_path)
    diff = AR2Diff(init_from=str(path), process=UniformDiffusion(), generator=DiscreteSampler(steps=2),
                   denoiser=DenoiserConfig(d_model=8, n_layers=1, n_heads=1, dropout=0.0))  # architecture: the source's
    src = {k: v for k, v in ar.ema.model.state_dict().items()}  # init_weights="ema" by default
    new = diff.denoiser.state_dict()
    added = sorted({k.split(".")[0] for k in new if k not in src})
    assert added == ["length_head", "time_embed"]
    for k, v in src.items():
        assert torch.equal(new[k], v), k  # no AR weight changes
    assert not diff.denoiser.time_embed.fc2.weight.any() and not diff.denoiser.time_embed.fc2.bias.any()
    cfg = diff.denoiser.config
    assert (cfg.attention, cfg.timestep_embedding, cfg.d_model) == ("prefix", True, 32)
    assert diff.tokenizer is not None and diff.tokenizer.vocab_size == cfg.vocab_size
    for k, v in diff.ema.model.state_dict().items():
        assert torch.equal(v, new[k]), k
    # with the zero timestep embedding the converted model computes exactly the AR function
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    a = ar.ema.model(ids).latent
    b = diff.denoiser.eval()(ids, timesteps=torch.rand(2, 12), attention="causal").latent
    torch.testing.assert_close(a, b)
    raw = AR2Diff(init_from=str(path), init_weights="raw", process=UniformDiffusion())
    assert torch.equal(raw.denoiser.wte.weight, ar.denoiser.wte.weight)


def test_wrong_tokenizer_for_the_source_is_a_config_error(mixed_root, tmp_path):
    path, _ = save_ar_checkpoint(mixed_root, tmp_path, steps=1)
    with pytest.raises(ConfigError, match="data.init_args.tokenizer"):
        AR2Diff(init_from=str(path), vocab_size=999, process=UniformDiffusion())


def test_three_stages_chained_through_checkpoint_files(mixed_root, tmp_path):
    """(1) AR LM pretraining → (2) diffusion continued pretraining (prefix LM) → (3) task fine-tuning."""
    dm1 = make(mixed_root, block_size=32)
    stage1 = ar_recipe(dm1.vocab_size, val_generate_batches=0)
    t1 = cpu_trainer(tmp_path, fast_dev_run=2)
    t1.fit(stage1, dm1)
    ckpt1 = tmp_path / "stage1.ckpt"
    t1.save_checkpoint(ckpt1)

    dm2 = make(mixed_root, block_size=32, objective="prefix_lm", tokenizer=str(ckpt1))
    stage2 = AR2Diff(init_from=str(ckpt1), vocab_size=dm2.vocab_size, process=UniformDiffusion(),
                     generator=DiscreteSampler(steps=2), length_source="oracle", warmup_steps=2,
                     ema_decay=0.9, val_generate_batches=1)
    t2 = cpu_trainer(tmp_path, fast_dev_run=2)
    t2.fit(stage2, dm2)
    ckpt2 = tmp_path / "stage2.ckpt"
    t2.save_checkpoint(ckpt2)
    assert stage2.denoiser.self_cond_proj is None  # a discrete process feeds no self-conditioning

    dm3 = toy_datamodule(mixed_root, tokenizer=str(ckpt2))
    assert dm3.vocab_size == dm1.vocab_size
    stage3 = AR2Diff(init_from=str(ckpt2), vocab_size=dm3.vocab_size, process=UniformDiffusion(),
                     generator=DiscreteSampler(steps=3, num_samples=2), warmup_steps=2, ema_decay=0.9,
                     val_generate_batches=1)
    for k, v in torch.load(ckpt2, weights_only=False)["state_dict"].items():
        if k.startswith("ema.model."):
            assert torch.equal(stage3.denoiser.state_dict()[k[len("ema.model."):]], v), k
    t3 = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=0, limit_test_batches=1)
    t3.fit(stage3, dm3)
    res = t3.test(stage3, dm3, verbose=False)[0]
    assert 1 <= res["test/decode_steps"] <= 3
    ckpt3 = tmp_path / "stage3.ckpt"
    t3.save_checkpoint(ckpt3)
    reloaded = AR2Diff.load_from_checkpoint(ckpt3, weights_only=False, init_from=None)
    assert reloaded.denoiser.config == stage3.denoiser.config and reloaded.tokenizer is not None


def test_gpt2_checkpoint_in_the_ar_recipe_and_back(toy_root, tmp_path):
    from transformers import AutoModelForCausalLM

    from .test_convert import gpt2_dir

    dm0 = toy_datamodule(toy_root)
    dm0.tokenizer.save(tmp_path / "gpt2")
    gpt2_dir(tmp_path / "gpt2", dm0.vocab_size)
    dm = toy_datamodule(toy_root, tokenizer=str(tmp_path / "gpt2"), max_src_len=18, max_tgt_len=18)
    model = Autoregressive(init_from=str(tmp_path / "gpt2"), vocab_size=dm.vocab_size, warmup_steps=2,
                           ema_decay=0.0, val_generate_batches=1, decoder=ARDecoder(max_new_tokens=20))
    assert model.denoiser.config.d_model == 48 and model.denoiser.config.max_len == 40
    cpu_trainer(tmp_path, fast_dev_run=2).fit(model, dm)
    export_hf(model.denoiser, tmp_path / "out", model.tokenizer)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    ids = torch.randint(0, dm.vocab_size, (2, 10))
    m = model.denoiser.eval()
    torch.testing.assert_close(hf(ids).logits, m.logits(m(ids).latent), atol=1e-4, rtol=1e-4)


def test_export_command_turns_an_ar_checkpoint_into_a_hf_model(mixed_root, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from diffusion_lm.cli import main

    path, ar = save_ar_checkpoint(mixed_root, tmp_path, steps=2)
    main(["export", str(path), str(tmp_path / "hf")])
    assert str(tmp_path / "hf") in capsys.readouterr().out
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    ids = torch.tensor([tok("the cat sits", add_special_tokens=False)["input_ids"]])
    m = ar.ema.model
    torch.testing.assert_close(hf(ids).logits, m.logits(m(ids).latent), atol=1e-4, rtol=1e-4)
