"""Discrete diffusion: SUNDAE uniform corruption + unrolled denoising, MDLM masking, the iterative sampler
(SUNDAE's sampling step and time-agnostic denoiser: test_sundae.py)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from typing_extensions import override

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import CosineSchedule, DiscreteSampler, LogLinearSchedule, MaskedDiffusion, UniformDiffusion
from diffusion_lm.errors import ConfigError
from diffusion_lm.models import Denoiser, DenoiserConfig

from .conftest import cpu_trainer, tiny_recipe, toy_datamodule

V, MASK = 30, 4


def tiny_model(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, d_model=32, n_layers=2, n_heads=2, max_len=40, dropout=0.0, self_condition=False)
    cfg.update(kw)
    return Denoiser(DenoiserConfig(**cfg))


def batch(B=4, src=5, tgt=8):
    g = torch.Generator().manual_seed(0)
    srcs = [torch.randint(5, V, (src,), generator=g).tolist() for _ in range(B)]
    tgts = [torch.randint(5, V, (tgt - i % 3,), generator=g).tolist() for i in range(B)]
    return build_batch(srcs, tgts, sep_id=2, eos_id=3, pad_id=0)


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()])
@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_sundae_corruption_rate_follows_the_schedule(schedule, t):
    torch.manual_seed(0)
    proc = UniformDiffusion(schedule)
    ids = torch.randint(0, V, (4000, 50))
    tmask = torch.zeros_like(ids, dtype=torch.bool)
    tmask[:, 10:] = True
    xt = proc.corrupt(tiny_model(), ids, tmask, torch.full((4000,), t))
    assert xt[:, :10].equal(ids[:, :10])  # the prompt is never corrupted
    rate = (xt[:, 10:] != ids[:, 10:]).float().mean().item()
    expected = schedule.corruption_rate(torch.tensor(t)).item()
    assert rate == pytest.approx(expected, abs=0.005)  # 160k Bernoulli draws: std ≤ 0.0013
    assert 0 <= int(xt.min()) and int(xt.max()) < V


def test_masked_corruption_rate_and_mask_token():
    torch.manual_seed(0)
    proc = MaskedDiffusion(mask_id=MASK)
    ids = torch.randint(5, V, (2000, 40))
    tmask = torch.ones_like(ids, dtype=torch.bool)
    t = torch.rand(2000)
    xt = proc.corrupt(tiny_model(), ids, tmask, t)
    changed = xt != ids
    assert (xt[changed] == MASK).all()
    per_row = changed.float().mean(1)
    assert torch.corrcoef(torch.stack([per_row, t]))[0, 1] > 0.95  # r(t) = t
    assert per_row.mean().item() == pytest.approx(0.5, abs=0.02)


def test_unrolled_loss_gradients_flow_through_both_passes_not_the_sample():
    model = tiny_model()
    proc = UniformDiffusion(length_weight=0.0)
    b = batch()
    torch.manual_seed(1)
    first, second = proc.passes(model, b, torch.full((4,), 0.6))
    assert first.logits.requires_grad and second.logits.requires_grad
    tm = b["target_mask"]
    assert second.inputs[~tm].equal(b["input_ids"][~tm])  # the prompt is clean in both passes
    assert not second.inputs[tm].equal(first.inputs[tm])  # the second pass reads the model's own sample
    assert not second.inputs.requires_grad and second.inputs.dtype == torch.long
    ce1 = proc.per_token_loss(first, b, None).sum()
    ce2 = proc.per_token_loss(second, b, None).sum()
    # the second pass's loss does not reach the first pass's logits: the sample is detached
    assert torch.autograd.grad(ce2, first.logits, retain_graph=True, allow_unused=True)[0] is None
    w = model.blocks[0].attn.qkv.weight
    g1 = torch.autograd.grad(ce1, w, retain_graph=True)[0]
    g2 = torch.autograd.grad(ce2, w, retain_graph=True)[0]
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0 and not torch.allclose(g1, g2)
    # the training loss is the mean of both passes
    torch.manual_seed(1)
    out = proc.training_loss(model, b, torch.full((4,), 0.6), torch.ones(4))
    n = tm.sum()
    assert out.loss.item() == pytest.approx(((ce1 + ce2) / 2 / n).item(), rel=1e-5)
    assert set(out.logs) >= {"ce_pass1", "ce_pass2"}
    assert len(UniformDiffusion(unroll=False).passes(model, b, torch.full((4,), 0.6))) == 1


def test_masked_loss_only_on_masked_tokens_and_never_predicts_mask():
    model = tiny_model()
    proc = MaskedDiffusion(mask_id=MASK, loss_weighting="elbo")
    b = batch()
    torch.manual_seed(0)
    (p,) = proc.passes(model, b, torch.full((4,), 0.5))
    assert torch.isinf(p.logits[:, MASK]).all()
    per_token = proc.per_token_loss(p, b, torch.full((4,), 0.5))
    masked = p.inputs == MASK
    assert masked.any() and (per_token[~masked] == 0).all() and (per_token[masked] > 0).all()
    ce = F.cross_entropy(p.logits, b["input_ids"][b["target_mask"]], reduction="none")
    torch.testing.assert_close(per_token[b["target_mask"]][masked[b["target_mask"]]],
                               2.0 * ce[masked[b["target_mask"]]])  # ELBO weight 1/t at t = 0.5
    torch.testing.assert_close(proc.elbo_weight(torch.tensor([0.1, 0.5, 1.0])), torch.tensor([10.0, 2.0, 1.0]),
                               rtol=1e-3, atol=1e-3)
    with pytest.raises(ConfigError, match="MASK"):
        MaskedDiffusion().prior(model, b["input_ids"], b["target_mask"])


class ConstantModel(torch.nn.Module):
    """Predicts the same distribution at every position (latent = logits); counts the rows it sees."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.config = SimpleNamespace(vocab_size=logits.shape[0])
        self.register_buffer("fixed", logits)
        self.rows_seen: list[int] = []

    @override
    def forward(self, x, timesteps=None, valid=None, prefix_len=None):
        self.rows_seen.append(x.shape[0])
        latent = self.fixed.expand(*x.shape, -1)
        return SimpleNamespace(latent=latent, hidden=latent)

    def logits(self, latent):
        return latent


