"""Training throughput of the from-scratch recipe through the Lightning Trainer vs. a bare PyTorch loop.

    python benchmarks/bench_train.py                      # GPU: GPT-2-small-size denoiser, L = 128, 256, 1024
    python benchmarks/bench_train.py --device cpu --d-model 128 --n-layers 2 --n-heads 2 --vocab 4096 \\
        --lengths 64 128 --tokens-per-batch 2048 --warmup 3 --steps 12 --precision 32-true --no-compile

Both loops train the same model (``Denoiser`` + ``GaussianDiffusion`` loss with self-conditioning, uniform t,
AdamW — fused on CUDA — with warm-up/cosine LR, EMA of the weights) on the same batches from the same loader
(the real collation: prefix-LM layout, ``BucketBatchSampler``, pinned memory, worker processes), with the same
precision and ``torch.compile`` setting. The Lightning side is ``FromScratch`` in ``L.Trainer`` with its default
callbacks (throughput monitor, non-finite guard, RNG state) and a TensorBoard logger; the bare side is a plain
``for batch in loader`` loop written here. Their ratio is the framework's overhead.

Every synthetic example is exactly L tokens (source of random length, SEP, target, EOS), so batches hold no
padding and tokens/s counts real tokens only. MFU = model FLOPs (``diffusion_lm.flops``, 2 per multiply-add,
the self-conditioning pass included) / time / peak: the datasheet dense peak for the precision where Lightning
knows the device, and — with ``--measure-peak`` — the measured rate of a large matmul on this device.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from typing_extensions import override

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import sync, timed
from diffusion_lm.data.loader import ResumableDataLoader
from diffusion_lm.data.sampler import BucketBatchSampler
from diffusion_lm.data.seq2seq import PairDataset, Seq2SeqCollator
from diffusion_lm.diffusion import GaussianDiffusion, UniformSampler
from diffusion_lm.flops import StepFlops
from diffusion_lm.models import EMA, Denoiser, DenoiserConfig
from diffusion_lm.recipes import FromScratch
from diffusion_lm.recipes.base import lr_lambda

SEP, EOS, PAD, FIRST_TOKEN = 2, 3, 0, 5


# ---------------------------------------------------------------------------------------------- data
class _Ids:
    """The three special ids the collator needs (stands in for a tokenizer)."""

    sep_id, eos_id, pad_id = SEP, EOS, PAD


def synthetic_pairs(n: int, length: int, vocab: int, seed: int = 0) -> PairDataset:
    """``n`` random (source, target) pairs whose layout ``[src] SEP [tgt] EOS`` is exactly ``length`` tokens."""
    rng = np.random.default_rng(seed)
    src_len = rng.integers(length // 4, 3 * length // 4, size=n)
    srcs = [rng.integers(FIRST_TOKEN, vocab, size=k).tolist() for k in src_len]
    tgts = [rng.integers(FIRST_TOKEN, vocab, size=length - 2 - k).tolist() for k in src_len]
    return PairDataset(srcs, tgts, [{"src": "", "tgt": "", "refs": [""]} for _ in range(n)])


def make_loader(ds: PairDataset, tokens_per_batch: int, workers: int) -> ResumableDataLoader:
    lengths = ds.src_len() + ds.tgt_len() + 2
    sampler = BucketBatchSampler(None, lengths, max_tokens=tokens_per_batch, max_batch_size=1 << 20, seed=0)
    return ResumableDataLoader(ds, batch_sampler=sampler, collate_fn=Seq2SeqCollator(_Ids()), num_workers=workers,
                               persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())


class SyntheticData(L.LightningDataModule):
    def __init__(self, ds: PairDataset, tokens_per_batch: int, workers: int) -> None:
        super().__init__()
        self.ds, self.tokens_per_batch, self.workers = ds, tokens_per_batch, workers

    def train_dataloader(self):
        return make_loader(self.ds, self.tokens_per_batch, self.workers)


# ---------------------------------------------------------------------------------------------- timing
class StepTimer(L.Callback):
    """Wall time from the start of step ``warmup`` to the end of training (device synchronised at both ends)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t0 = self.t1 = None

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.t0 is None:
            sync(pl_module.device)
            self.t0 = time.perf_counter()

    @override
    def on_train_end(self, trainer, pl_module):
        sync(pl_module.device)
        self.t1 = time.perf_counter()


