"""Decoding speed: few-step continuous diffusion vs autoregressive KV-cache greedy decoding.

Both use the one shared :class:`~diffusion_lm.models.Denoiser` with the same width and depth:

* diffusion — prefix attention, latent width ``--embed-dim``, self-conditioning, length head: one
  source-only pass predicts the target length, then K DDIM steps denoise the whole target at once
  (``DDIMSampler``, exactly what ``diffusion-lm test`` runs);
* autoregressive — causal attention, :class:`~diffusion_lm.models.decoding.ARDecoder` greedy with the
  KV cache: one prefill pass over ``[src] [SEP]`` that yields the first target token, then one
  single-token pass for each further one (EOS forbidden until ``--tgt-len``, so no row stops early).

Speed does not depend on the weights, so both models are randomly initialised; every sequence
decodes exactly ``--tgt-len`` target tokens (no early EOS) so the two do the same amount of output.
tokens/s = batch · tgt_len / wall time (median of ``--repeats`` after one warm-up).

    python benchmarks/decode_speed_continuous.py                                     # CPU, fp32
    python benchmarks/decode_speed_continuous.py --device cuda --dtype bfloat16      # GPU
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.timing` when run as a script

from benchmarks.timing import timed
from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import DDIMSampler, GaussianDiffusion
from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.decoding import ARDecoder

SEP, EOS, PAD = 2, 3, 0


def source_batch(batch: int, src_len: int, vocab: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(5, vocab, (batch, src_len), generator=g).to(device)


@torch.no_grad()
def diffusion_decode(model: Denoiser, process: GaussianDiffusion, sampler: DDIMSampler, src: torch.Tensor, tgt_len: int):
    rows = src.tolist()
    probe = build_batch(rows, None, sep_id=SEP, eos_id=EOS, pad_id=PAD, tgt_lengths=[1] * len(rows))
    probe = {k: v.to(src.device) for k, v in probe.items()}
    process.predict_lengths(model, probe, model.config.max_len)  # the length pass the recipe runs
    gen = build_batch(rows, None, sep_id=SEP, eos_id=EOS, pad_id=PAD, tgt_lengths=[tgt_len] * len(rows))
    gen = {k: v.to(src.device) for k, v in gen.items()}
    return sampler.generate(model, process, gen).tokens


def ar_decode(model: Denoiser, src: torch.Tensor, tgt_len: int) -> list[list[int]]:
    """Greedy KV-cache decoding of exactly ``tgt_len`` tokens after ``[src] [SEP]``."""
    decoder = ARDecoder(max_new_tokens=tgt_len, min_new_tokens=tgt_len)  # EOS forbidden until tgt_len
    return decoder.decode(model, [row + [SEP] for row in src.tolist()], EOS, PAD)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10])
    ap.add_argument("--src-len", type=int, default=16)
    ap.add_argument("--tgt-len", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=6000)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    max_len = args.src_len + args.tgt_len + 2
    common = dict(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                  max_len=max_len, dropout=0.0, position="rope")
    torch.manual_seed(0)
    diff = Denoiser(DenoiserConfig(**common, embed_dim=args.embed_dim, attention="prefix",
                                   length_classes=max_len + 1)).to(device).eval()
    ar = Denoiser(DenoiserConfig(**common, attention="causal", timestep_embedding=False, self_condition=False)).to(device).eval()
    process = GaussianDiffusion()
    results = []
    with amp:
        for B in args.batch_sizes:
            src = source_batch(B, args.src_len, args.vocab, device)
            sec = timed(lambda src=src: ar_decode(ar, src, args.tgt_len), device, args.repeats)
            results.append({"decoder": "autoregressive KV-cache greedy", "steps": args.tgt_len, "batch": B,
                            "seconds": sec, "tokens_per_s": B * args.tgt_len / sec})
            for k in args.steps:
                sampler = DDIMSampler(steps=k)
                sec = timed(lambda sampler=sampler, src=src: diffusion_decode(diff, process, sampler, src, args.tgt_len),
                            device, args.repeats)
                results.append({"decoder": f"diffusion DDIM K={k}", "steps": k + 1, "batch": B,
                                "seconds": sec, "tokens_per_s": B * args.tgt_len / sec})
    print(f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} d_model={args.d_model} "
          f"n_layers={args.n_layers} src_len={args.src_len} tgt_len={args.tgt_len}")
    print("| decoder | batch | forward passes | seconds | tokens/s |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['decoder']} | {r['batch']} | {r['steps']} | {r['seconds']:.4f} | {r['tokens_per_s']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
