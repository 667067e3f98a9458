"""FastDiSS: self-conditioning perturbation and model-aware noise scaling."""

import pytest
import torch

from diffusion_lm.diffusion import FastDiSSDiffusion, GaussianDiffusion
from diffusion_lm.errors import ConfigError

from .test_gaussian import copy_batch, tiny


def setup(p, t=None):
    m = tiny().eval()
    b = copy_batch()
    x0 = p.embed(m, b["input_ids"])
    t = torch.rand(8) if t is None else t
    t_tok = p.token_timesteps(t, b["target_mask"])
    noise = torch.randn_like(x0)
    xt = torch.where(b["target_mask"][..., None], p.q_sample(x0, t_tok, noise), x0)
    return m, b, x0, t_tok, noise, xt


def capture_forward(m):
    seen = []
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs), with_kwargs=True)
    return seen


def test_shift_makes_the_estimate_at_t_plus_one_over_k_from_the_same_noise():
    p = FastDiSSDiffusion(perturbation="shift", sampler_steps=4, noise_scaling=False, self_condition_prob=1.0)
    t = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.7, 0.76, 0.9, 1.0])
    m, b, x0, t_tok, noise, xt = setup(p, t)
    seen = capture_forward(m)
    sc = p.self_condition_input(m, b, x0, xt, t_tok)
    tm = b["target_mask"]
    t_first = seen[0]["timesteps"]
    expected = torch.where(tm, (t_tok + 0.25).clamp(max=1.0), torch.zeros_like(t_tok))
    torch.testing.assert_close(t_first, expected)
    assert t_first[tm].max() == 1.0 and (t_first - t_tok)[tm].min() >= 0  # clamped at 1, never below t
    # the first pass saw x_{t'} built from the same x_0 and ε as x_t
    x_shift = torch.where(tm[..., None], p.q_sample(x0, expected, noise), x0)
    torch.testing.assert_close(seen[0]["inputs_embeds"], x_shift, atol=1e-4, rtol=1e-4)
    # and the self-conditioning input is that estimate: it differs from the unperturbed one (made at t)
    unperturbed, _ = p.first_pass(m, b, x0, noise, t_tok)
    shifted, _ = p.first_pass(m, b, x0, noise, expected)
    torch.testing.assert_close(sc[tm], shifted[tm], atol=1e-5, rtol=1e-5)
    assert (sc[tm] - unperturbed[tm]).abs().mean() > 1e-3
    assert torch.all(sc[~tm] == 0)


@pytest.mark.parametrize("std", [0.1, 0.5])
def test_noise_perturbation_differs_by_the_configured_std(std):
    torch.manual_seed(0)
    p = FastDiSSDiffusion(perturbation="noise", noise_std=std, noise_scaling=False, self_condition_prob=1.0)
    m, b, x0, t_tok, noise, xt = setup(p)
    clean, _ = p.first_pass(m, b, x0, p.recover_noise(x0, xt, t_tok), t_tok)  # the unperturbed estimate
    sc = p.self_condition_input(m, b, x0, xt, t_tok)
    tm = b["target_mask"]
    diff = sc[tm] - clean[tm]
    assert diff.std().item() == pytest.approx(std, rel=0.1)
    assert diff.mean().abs().item() < 0.1 * std
    assert torch.all(sc[~tm] == 0)


def test_both_shifts_and_adds_noise():
    torch.manual_seed(0)
    p = FastDiSSDiffusion(perturbation="both", noise_std=0.2, sampler_steps=5, noise_scaling=False, self_condition_prob=1.0)
    m, b, x0, t_tok, noise, xt = setup(p)
    tm = b["target_mask"]
    shifted, _ = p.first_pass(m, b, x0, noise, p.estimate_timesteps(t_tok, tm))
    sc = p.self_condition_input(m, b, x0, xt, t_tok)
    assert (sc[tm] - shifted[tm]).std().item() == pytest.approx(0.2, rel=0.1)


def test_measured_noise_is_the_error_gap_between_t_plus_delta_and_t():
    p = FastDiSSDiffusion(perturbation="noise", sampler_steps=10, error_bins=10, noise_scaling=False)
    p.error_sq = torch.linspace(0.0, 0.9, 10)  # e²(bin i) = 0.1 i
    t = torch.tensor([[0.05, 0.55, 0.95]])
    sigma = p.noise_sigma(t, t)
    torch.testing.assert_close(sigma, torch.full_like(t, 0.1).sqrt().where(t < 0.9, torch.zeros_like(t)))


