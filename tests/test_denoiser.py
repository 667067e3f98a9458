import pytest
import torch

from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.layers import KVCache


def model(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, max_len=24, dropout=0.0)
    cfg.update(kw)
    m = Denoiser(DenoiserConfig(**cfg)).eval()
    # non-zero timestep and self-conditioning weights so those paths are exercised
    torch.nn.init.normal_(m.time_embed.fc2.weight, std=0.02)
    torch.nn.init.normal_(m.self_cond_proj.weight, std=0.02)
    return m


@pytest.mark.parametrize("kw", [{}, {"embed_dim": 8}, {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu",
                                                          "bias": False, "n_kv_heads": 2, "tie_embeddings": False}])
def test_shapes(kw):
    m = model(length_classes=7, **kw)
    B, L = 3, 10
    ids = torch.randint(0, 50, (B, L))
    out = m(ids, timesteps=torch.rand(B, L))
    E = kw.get("embed_dim", 32)
    assert out.latent.shape == (B, L, E) and out.hidden.shape == (B, L, 32)
    assert m.logits(out.latent).shape == (B, L, 50)
    assert m.predict_length(out.hidden[:, 0]).shape == (B, 7)
    emb = torch.randn(B, L, E)
    assert m(inputs_embeds=emb, self_cond=torch.randn(B, L, E)).latent.shape == (B, L, E)


def test_exactly_one_input():
    m = model()
    with pytest.raises(ValueError):
        m()
    with pytest.raises(ValueError):
        m(torch.zeros(1, 2, dtype=torch.long), inputs_embeds=torch.zeros(1, 2, 32))


def test_vocab_must_be_set():
    with pytest.raises(ValueError, match="vocab_size"):
        Denoiser(DenoiserConfig(vocab_size=0))


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_causal_does_not_see_the_future(position):
    m = model(attention="causal", position=position)
    ids = torch.randint(0, 50, (2, 12))
    ref = m(ids).latent
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 50
    out = m(changed).latent
    torch.testing.assert_close(out[:, :8], ref[:, :8])
    assert not torch.allclose(out[:, 8:], ref[:, 8:])


@pytest.mark.parametrize("mode", ["bidirectional", "prefix", "causal"])
def test_padding_does_not_change_real_positions(mode):
    m = model(attention=mode)
    ids = torch.randint(0, 50, (2, 12))
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[0, 9:] = False
    prefix = torch.tensor([4, 5])
    t = torch.rand(2, 12)
    ref = m(ids, timesteps=t, valid=valid, prefix_len=prefix).latent
    other = ids.clone()
    other[0, 9:] = (other[0, 9:] + 7) % 50  # different content in the padding
    out = m(other, timesteps=t, valid=valid, prefix_len=prefix).latent
    torch.testing.assert_close(out[0, :9], ref[0, :9])
    torch.testing.assert_close(out[1], ref[1])  # other rows untouched


def test_prefix_source_ignores_target_but_target_sees_source():
    m = model(attention="prefix")
    ids = torch.randint(0, 50, (1, 12))
    prefix = torch.tensor([5])
    ref = m(ids, prefix_len=prefix).latent
    tgt_changed = ids.clone()
    tgt_changed[0, 6:] = (tgt_changed[0, 6:] + 1) % 50
    out = m(tgt_changed, prefix_len=prefix).latent
    torch.testing.assert_close(out[0, :5], ref[0, :5])  # source positions are blind to the target
    src_changed = ids.clone()
    src_changed[0, 1] = (src_changed[0, 1] + 1) % 50
    out = m(src_changed, prefix_len=prefix).latent
    assert not torch.allclose(out[0, 6:], ref[0, 6:])  # the target does read the source


def test_bidirectional_sees_everything():
    m = model(attention="bidirectional")
    ids = torch.randint(0, 50, (1, 10))
    ref = m(ids).latent
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 50
    assert not torch.allclose(m(changed).latent[0, 0], ref[0, 0])


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_kv_cache_matches_full_causal_pass(position):
    m = model(attention="causal", position=position, n_kv_heads=2)
    ids = torch.randint(0, 50, (2, 10))
    full = m(ids).latent
    cache = KVCache()
    first = m(ids[:, :6], cache=cache).latent
    steps = [m(ids[:, i : i + 1], cache=cache).latent for i in range(6, 10)]
    torch.testing.assert_close(torch.cat([first] + steps, dim=1), full, atol=1e-5, rtol=1e-4)
    # several new tokens at once after a cache (speculative / chunked prefill)
    cache = KVCache()
    m(ids[:, :4], cache=cache)
    torch.testing.assert_close(m(ids[:, 4:], cache=cache).latent, full[:, 4:], atol=1e-5, rtol=1e-4)


def test_zero_initialised_timestep_and_self_condition_change_nothing():
    torch.manual_seed(0)
    m = Denoiser(DenoiserConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, max_len=24, dropout=0.0)).eval()
    ids = torch.randint(0, 50, (2, 8))
    plain = m(ids).latent
    torch.testing.assert_close(m(ids, timesteps=torch.rand(2, 8), self_cond=torch.randn(2, 8, 32)).latent, plain)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        DenoiserConfig(vocab_size=5, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="attention"):
        DenoiserConfig(vocab_size=5, attention="sideways")


def test_segment_embedding_starts_at_zero_and_marks_only_target_positions():
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, d_model=32, n_layers=1, n_heads=2, max_len=16, dropout=0.0, embed_dim=16)
    plain, seg = Denoiser(DenoiserConfig(**cfg)), Denoiser(DenoiserConfig(**cfg, segment_embedding=True))
    seg.load_state_dict(plain.state_dict(), strict=False)
    ids, plen = torch.randint(5, 40, (2, 9)), torch.tensor([3, 5])
    torch.testing.assert_close(seg(ids, prefix_len=plen).latent, plain(ids, prefix_len=plen).latent)  # zero init
    with torch.no_grad():
        seg.segment.fill_(1.0)
    h_plain = plain.in_proj(plain.wte(ids)) + plain.wpe(torch.arange(9))  # + learned positions
    marked = torch.arange(9)[None, :] >= plen[:, None]
    captured = {}
    seg.drop.register_forward_hook(lambda m, i, o: captured.setdefault("h", i[0]))
    seg(ids, prefix_len=plen)
    torch.testing.assert_close(captured["h"] - h_plain, marked[..., None].float().expand(-1, -1, 32))


def test_projections_of_unit_gain_behind_a_narrow_embedding():
    torch.manual_seed(0)
    m = Denoiser(DenoiserConfig(vocab_size=4000, d_model=128, n_layers=2, n_heads=4, embed_dim=64))
    assert abs(m.wte.weight.std().item() - 0.02) < 2e-3  # the table keeps GPT-2's init
    assert abs(m.in_proj.weight.std().item() - 64 ** -0.5) < 0.01 and abs(m.out_proj.weight.std().item() - 128 ** -0.5) < 0.01
