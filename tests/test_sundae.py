"""SUNDAE: the sampling step (temperature, nucleus, update proportion), early stopping with partial updates,
the time-agnostic denoiser and the timestep of the unrolled pass."""

import pytest
import torch

from diffusion_lm.diffusion import CosineSchedule, DiscreteSampler, LogLinearSchedule, UniformDiffusion
from diffusion_lm.diffusion.sundae import nucleus

from .test_discrete import ConstantModel, V, batch, gen_batch, tiny_model


def old_argmax_decode(model, proc, b, steps, time_conditioning, early_stop):
    """Reference: every target token re-predicted by argmax at each step (a sequence stops once a step leaves it
    unchanged, with ``early_stop``); t_k = 1 − k/K on the target (or 0 when time-agnostic).
    Returns (tokens, steps per row)."""
    tm = b["target_mask"]
    x = proc.prior(model, b["input_ids"], tm)
    done = torch.zeros(len(x), dtype=torch.bool)
    n = torch.zeros(len(x), dtype=torch.long)
    for k in range(steps):
        t = 1.0 - k / steps if time_conditioning else 0.0
        out = model(x, timesteps=t * tm.float(), valid=b["valid"], prefix_len=b["prefix_len"])
        new = torch.where(tm, model.logits(out.latent).float().argmax(-1), x)
        n += ~done
        settled = (new == x).all(1)
        x = torch.where(done[:, None], x, new)
        done |= settled & early_stop
        if done.all():
            break
    return x, n


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_temperature_zero_and_full_updates_is_the_argmax_path(time_conditioning):
    model = tiny_model().eval()
    torch.nn.init.normal_(model.time_embed.fc2.weight, std=0.5)  # make t matter to the output
    b = batch(B=6)
    proc = UniformDiffusion(time_conditioning=time_conditioning, temperature=0.0, update_proportion=1.0)
    for early in (True, False):
        torch.manual_seed(5)
        ref, ref_steps = old_argmax_decode(model, proc, b, 12, time_conditioning, early)
        torch.manual_seed(5)
        res = DiscreteSampler(steps=12, early_stop=early).generate(model, proc, b)
        assert res.tokens.equal(ref) and res.steps.equal(ref_steps)


def test_step_updates_the_configured_share_of_tokens():
    torch.manual_seed(0)
    N = 200_000
    logits = torch.zeros(N, V)
    logits[:, 7] = 10.0
    x = torch.full((N,), 3)
    for p in (0.2, 0.8):
        new = UniformDiffusion(update_proportion=p).step(x, logits, 0.5, 0.4, 0.0, final=False)
        assert set(new.unique().tolist()) == {3, 7}  # a token is either kept or rewritten with the proposal
        assert (new == 7).float().mean().item() == pytest.approx(p, abs=0.005)  # std ≤ 0.0009


def test_step_draws_from_the_tempered_nucleus():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(100_000, -1)
    x = torch.zeros(100_000, dtype=torch.long)
    for tau in (1.0, 0.5):
        new = UniformDiffusion(update_proportion=1.0).step(x, logits, 0.5, 0.4, tau, final=False)
        freq = torch.bincount(new, minlength=4).float() / len(new)
        expected = probs ** (1 / tau) / (probs ** (1 / tau)).sum()
        torch.testing.assert_close(freq, expected, atol=0.006, rtol=0)
    new = UniformDiffusion(update_proportion=1.0, top_p=0.7).step(x, logits, 0.5, 0.4, 1.0, final=False)
    freq = torch.bincount(new, minlength=4).float() / len(new)
    torch.testing.assert_close(freq, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.006, rtol=0)  # {0, 1} renormalised
    kept = nucleus(torch.tensor([[0.0, 5.0, 1.0]]), 0.01)
    assert torch.isfinite(kept).tolist() == [[False, True, False]]  # the most likely token always stays


def test_partial_updates_do_not_stop_a_sequence_early():
    """With few tokens updated per step a step often changes nothing; the sequence must run on until it is the
    denoiser's fixed point (all 7s), not stop on the first unchanged step."""
    logits = torch.zeros(V)
    logits[7] = 5.0
    b = gen_batch()
    for seed in range(5):
        torch.manual_seed(seed)
        model = ConstantModel(logits)
        res = DiscreteSampler(steps=60).generate(model, UniformDiffusion(temperature=0.0, update_proportion=0.25), b)
        assert (res.tokens[b["target_mask"]] == 7).all()
        assert (res.steps < 60).all()  # and it does stop once settled


def test_sampler_uses_the_process_temperature_unless_set():
    logits = torch.zeros(V)
    logits[7] = 1.0  # far from one-hot: sampling shows
    b = gen_batch()
    proc = UniformDiffusion(update_proportion=1.0)
    torch.manual_seed(0)
    sampled = DiscreteSampler(steps=3, early_stop=False).generate(ConstantModel(logits), proc, b)
    assert not (sampled.tokens[b["target_mask"]] == 7).all()  # τ = 0.8 by default
    argmax = DiscreteSampler(steps=3, temperature=0.0).generate(ConstantModel(logits), proc, b)
    assert (argmax.tokens[b["target_mask"]] == 7).all()


def record_timesteps(model):
    seen = []
    model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["timesteps"].clone()), with_kwargs=True)
    return seen


def test_time_agnostic_mode_feeds_zero_timesteps_to_both_passes_and_the_sampler():
    model = tiny_model()
    seen = record_timesteps(model)
    b = batch()
    proc = UniformDiffusion(length_weight=0.0)
    assert not proc.time_conditioning  # SUNDAE's default
    proc.training_loss(model, b, torch.full((4,), 0.6), torch.ones(4)).loss.backward()
    assert len(seen) == 2 and all(not t.any() for t in seen)
    seen.clear()
    DiscreteSampler(steps=3, early_stop=False).generate(model, proc, b)
    assert len(seen) == 3 and all(not t.any() for t in seen)


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()])
def test_time_conditioned_unrolled_pass_is_labelled_with_its_observed_corruption(schedule):
    model = tiny_model()
    seen = record_timesteps(model)
    b = batch()
    tm = b["target_mask"]
    proc = UniformDiffusion(schedule, time_conditioning=True)
    torch.manual_seed(0)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8])
    first, second = proc.passes(model, b, t)
    torch.testing.assert_close(seen[0], t[:, None] * tm)  # the first pass: the drawn t
    rate = ((second.inputs != b["input_ids"]) & tm).sum(1) / tm.sum(1)  # the unrolled input's disagreement
    t2 = seen[1].max(1).values  # (B,) one t per example, 0 on the prompt
    assert (seen[1][~tm] == 0).all() and (seen[1] == t2[:, None] * tm).all()
    torch.testing.assert_close(schedule.corruption_rate(t2), rate.float(), atol=2e-3, rtol=0)
    assert not torch.allclose(t2, t)
