"""Confidence-ordered masked decoding (Mask-Predict / MaskGIT) and the length beam."""

from types import SimpleNamespace

import pytest
import torch
from typing_extensions import override

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import (
    DDIMSampler,
    GaussianDiffusion,
    GenerationResult,
    Generator,
    LengthBeam,
    MaskedDiffusion,
    MaskPredictSampler,
)
from diffusion_lm.diffusion.length_beam import with_target_lengths
from diffusion_lm.diffusion.mask_predict import sample_with_confidence
from diffusion_lm.models import Denoiser, DenoiserConfig

V, MASK, PAD, SEP, EOS = 30, 4, 0, 2, 3


class RecordingModel(torch.nn.Module):
    """Random but fixed logits per (row, position, input token); records every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(vocab_size=V)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("table", torch.randn(64, V, V, generator=g) * 3)
        self.inputs: list[torch.Tensor] = []

    @override
    def forward(self, x, timesteps=None, valid=None, prefix_len=None):
        self.inputs.append(x.clone())
        pos = torch.arange(x.shape[1])[None, :].expand_as(x)
        latent = self.table[pos, x]  # (B, L, V): depends on what the position currently holds
        return SimpleNamespace(latent=latent, hidden=latent)

    def logits(self, latent):
        return latent


def gen_batch(lengths=(7, 10, 4)):
    return build_batch([[5, 6, 7]] * len(lengths), None, sep_id=SEP, eos_id=EOS, pad_id=PAD, tgt_lengths=list(lengths))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_unmasking_reveals_the_scheduled_count_and_never_remasks_a_kept_token(schedule):
    b, model = gen_batch(), RecordingModel()
    sampler = MaskPredictSampler(steps=4, remask=False, schedule=schedule)
    res = sampler.generate(model, MaskedDiffusion(mask_id=MASK), b)
    tm, lengths = b["target_mask"], b["target_mask"].sum(1)
    assert len(model.inputs) == 4
    kept_before = torch.zeros_like(tm)
    for k, x in enumerate(model.inputs):
        masked = (x == MASK) & tm
        assert masked.sum(1).tolist() == sampler.masked_counts(lengths, k).tolist()  # the schedule, row by row
        kept = tm & ~masked
        assert not (kept_before & ~kept).any()  # a kept token is never masked again
        if k:  # and never changes
            assert (x[kept_before] == model.inputs[k - 1][kept_before]).all()
        kept_before = kept
    assert not (res.tokens[tm] == MASK).any() and res.tokens[~tm].equal(b["input_ids"][~tm])
    assert res.steps.tolist() == [4, 4, 4] and res.scores.shape == (3,)


class GrowingConfidenceModel(RecordingModel):
    """Predicts token 10 + position, more confidently the more of the row is already revealed."""

    @override
    def forward(self, x, timesteps=None, valid=None, prefix_len=None):
        self.inputs.append(x.clone())
        revealed = (x != MASK).sum(1, keepdim=True).float()  # (B, 1)
        tokens = (10 + torch.arange(x.shape[1]))[None, :].expand_as(x) % V
        latent = torch.nn.functional.one_hot(tokens, V).float() * (0.2 * revealed[..., None] + 0.01 * torch.rand(x.shape + (1,)))
        return SimpleNamespace(latent=latent, hidden=latent)


def test_mask_predict_remasks_the_least_confident_anywhere():
    b = gen_batch()
    sampler = MaskPredictSampler(steps=5, remask=True)
    lengths = b["target_mask"].sum(1)
    for model in (RecordingModel(), GrowingConfidenceModel()):
        sampler.generate(model, MaskedDiffusion(mask_id=MASK), b)
        for k, x in enumerate(model.inputs):
            assert ((x == MASK) & b["target_mask"]).sum(1).tolist() == sampler.masked_counts(lengths, k).tolist()
    assert sampler.masked_counts(torch.tensor([10]), 2).item() == 6  # ⌊10 · (1 − 2/5)⌋ (Mask-Predict eq. 3)
    # later predictions are surer than the first ones, so tokens kept at iteration 1 are masked again at 2
    first, second = model.inputs[1], model.inputs[2]
    assert ((first != MASK) & (second == MASK) & b["target_mask"]).any()
    torch.manual_seed(0)
    strict = GrowingConfidenceModel()
    MaskPredictSampler(steps=5, remask=False).generate(strict, MaskedDiffusion(mask_id=MASK), b)
    assert not ((strict.inputs[1] != MASK) & (strict.inputs[2] == MASK) & b["target_mask"]).any()


def test_choose_masked_picks_the_least_confident_candidates():
    sampler = MaskPredictSampler(steps=4)
    conf = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.8], [0.2, 0.7, 0.6, 0.1, 0.4]])
    cand = torch.tensor([[True, True, True, True, False], [True] * 5])
    out = sampler.choose_masked(conf, cand, torch.tensor([2, 3]), k=0)
    assert out.tolist() == [[False, True, False, True, False], [True, False, False, True, True]]


def test_sampling_at_temperature_zero_is_the_argmax_and_a_tiny_nucleus_too():
    logits = torch.randn(50, V)
    tok, conf = sample_with_confidence(logits, 0.0, 1.0)
    assert tok.equal(logits.argmax(-1))
    torch.testing.assert_close(conf, torch.softmax(logits, -1).max(-1).values)
    torch.manual_seed(0)
    tok2, conf2 = sample_with_confidence(logits, 1.0, 1e-6)
    assert tok2.equal(tok) and torch.allclose(conf2, conf)
    torch.manual_seed(0)
    drawn, _ = sample_with_confidence(logits, 1.0, 1.0)
    assert not drawn.equal(tok)  # a real draw


def test_with_target_lengths_is_the_generation_layout():
    b = gen_batch((4, 6))
    out = with_target_lengths(b, torch.tensor([[4, 9], [2, 6]]))
    ref = build_batch([[5, 6, 7]] * 4, None, sep_id=SEP, eos_id=EOS, pad_id=PAD, tgt_lengths=[4, 9, 2, 6])
    for key in ("input_ids", "valid", "target_mask", "prefix_len", "tgt_len", "target_index"):
        assert out[key].equal(ref[key]), key


def real_model():
    torch.manual_seed(0)
    return Denoiser(DenoiserConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=2, max_len=40, dropout=0.0,
                                   self_condition=False, length_classes=41)).eval()


@pytest.mark.parametrize("case", ["masked", "gaussian"])
def test_length_beam_of_width_one_is_the_single_length_generator(case):
    model = real_model()
    proc, base = ((MaskedDiffusion(mask_id=MASK), MaskPredictSampler(steps=3)) if case == "masked"
                  else (GaussianDiffusion(), DDIMSampler(steps=3, self_condition=False)))
    b = gen_batch()
    torch.manual_seed(1)
    single = base.generate(model, proc, b)
    torch.manual_seed(1)
    beam = LengthBeam(base, width=1).generate(model, proc, b)
    assert beam.tokens.equal(single.tokens) and beam.target_mask.equal(b["target_mask"])
    torch.testing.assert_close(beam.scores, single.scores)


class LengthScoredGenerator(Generator):
    """Scores a candidate by how close its target length is to 5."""

    @override
    def generate(self, model, process, batch):
        n = batch["target_mask"].sum(1)
        return GenerationResult(tokens=batch["input_ids"], steps=torch.ones_like(n), scores=-(n - 5).abs().float())


def test_length_beam_keeps_the_best_scored_length_among_the_head_s_top_lengths():
    model = real_model()
    with torch.no_grad():  # length head: 5 and 6 most probable after the batch's own length
        model.length_head.weight.zero_()
        model.length_head.bias.fill_(-10.0)
        model.length_head.bias[5] = 3.0
        model.length_head.bias[6] = 2.0
    b = gen_batch((9, 8))
    res = LengthBeam(LengthScoredGenerator(), width=3).generate(model, MaskedDiffusion(mask_id=MASK), b)
    assert res.target_mask.sum(1).tolist() == [5, 5]
    assert res.steps.tolist() == [3, 3]  # every candidate's evaluations count
    res1 = LengthBeam(LengthScoredGenerator(), width=1).generate(model, MaskedDiffusion(mask_id=MASK), b)
    assert res1.target_mask.sum(1).tolist() == [9, 8]
