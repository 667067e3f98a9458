"""Autoregressive decoding: masks, KV cache vs full recomputation, greedy vs beam search."""

import itertools

import pytest
import torch

from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.decoding import ARDecoder, decoding_mask

V = 40


def ar_model(attention="causal", position="learned", **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, d_model=32, n_layers=2, n_heads=4, max_len=48, dropout=0.0, attention=attention,
               position=position, timestep_embedding=False, self_condition=False, tie_embeddings=False)
    cfg.update(kw)
    m = Denoiser(DenoiserConfig(**cfg)).eval()
    with torch.no_grad():  # a sharper random model: greedy paths differ between prompts and steps
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.5)
    return m


PROMPTS = [[5, 6, 7, 8, 9, 1], [11, 1], [3, 4, 5, 1], [20, 21, 22, 23, 24, 25, 26, 27, 1]]


def reference_greedy(model, prompt, eos, steps):
    """One sequence, no padding, no cache: the plain forward pass at every step."""
    seq = list(prompt)
    for _ in range(steps):
        ids = torch.tensor([seq])
        out = model(ids, prefix_len=torch.tensor([len(prompt)]))
        nxt = int(model.logits(out.latent[0, -1]).argmax())
        seq.append(nxt)
        if nxt == eos:
            break
    return seq[len(prompt):]


@pytest.mark.parametrize("attention", ["causal", "prefix_causal"])
def test_prefix_causal_mask(attention):
    m = ar_model(attention)
    ids = torch.randint(0, V, (1, 12))
    plen = torch.tensor([5])
    ref = m(ids, prefix_len=plen).latent
    later = ids.clone()
    later[0, 9:] = (later[0, 9:] + 1) % V  # change target positions 9…11
    out = m(later, prefix_len=plen).latent
    torch.testing.assert_close(out[0, :9], ref[0, :9])  # nothing before 9 sees them
    assert not torch.allclose(out[0, 9:], ref[0, 9:])
    first = ids.clone()
    first[0, 4] = (first[0, 4] + 1) % V  # the last source token
    out = m(first, prefix_len=plen).latent
    # prefix-LM: every source position sees the whole source; causal: positions before 4 do not
    assert torch.allclose(out[0, :4], ref[0, :4]) == (attention == "causal")


def test_decoding_mask_shape_and_padding():
    valid = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    causal = decoding_mask(valid, n_prompt=3, attention="causal")[:, 0]
    prefix = decoding_mask(valid, n_prompt=3, attention="prefix_causal")[:, 0]
    assert causal.shape == (2, 5, 5)
    assert causal[0, :2, :2].equal(torch.eye(2, dtype=torch.bool))  # a padded query sees only itself
    assert not causal[0, 2:, :2].any()  # real queries never see padding
    assert causal[1].equal(torch.ones(5, 5).tril().bool())
    assert prefix[1, 0, 2] and not causal[1, 0, 2]  # the prompt attends bidirectionally in a prefix LM
    assert not prefix[1, 2, 3]  # …but never into the generated part


@pytest.mark.parametrize("attention,position", [("causal", "learned"), ("prefix_causal", "rope")])
def test_kv_cache_greedy_equals_recomputation(attention, position):
    m = ar_model(attention, position, n_kv_heads=2)
    free = ARDecoder(max_new_tokens=10).decode(m, PROMPTS, eos_id=-1, pad_id=0)[0]
    eos = free[0][3]  # a token row 0 really produces: rows finish at different steps
    cached, steps = ARDecoder(max_new_tokens=10).decode(m, PROMPTS, eos_id=eos, pad_id=0)
    full, _ = ARDecoder(max_new_tokens=10, use_cache=False).decode(m, PROMPTS, eos_id=eos, pad_id=0)
    refs = [reference_greedy(m, p, eos, 10) for p in PROMPTS]
    assert cached == refs and full == refs
    assert steps.tolist() == [len(r) for r in refs]
    assert len({len(r) for r in cached}) > 2 and any(len(r) == 10 for r in cached)  # rows leave at different steps


@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_one_equals_greedy(use_cache):
    m = ar_model("prefix_causal")
    free = ARDecoder(max_new_tokens=8).decode(m, PROMPTS, eos_id=-1, pad_id=0)[0]
    eos = free[1][2]
    greedy = ARDecoder(max_new_tokens=8).decode(m, PROMPTS, eos_id=eos, pad_id=0)
    beam = ARDecoder(beam_size=1, max_new_tokens=8, use_cache=use_cache)._beam  # force the beam code path
    from diffusion_lm.models.decoding import Runner

    rows, steps = beam(Runner(m, PROMPTS, 0, use_cache), eos, 8)
    assert rows == greedy[0]
    assert steps.tolist() == greedy[1].tolist()


@torch.no_grad()
def sequence_logp(model, prompt, seq):
    ids = torch.tensor([prompt + seq])
    logp = torch.log_softmax(model.logits(model(ids, prefix_len=torch.tensor([len(prompt)])).latent[0]), -1)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(seq))


def test_beam_covering_the_tree_is_exact():
    """With beams ≥ all prefixes, beam search returns the most likely sequence (checked exhaustively)."""
    m = ar_model("causal", vocab_size=5, max_len=16)
    prompt = [1, 2, 3]
    dec = ARDecoder(beam_size=25, max_new_tokens=3, length_penalty=0.0, min_new_tokens=3)
    got = dec.decode(m, [prompt], eos_id=4, pad_id=0)[0][0]
    best = max(itertools.product(range(4), repeat=3), key=lambda s: sequence_logp(m, prompt, list(s)))
    assert got == list(best)
    greedy = ARDecoder(max_new_tokens=3, min_new_tokens=3).decode(m, [prompt], eos_id=4, pad_id=0)[0][0]
    assert sequence_logp(m, prompt, got) >= sequence_logp(m, prompt, greedy) - 1e-6


def test_beam_search_with_cache_equals_without():
    m = ar_model("causal", position="rope")
    a = ARDecoder(beam_size=3, max_new_tokens=6).decode(m, PROMPTS, eos_id=7, pad_id=0)
    b = ARDecoder(beam_size=3, max_new_tokens=6, use_cache=False).decode(m, PROMPTS, eos_id=7, pad_id=0)
    assert a[0] == b[0] and a[1].tolist() == b[1].tolist()


def test_no_room_is_an_error():
    m = ar_model(max_len=8)
    with pytest.raises(ValueError, match="no room"):
        ARDecoder().decode(m, [[1] * 8], eos_id=2, pad_id=0)


def test_static_cache_matches_the_concatenating_cache():
    from diffusion_lm.models.decoding import StaticKVCache
    from diffusion_lm.models.layers import KVCache

    m = ar_model("causal", position="rope", n_kv_heads=2)
    ids = torch.randint(0, V, (3, 9))
    outs = []
    for cache in (KVCache(), StaticKVCache(capacity=9)):
        first = m(ids[:, :5], cache=cache).latent
        rest = [m(ids[:, i : i + 1], cache=cache).latent for i in range(5, 9)]
        outs.append(torch.cat([first, *rest], 1))
        assert cache.length == 9
    torch.testing.assert_close(outs[0], outs[1])
    with pytest.raises(RuntimeError, match="capacity"):
        m(ids[:, :1], cache=cache)
