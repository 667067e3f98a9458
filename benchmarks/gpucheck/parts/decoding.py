"""Part 4: decoding speed — AR with the KV cache vs continuous diffusion (DDIM, K steps) vs masked diffusion
(K steps), each producing exactly N target tokens per prompt, at every batch size and output length.

The three decoders are the project's own (``ARDecoder``, ``DDIMSampler`` with the length pass the recipe runs,
``DiscreteSampler`` over ``MaskedDiffusion``) on one denoiser size with random weights (speed does not depend
on them), timed as ``benchmarks/decode_speed.py`` times them. tokens/s = batch · N / seconds.
"""

from __future__ import annotations

from argparse import Namespace

import torch

from benchmarks.decode_speed import EOS, PAD, SEP, build
from benchmarks.decode_speed_continuous import diffusion_decode
from benchmarks.timing import timed
from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import DDIMSampler, DiscreteSampler, GaussianDiffusion, MaskedDiffusion
from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.decoding import ARDecoder

from ..scale import Scale

PROMPT = 32


def models(scale: Scale, max_len: int) -> dict[str, Denoiser]:
    m = scale.decode_model
    # fp32 weights under bf16 autocast (below): the Gaussian sampler's noise stays fp32, as in training
    ns = Namespace(**m, position="rope", device=scale.device, dtype="float32")
    torch.manual_seed(0)
    continuous = Denoiser(DenoiserConfig(vocab_size=m["vocab"], d_model=m["d_model"], n_layers=m["n_layers"],
                                         n_heads=m["n_heads"], max_len=max_len, dropout=0.0, position="rope",
                                         embed_dim=64, attention="prefix", length_classes=max_len + 1))
    return {"ar": build(ns, "causal", max_len, timestep=False),
            "continuous": continuous.to(scale.device).eval(),
            "masked": build(ns, "prefix", max_len, timestep=True)}


def decoders(scale: Scale, nets: dict[str, Denoiser], B: int, N: int, vocab: int):
    """name → a function decoding B random prompts to N tokens each."""
    g = torch.Generator().manual_seed(B * 1000 + N)
    src = torch.randint(5, vocab - 1, (B, PROMPT), generator=g)
    prompts = [row + [SEP] for row in src.tolist()]
    batch = build_batch(src.tolist(), None, sep_id=SEP, eos_id=EOS, pad_id=PAD, tgt_lengths=[N] * B)
    batch = {k: v.to(scale.device) for k, v in batch.items()}
    ar = ARDecoder(max_new_tokens=N, min_new_tokens=N)  # EOS forbidden until N: no row stops early
    ddim = DDIMSampler(steps=scale.decode_steps)
    masked = DiscreteSampler(steps=scale.decode_steps, early_stop=False)
    mask = MaskedDiffusion(mask_id=vocab - 1)
    return {
        "ar": lambda: ar.decode(nets["ar"], prompts, EOS, PAD),
        "continuous": lambda: diffusion_decode(nets["continuous"], GaussianDiffusion(), ddim, src.to(scale.device), N),
        "masked": lambda: masked.generate(nets["masked"], mask, batch),
    }


@torch.inference_mode()
def run(scale: Scale, opts) -> dict:
    dtype = getattr(torch, scale.decode_dtype)
    amp = torch.autocast(torch.device(scale.device).type, dtype=dtype, enabled=dtype != torch.float32)
    nets = models(scale, PROMPT + max(scale.decode_lengths) + 2)
    rows = []
    out = {"model": scale.decode_model, "prompt_len": PROMPT, "steps_K": scale.decode_steps,
           "dtype": scale.decode_dtype, "repeats": scale.decode_repeats, "rows": rows}
    with amp:
        for B in scale.decode_batches:
            for N in scale.decode_lengths:
                row = {"batch": B, "length": N}
                for name, fn in decoders(scale, nets, B, N, scale.decode_model["vocab"]).items():
                    sec = timed(fn, scale.device, scale.decode_repeats, warmup=True)
                    row[f"{name}_s"], row[f"{name}_tokens_per_s"] = sec, B * N / sec
                row["continuous_vs_ar"] = row["continuous_tokens_per_s"] / row["ar_tokens_per_s"]
                row["masked_vs_ar"] = row["masked_tokens_per_s"] / row["ar_tokens_per_s"]
                rows.append(row)
                opts.emit(out)  # each finished row survives the cap
                print(f"batch {B} length {N}: " + ", ".join(f"{k} {row[f'{k}_tokens_per_s']:,.0f} tok/s"
                                                            for k in ("ar", "continuous", "masked")), flush=True)
    return out
