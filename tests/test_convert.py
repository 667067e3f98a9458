"""Hugging Face GPT-2 / Llama checkpoints ↔ the shared denoiser: logits parity both ways, tokenizer, errors."""

import pytest
import torch

from diffusion_lm.data.tokenization import train_bpe
from diffusion_lm.errors import CheckpointError, ConfigError
from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.convert import export_hf, load_into
from diffusion_lm.pretrained import load_pretrained

VOCAB_TEXT = ["the cat sat on the mat", "a dog runs over the house", "green trees and blue cars"] * 20


def randomise(model: torch.nn.Module, std: float = 0.3) -> None:
    """Larger-than-init random weights, so that a mapping error cannot hide in near-zero logits."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std) if p.dim() > 1 else p.uniform_(0.5, 1.5)


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(VOCAB_TEXT, vocab_size=300, min_frequency=1)


def gpt2_dir(path, vocab: int, tie: bool = True):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab, n_positions=40, n_embd=48, n_layer=2, n_head=4, n_inner=80,
                     tie_word_embeddings=tie, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).eval()
    randomise(model)
    model.save_pretrained(str(path))
    return model


def llama_dir(path, vocab: int, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    args = dict(vocab_size=vocab, hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=6,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    args.update(kw)
    model = LlamaForCausalLM(LlamaConfig(**args)).eval()
    randomise(model, std=0.1)
    model.save_pretrained(str(path))
    return model


def imported(path) -> Denoiser:
    pre = load_pretrained(str(path))
    model = Denoiser(pre.config).eval()
    load_into(model, pre.state_dict, pre.source)
    return model


def ours_logits(model: Denoiser, ids: torch.Tensor) -> torch.Tensor:
    return model.logits(model(ids).latent)


@pytest.mark.parametrize("tie", [True, False])
def test_gpt2_logits_parity(tmp_path, tokenizer, tie):
    hf = gpt2_dir(tmp_path, tokenizer.vocab_size, tie)
    tokenizer.save(tmp_path)
    pre = load_pretrained(str(tmp_path))
    assert pre.config.attention == "causal" and pre.config.tie_embeddings is tie
    assert pre.tokenizer is not None and pre.tokenizer.encode(["the cat"]) == tokenizer.encode(["the cat"])
    model = imported(tmp_path)
    ids = torch.randint(0, tokenizer.vocab_size, (3, 17))
    torch.testing.assert_close(ours_logits(model, ids), hf(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"tie_word_embeddings": True, "num_key_value_heads": 6}])
def test_llama_logits_parity(tmp_path, tokenizer, kw):
    hf = llama_dir(tmp_path, tokenizer.vocab_size, **kw)
    model = imported(tmp_path)
    cfg = model.config
    assert (cfg.norm, cfg.position, cfg.mlp, cfg.bias, cfg.rope_theta) == ("rmsnorm", "rope", "swiglu", False, 500.0)
    ids = torch.randint(0, tokenizer.vocab_size, (2, 23))
    torch.testing.assert_close(ours_logits(model, ids), hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_mistral_without_window_is_a_llama(tmp_path, tokenizer):
    from transformers import MistralConfig, MistralForCausalLM

    hf = MistralForCausalLM(MistralConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=48,
                                          num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=32, sliding_window=None)).eval()
    randomise(hf, std=0.1)
    hf.save_pretrained(str(tmp_path))
    ids = torch.randint(0, tokenizer.vocab_size, (2, 9))
    torch.testing.assert_close(ours_logits(imported(tmp_path), ids), hf(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_export_round_trip(tmp_path, tokenizer, family):
    from transformers import AutoModelForCausalLM

    base = dict(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, max_len=32, dropout=0.0,
                attention="causal", timestep_embedding=False, self_condition=False)
    if family == "llama":
        base.update(norm="rmsnorm", position="rope", mlp="swiglu", bias=False, n_kv_heads=2, tie_embeddings=False)
    torch.manual_seed(1)
    ours = Denoiser(DenoiserConfig(**base)).eval()
    randomise(ours, std=0.1)
    export_hf(ours, tmp_path / "hf", tokenizer)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert hf.config.model_type == family
    ids = torch.randint(0, tokenizer.vocab_size, (2, 11))
    torch.testing.assert_close(hf(ids).logits, ours_logits(ours, ids), atol=1e-4, rtol=1e-4)
    back = imported(tmp_path / "hf")  # and in again: the same tensors
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, msg=k)
    assert load_pretrained(str(tmp_path / "hf")).tokenizer.vocab_size == tokenizer.vocab_size


def test_export_refuses_a_diffusion_model(tmp_path):
    m = Denoiser(DenoiserConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_len=8))
    with torch.no_grad():
        m.time_embed.fc2.weight.fill_(0.1)
    with pytest.raises(ConfigError, match="diffusion inputs"):
        export_hf(m, tmp_path)
    m = Denoiser(DenoiserConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_len=8, norm="rmsnorm"))
    with pytest.raises(ConfigError, match="can be exported"):
        export_hf(m, tmp_path)


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_pretrained(str(tmp_path))
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained(str(tmp_path / "missing.ckpt"))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises((ConfigError, CheckpointError)):
        load_pretrained(str(tmp_path))


def test_load_into_rejects_foreign_weights():
    m = Denoiser(DenoiserConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_len=8))
    sd = dict(m.state_dict())
    with pytest.raises(CheckpointError, match="unexpected"):
        load_into(m, {**sd, "blocks.9.attn.qkv.weight": torch.zeros(1)}, "src")
    with pytest.raises(CheckpointError, match="missing"):
        load_into(m, {k: v for k, v in sd.items() if k != "wte.weight"}, "src")
    with pytest.raises(CheckpointError, match="another shape"):
        load_into(m, {**sd, "wte.weight": torch.zeros(21, 16)}, "src")
    added = load_into(m, {k: v for k, v in sd.items() if not k.startswith("time_embed")}, "src")
    assert added and all(k.startswith("time_embed") for k in added)