def gen_batch(B=3):
    return build_batch([[5, 6, 7]] * B, None, sep_id=2, eos_id=3, pad_id=0, tgt_lengths=[4, 6, 5][:B])


def test_sampler_stops_sequences_whose_tokens_stop_changing():
    logits = torch.zeros(V)
    logits[7] = 5.0
    model = ConstantModel(logits)
    b = gen_batch()
    torch.manual_seed(0)
    argmax = UniformDiffusion(temperature=0.0, update_proportion=1.0)
    res = DiscreteSampler(steps=10).generate(model, argmax, b)
    assert res.steps.tolist() == [2, 2, 2]  # step 1 writes 7s, step 2 changes nothing → stop
    assert (res.tokens[b["target_mask"]] == 7).all() and res.tokens[~b["target_mask"]].equal(b["input_ids"][~b["target_mask"]])
    assert model.rows_seen == [3, 3]  # finished rows really left the batch
    full = DiscreteSampler(steps=10, early_stop=False).generate(ConstantModel(logits), argmax, b)
    assert full.steps.tolist() == [10, 10, 10] and full.tokens.equal(res.tokens)
    assert DiscreteSampler().steps == 10


def test_masked_sampler_reveals_every_token():
    logits = torch.zeros(V)
    logits[9] = 3.0
    b = gen_batch()
    for early in (True, False):
        torch.manual_seed(0)
        res = DiscreteSampler(steps=5, early_stop=early).generate(ConstantModel(logits), MaskedDiffusion(mask_id=MASK), b)
        assert (res.tokens[b["target_mask"]] == 9).all()
        assert (res.steps <= 5).all() and (res.steps >= 1).all()


