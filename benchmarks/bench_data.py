"""Data set-up at scale: first-run and cached ``setup("fit")`` time, peak memory per DDP rank, loader tokens/s.

    python benchmarks/bench_data.py --pairs 1000000 --out runs/bench_data

Writes a synthetic local dataset of ``--pairs`` training pairs (the Tatoeba en-de training sentences of the
data root, repeated in order: ~8 BPE tokens a side, the length profile of short-sentence MT) plus small
validation/test splits, trains the BPE once, then measures, each phase in a fresh process:

* ``first``: ``prepare_data()`` + ``setup("fit")`` with an empty token cache (tokenised in parallel, written);
* ``cached``: the same with the cache built (every later launch and every other rank);
* ``memory`` (``--in-memory``): the in-memory path (``token_cache=False``): every process reads all rows,
  tokenises them in its main thread and keeps the text;
* ``ddp``: ``fit`` of a tiny denoiser for a few steps with 2 ``ddp_spawn`` CPU ranks on the cached data;
  each rank reports its peak RSS.

Peak RSS is ``ru_maxrss`` of the process (for ``first`` also of its tokenising workers). Loader tokens/s are
the real (non-padding) tokens per second of the training loader alone (``num_workers=0``), as in
``benchmarks/bench_loader.py``. The JSON summary goes to ``--out``/bench_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
from typing_extensions import override

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loader import measure

SOURCE = "tatoeba_en_de"
DATASET = "synthetic_pairs"


def write_dataset(data_root: Path, out_root: Path, pairs: int, eval_pairs: int) -> None:
    """``out_root/synthetic_pairs/{train,validation,test}.jsonl.gz``: the source rows cycled to ``pairs`` rows."""
    from diffusion_lm.data.atomic import write_jsonl_atomic
    from diffusion_lm.data.jsonl import iter_jsonl

    rows = [{"src": r["src"], "tgt": r["tgt"]} for r in iter_jsonl(data_root / SOURCE / "train.jsonl.gz")]
    folder = out_root / DATASET
    write_jsonl_atomic(folder / "train.jsonl.gz", ({**rows[i % len(rows)], "id": i} for i in range(pairs)))
    for split in ("validation", "test"):
        write_jsonl_atomic(folder / f"{split}.jsonl.gz", ({**rows[-1 - i], "id": i} for i in range(eval_pairs)))


def datamodule(args, **kw):
    from diffusion_lm.data import Seq2SeqDataModule

    return Seq2SeqDataModule(dataset=DATASET, data_dir=str(args.out / "data"), cache_dir=str(args.out / "cache"),
                             bpe_vocab_size=args.vocab, max_src_len=64, max_tgt_len=64, max_tokens=args.max_tokens,
                             num_workers=0, **kw)


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def phase_bpe(args) -> dict:
    t0 = time.perf_counter()
    datamodule(args).tokenizer  # noqa: B018 — trains and caches the BPE
    return {"bpe_seconds": time.perf_counter() - t0}


def phase_setup(args, token_cache: bool) -> dict:
    dm = datamodule(args, token_cache=token_cache)
    t0 = time.perf_counter()
    dm.prepare_data()
    dm.setup("fit")
    seconds = time.perf_counter() - t0
    out = {"setup_seconds": seconds, "peak_rss_mb": peak_rss_mb(), "worker_peak_rss_mb": peak_rss_mb(children=True),
           "train_examples": len(dm.datasets["train"])}
    out.update({f"loader_{k}": v for k, v in measure(dm, args.loader_batches).items()})
    if token_cache:
        from diffusion_lm.data.pair_cache import cache_size

        path = dm.build_cache("train")
        out.update(cache=str(path), cache_mb=cache_size(path) / 2**20)
    return out


class RankMemory(L.Callback):
    """Each rank writes its peak RSS when training ends (at module level so that ``ddp_spawn`` pickles it)."""

    def __init__(self, report: Path) -> None:
        self.report = report

    @override
    def on_train_end(self, trainer, pl_module) -> None:
        row = {"rank": trainer.global_rank, "peak_rss_mb": peak_rss_mb(), "steps": trainer.global_step}
        (self.report / f"rank{trainer.global_rank}.json").write_text(json.dumps(row))


def phase_ddp(args) -> dict:
    from diffusion_lm.diffusion import DDIMSampler
    from diffusion_lm.models import DenoiserConfig
    from diffusion_lm.recipes import FromScratch

    report = args.out / "ddp_ranks"
    shutil.rmtree(report, ignore_errors=True)
    report.mkdir(parents=True)

    dm = datamodule(args)
    denoiser = DenoiserConfig(d_model=32, n_layers=1, n_heads=2, embed_dim=16, max_len=dm.max_len, dropout=0.0)
    model = FromScratch(denoiser=denoiser, vocab_size=dm.vocab_size, generator=DDIMSampler(steps=2), val_generate_batches=0)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=args.ddp_steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[RankMemory(report)])
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in range(2)]
    return {"ddp_fit_seconds": time.perf_counter() - t0, "ranks": ranks}


PHASES = {"bpe": phase_bpe, "first": lambda a: phase_setup(a, True), "cached": lambda a: phase_setup(a, True),
          "memory": lambda a: phase_setup(a, False), "ddp": phase_ddp}


def run_phase(args, phase: str) -> dict:
    """One phase in a fresh interpreter (clean peak RSS, no warm caches of this process)."""
    cmd = [sys.executable, __file__, "--phase", phase, "--out", str(args.out), "--vocab", str(args.vocab),
           "--max-tokens", str(args.max_tokens), "--loader-batches", str(args.loader_batches),
           "--ddp-steps", str(args.ddp_steps)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if res.returncode:
        sys.exit(f"phase {phase} failed:\n{res.stderr[-4000:]}")
    result = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{phase}: {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--eval-pairs", type=int, default=2000)
    p.add_argument("--out", type=Path, default=Path("runs/bench_data"))
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("DIFFUSION_LM_DATA", "data")))
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--loader-batches", type=int, default=300)
    p.add_argument("--ddp-steps", type=int, default=20)
    p.add_argument("--in-memory", action="store_true", help="also measure the in-memory path (slow, GBs of RSS)")
    p.add_argument("--no-ddp", action="store_true", help="skip the 2-rank ddp_spawn run")
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return

    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.perf_counter()
    write_dataset(args.data_root, args.out / "data", args.pairs, args.eval_pairs)
    summary: dict = {"pairs": args.pairs, "cpus": len(os.sched_getaffinity(0)), "write_seconds": time.perf_counter() - t0}
    for phase in ["bpe", "first", "cached", *(["memory"] if args.in_memory else []), *([] if args.no_ddp else ["ddp"])]:
        summary[phase] = run_phase(args, phase)
    (args.out / "bench_data.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
