"""FastDiSS: self-conditioning perturbation and model-aware noise scaling."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from diffusion_lm.diffusion import (
    FastDiSSDiffusion,
    GaussianDiffusion,
    NoisePerturbation,
    SelfConditionPerturbation,
    ShiftNoisePerturbation,
    ShiftPerturbation,
    UniformSampler,
)
from diffusion_lm.errors import ConfigError

from .conftest import tiny_recipe
from .test_gaussian import copy_batch, tiny


def setup(p, t=None):
    m = tiny().eval()
    b = copy_batch()
    x0 = p.embed(m, b["input_ids"])
    t = torch.rand(8) if t is None else t
    return m, b, x0, p.token_timesteps(t, b["target_mask"])


def noise_of(p, x0, xt, t_tok):
    """ε = (x_t − √ᾱ x_0) / √(1 − ᾱ): the noise that built x_t (DDPM eq. 4 solved for ε)."""
    a = p.schedule.alpha_bar(t_tok)[..., None]
    return (xt - a.sqrt() * x0) / (1 - a).sqrt()


def capture_forward(m):
    seen = []
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs), with_kwargs=True)
    return seen


# ---------------------------------------------------------------------------------------- SCP
def test_shift_makes_the_estimate_at_t_plus_one_over_k_from_the_same_noise():
    p = FastDiSSDiffusion(perturbation=ShiftPerturbation(sampler_steps=4), noise_scaling=False, self_condition_prob=1.0)
    t = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.7, 0.76, 0.9, 1.0])
    m, b, x0, t_tok = setup(p, t)
    seen = capture_forward(m)
    xt, t_train, sc, _ = p.training_inputs(m, b, x0, t_tok)
    tm = b["target_mask"]
    torch.testing.assert_close(t_train, t_tok)  # no MANS: the trained pass keeps t
    t_first = seen[0]["timesteps"]
    expected = torch.where(tm, (t_tok + 0.25).clamp(max=1.0), torch.zeros_like(t_tok))
    torch.testing.assert_close(t_first, expected)
    assert t_first[tm].max() == 1.0 and (t_first - t_tok)[tm].min() >= 0  # clamped at 1, never below t
    # the estimate saw x_{t'} built from the same x_0 and ε as x_t
    keep = tm & (t_tok < 1.0)  # at t = 1 x_t holds no x_0, so ε is recovered only below it
    noise = noise_of(p, x0, xt, t_tok)
    x_shift = p.q_sample(x0, expected, noise)
    torch.testing.assert_close(seen[0]["inputs_embeds"][keep], x_shift[keep], atol=1e-4, rtol=1e-4)
    # and the self-conditioning input is that estimate: it differs from the unperturbed one (made at t)
    unperturbed, _ = p.estimate(m, b, x0, noise, t_tok)
    shifted, _ = p.estimate(m, b, x0, noise, expected)
    torch.testing.assert_close(sc[keep], shifted[keep], atol=1e-4, rtol=1e-4)
    assert (sc[keep] - unperturbed[keep]).abs().mean() > 1e-3
    assert torch.all(sc[~tm] == 0)


@pytest.mark.parametrize("std", [0.1, 0.5])
def test_noise_perturbation_differs_by_the_configured_std(std):
    torch.manual_seed(0)
    p = FastDiSSDiffusion(perturbation=NoisePerturbation(noise_std=std), noise_scaling=False, self_condition_prob=1.0)
    m, b, x0, t_tok = setup(p, torch.rand(8) * 0.9)
    xt, _, sc, logs = p.training_inputs(m, b, x0, t_tok)
    clean, _ = p.estimate(m, b, x0, noise_of(p, x0, xt, t_tok), t_tok)  # the unperturbed estimate
    tm = b["target_mask"]
    diff = sc[tm] - clean[tm]
    assert diff.std().item() == pytest.approx(std, rel=0.1)
    assert diff.mean().abs().item() < 0.1 * std
    assert torch.all(sc[~tm] == 0) and logs["scp_sigma"].item() == pytest.approx(std)


def test_both_shifts_and_adds_noise():
    torch.manual_seed(0)
    p = FastDiSSDiffusion(perturbation=ShiftNoisePerturbation(noise_std=0.2, sampler_steps=5), noise_scaling=False,
                          self_condition_prob=1.0)
    m, b, x0, t_tok = setup(p, torch.rand(8) * 0.9)
    tm = b["target_mask"]
    xt, _, sc, _ = p.training_inputs(m, b, x0, t_tok)
    shifted, _ = p.estimate(m, b, x0, noise_of(p, x0, xt, t_tok), p.perturbation.estimate_timesteps(t_tok, tm))
    assert (sc[tm] - shifted[tm]).std().item() == pytest.approx(0.2, rel=0.1)


def test_measured_noise_is_the_error_gap_between_t_plus_delta_and_t():
    p = NoisePerturbation(sampler_steps=10, error_bins=10)
    p.error_sq = torch.linspace(0.0, 0.9, 10)  # e²(bin i) = 0.1 i
    t = torch.tensor([[0.05, 0.55, 0.95]])
    sigma = p.noise_sigma(t, t)
    torch.testing.assert_close(sigma, torch.full_like(t, 0.1).sqrt().where(t < 0.9, torch.zeros_like(t)))


def test_record_error_keeps_a_running_mean_per_bin():
    p = NoisePerturbation(error_bins=4, error_momentum=0.5)
    x0 = torch.zeros(1, 2, 3)
    mask = torch.ones(1, 2, dtype=torch.bool)
    t = torch.tensor([[0.1, 0.9]])
    p.record_error(*p.error_sums(torch.ones(1, 2, 3), x0, t, mask))  # first observation is taken as is
    p.record_error(torch.zeros(4), torch.zeros(4))  # a step without an estimate changes nothing
    p.record_error(*p.error_sums(torch.full((1, 2, 3), 3.0), x0, t, mask))  # then EMA: 0.5·1 + 0.5·9
    torch.testing.assert_close(p.error_sq, torch.tensor([5.0, 0.0, 0.0, 5.0]))
    assert p.error_seen.tolist() == [True, False, False, True]


# ---------------------------------------------------------------------------------------- MANS
def test_noise_scaling_never_lowers_t_and_respects_anchor_and_bound():
    torch.manual_seed(0)
    p = FastDiSSDiffusion(anchor=0.8, confidence=0.7, strength=1.0, max_raise=0.25)
    t = torch.rand(64, 40)
    conf = torch.exp(-torch.rand(64, 40) * 2)  # spans (0.13, 1]
    conf[:, :5] = 1.0  # fully confident
    mask = torch.rand(64, 40) > 0.2
    out = p.raise_timesteps(t, conf, mask)
    d = out - t
    assert torch.all(d >= 0)  # never lowers t
    assert torch.all(d <= 0.25 + 1e-6)  # bounded
    assert torch.all(out <= torch.maximum(t, torch.tensor(0.8)) + 1e-6)  # never past the anchor
    assert torch.all(d[~mask] == 0)  # the prompt keeps t
    assert torch.all(d[conf < 0.7] == 0)  # unconfident tokens keep t
    assert torch.all(d[t >= 0.8] == 0)
    # a fully confident token far below the anchor moves by max_raise; one close to it lands on it
    probe = p.raise_timesteps(torch.tensor([[0.1, 0.7]]), torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(probe, torch.tensor([[0.35, 0.8]]))


def test_confidence_measures():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    for measure in ("max_prob", "entropy"):
        conf = FastDiSSDiffusion(confidence_measure=measure).token_confidence(logits)
        assert conf[1].item() == pytest.approx(1.0, abs=1e-4)
    assert FastDiSSDiffusion().token_confidence(logits)[0].item() == pytest.approx(0.25)
    entropy = FastDiSSDiffusion(confidence_measure="entropy").token_confidence(logits)
    assert entropy[0].item() == pytest.approx(0.0, abs=1e-6)


def test_tokens_are_selected_by_model_confidence_not_gold_probability():
    """A token the model predicts confidently but wrongly is raised; the gold token's probability plays no part
    (else a raised t would tell the trained pass that the model already has the token right)."""
    p = FastDiSSDiffusion(confidence=0.9, anchor=0.9, max_raise=0.5, self_condition_prob=0.0)
    m, b, x0, t_tok = setup(p, torch.full((8,), 0.2))
    ids, tm = b["input_ids"], b["target_mask"]
    wrong = 20.0 * F.one_hot((ids + 1) % 30, 30).float()  # (B, L, V): sure of a token that is not the gold one
    assert torch.softmax(wrong, -1).gather(-1, ids[..., None])[tm].max() < 1e-6
    p.predict_x0 = lambda model, latent: (latent, wrong)
    _, raised, _, logs = p.training_inputs(m, b, x0, t_tok)
    assert torch.all(raised[tm] > 0.2 + 0.1) and logs["mans_raised_share"] == 1
    p.predict_x0 = lambda model, latent: (latent, torch.zeros_like(wrong))  # unsure: uniform over V
    _, raised, _, logs = p.training_inputs(m, b, x0, t_tok)
    torch.testing.assert_close(raised, t_tok)
    assert logs["mans_raised_share"] == 0


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
    confidence, sc_pass, trained = (s["timesteps"] for s in seen[:3])
    tm = b["target_mask"]
    torch.testing.assert_close(confidence[tm], torch.full_like(confidence[tm], 0.2))  # confidence at the sampled t
    assert torch.all(trained[tm] >= 0.2) and (trained[tm] > 0.2).any()
    assert torch.all(trained[~tm] == 0)
    shifted = torch.where(tm, (trained + 0.1).clamp(max=1.0), trained)
    torch.testing.assert_close(sc_pass, shifted)  # the self-conditioning estimate: shift from the raised t


PERTURBATIONS = {"shift": lambda: ShiftPerturbation(sampler_steps=5), "noise": lambda: NoisePerturbation(sampler_steps=5),
                 "both": lambda: ShiftNoisePerturbation(noise_std=0.1, sampler_steps=5),
                 "none": SelfConditionPerturbation}


@pytest.mark.parametrize("perturbation", sorted(PERTURBATIONS))
def test_self_conditioning_estimate_is_never_cleaner_than_the_trained_input(perturbation):
    """Token by token, the self-conditioning estimate is made at a noise level ≥ the trained pass's raised
    level, from x_t of the same ε, and not by the confidence pass."""
    torch.manual_seed(1)
    p = FastDiSSDiffusion(perturbation=PERTURBATIONS[perturbation](), confidence=0.5, anchor=1.0, max_raise=0.6,
                          self_condition_prob=1.0)
    p.token_confidence = lambda logits: torch.rand(logits.shape[:-1])  # the untrained model is never sure
    m, b, x0, t_tok = setup(p, torch.linspace(0.0, 0.95, 8))
    tm = b["target_mask"]
    seen = capture_forward(m)
    xt, raised, sc, _ = p.training_inputs(m, b, x0, t_tok)
    assert len(seen) == 2  # confidence pass, self-conditioning pass
    t_conf, t_sc = seen[0]["timesteps"], seen[1]["timesteps"]
    torch.testing.assert_close(t_conf, t_tok)
    assert (raised - t_tok)[tm].min() >= 0 and (raised - t_tok)[tm].max() > 0.1  # MANS moved tokens
    assert torch.all(t_sc[tm] >= raised[tm])
    torch.testing.assert_close(t_sc, p.perturbation.estimate_timesteps(raised, tm))
    keep = tm & (raised < 1.0)
    expected_in = p.q_sample(x0, t_sc, noise_of(p, x0, xt, raised))
    torch.testing.assert_close(seen[1]["inputs_embeds"][keep], expected_in[keep], atol=1e-4, rtol=1e-4)


def test_grad_free_passes_count_the_confidence_pass():
    assert FastDiSSDiffusion(self_condition_prob=0.5).grad_free_passes(True) == 1.5
    assert FastDiSSDiffusion(self_condition_prob=0.5).grad_free_passes(False) == 1.0
    assert FastDiSSDiffusion(self_condition_prob=0.5, noise_scaling=False).grad_free_passes(True) == 0.5
    assert GaussianDiffusion(self_condition_prob=0.5).grad_free_passes(True) == 0.5  # the ablation


# ---------------------------------------------------------------------------------------- ablation and evaluation
def test_without_perturbation_and_noise_scaling_is_exactly_gaussian_diffusion():
    """The ablation is the class: FastDiSS with neither of its changes is GaussianDiffusion, same random stream."""
    m, b, *_ = setup(GaussianDiffusion())
    m.train()
    t = torch.rand(8)
    losses = []
    plain = FastDiSSDiffusion(perturbation=SelfConditionPerturbation(), noise_scaling=False, self_condition_prob=0.5)
    for p in (GaussianDiffusion(self_condition_prob=0.5), plain):
        torch.manual_seed(3)
        losses.append([p.training_loss(m, b, t, torch.ones(8)).loss for _ in range(4)])
    torch.testing.assert_close(losses[0], losses[1])


def test_eval_loss_is_the_plain_gaussian_objective_and_updates_no_statistics():
    m, b, *_ = setup(GaussianDiffusion())
    t = torch.rand(8)
    p = FastDiSSDiffusion(perturbation=NoisePerturbation(error_bins=5), confidence=0.0, self_condition_prob=0.5)
    p.perturbation.error_sq = torch.arange(5.0)
    losses = []
    for proc, fn in ((GaussianDiffusion(self_condition_prob=0.5), "training_loss"), (p, "eval_loss")):
        torch.manual_seed(3)
        losses.append([getattr(proc, fn)(m, b, t, torch.ones(8)).loss for _ in range(4)])
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    torch.manual_seed(3)
    assert p.training_loss(m, b, t, torch.ones(8)).loss != losses[0][0]  # training does differ
    p.perturbation.error_sq = torch.arange(5.0)
    torch.manual_seed(3)
    p.eval_loss(m, b, t, torch.ones(8))
    torch.testing.assert_close(p.perturbation.error_sq, torch.arange(5.0))


def test_recipe_evaluates_with_the_plain_objective():
    """val/test loss (the EMA model, eval mode) is GaussianDiffusion's at uniform t: same seed, same number."""
    process = FastDiSSDiffusion(perturbation=NoisePerturbation(), confidence=0.0, self_condition_prob=0.5)
    recipe = tiny_recipe(30, process=process).eval()
    b = copy_batch()
    torch.manual_seed(7)
    got = recipe.compute_loss(b, recipe.eval_model).loss
    assert not process.perturbation.error_seen.any()
    torch.manual_seed(7)
    t, w = UniformSampler().sample(8, torch.device("cpu"))
    expected = GaussianDiffusion(self_condition_prob=0.5).training_loss(recipe.eval_model, b, t, w).loss
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------- checkpoint and DDP
def test_statistics_survive_a_checkpoint_round_trip(tmp_path):
    def recipe():
        return tiny_recipe(30, process=FastDiSSDiffusion(perturbation=NoisePerturbation(error_bins=6), self_condition_prob=1.0))

    trained = recipe().train()
    torch.manual_seed(0)
    for _ in range(3):
        trained.process.training_loss(trained.denoiser, copy_batch(), torch.rand(8), torch.ones(8))
    assert trained.process.perturbation.error_seen.any()
    ckpt = {}
    trained.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "c.ckpt")
    resumed = recipe()
    resumed.on_load_checkpoint(torch.load(tmp_path / "c.ckpt", weights_only=True))
    torch.testing.assert_close(resumed.process.perturbation.error_sq, trained.process.perturbation.error_sq.cpu())
    assert torch.equal(resumed.process.perturbation.error_seen, trained.process.perturbation.error_seen.cpu())
    resumed.process.load_state_dict({})  # a checkpoint of a process without statistics: nothing to restore
    assert resumed.process.perturbation.error_seen.any()
    with pytest.raises(ConfigError, match="error_bins=4"):
        FastDiSSDiffusion(perturbation=NoisePerturbation(error_bins=4)).load_state_dict(ckpt["process"])
    with pytest.raises(ConfigError, match="'error_seen'"):
        FastDiSSDiffusion(perturbation=NoisePerturbation(error_bins=6)).load_state_dict({"error_sq": torch.zeros(6)})
    assert GaussianDiffusion().state_dict() == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_data():
    g = torch.Generator().manual_seed(0)
    est, x0 = torch.randn(2, 3, 5, 4, generator=g), torch.randn(2, 3, 5, 4, generator=g)  # (rank, B, L, E)
    t, mask = torch.rand(2, 3, 5, generator=g), torch.rand(2, 3, 5, generator=g) > 0.3
    return est, x0, t, mask