class EchoModel(ConstantModel):
    """Predicts the input token back, more confidently for larger ids: the fixed point is the initial noise."""

    @override
    def forward(self, x, timesteps=None, valid=None, prefix_len=None):
        self.rows_seen.append(x.shape[0])
        latent = 6.0 * F.one_hot(x, V).float() + 0.05 * torch.arange(V).float()
        return SimpleNamespace(latent=latent, hidden=latent)


def test_several_samples_keep_the_most_likely():
    b = gen_batch(2)
    proc, S = UniformDiffusion(temperature=0.0), 8
    torch.manual_seed(3)
    expected_prior = proc.prior(EchoModel(torch.zeros(V)), b["input_ids"].repeat_interleave(S, 0),
                                b["target_mask"].repeat_interleave(S, 0))
    torch.manual_seed(3)
    res = DiscreteSampler(steps=4, num_samples=S).generate(EchoModel(torch.zeros(V)), proc, b)
    tm = b["target_mask"].repeat_interleave(S, 0)
    means = torch.stack([row[m].float().mean() for row, m in zip(expected_prior, tm)]).view(2, S)
    best = means.argmax(1) + torch.arange(0, 2 * S, S)
    assert res.tokens.equal(expected_prior[best])  # echo: each sample stays its noise; the highest ids win
    assert res.tokens.shape == b["input_ids"].shape


@pytest.mark.parametrize("process", ["uniform", "masked"])
def test_discrete_process_in_a_diffusion_recipe(toy_root, tmp_path, process):
    from diffusion_lm.models import DenoiserConfig as Cfg

    dm = toy_datamodule(toy_root)
    proc = UniformDiffusion() if process == "uniform" else MaskedDiffusion()
    model = tiny_recipe(dm.vocab_size, process=proc, generator=DiscreteSampler(steps=3, num_samples=2),
                        denoiser=Cfg(d_model=32, n_layers=2, n_heads=2, max_len=56, dropout=0.0, self_condition=False))
    trainer = cpu_trainer(tmp_path, fast_dev_run=2)
    trainer.fit(model, dm)
    if process == "masked":
        assert proc.mask_id == dm.tokenizer.mask_id  # bound from the tokenizer
    res = trainer.test(model, dm, verbose=False)[0]
    assert 1 <= res["test/decode_steps"] <= 3 and res["test/loss"] > 0


@pytest.mark.parametrize("weighting", ["uniform", "elbo"])
def test_masked_per_example_loss_is_the_training_objective_per_example(weighting):
    """GradVariance needs per_example_loss: with the same mask draw it equals training_loss's per-example loss."""
    model, proc, b = tiny_model().eval(), MaskedDiffusion(mask_id=MASK, loss_weighting=weighting), batch()
    t = torch.tensor([0.2, 0.5, 0.7, 0.95])
    torch.manual_seed(3)
    ref = proc.training_loss(model, b, t, torch.ones(4)).per_example
    torch.manual_seed(3)
    got = proc.per_example_loss(model, b, t)
    assert torch.allclose(got, ref, atol=1e-5)


def test_grad_variance_runs_on_masked_diffusion():
    from diffusion_lm.diffusion import GradVariance

    model, proc, b = tiny_model(), MaskedDiffusion(mask_id=MASK), batch()
    est = GradVariance(params=["blocks.*.attn.*"], examples=4, examples_per_bin=2, decay=1.0)
    est.setup(4)
    est.accumulate(model, proc, b, torch.tensor([0.1, 0.15, 0.6, 0.65]), torch.tensor([0, 2]))
    v = est.values()
    assert torch.isfinite(v[[0, 2]]).all() and (v[[0, 2]] > 0).all() and torch.isnan(v[[1, 3]]).all()
