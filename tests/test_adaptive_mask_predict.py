"""Adaptive early stopping of Mask-Predict decoding (AdaptiveMaskPredictSampler) and its calibration."""

import pytest
import torch
from typing_extensions import override

from diffusion_lm.diffusion import AdaptiveMaskPredictSampler, MaskedDiffusion, MaskPredictSampler
from diffusion_lm.diffusion.calibration import as_adaptive

from .test_mask_predict import MASK, RecordingModel, gen_batch


class SettlingModel(RecordingModel):
    """Logits that depend on the position only: the full guess is the same at every iteration."""

    @override
    def forward(self, x, timesteps=None, valid=None, prefix_len=None):
        self.inputs.append(x.clone())
        latent = self.table[torch.arange(x.shape[1]), 0][None].expand(x.shape[0], -1, -1)  # (B, L, V)
        return type("Out", (), {"latent": latent, "hidden": latent})()


@pytest.mark.parametrize("remask", [True, False])
@pytest.mark.parametrize("confidence_noise", [0.0, 1.0])
def test_epsilon_zero_is_the_fixed_step_sampler(remask, confidence_noise):
    b = gen_batch()
    torch.manual_seed(1)
    fixed = MaskPredictSampler(steps=5, remask=remask, confidence_noise=confidence_noise).generate(
        RecordingModel(), MaskedDiffusion(mask_id=MASK), b)
    torch.manual_seed(1)
    adaptive = AdaptiveMaskPredictSampler(steps=5, epsilon=0.0, remask=remask, confidence_noise=confidence_noise).generate(
        RecordingModel(), MaskedDiffusion(mask_id=MASK), b)
    assert adaptive.tokens.equal(fixed.tokens) and adaptive.steps.equal(fixed.steps)
    assert torch.allclose(adaptive.scores, fixed.scores)


def test_a_settled_guess_stops_after_min_steps_and_leaves_the_batch():
    b, model = gen_batch(), SettlingModel()
    res = AdaptiveMaskPredictSampler(steps=10, epsilon=0.01, min_steps=2).generate(model, MaskedDiffusion(mask_id=MASK), b)
    assert res.steps.tolist() == [2, 2, 2]  # Δ_1 = 1 (from all-MASK), Δ_2 = 0 < ε
    assert len(model.inputs) == 2
    tm = b["target_mask"]
    assert not (res.tokens[tm] == MASK).any()  # the output is the full guess, nothing left masked


def test_rows_stop_separately_and_the_rest_keep_decoding():
    b, model = gen_batch(), RecordingModel()
    full = MaskPredictSampler(steps=6).generate(RecordingModel(), MaskedDiffusion(mask_id=MASK), b)
    res = AdaptiveMaskPredictSampler(steps=6, epsilon=0.3, min_steps=1).generate(model, MaskedDiffusion(mask_id=MASK), b)
    assert res.steps.max() <= 6 and res.steps.min() >= 1
    sizes = [x.shape[0] for x in model.inputs]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 3  # finished rows are removed, never re-added
    for row in range(3):  # a row that ran every step decodes exactly as the fixed sampler did
        if res.steps[row] == 6:
            assert res.tokens[row].equal(full.tokens[row])


def test_calibrate_turns_mask_predict_into_its_adaptive_version_with_the_same_settings():
    gen = as_adaptive(MaskPredictSampler(steps=7, remask=False, schedule="cosine", temperature=0.5, top_p=0.9), min_steps=3)
    assert isinstance(gen, AdaptiveMaskPredictSampler)
    assert (gen.steps, gen.remask, gen.schedule, gen.temperature, gen.top_p, gen.min_steps) == (7, False, "cosine", 0.5, 0.9, 3)
    gen.calibrated_epsilon = 0.05
    fresh = AdaptiveMaskPredictSampler()
    fresh.load_state_dict(gen.state_dict())
    assert fresh.effective_epsilon == 0.05


def test_negative_epsilon_is_refused():
    with pytest.raises(ValueError, match="epsilon"):
        AdaptiveMaskPredictSampler(epsilon=-1)
