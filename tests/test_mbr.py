"""MBR decoding and the sentence BLEU it uses."""

import random

import pytest
import torch
from sacrebleu import sentence_bleu as sacre_sentence_bleu
from typing_extensions import override

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import MBRGenerator
from diffusion_lm.diffusion.generate import GenerationResult, Generator
from diffusion_lm.diffusion.mbr import mbr_select
from diffusion_lm.stats.ngrams import sentence_bleu


def sacre(h, r):
    return sacre_sentence_bleu(" ".join(map(str, h)), [" ".join(map(str, r))], tokenize="none").score


def test_sentence_bleu_matches_sacrebleu():
    rng = random.Random(0)
    for _ in range(300):
        h = [rng.randint(0, 6) for _ in range(rng.randint(0, 12))]
        r = [rng.randint(0, 6) for _ in range(rng.randint(1, 12))]
        assert sentence_bleu(h, r) == pytest.approx(sacre(h, r), abs=1e-9)


def brute_force_choice(cands):
    means = [sum(sacre(c, o) for j, o in enumerate(cands) if j != i) / (len(cands) - 1) for i, c in enumerate(cands)]
    return max(range(len(cands)), key=lambda i: (means[i], -i)), means


def test_mbr_picks_the_candidate_with_the_highest_mean_bleu_to_the_others():
    cands = [
        [9, 9, 8, 7, 1],  # outlier
        [1, 2, 3, 4, 5, 6],
        [1, 2, 3, 4, 5, 7],  # agrees with both neighbours: the consensus
        [1, 2, 3, 4, 9, 7],
        [5, 5, 5, 5],
    ]
    idx, means = mbr_select(cands)
    expected, expected_means = brute_force_choice(cands)
    assert idx == expected == 2
    assert means == pytest.approx(expected_means)
    rng = random.Random(1)
    for _ in range(30):  # random candidate sets
        cands = [[rng.randint(0, 5) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(2, 6))]
        assert mbr_select(cands)[0] == brute_force_choice(cands)[0]


class FixedCandidates(Generator):
    """Returns pre-set target rows for the B·N repeated rows (and counts the rows it was given)."""

    def __init__(self, rows):
        self.rows = rows
        self.batch_sizes = []

    @override
    def generate(self, model, process, batch):
        self.batch_sizes.append(batch["input_ids"].shape[0])
        tokens = batch["input_ids"].clone()
        for i, r in enumerate(self.rows):
            tokens[i, batch["target_mask"][i]] = torch.as_tensor(r)
        return GenerationResult(tokens, torch.full((len(self.rows),), 3))


def test_mbr_generator_returns_the_chosen_candidate_per_example():
    g = build_batch([[5, 6], [7]], None, sep_id=1, eos_id=2, pad_id=0, tgt_lengths=[4, 4])
    rows = [[10, 11, 12, 2], [10, 11, 13, 2], [10, 11, 12, 2],  # example 0: the [10 11 12] pair wins
            [20, 21, 22, 2], [30, 31, 32, 2], [20, 21, 23, 2]]  # example 1: an [20 21 …] row wins, first one on ties
    base = FixedCandidates(rows)
    res = MBRGenerator(base, num_samples=3, eos_id=2).generate(None, None, g)
    assert base.batch_sizes == [6]  # one call with B·N rows
    assert res.tokens[0, g["target_mask"][0]].tolist() == [10, 11, 12, 2]
    assert res.tokens[1, g["target_mask"][1]].tolist() == [20, 21, 22, 2]
    assert res.steps.tolist() == [9, 9]  # N samples × 3 evaluations
    assert res.tokens[0, ~g["target_mask"][0]].tolist() == g["input_ids"][0, ~g["target_mask"][0]].tolist()


def test_mbr_with_the_real_sampler_runs():
    from diffusion_lm.diffusion import DDIMSampler, GaussianDiffusion

    from .test_gaussian import tiny

    g = build_batch([[5, 6], [7]], None, sep_id=1, eos_id=2, pad_id=0, tgt_lengths=[4, 3])
    res = MBRGenerator(DDIMSampler(steps=2), num_samples=4).generate(tiny().eval(), GaussianDiffusion(), g)
    assert res.tokens.shape == g["input_ids"].shape and res.steps.tolist() == [8, 8]