def denoiser_config(args: argparse.Namespace, length: int) -> DenoiserConfig:
    return DenoiserConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                          max_len=length, dropout=args.dropout, attention="prefix")


def recipe_kwargs(args: argparse.Namespace, length: int) -> dict:
    return dict(denoiser=denoiser_config(args, length), vocab_size=args.vocab, lr=3e-4, warmup_steps=args.warmup,
                ema_decay=0.9999, compile=args.compile, process=GaussianDiffusion(), timestep_sampler=UniformSampler(),
                val_generate_batches=0)


def run_lightning(args, length: int, ds: PairDataset, device: torch.device) -> float:
    torch.manual_seed(0)
    model = FromScratch(**recipe_kwargs(args, length))
    timer = StepTimer(args.warmup)
    with tempfile.TemporaryDirectory() as logdir:
        trainer = L.Trainer(
            accelerator=device.type, devices=1, precision=args.precision, max_steps=args.warmup + args.steps,
            logger=L.pytorch.loggers.TensorBoardLogger(logdir, name="bench"), log_every_n_steps=args.log_every,
            enable_checkpointing=False, enable_progress_bar=args.progress_bar, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer],
        )
        trainer.fit(model, SyntheticData(ds, args.tokens_per_batch, args.num_workers))
    return timer.t1 - timer.t0


def run_bare(args, length: int, ds: PairDataset, device: torch.device) -> float:
    """The same training step written as a plain PyTorch loop."""
    torch.manual_seed(0)
    model = Denoiser(FromScratch(**recipe_kwargs(args, length)).denoiser.config).to(device)  # with its length head
    ema = EMA(model, 0.9999)
    process, t_sampler = GaussianDiffusion(), UniformSampler()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=3e-4, betas=(0.9, 0.98), fused=device.type == "cuda" or None,
    )
    total = args.warmup + args.steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, args.warmup, total, "cosine", 0.1))
    if args.compile:
        model.compile()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    model.train()
    step, t0 = 0, None
    for batch in make_loader(ds, args.tokens_per_batch, args.num_workers):
        if step == args.warmup:
            sync(device)
            t0 = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        t, w = t_sampler.sample(batch["input_ids"].shape[0], device)
        with autocast:
            loss = process.training_loss(model, batch, t, w).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        ema.update(model)
        step += 1
        if step == total:
            break
    sync(device)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- peak
