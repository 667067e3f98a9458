"""Decoding speed: autoregressive (KV cache) vs discrete diffusion (K steps) — AR2Diff paper, Figure 3.

Both decoders run the same shared denoiser architecture (random weights: speed does not depend on them)
on a batch of prompts and produce exactly N target tokens: the AR decoder N cached steps (EOS is
forbidden, so no sequence stops early), the diffusion sampler K full passes over the prompt + N target
positions (early stopping off). Reported: median wall time per batch over ``--repeats`` runs after a
warm-up run.

    python benchmarks/decode_speed.py --out docs/ar2diff                      # CPU, reduced sizes
    python benchmarks/decode_speed.py --device cuda --dtype bfloat16 --d-model 1024 --n-layers 24 \\
        --lengths 64 128 256 512 1024 --batch-sizes 1 64 --out runs/decode_speed_gpu      # GPU

Writes ``<out>/decode_speed_<device>.csv``, ``.md`` (the table) and ``.png`` (the plot).
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.timing` when run as a script

from benchmarks.timing import timed
from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import DiscreteSampler, UniformDiffusion
from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.models.decoding import ARDecoder

EOS, PAD, SEP = 3, 0, 2


def build(args, attention: str, max_len: int, timestep: bool) -> Denoiser:
    torch.manual_seed(0)
    cfg = DenoiserConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                         max_len=max_len, dropout=0.0, attention=attention, position=args.position,
                         timestep_embedding=timestep, self_condition=False)
    return Denoiser(cfg).to(args.device, getattr(torch, args.dtype)).eval()


@torch.inference_mode()
def measure(args) -> list[dict]:
    rows = []
    max_len = args.prompt_len + max(args.lengths) + 1
    ar = build(args, "causal", max_len, timestep=False)
    diff = build(args, "prefix", max_len, timestep=True)
    process = UniformDiffusion(temperature=0.0, update_proportion=1.0)  # argmax: the cost is the denoiser passes
    sampler = DiscreteSampler(steps=args.steps, early_stop=False)
    g = torch.Generator().manual_seed(0)
    for B in args.batch_sizes:
        prompts = [torch.randint(5, args.vocab, (args.prompt_len,), generator=g).tolist() + [SEP] for _ in range(B)]
        for i, N in enumerate(args.lengths):
            warm = args.warmup == "all" or i == 0  # the first length of each batch size warms up always
            dec = ARDecoder(max_new_tokens=N, min_new_tokens=N)
            t_ar = timed(lambda dec=dec, prompts=prompts: dec.decode(ar, prompts, EOS, PAD), args.device, args.repeats, warm)
            batch = build_batch([p[:-1] for p in prompts], None, sep_id=SEP, eos_id=EOS, pad_id=PAD, tgt_lengths=[N] * B)
            batch = {k: v.to(args.device) for k, v in batch.items()}
            t_diff = timed(lambda batch=batch: sampler.generate(diff, process, batch), args.device, args.repeats, warm)
            row = {"batch": B, "length": N, "ar_s": t_ar, f"diffusion_{args.steps}_steps_s": t_diff,
                   "speedup": t_ar / t_diff}
            rows.append(row)
            print(f"batch {B:3d}  length {N:5d}  AR {t_ar:8.3f} s   diffusion({args.steps}) {t_diff:8.3f} s   "
                  f"AR/diffusion {t_ar / t_diff:6.2f}", flush=True)
    return rows


def write(rows: list[dict], args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"decode_speed_{args.device.split(':')[0]}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    diff_key = f"diffusion_{args.steps}_steps_s"
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    lines = [f"Time per batch (s), {machine}, {args.dtype}; model d_model={args.d_model}, n_layers={args.n_layers}, "
             f"vocab={args.vocab}, prompt {args.prompt_len} tokens; median of {args.repeats} runs "
             f"(warm-up: {args.warmup}).", "",
             f"| batch | output length | AR (KV cache) | diffusion ({args.steps} steps) | AR / diffusion |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['length']} | {r['ar_s']:.3f} | {r[diff_key]:.3f} | {r['speedup']:.2f} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for B in args.batch_sizes:
        sub = [r for r in rows if r["batch"] == B]
        ax.plot([r["length"] for r in sub], [r["ar_s"] for r in sub], "o-", label=f"AR, KV cache, batch {B}")
        ax.plot([r["length"] for r in sub], [r[diff_key] for r in sub], "s--", label=f"diffusion {args.steps} steps, batch {B}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("output length (tokens)")
    ax.set_ylabel("seconds per batch")
    ax.set_title(f"Decoding time, {machine}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print(f"wrote {stem}.csv/.md/.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--steps", type=int, default=10, help="diffusion denoising steps K")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--position", choices=["learned", "rope"], default="learned")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", choices=["all", "first"], default="all",
                   help="an untimed run before every measurement, or only before the first length of a batch size")
    p.add_argument("--out", default="runs/decode_speed")
    args = p.parse_args()
    write(measure(args), args)


if __name__ == "__main__":
    main()
