import pytest
import torch

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import DDIMSampler, GaussianDiffusion, UniformSampler
from diffusion_lm.diffusion.timesteps import TimestepSampler
from diffusion_lm.models import Denoiser, DenoiserConfig


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=30, d_model=32, n_layers=2, n_heads=2, embed_dim=16, max_len=32, dropout=0.0, length_classes=33)
    cfg.update(kw)
    return Denoiser(DenoiserConfig(**cfg))


def copy_batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    srcs = [torch.randint(5, 30, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    return build_batch(srcs, srcs, sep_id=1, eos_id=2, pad_id=0)


def test_prompt_stays_clean_and_target_is_noised():
    p = GaussianDiffusion()
    m = tiny()
    b = copy_batch()
    x0 = p.embed(m, b["input_ids"])
    t_tok = p.token_timesteps(torch.full((8,), 0.9), b["target_mask"])
    xt = p.noisy_inputs(x0, t_tok, b["target_mask"])
    src = ~b["target_mask"]
    torch.testing.assert_close(xt[src], x0[src])
    assert (xt[b["target_mask"]] - x0[b["target_mask"]]).abs().mean() > 0.5


def test_normalised_embeddings_have_unit_variance():
    p = GaussianDiffusion()
    e = p.embedding_table(tiny())
    torch.testing.assert_close(e.var(-1, unbiased=False), torch.ones(30), atol=1e-2, rtol=0)


def test_loss_outputs_and_gradients():
    p = GaussianDiffusion(self_condition_prob=0.0)
    m = tiny()
    b = copy_batch()
    out = p.training_loss(m, b, torch.rand(8), torch.ones(8))
    assert out.loss.ndim == 0 and out.per_example.shape == (8,) and not out.per_example.requires_grad
    assert {"mse", "rounding_ce", "length_ce"} <= set(out.logs)
    out.loss.backward()
    assert m.wte.weight.grad.abs().sum() > 0 and m.length_head.weight.grad.abs().sum() > 0


def test_weights_scale_the_loss():
    p = GaussianDiffusion(self_condition_prob=0.0, length_weight=0.0)
    m = tiny()
    b = copy_batch()
    t = torch.rand(8)
    torch.manual_seed(1)
    a = p.training_loss(m, b, t, torch.ones(8)).loss
    torch.manual_seed(1)
    c = p.training_loss(m, b, t, torch.full((8,), 3.0)).loss
    torch.testing.assert_close(c, 3 * a)


def test_self_conditioning_input_only_on_target():
    p = GaussianDiffusion(self_condition_prob=1.0)
    m = tiny()
    b = copy_batch()
    x0 = p.embed(m, b["input_ids"])
    t_tok = p.token_timesteps(torch.rand(8), b["target_mask"])
    sc = p.self_condition_input(m, b, x0, p.noisy_inputs(x0, t_tok, b["target_mask"]), t_tok)
    assert torch.all(sc[~b["target_mask"]] == 0) and sc[b["target_mask"]].abs().sum() > 0
    assert GaussianDiffusion(self_condition_prob=0.0).self_condition_input(m, b, x0, x0, t_tok).abs().sum() == 0


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    p = GaussianDiffusion()
    m = tiny()
    b = copy_batch()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    sampler = UniformSampler()
    first = None
    for _ in range(150):
        t, w = sampler.sample(8)
        loss = p.training_loss(m, b, t, w).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(5)
    final = sum(p.training_loss(m, b, *sampler.sample(8)).loss.item() for _ in range(5)) / 5
    assert final < 0.5 * first, (first, final)


def test_ddim_shapes_steps_and_prompt_untouched():
    p = GaussianDiffusion()
    m = tiny().eval()
    g = build_batch([[5, 6, 7], [8]], None, sep_id=1, eos_id=2, pad_id=0, tgt_lengths=[4, 2])
    for k in (1, 3, 10):
        res = DDIMSampler(steps=k).generate(m, p, g)
        assert res.tokens.shape == g["input_ids"].shape and res.steps.tolist() == [k, k]
        torch.testing.assert_close(res.tokens[~g["target_mask"]], g["input_ids"][~g["target_mask"]])
        assert res.tokens[g["target_mask"]].min() >= 0


def test_ddim_calls_the_denoiser_k_times():
    p = GaussianDiffusion()
    m = tiny().eval()
    calls = []
    m.register_forward_hook(lambda mod, inp, out: calls.append(1))
    g = build_batch([[5, 6, 7]], None, sep_id=1, eos_id=2, pad_id=0, tgt_lengths=[4])
    DDIMSampler(steps=7).generate(m, p, g)
    assert len(calls) == 7


def test_ddim_step_is_exact_for_a_perfect_denoiser():
    """If x̂0 is the true x0 and x_t was built with noise ε, DDIM recovers x_s with the same ε."""
    p = GaussianDiffusion()
    x0, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t, s = torch.tensor(0.8), torch.tensor(0.5)
    at, as_ = p.schedule.alpha_bar(t), p.schedule.alpha_bar(s)
    xt = at.sqrt() * x0 + (1 - at).sqrt() * eps
    torch.testing.assert_close(DDIMSampler.ddim_step(p, xt, x0, t, s), as_.sqrt() * x0 + (1 - as_).sqrt() * eps)


def test_step_bounds():
    with pytest.raises(ValueError):
        DDIMSampler(steps=0)
    with pytest.raises(ValueError):
        DDIMSampler(steps=2001)


def test_uniform_sampler_interface():
    s = UniformSampler(t_min=0.2)
    t, w = s.sample(1000)
    assert t.min() >= 0.2 and t.max() <= 1 and torch.all(w == 1)
    assert isinstance(s, TimestepSampler) and s.state_dict() == {}


def test_length_prediction_uses_only_the_source():
    p = GaussianDiffusion()
    for mode in ("prefix", "bidirectional"):
        m = tiny(attention=mode).eval()
        b = copy_batch()
        h1 = p.length_hidden(m, b, None)
        b2 = dict(b)
        ids = b["input_ids"].clone()
        ids[b["target_mask"]] = (ids[b["target_mask"]] + 3) % 30
        b2["input_ids"] = ids
        torch.testing.assert_close(p.length_hidden(m, b2, None), h1)
        lengths = p.predict_lengths(m, b, max_len=20)
        assert lengths.shape == (8,) and lengths.min() >= 2 and lengths.max() <= 20
