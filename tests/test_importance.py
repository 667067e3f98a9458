"""Importance sampling of the noise level: p from v, sampling frequencies, the v(t) estimators
(per-example gradients against a brute-force loop), DDP all-reduce, checkpoints and TensorBoard."""

import pytest
import torch

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import GaussianDiffusion, GradVariance, ImportanceSampler, LossSecondMoment, LossVariance
from diffusion_lm.diffusion.importance import importance_probabilities
from diffusion_lm.diffusion.variance import VarianceEstimator, per_example_grads
from diffusion_lm.errors import ConfigError
from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.params import matching_parameters

from .conftest import cpu_trainer, tiny_recipe, toy_datamodule

PARAMS = ["time_embed.*", "blocks.*.attn.*"]


class FixedV(VarianceEstimator):
    """An estimator with a known v(t)."""

    def __init__(self, v):
        super().__init__()
        self.v = torch.as_tensor(v, dtype=torch.float64)

    def values(self):
        return self.v


def ready_sampler(v, **kw) -> ImportanceSampler:
    s = ImportanceSampler(num_bins=len(v), estimator=FixedV(v), pilot_steps=0, **kw)
    s.refresh()
    return s


def tiny_model(**kw) -> Denoiser:
    torch.manual_seed(0)
    cfg = dict(vocab_size=30, d_model=32, n_layers=2, n_heads=2, embed_dim=16, max_len=32, dropout=0.0, length_classes=33)
    cfg.update(kw)
    model = Denoiser(DenoiserConfig(**cfg))
    with torch.no_grad():  # the zero-initialised layers would give zero gradients upstream of them
        model.time_embed.fc2.weight.normal_(0, 0.2)
        model.self_cond_proj.weight.normal_(0, 0.2)
    return model


