"""Glancing training (GLAT) for masked diffusion."""

import torch

from diffusion_lm.diffusion import GlancingMaskedDiffusion

from .test_discrete import MASK, V, batch, tiny_model


def test_glancing_reveals_ratio_times_the_first_pass_errors():
    model, b = tiny_model(), batch(B=6, tgt=10)
    proc = GlancingMaskedDiffusion(mask_id=MASK, ratio=0.5, mix=0.0)
    tm, ids = b["target_mask"], b["input_ids"]
    with torch.no_grad():
        full = torch.where(tm, torch.full_like(ids, MASK), ids)
        guess = proc.denoise(model, b, full, tm.float()).logits.argmax(-1)
    wrong = torch.zeros_like(tm)
    wrong[tm] = guess != ids[tm]
    torch.manual_seed(0)
    masked = proc.glance_mask(model, b)
    revealed = (tm & ~masked).sum(1)
    assert revealed.tolist() == torch.ceil(0.5 * wrong.sum(1).float()).long().tolist()  # GLAT eq. 7
    assert not (masked & ~tm).any()  # only the target is ever masked


def test_glancing_pass_trains_on_the_masked_tokens_with_their_share_as_t():
    model, b = tiny_model(), batch(B=4, tgt=9)
    proc = GlancingMaskedDiffusion(mask_id=MASK, ratio=1.0, mix=0.0)
    seen = {}
    forward = model.forward

    def spy(x, timesteps=None, **kw):
        seen["x"], seen["t"] = x, timesteps
        return forward(x, timesteps=timesteps, **kw)

    model.forward = spy
    torch.manual_seed(1)
    p = proc.passes(model, b, torch.rand(4))[0]
    tm = b["target_mask"]
    masked = (seen["x"] == MASK) & tm
    share = masked.sum(1).float() / tm.sum(1).float()
    torch.testing.assert_close(seen["t"][tm], share[:, None].expand_as(tm)[tm])  # t = masked share on the target
    assert (seen["t"][~tm] == 0).all()
    loss = proc.per_token_loss(p, b, torch.rand(4))
    assert (loss[tm & ~masked] == 0).all() and (loss[masked] > 0).all()
    assert proc.grad_free_passes(False) == 1.0 and V > MASK
