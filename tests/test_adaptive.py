"""Adaptive early stopping: identical to fixed steps at ε = 0, fewer steps for converged rows,
finished rows really leave the batch."""

import pytest
import torch
from torch import nn
from typing_extensions import override

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import AdaptiveDDIMSampler, DDIMSampler, GaussianDiffusion
from diffusion_lm.models import DenoiserConfig
from diffusion_lm.models.denoiser import DenoiserOutput

from .test_gaussian import tiny


def gen_batch():
    return build_batch([[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]], None, sep_id=1, eos_id=2, pad_id=0,
                       tgt_lengths=[4, 2, 7, 3])


def row_counter(m):
    rows = []
    m.register_forward_hook(lambda mod, args, kwargs, out: rows.append(tuple(kwargs["inputs_embeds"].shape[:2])),
                            with_kwargs=True)
    return rows


@pytest.mark.parametrize("criterion", ["x0", "xt"])
@pytest.mark.parametrize("k", [1, 4, 12])
def test_epsilon_zero_is_identical_to_the_fixed_step_sampler(criterion, k):
    p = GaussianDiffusion()
    m = tiny().eval()
    g = gen_batch()
    torch.manual_seed(7)
    fixed = DDIMSampler(steps=k).generate(m, p, g)
    torch.manual_seed(7)
    adaptive = AdaptiveDDIMSampler(steps=k, epsilon=0.0, min_steps=1, criterion=criterion).generate(m, p, g)
    assert torch.equal(fixed.tokens, adaptive.tokens)
    assert adaptive.steps.tolist() == [k] * 4


class ScriptedDenoiser(nn.Module):
    """x̂_0 is constant for rows whose prefix has length 2 (they converge at once); the others keep moving."""

    def __init__(self):
        super().__init__()
        self.config = DenoiserConfig(vocab_size=20, d_model=8, n_layers=1, n_heads=1, max_len=32)
        self.wte = nn.Embedding(20, 8)
        self.rows = []

    @override
    def forward(self, inputs_embeds, timesteps, self_cond, valid, prefix_len):
        self.rows.append(inputs_embeds.shape[0])
        B, L, E = inputs_embeds.shape
        still = (prefix_len == 2)[:, None, None].float()
        moving = timesteps[..., None] * 10 * torch.arange(E, dtype=torch.float32)  # changes with every step
        latent = still * torch.ones(B, L, E) + (1 - still) * moving
        return DenoiserOutput(latent=latent, hidden=torch.zeros(B, L, 8))


def test_converged_sequence_takes_fewer_steps_and_leaves_the_batch():
    m = ScriptedDenoiser()
    g = gen_batch()  # row 1 has prefix_len 2 ([8] + SEP)
    res = AdaptiveDDIMSampler(steps=10, epsilon=1e-3, min_steps=2).generate(m, GaussianDiffusion(embed_norm=False), g)
    assert res.steps.tolist() == [10, 2, 10, 10]
    # the denoiser saw 4 rows for two steps, then 3: the finished row is gone, not masked
    assert m.rows == [4, 4] + [3] * 8
    assert sum(m.rows) == int(res.steps.sum())


def test_denoiser_rows_equal_the_steps_taken():
    p = GaussianDiffusion()
    m = tiny().eval()
    g = gen_batch()
    shapes = row_counter(m)
    torch.manual_seed(0)
    everything_stops = AdaptiveDDIMSampler(steps=8, epsilon=1e9, min_steps=3).generate(m, p, g)
    assert everything_stops.steps.tolist() == [3] * 4
    assert len(shapes) == 3  # no denoiser call after every row finished
    shapes.clear()
    torch.manual_seed(0)
    res = AdaptiveDDIMSampler(steps=8, epsilon=0.0).generate(m, p, g)
    assert sum(b for b, _ in shapes) == int(res.steps.sum()) == 32


def test_rows_that_stop_shrink_the_computed_columns():
    m = ScriptedDenoiser()
    seen = []
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs["inputs_embeds"].shape), with_kwargs=True)
    # the converged row is the longest one: once it leaves, fewer columns are computed
    g = build_batch([[8], [9, 10]], None, sep_id=1, eos_id=2, pad_id=0, tgt_lengths=[9, 2])
    res = AdaptiveDDIMSampler(steps=5, epsilon=1e-3, min_steps=2).generate(m, GaussianDiffusion(embed_norm=False), g)
    assert res.steps.tolist() == [2, 5]
    assert [tuple(s[:2]) for s in seen] == [(2, 11), (2, 11), (1, 5), (1, 5), (1, 5)]


def test_calibrated_epsilon_is_used_when_epsilon_is_null():
    s = AdaptiveDDIMSampler(steps=5)
    assert s.effective_epsilon == 0.0 and s.state_dict() == {}
    s.load_state_dict({"calibrated_epsilon": 0.25})
    assert s.effective_epsilon == 0.25 and s.state_dict() == {"calibrated_epsilon": 0.25}
    assert AdaptiveDDIMSampler(steps=5, epsilon=0.1).effective_epsilon == 0.1  # an explicit ε wins
    s2 = AdaptiveDDIMSampler(steps=5, epsilon=0.1)
    s2.load_state_dict({"calibrated_epsilon": 0.25})
    assert s2.effective_epsilon == 0.1


def test_generator_state_round_trips_through_the_recipe_checkpoint():
    from .conftest import tiny_recipe

    r = tiny_recipe(50, generator=AdaptiveDDIMSampler(steps=3))
    r.generator.calibrated_epsilon = 0.04
    ckpt = {}
    r.on_save_checkpoint(ckpt)
    r2 = tiny_recipe(50, generator=AdaptiveDDIMSampler(steps=3))
    r2.on_load_checkpoint(ckpt)
    assert r2.generator.effective_epsilon == 0.04


def test_bad_arguments():
    with pytest.raises(ValueError):
        AdaptiveDDIMSampler(epsilon=-1)
    with pytest.raises(ValueError):
        AdaptiveDDIMSampler(min_steps=0)
    with pytest.raises(ValueError):
        AdaptiveDDIMSampler(criterion="logits")
