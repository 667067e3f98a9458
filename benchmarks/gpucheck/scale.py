"""The sizes of every part: the GPU run, and the CPU smoke run that keeps the script working in CI.

One table per scale instead of branches in the parts: a part reads its numbers from the ``Scale`` it is
given and never asks which scale it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The GPT-2-small-size denoiser of bench_train.py's GPU defaults (its argparse defaults are that size).
GPT2_SMALL = dict(d_model=768, n_layers=12, n_heads=12, vocab=32768)


@dataclass(frozen=True)
class Scale:
    name: str
    device: str
    caps_s: dict[str, int]  # part → hard wall-clock cap of its subprocess
    # correctness: the demo recipe, bf16 + compile against fp32 eager
    correctness_steps: int
    sync_check_steps: int  # extra compiled steps run under torch.cuda.set_sync_debug_mode("error")
    compile_backend: str  # "inductor" on the GPU; the CPU smoke counts graph breaks with "eager" (no C++ build)
    demo_overrides: list[str] = field(default_factory=list)  # applied to every demo-recipe build
    # training speed: arguments of benchmarks/bench_train.py
    bench_train_args: list[str] = field(default_factory=list)
    # decoding speed
    decode_model: dict = field(default_factory=dict)
    decode_lengths: tuple[int, ...] = (64, 256)
    decode_batches: tuple[int, ...] = (1, 64)
    decode_steps: int = 10
    decode_repeats: int = 3
    decode_dtype: str = "bfloat16"
    # quality: trainer/data overrides of the demo recipe's AR stage, its diffusion stage, and the AR baseline
    quality_pretrain: list[str] = field(default_factory=list)
    quality_diffusion: list[str] = field(default_factory=list)
    quality_ar: list[str] = field(default_factory=list)


GPU = Scale(
    name="gpu",
    device="cuda",
    caps_s={"environment": 15, "correctness": 60, "training": 90, "decoding": 60,
            "quality_diffusion": 185, "quality_ar": 115},  # quality: 5 min for both
    correctness_steps=50,
    sync_check_steps=5,
    compile_backend="inductor",
    demo_overrides=["--trainer.accelerator=gpu", "--trainer.devices=1"],
    # bench_train's GPU defaults (GPT-2 small, bf16, compile, 16k-token batches) with fewer steps: two inductor
    # compiles of the model take most of the 90 s
    bench_train_args=["--lengths", "256", "--warmup", "10", "--steps", "40", "--measure-peak"],
    decode_model=GPT2_SMALL,
    # The Makefile's DEMO_ARGS (bf16, 16k-token batches) with the time of this check; max_steps sets the length
    # of the cosine decay: roughly what the small demo model takes in that time on an H200.
    # The demo recipe is AR2Diff within one budget: 2.5 min = 75 s autoregressive + 75 s masked diffusion.
    quality_pretrain=["--trainer.precision=bf16-mixed", "--trainer.max_time=00:00:01:15", "--trainer.max_steps=4000",
                      "--data.init_args.max_tokens=16384"],
    quality_diffusion=["--trainer.precision=bf16-mixed", "--trainer.max_time=00:00:01:15", "--trainer.max_steps=4000",
                       "--data.init_args.max_tokens=16384"],
    quality_ar=["--trainer.precision=bf16-mixed", "--trainer.max_time=00:00:01:30", "--trainer.max_steps=5000",
                "--data.init_args.max_tokens=16384"],
)

_SMOKE_DATA = ["--data.init_args.limit_train=64", "--data.init_args.limit_eval=8", "--data.init_args.bpe_vocab_size=300",
               "--data.init_args.max_tokens=512", "--data.init_args.eval_max_tokens=512"]
_SMOKE_MODEL = ["--model.init_args.denoiser.d_model=32", "--model.init_args.denoiser.n_layers=1",
                "--model.init_args.denoiser.n_heads=2"]
_SMOKE_TRAIN = ["--trainer.precision=32-true", "--trainer.max_time=null", "--trainer.max_steps=3"]

SMOKE = Scale(
    name="smoke",
    device="cpu",
    # a safety net, not a budget: each part takes 5–25 s on 2 idle cores, but CI's cores are shared
    caps_s={"environment": 240, "correctness": 240, "training": 240, "decoding": 240,
            "quality_diffusion": 240, "quality_ar": 240},
    correctness_steps=6,
    sync_check_steps=2,
    compile_backend="eager",
    demo_overrides=["--trainer.accelerator=cpu", "--trainer.devices=1", *_SMOKE_DATA, *_SMOKE_MODEL],
    bench_train_args=["--device", "cpu", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--vocab", "512",
                      "--lengths", "32", "--tokens-per-batch", "256", "--warmup", "1", "--steps", "3",
                      "--precision", "32-true", "--no-compile", "--num-workers", "0", "--measure-peak"],
    decode_model=dict(d_model=32, n_layers=1, n_heads=2, vocab=512),
    decode_lengths=(8, 16),
    decode_batches=(1, 4),
    decode_steps=2,
    decode_repeats=1,
    decode_dtype="float32",
    quality_pretrain=_SMOKE_TRAIN,
    quality_diffusion=_SMOKE_TRAIN,
    quality_ar=_SMOKE_TRAIN,
)

SCALES = {s.name: s for s in (GPU, SMOKE)}