def batch_of(n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    srcs = [torch.randint(5, 30, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    tgts = [torch.randint(5, 30, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    return build_batch(srcs, tgts, sep_id=1, eos_id=2, pad_id=0)


# ---------------------------------------------------------------------------------------- p(t)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_p_is_v_to_the_alpha_normalised_with_floor(alpha):
    v = torch.tensor([1.0, 4.0, 0.25, 9.0, 2.0], dtype=torch.float64)
    floor = 0.2
    expected = (1 - floor) * v**alpha / (v**alpha).sum() + floor / 5
    s = ready_sampler(v, alpha=alpha, uniform_floor=floor)
    torch.testing.assert_close(s.p, expected)
    assert s.p.sum().item() == pytest.approx(1.0)
    assert s.p.min().item() >= floor / 5 - 1e-12


def test_p_edge_cases():
    uniform = torch.full((4,), 0.25, dtype=torch.float64)
    torch.testing.assert_close(importance_probabilities(torch.full((4,), float("nan")), 1.0, 0.1), uniform)
    torch.testing.assert_close(importance_probabilities(torch.zeros(4), 1.0, 0.1), uniform)
    torch.testing.assert_close(importance_probabilities(torch.tensor([1.0, 5.0, 2.0, 3.0]), 0.0, 0.1), uniform)
    # a bin without an estimate gets the mean of the others
    p = importance_probabilities(torch.tensor([1.0, float("nan"), 3.0, 2.0]), 1.0, 0.0)
    torch.testing.assert_close(p, torch.tensor([1.0, 2.0, 3.0, 2.0], dtype=torch.float64) / 8)


@pytest.mark.parametrize("weights", [False, True])
def test_empirical_bin_frequencies_match_p(weights):
    v = torch.tensor([0.5, 3.0, 1.0, 8.0, 0.1, 2.0, 4.0, 1.5], dtype=torch.float64)
    s = ready_sampler(v, alpha=1.0, uniform_floor=0.05, importance_weights=weights)
    torch.manual_seed(0)
    n = 200_000
    t, w = s.sample(n)
    assert t.shape == w.shape == (n,) and bool(((t >= 0) & (t <= 1)).all())
    k = (t * 8).long().clamp(max=7)
    counts = torch.bincount(k, minlength=8).double()
    p = s.p
    z = (counts - n * p) / (n * p * (1 - p)).sqrt()
    assert z.abs().max() < 5, z  # each bin within 5 standard deviations
    chi2 = ((counts - n * p) ** 2 / (n * p)).sum().item()
    assert chi2 < 30, chi2  # 7 degrees of freedom: P(χ² > 30) ≈ 1e-4
    if weights:
        torch.testing.assert_close(w, (1.0 / (8 * p[k])).float())
        assert w.double().mean().item() == pytest.approx(1.0, abs=0.02)  # E_p[1 / (K p)] = 1: unbiased
    else:
        assert bool((w == 1).all())
    # inside a bin t is uniform: the mean offset within the bin is 1/2
    assert (t * 8 - k).double().mean().item() == pytest.approx(0.5, abs=0.01)


def test_pilot_then_fixed_or_periodic_p():
    est = LossSecondMoment(decay=1.0)
    s = ImportanceSampler(num_bins=4, pilot_steps=3, estimator=est)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9])
    for step in range(3):
        assert not s.ready
        s.update(t, torch.tensor([1.0, 2.0, 3.0, 4.0]), step)
    assert s.ready and s.refreshes == 1
    torch.testing.assert_close(s.p, importance_probabilities(torch.tensor([1.0, 4.0, 9.0, 16.0]), 1.0, 0.1))
    frozen = est.state_dict()
    s.update(t, torch.tensor([9.0, 9.0, 9.0, 9.0]), 3)  # after the pilot: no more estimation
    assert s.refreshes == 1 and torch.equal(est.state_dict()["total"], frozen["total"])

    s = ImportanceSampler(num_bins=4, pilot_steps=2, reestimate_every=3, estimator=LossSecondMoment())
    refreshed = []
    for step in range(12):
        before = s.refreshes
        s.update(t, torch.ones(4), step)
        if s.refreshes > before:
            refreshed.append(step + 1)
    assert refreshed == [2, 5, 8, 11]


# ---------------------------------------------------------------------------------------- estimators
def test_loss_estimators_match_numpy_per_bin():
    torch.manual_seed(0)
    t = torch.rand(400)
    losses = torch.randn(400).abs() * (1 + 3 * t)
    var, sm = LossVariance(decay=1.0), LossSecondMoment(decay=1.0)
    for e in (var, sm):
        e.setup(5)
        for i in range(0, 400, 50):  # several batches pool into the same statistics
            e.observe_losses(t[i : i + 50], losses[i : i + 50])
    k = (t * 5).long()
    for b in range(5):
        x = losses[k == b].double()
        assert var.values()[b].item() == pytest.approx(x.var(unbiased=True).item(), rel=1e-9)
        assert sm.values()[b].item() == pytest.approx(x.pow(2).mean().item(), rel=1e-9)


def test_decay_is_an_exponential_moving_average():
    e = LossSecondMoment(decay=0.5)
    e.setup(1)
    e.observe_losses(torch.zeros(2), torch.tensor([2.0, 2.0]))  # x² = 4
    e.observe_losses(torch.zeros(2), torch.tensor([4.0, 4.0]))  # x² = 16
    # decayed sums: (0.5·8 + 32) / (0.5·2 + 2)
    assert e.values()[0].item() == pytest.approx((0.5 * 8 + 32) / 3)


def test_per_example_loss_is_the_training_loss():
    """The vmap-friendly loss equals the training loss's per-example values (self-conditioning off)."""
    model, proc, batch = tiny_model(), GaussianDiffusion(self_condition_prob=0.0), batch_of(6)
    t = torch.rand(6)
    torch.manual_seed(1)
    ref = proc.training_loss(model, batch, t, torch.ones(6)).per_example
    torch.manual_seed(1)
    torch.testing.assert_close(proc.per_example_loss(model, batch, t), ref)


@pytest.mark.parametrize("prediction", ["x0", "softmax"])
def test_per_example_gradients_equal_a_brute_force_loop(prediction):
    model, proc, batch = tiny_model(), GaussianDiffusion(prediction=prediction), batch_of(7)
    names = matching_parameters(model, PARAMS)
    t = torch.rand(7)
    noise = torch.randn(*batch["input_ids"].shape, 16)
    fast = torch.cat(list(per_example_grads(model, proc, batch, t, names, noise, chunk_size=3)))  # (7, P)
    params = dict(model.named_parameters())
    for i in range(7):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        loss = proc.per_example_loss(model, one, t[i : i + 1], noise[i : i + 1])[0]
        g = torch.autograd.grad(loss, [params[n] for n in names])
        torch.testing.assert_close(fast[i], torch.cat([x.flatten() for x in g]), rtol=1e-4, atol=1e-6)
    assert fast.abs().sum() > 0


def test_grad_variance_equals_brute_force_variance():
    model, proc, batch = tiny_model(), GaussianDiffusion(), batch_of(12)
    names = matching_parameters(model, PARAMS)
    est = GradVariance(params=PARAMS, examples=12, examples_per_bin=4, decay=1.0)
    est.setup(10)
    bins = torch.tensor([2, 5, 7])
    t = (bins.repeat(4) + torch.rand(12)) / 10
    noise = torch.randn(*batch["input_ids"].shape, 16)
    est.accumulate(model, proc, batch, t, bins, noise)
    params = dict(model.named_parameters())
    grads = []
    for i in range(12):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        loss = proc.per_example_loss(model, one, t[i : i + 1], noise[i : i + 1])[0]
        grads.append(torch.cat([x.flatten() for x in torch.autograd.grad(loss, [params[n] for n in names])]).double())
    G = torch.stack(grads)
    v = est.values()
    for j, b in enumerate(bins.tolist()):
        g = G[j::3]  # examples of bin b
        brute = (g - g.mean(0)).pow(2).sum() / (len(g) - 1)  # tr Cov, unbiased
        assert v[b].item() == pytest.approx(brute.item(), rel=1e-4)
    assert torch.isnan(v[[0, 1, 3, 4, 6, 8, 9]]).all()  # unobserved bins have no estimate


def test_grad_variance_rotates_over_all_bins():
    est = GradVariance(params=PARAMS, examples=8, examples_per_bin=2)
    est.setup(10)
    model, proc = tiny_model(), GaussianDiffusion()
    seen = set()
    for _ in range(3):
        seen.update(est.next_bins().tolist())
        est.observe_model(model, proc, batch_of(8))
    assert seen == set(range(10)) and not torch.isnan(est.values()).any()


def test_grad_variance_names_a_bad_pattern():
    est = GradVariance(params=["decoder.*"], examples=4, examples_per_bin=2)
    est.setup(4)
    with pytest.raises(ConfigError, match="decoder"):
        est.observe_model(tiny_model(), GaussianDiffusion(), batch_of(4))


# ---------------------------------------------------------------------------------------- DDP
def _ddp_worker(fabric, n: int):
    rank, world = fabric.global_rank, fabric.world_size
    model, proc, batch = tiny_model(), GaussianDiffusion(), batch_of(n)
    g = torch.Generator().manual_seed(3)
    bins = torch.tensor([1, 4])
    t = (bins.repeat(n // 2) + torch.rand(n, generator=g)) / 6
    noise = torch.randn(*batch["input_ids"].shape, 16, generator=g)
    losses = torch.rand(n, generator=g) * 3
    lo, hi = rank * n // world, (rank + 1) * n // world  # this rank's share of the batch
    grad_est = GradVariance(params=PARAMS, examples=n, examples_per_bin=2, decay=0.9)
    loss_est = LossVariance(decay=0.9)
    for e in (grad_est, loss_est):
        e.setup(6)
    for _ in range(2):  # two observations: the decay is applied identically
        grad_est.accumulate(model, proc, {k: v[lo:hi] for k, v in batch.items()}, t[lo:hi], bins, noise[lo:hi])
        loss_est.observe_losses(t[lo:hi], losses[lo:hi])
    out = torch.stack([grad_est.values(), loss_est.values()]).nan_to_num(-1.0)
    gathered = fabric.all_gather(out).tolist()  # (world, 2, K): every rank's statistics (a list: no shared memory)
    if world > 1:
        # Tear gloo down before the process exits: a group left alive aborts the worker at exit
        # ("terminate called without an active exception"), failing the test at random.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return gathered


@pytest.mark.timeout(300)
def test_ddp_all_reduce_equals_one_process_on_the_concatenated_batch():
    from lightning.fabric import Fabric

    n = 8
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
    per_rank = torch.tensor(fabric.launch(_ddp_worker, n), dtype=torch.float64)  # (2, 2, K)
    one_process = type("OneProcess", (), {"global_rank": 0, "world_size": 1, "all_gather": staticmethod(lambda x: x[None])})
    single = torch.tensor(_ddp_worker(one_process(), n)[0], dtype=torch.float64)
    torch.testing.assert_close(per_rank[0], per_rank[1], rtol=0, atol=0)  # every rank samples from the same p
    torch.testing.assert_close(per_rank[0], single, rtol=1e-6, atol=1e-9)
    assert (single[:, [1, 4]] > 0).all() and (single[:, [0, 2, 3, 5]] == -1).all()


# ---------------------------------------------------------------------------------------- checkpoints
def test_state_dict_round_trip_samples_from_the_same_p():
    s = ImportanceSampler(num_bins=6, pilot_steps=2, estimator=LossVariance(), importance_weights=True)
    torch.manual_seed(0)
    for step in range(4):
        t = torch.rand(32)
        s.update(t, (1 + 5 * t) * torch.rand(32), step)
    fresh = ImportanceSampler(num_bins=6, pilot_steps=2, estimator=LossVariance(), importance_weights=True)
    fresh.load_state_dict(s.state_dict())
    torch.testing.assert_close(fresh.p, s.p)
    torch.testing.assert_close(fresh.estimator.values(), s.estimator.values())
    assert fresh.ready and not torch.allclose(fresh.p, torch.full((6,), 1 / 6, dtype=torch.float64))
    torch.manual_seed(5)
    a = s.sample(100)
    torch.manual_seed(5)
    b = fresh.sample(100)
    torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="num_bins=8"):
        ImportanceSampler(num_bins=8).load_state_dict(s.state_dict())


def test_resumed_run_has_the_sampler_state(toy_root, tmp_path):
    def recipe():
        sampler = ImportanceSampler(num_bins=5, pilot_steps=3, estimator=GradVariance(examples=4, examples_per_bin=2))
        return tiny_recipe(dm.vocab_size, timestep_sampler=sampler, ema_decay=0.0)

    dm = toy_datamodule(toy_root)
    first = recipe()
    trainer = cpu_trainer(tmp_path, max_steps=4, limit_val_batches=0)
    trainer.fit(first, dm)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    saved = first.timestep_sampler
    assert saved.ready and saved.estimator.observations == 3
    resumed = recipe()
    assert not resumed.timestep_sampler.ready
    cpu_trainer(tmp_path, max_steps=5, limit_val_batches=0).fit(resumed, dm, ckpt_path=path, weights_only=False)
    torch.testing.assert_close(resumed.timestep_sampler.p, saved.p)  # p is fixed after the pilot
    torch.testing.assert_close(resumed.timestep_sampler.estimator.values(), saved.estimator.values())
    assert resumed.timestep_sampler.ready and resumed.timestep_sampler.estimator.observations == 3


# ---------------------------------------------------------------------------------------- recipe
def test_validation_loss_uses_uniform_t(toy_root, tmp_path):
    """val/loss must not depend on the training sampler, or runs could not be compared."""
    dm = toy_datamodule(toy_root)
    uniform = tiny_recipe(dm.vocab_size, val_generate_batches=0)
    peaked = tiny_recipe(dm.vocab_size, val_generate_batches=0,
                         timestep_sampler=ready_sampler([100.0, 1e-3, 1e-3, 1e-3], uniform_floor=0.0, importance_weights=True))
    peaked.load_state_dict(uniform.state_dict())
    a = cpu_trainer(tmp_path, limit_val_batches=2).validate(uniform, dm, verbose=False)[0]["val/loss"]
    b = cpu_trainer(tmp_path, limit_val_batches=2).validate(peaked, dm, verbose=False)[0]["val/loss"]
    assert a == pytest.approx(b)


def test_timestep_curves_in_tensorboard(toy_root, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dm = toy_datamodule(toy_root)
    sampler = ImportanceSampler(num_bins=4, pilot_steps=2, estimator=LossSecondMoment())
    model = tiny_recipe(dm.vocab_size, timestep_sampler=sampler, timestep_log_every=2)
    assert model.timestep_stats.num_bins == 4  # the loss statistics use the sampler's bins
    logger = TensorBoardLogger(tmp_path, name="tb")
    cpu_trainer(tmp_path, max_steps=4, limit_val_batches=0, logger=logger).fit(model, dm)
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for name in ("loss_mean", "loss_var", "v", "p"):
        assert f"timestep/{name}/bin_00" in tags["scalars"], name
    assert [e.value for e in acc.Scalars("timestep/p/bin_00")][-1] == pytest.approx(sampler.p[0].item(), rel=1e-6)
    assert "timestep/curves" in tags["images"] and len(acc.Images("timestep/curves")) == 2
    assert len(model.timestep_board.loss_history) == 2  # the heat-map's columns
    assert sampler.ready and not torch.allclose(sampler.p, torch.full((4,), 0.25, dtype=torch.float64))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_recipe_under_ddp_spawn_estimates_and_checkpoints(toy_root, tmp_path):
    """The estimator's collectives inside training_step run on both ranks (no deadlock) and the
    rank-0 checkpoint carries the all-reduced state."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm = toy_datamodule(toy_root)
    sampler = ImportanceSampler(num_bins=4, pilot_steps=2, estimator=GradVariance(examples=4, examples_per_bin=2))
    model = tiny_recipe(dm.vocab_size, timestep_sampler=sampler)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    trainer = cpu_trainer(tmp_path, strategy="ddp_spawn", devices=2, max_steps=3, limit_val_batches=0,
                          enable_checkpointing=True, callbacks=[ckpt])
    trainer.fit(model, dm)
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["timestep_sampler"]
    assert state["ready"] and state["estimator"]["observations"] == 2
    assert (state["estimator"]["dof"] > 0).all()  # 2 observations × 2 bins, 2 ranks × 2 examples per bin