def measured_matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul (median of repeats, inputs rotated so caches do not help)."""
    n = 8192 if device.type == "cuda" else 1024
    xs = [torch.randn(n, n, device=device, dtype=dtype) for _ in range(3)]
    pairs = itertools.cycle([(xs[i], xs[(i + 1) % 3]) for i in range(3)])

    def four_matmuls() -> None:
        a, b = next(pairs)
        for _ in range(4):
            a @ b

    four_matmuls()  # a second warm-up call: timed() runs one more
    return 2 * n**3 / (timed(four_matmuls, device, repeats=10) / 4)


def datasheet_peak(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    from lightning.fabric.utilities.throughput import get_available_flops

    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
    peak = get_available_flops(device, dtype)
    return float(peak) if peak else None


# ---------------------------------------------------------------------------------------------- main
def _quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> dict:
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if gpu else "cpu")
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 1024])
    p.add_argument("--tokens-per-batch", type=int, default=16384)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--n-layers", type=int, default=12)
    p.add_argument("--n-heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=15, help="untimed steps (compilation, allocator warm-up)")
    p.add_argument("--steps", type=int, default=50, help="timed steps")
    p.add_argument("--repeats", type=int, default=1, help="runs of each loop per length (order alternates); median")
    p.add_argument("--precision", default="bf16-mixed" if gpu else "32-true", choices=["bf16-mixed", "32-true"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=gpu)
    p.add_argument("--num-workers", type=int, default=4 if gpu else 0)
    p.add_argument("--log-every", type=int, default=50, help="trainer.log_every_n_steps of the Lightning run")
    p.add_argument("--progress-bar", action="store_true", help="show Lightning's progress bar (off: quiet output)")
    p.add_argument("--measure-peak", action="store_true", help="also time a large matmul for a measured MFU")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    _quiet()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.set_float32_matmul_precision("high")

    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else torch.float32
    sheet = datasheet_peak(device, args.precision)
    measured = measured_matmul_peak(device, dtype) if args.measure_peak else None
    cfg0 = denoiser_config(args, max(args.lengths))
    model0 = Denoiser(cfg0)
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "lightning": L.__version__, "precision": args.precision, "compile": args.compile,
        "params_M": round(model0.num_parameters() / 1e6, 1), "config": vars(args) | {"out": str(args.out)},
        "peak_datasheet_tflops": sheet and sheet / 1e12, "peak_measured_matmul_tflops": measured and measured / 1e12,
    }
    del model0
    rows = []
    for length in args.lengths:
        B = args.tokens_per_batch // length
        if B < 1:
            raise SystemExit(f"--tokens-per-batch {args.tokens_per_batch} is smaller than the length {length}")
        ds = synthetic_pairs(B * (args.warmup + args.steps + 1), length, args.vocab)
        tokens = B * length * args.steps  # no padding: every position is a real token
        target_share = float((ds.tgt_len() + 1).sum() / (ds.src_len() + ds.tgt_len() + 2).sum())
        flops = StepFlops(denoiser_config(args, length), grad_free_passes=GaussianDiffusion().self_condition_prob)
        step_flops = flops(tokens, length, head_tokens=tokens * target_share)
        result = {"length": length, "batch": f"{B}x{length}"}
        for name in ("lightning", "bare"):
            result[name] = {"seconds": [], "peak_mem_gib": None}
        for r in range(args.repeats):
            order = (("lightning", run_lightning), ("bare", run_bare))
            for name, run in (order if r % 2 == 0 else order[::-1]):
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                torch._dynamo.reset()
                seconds = run(args, length, ds, device)
                result[name]["seconds"].append(seconds)
                if device.type == "cuda":
                    result[name]["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        for name in ("lightning", "bare"):
            s = statistics.median(result[name]["seconds"])
            result[name]["tokens_per_sec"] = tokens / s
            result[name]["tflops"] = step_flops / s / 1e12
            result[name]["mfu_datasheet"] = step_flops / s / sheet if sheet else None
            result[name]["mfu_measured"] = step_flops / s / measured if measured else None
        result["ratio"] = result["lightning"]["tokens_per_sec"] / result["bare"]["tokens_per_sec"]
        rows.append(result)
        print(f"L={length}: lightning {result['lightning']['tokens_per_sec']:,.0f} tok/s, "
              f"bare {result['bare']['tokens_per_sec']:,.0f} tok/s, ratio {result['ratio']:.3f}", flush=True)

    print_table(info, rows)
    out = {"info": info, "results": rows}
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def print_table(info: dict, rows: list[dict]) -> None:
    print(f"\ndevice: {info['device']} | torch {info['torch']} | lightning {info['lightning']} | {info['precision']}"
          f" | compile={info['compile']} | {info['params_M']}M params | peak: datasheet "
          f"{_fmt(info['peak_datasheet_tflops'], '.4g')} TFLOP/s, "
          f"measured matmul {_fmt(info['peak_measured_matmul_tflops'], '.4g')} TFLOP/s")
    head = ("| L | batch | Lightning tok/s | bare tok/s | ratio | Lightning MFU | bare MFU | Lightning TFLOP/s "
            "| Lightning peak mem GiB | bare peak mem GiB |")
    print(head)
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    def mfu(d: dict) -> str:
        return _fmt(d["mfu_datasheet"], ".1%") + (f" ({_fmt(d['mfu_measured'], '.1%')} meas.)" if d["mfu_measured"] else "")

    for r in rows:
        lt, bt = r["lightning"], r["bare"]
        print(f"| {r['length']} | {r['batch']} | {lt['tokens_per_sec']:,.0f} | {bt['tokens_per_sec']:,.0f} | {r['ratio']:.3f} "
              f"| {mfu(lt)} | {mfu(bt)} | {lt['tflops']:.3g} | {_fmt(lt['peak_mem_gib'], '.1f')} | {_fmt(bt['peak_mem_gib'], '.1f')} |")


if __name__ == "__main__":
    main()