def _ddp_worker(rank: int, world: int, port: int, path: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    est, x0, t, mask = _ddp_data()
    direct = NoisePerturbation(error_bins=4, error_momentum=0.5)
    direct.record_error(*direct.error_sums(est[rank], x0[rank], t[rank], mask[rank]))
    if rank == 0:  # rank 1 has no estimate this step: it still joins the collective
        direct.record_error(*direct.error_sums(2 * est[rank], x0[rank], t[rank], mask[rank]))
    else:
        direct.record_error(torch.zeros(4), torch.zeros(4))
    out = {"direct": direct.error_sq}
    sc_steps = {}
    for mans in (False, True):  # whole training steps; the ranks draw different self-conditioned steps
        p = FastDiSSDiffusion(perturbation=NoisePerturbation(error_bins=5), noise_scaling=mans, self_condition_prob=0.5)
        model = tiny()
        torch.manual_seed(rank)
        logs = [p.training_loss(model, copy_batch(seed=rank), torch.rand(8), torch.ones(8)).logs for _ in range(6)]
        out[f"mans={mans}"] = p.perturbation.error_sq
        sc_steps[mans] = ["scp_sigma" in step for step in logs]
    torch.save((out, sc_steps), f"{path}.{rank}")
    dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_error_statistics_are_all_reduced_across_two_processes(tmp_path):
    path = str(tmp_path / "stats")
    mp.spawn(_ddp_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    ranks, sc_steps = zip(*(torch.load(f"{path}.{r}") for r in range(2)))
    assert sc_steps[0][False] != sc_steps[1][False]  # a rank without an estimate still joined the all-reduce
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)
        assert (ranks[0][key] > 0).any()
    # one process on both ranks' tokens gives the same running means
    est, x0, t, mask = _ddp_data()
    single = NoisePerturbation(error_bins=4, error_momentum=0.5)
    single.record_error(*single.error_sums(est, x0, t, mask))
    single.record_error(*single.error_sums(2 * est[0], x0[0], t[0], mask[0]))
    torch.testing.assert_close(ranks[0]["direct"], single.error_sq)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="perturbation"):
        FastDiSSDiffusion(perturbation="shift")  # the component is a class, not a string
    with pytest.raises(ConfigError, match="noise_std"):
        ShiftNoisePerturbation(noise_std=None)
    with pytest.raises(ConfigError, match="sampler_steps"):
        ShiftPerturbation(sampler_steps=0)
    with pytest.raises(ConfigError, match="anchor"):
        FastDiSSDiffusion(anchor=1.5)
    with pytest.raises(ConfigError, match="strength <= 1"):
        FastDiSSDiffusion(strength=2.0)
    with pytest.raises(ConfigError, match="confidence_measure"):
        FastDiSSDiffusion(confidence_measure="gold")