def test_record_error_keeps_a_running_mean_per_bin():
    p = FastDiSSDiffusion(perturbation="noise", error_bins=4, error_momentum=0.5)
    x0 = torch.zeros(1, 2, 3)
    mask = torch.ones(1, 2, dtype=torch.bool)
    t = torch.tensor([[0.1, 0.9]])
    p.record_error(torch.ones(1, 2, 3), x0, t, mask)  # first observation is taken as is
    p.record_error(torch.full((1, 2, 3), 3.0), x0, t, mask)  # then EMA: 0.5·1 + 0.5·9
    torch.testing.assert_close(p.error_sq, torch.tensor([5.0, 0.0, 0.0, 5.0]))


def test_noise_scaling_never_lowers_t_and_respects_anchor_and_bound():
    torch.manual_seed(0)
    p = FastDiSSDiffusion(anchor=0.8, confidence=0.7, strength=1.0, max_raise=0.25)
    t = torch.rand(64, 40)
    ce = torch.rand(64, 40) * 2  # p = exp(-ce) spans (0.13, 1]
    ce[:, :5] = 0.0  # fully confident
    mask = torch.rand(64, 40) > 0.2
    out = p.raise_timesteps(t, ce, mask)
    d = out - t
    assert torch.all(d >= 0)  # never lowers t
    assert torch.all(d <= 0.25 + 1e-6)  # bounded
    assert torch.all(out <= torch.maximum(t, torch.tensor(0.8)) + 1e-6)  # never past the anchor
    assert torch.all(d[~mask] == 0)  # the prompt keeps t
    assert torch.all(d[torch.exp(-ce) < 0.7] == 0)  # unconfident tokens keep t
    assert torch.all(d[t >= 0.8] == 0)
    # a fully confident token far below the anchor moves by max_raise; one close to it lands on it
    probe = p.raise_timesteps(torch.tensor([[0.1, 0.7]]), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(probe, torch.tensor([[0.35, 0.8]]))


def test_training_logs_raise_statistics():
    p = FastDiSSDiffusion(confidence=0.0, anchor=0.9, max_raise=0.5)  # every token counts as (somewhat) confident
    m, b, *_ = setup(p)
    m.train()
    out = p.training_loss(m, b, torch.full((8,), 0.2), torch.ones(8))
    assert 0 < out.logs["mans_raised_share"] <= 1 and 0 < out.logs["mans_mean_raise"] <= 0.5
    out = p.training_loss(m, b, torch.full((8,), 0.95), torch.ones(8))  # above the anchor: nothing moves
    assert out.logs["mans_raised_share"] == 0 and out.logs["mans_mean_raise"] == 0
    out.loss.backward()


def test_trained_pass_sees_the_raised_timesteps():
    p = FastDiSSDiffusion(confidence=0.0, anchor=0.9, max_raise=0.5, self_condition_prob=1.0)
    m, b, *_ = setup(p)
    seen = capture_forward(m)
    p.training_loss(m, b, torch.full((8,), 0.2), torch.ones(8))
    first, trained = seen[0]["timesteps"], seen[1]["timesteps"]
    tm = b["target_mask"]
    torch.testing.assert_close(first[tm], torch.full_like(first[tm], 0.3))  # shift: t + 1/10
    assert torch.all(trained[tm] >= 0.2) and (trained[tm] > 0.2).any()
    assert torch.all(trained[~tm] == 0)


def test_disabled_is_exactly_gaussian_diffusion():
    m, b, *_ = setup(GaussianDiffusion())
    m.train()
    t = torch.rand(8)
    losses = []
    for p in (GaussianDiffusion(self_condition_prob=0.5), FastDiSSDiffusion(enabled=False, self_condition_prob=0.5)):
        torch.manual_seed(3)
        losses.append([p.training_loss(m, b, t, torch.ones(8)).loss for _ in range(4)])
    torch.testing.assert_close(losses[0], losses[1])


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="perturbation"):
        FastDiSSDiffusion(perturbation="sometimes")
    with pytest.raises(ConfigError, match="noise_std"):
        FastDiSSDiffusion(perturbation="both")
    with pytest.raises(ConfigError, match="anchor"):
        FastDiSSDiffusion(anchor=1.5)
