"""``make claims``: the three papers' claims measured on Multi30k en→de and CommonGen, 3 seeds per arm → ``docs/results.md``.

Every arm is ``experiments/demo.yaml`` (d128×3, 4k BPE, 2,048-token batches) with overlays, built by the
project's CLI exactly as ``diffusion-lm fit --config …`` builds it; the arms of a claim differ only in what
the claim is about. Diffusion arms that need to be above the noise floor on a CPU start from one shared
autoregressive checkpoint (the demo's stage 1: 1,800 AR steps, seed 0; AR2Diff, Han et al. 2024) and train
1,800 steps as masked diffusion, as ``make demo`` does; the seed changes the diffusion stage (data order,
masks, dropout, evaluation noise), not the AR checkpoint. Test scores are SacreBLEU on all 1,000 sentences of
test_2016_flickr.

Claims (``--claims``):

* ``importance`` — uniform t vs p(t) ∝ v(t)^α, α ∈ {0.5, 1, 2} (``experiments/claims/importance.yaml``), equal
  steps; test BLEU, train wall time and the test loss per t bin.
* ``adaptive`` — on the ``importance/uniform`` checkpoints: ε calibrated on the validation set
  (``calibrate``, tolerance 0.1 BLEU), then test BLEU and mean steps at that ε vs fixed K.
* ``ar2diff`` — equal fine-tuning budget (1,800 steps) from the AR checkpoint: masked diffusion (AR2Diff;
  the ``importance/uniform`` runs), AR fine-tuning, and masked diffusion from scratch.
* ``ar2diff_english`` — AR2Diff's setting: AR pretraining on English text → masked-diffusion continued
  pretraining → fine-tuning on Multi30k de→en, vs AR fine-tuning and vs masked diffusion from scratch.
* ``ar2diff_squad`` — the same pretraining fine-tuned on SQuAD extractive QA (F1), at the demo model's length;
  for ``--gpu`` (on a CPU every arm stays below the noise floor).
* ``decode_length`` — AR with KV cache vs diffusion at 10 steps, output length 64 … 1024, batch 1 and 16
  (``benchmarks/decode_speed.py``, random weights).
* ``importance_commongen`` — the ``importance`` arms on CommonGen (``experiments/claims/commongen.yaml``, its
  own AR checkpoint), judged by test CIDEr-D; for ``--gpu`` (on a CPU its baseline stays below the noise floor).
* ``task_adapt`` — TaskAdapt (timestep embedding + self-attention + length head trained) for 900 steps from a
  model pretrained on Tatoeba en→de by the demo's two stages, vs the task-specific model trained on Multi30k
  alone at the full budget (1,800 AR + 1,800 masked steps), vs every parameter fine-tuned for 900 steps, vs no
  fine-tuning.
* ``fastdiss`` — FastDiSS vs plain self-conditioning, from scratch, K ∈ {1, 2, 5, 10, 20, 50}.

``fastdiss`` trains continuous diffusion from scratch, whose baseline reaches 9.35 BLEU after 15,000 CPU steps
(``benchmarks/learning_curve.py``), short of the 15-BLEU floor: it is meant for ``--gpu``, as are
``importance_commongen`` and ``ar2diff_squad``.
Shared checkpoints (``STAGES``: the AR checkpoints, the Tatoeba and English models) are trained once, at seed 0,
into ``<out>/<stage>/last.ckpt``.

Each (claim, arm, seed) runs in its own process and is written to ``<out>/<claim>/<arm>/seed<k>.json`` when it
ends; finished runs are skipped, so the set can be run across several sittings. ``--report`` (also run at
the end) writes ``docs/results/claims/<claim>.{json,png}`` and the generated section of ``docs/results.md``.

    python benchmarks/claims.py                                   # every CPU claim, seeds 0 1 2
    python benchmarks/claims.py --claims importance --arms uniform --seeds 0
    python benchmarks/claims.py --gpu --claims fastdiss
    python benchmarks/claims.py --report                          # tables, plots and verdicts only
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import DEMO, StepClock, build, generator_with_steps, settings

AR_STAGE = ["experiments/multi30k/autoregressive_demo.yaml", "experiments/demo_pretrain.yaml"]
AR_OVERLAY = ["experiments/multi30k/autoregressive_demo.yaml"]
MASKED_SCRATCH = ["experiments/quality/masked.yaml"]
IMPORTANCE = ["experiments/claims/importance.yaml"]
COMMONGEN = ["experiments/claims/commongen.yaml"]
TATOEBA = ["experiments/claims/tatoeba.yaml"]
TASK_ADAPT = ["experiments/claims/task_adapt.yaml"]
ENGLISH = ["experiments/claims/english_lm.yaml"]
DE_EN = ["experiments/claims/multi30k_de_en.yaml"]
SQUAD = ["experiments/claims/squad.yaml"]
INIT_FROM, CHECKPOINT, TOKENIZER = "--model.init_args.init_from", "--model.init_args.checkpoint", "--data.init_args.tokenizer"
SEEDS = (0, 1, 2)
STEPS = 1800  # the demo's stages: the AR2Diff baseline reaches ≥ 15 BLEU (docs/quality.md)
GPU_STEPS = 20000
FIXED_KS = (5, 10, 20)
EPSILONS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # Δ = share of target tokens that changed in one iteration
FLOOR = 5.0  # BLEU (or F1, exact match) below this is noise (no verdict is drawn from it)
PERCENT_METRICS = ("bleu", "f1", "exact_match")  # the metrics on a 0–100 scale the floor applies to


@dataclass
class Stage:
    """A checkpoint that several arms start from, trained once (seed 0) into ``<out>/<name>/last.ckpt``."""

    overlays: list[str]
    overrides: list[str] = field(default_factory=list)
    init: str | None = None  # the stage it continues from
    init_keys: tuple[str, ...] = (INIT_FROM,)  # the CLI arguments that receive that stage's checkpoint


STAGES = {
    "ar": Stage(AR_STAGE),  # the demo's stage 1 on Multi30k
    "ar_commongen": Stage(AR_STAGE + COMMONGEN),
    "ar_tatoeba": Stage(AR_STAGE + TATOEBA),
    "masked_tatoeba": Stage(TATOEBA, init="ar_tatoeba", init_keys=(INIT_FROM, TOKENIZER)),  # the demo's two stages on Tatoeba
    "ar_english": Stage(AR_STAGE + ENGLISH),  # AR2Diff (1): AR language modelling on English text
    "masked_english": Stage(ENGLISH, ["--data.init_args.objective=prefix_lm", "--data.init_args.min_prefix=16",
                                      "--data.init_args.min_target=16"], init="ar_english", init_keys=(INIT_FROM, TOKENIZER)),  # (2)
}


@dataclass
class Arm:
    overlays: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    init: str | None = "ar"  # the stage it starts from (None: random weights)
    init_keys: tuple[str, ...] = (INIT_FROM,)
    same_as: str | None = None  # "claim/arm": the runs of another arm (no training of its own)
    ks: tuple[int, ...] = ()  # a K sweep at test time (none: the generator's own K)
    step_share: float = 1.0  # training steps as a share of the claim's budget (0: test the starting weights)


def importance_arms(data: list[str], init: str) -> dict[str, Arm]:
    alpha = "--model.init_args.timestep_sampler.init_args.alpha="
    return {"uniform": Arm(data, init=init),
            **{f"alpha_{a:g}": Arm(data + IMPORTANCE, [f"{alpha}{a}"], init=init) for a in (0.5, 1.0, 2.0)}}


CLAIMS: dict[str, dict[str, Arm]] = {
    "importance": importance_arms([], "ar"),
    "importance_commongen": importance_arms(COMMONGEN, "ar_commongen"),
    "adaptive": {"calibrated": Arm()},  # reads the importance/uniform checkpoints (run_adaptive)
    "ar2diff": {
        "ar2diff": Arm(same_as="importance/uniform"),
        "ar_finetune": Arm(AR_OVERLAY),
        "diffusion_scratch": Arm(MASKED_SCRATCH, init=None),
    },
    "ar2diff_english": {  # AR2Diff (3): fine-tuning on Multi30k de→en, every arm with the English tokenizer
        "ar2diff": Arm(DE_EN, init="masked_english", init_keys=(INIT_FROM, TOKENIZER)),
        "ar_finetune": Arm(AR_OVERLAY + DE_EN, init="ar_english", init_keys=(INIT_FROM, TOKENIZER)),
        "diffusion_scratch": Arm(MASKED_SCRATCH + DE_EN, ["--model.init_args.generator.init_args.steps=20"], init="ar_english",
                                 init_keys=(TOKENIZER,)),  # random weights; only the tokenizer is the stage's
    },
    "ar2diff_squad": {  # the same pretraining, fine-tuned on SQuAD extractive QA
        "ar2diff": Arm(SQUAD, init="masked_english", init_keys=(INIT_FROM, TOKENIZER)),
        "ar_finetune": Arm(AR_OVERLAY + SQUAD, init="ar_english", init_keys=(INIT_FROM, TOKENIZER)),
        "diffusion_scratch": Arm(MASKED_SCRATCH + SQUAD, ["--model.init_args.generator.init_args.steps=20"], init="ar_english",
                                 init_keys=(TOKENIZER,)),
    },
    "task_adapt": {
        "task_only": Arm(same_as="importance/uniform"),
        "pretrained_zero_shot": Arm(init="masked_tatoeba", init_keys=(INIT_FROM, TOKENIZER), step_share=0),
        "task_adapt": Arm(TASK_ADAPT, init="masked_tatoeba", init_keys=(CHECKPOINT, TOKENIZER), step_share=0.5),
        "full_finetune": Arm(init="masked_tatoeba", init_keys=(INIT_FROM, TOKENIZER), step_share=0.5),
    },
    "decode_length": {"cpu": Arm(init=None)},
    "fastdiss": {
        "self_conditioning": Arm(["experiments/quality/continuous.yaml"], init=None, ks=(1, 2, 5, 10, 20, 50)),
        "fastdiss": Arm(["experiments/quality/fastdiss.yaml"], init=None, ks=(1, 2, 5, 10, 20, 50)),
    },
}
METRIC = {"importance_commongen": "cider", "ar2diff_squad": "f1"}  # the test metric each claim is judged by (default: bleu)
SECOND_METRIC = {"importance_commongen": "bleu", "ar2diff_squad": "exact_match"}  # shown alongside
METRIC_NAME = {"bleu": "SacreBLEU", "cider": "CIDEr-D", "f1": "F1", "exact_match": "exact match"}
PARITY = {"task_adapt"}  # claims of "matches": a difference within 2 std confirms them
JUDGED = {"task_adapt": ("task_adapt",)}  # the arms judged against the baseline (default: all; the rest are references)
# what each claim's arms are, in words (printed under its heading)
SETUP = {
    "importance": "Four arms from the AR checkpoint, 1,800 masked-diffusion steps each: uniform t, and p(t) ∝ v(t)^α with "
                  "v = the per-example gradient variance of the timestep-embedding and self-attention parameters "
                  "(`GradVariance`), estimated on 10 bins during a uniform pilot of 180 steps, 10% uniform floor, no "
                  "importance weights (`experiments/claims/importance.yaml`). Equal steps, not equal wall clock: the "
                  "estimator's cost shows in the wall-time column. The plot's right panel is the test loss per bin of t "
                  "(first 4 test batches, fixed noise). Wall times include other jobs sharing the 2 cores; the step counts are equal.",
    "importance_commongen": "The `importance` claim on CommonGen v1.0 (`experiments/claims/commongen.yaml`: concept set → "
                            "sentence, 4k BPE trained on CommonGen): its own AR checkpoint (1,800 AR steps, seed 0), then the same four "
                            "arms, 1,800 masked-diffusion steps each. Judged by test CIDEr-D (pycocoevalcap scale: ×100 is the "
                            "usual table number) over all 1,497 test concept sets with all their references; the plot's right panel "
                            "is the test loss per bin of t. On a CPU only the baseline was trained (`--arms uniform`): at this "
                            "model size and budget CommonGen's outputs are word salad, so the other arms could not be judged.",
    "task_adapt": "Pretraining (once, seed 0): the demo's two stages on Tatoeba en→de (`experiments/claims/tatoeba.yaml`: "
                  "1,800 AR steps, then 1,800 masked-diffusion steps from those weights, 4k BPE trained on Tatoeba). Arms on "
                  "Multi30k en→de, every one decoded by Mask-Predict K = 20: `task_only` = the task-specific model trained "
                  "on Multi30k alone at the full budget (1,800 AR + 1,800 masked-diffusion steps = 3,600 steps from random "
                  "weights; the `importance/uniform` runs — on a CPU a masked model from random weights stays at 2.4 BLEU, "
                  "`ar2diff/diffusion_scratch`); `pretrained_zero_shot` = the Tatoeba model, no Multi30k step; "
                  "`task_adapt` = TaskAdapt (`experiments/claims/task_adapt.yaml`: only the timestep embedding, self-attention "
                  "and length head are trained, uniform t) for 900 steps = 1/4 of the task-specific budget; `full_finetune` = "
                  "every parameter, same 900 steps. The Tatoeba arms read the Tatoeba tokenizer from the checkpoint. A "
                  "difference within 2 std confirms this claim (it is a claim of parity). The paper-scale ablation "
                  "(continuous diffusion, d512×6, 40k steps) is `SCALE=gpu make ablation-task-specific`.",
    "adaptive": "The `importance/uniform` checkpoints. `diffusion-lm calibrate` logic on the full validation set: "
                "Mask-Predict with early stopping (`AdaptiveMaskPredictSampler`: a sentence stops once the share of its "
                "target tokens that changed between two iterations is below ε, after ≥ 2 iterations), ε swept over "
                f"{', '.join(map(str, EPSILONS))}, chosen as the fewest mean steps within 0.1 BLEU of K = 20; then the test "
                "set at that ε and at fixed K.",
    "ar2diff": "Equal fine-tuning budget (1,800 steps) on Multi30k en→de: `ar2diff` = masked diffusion from the AR checkpoint "
               "(the `importance/uniform` runs), `ar_finetune` = the AR recipe continued from the same checkpoint, "
               "`diffusion_scratch` = masked diffusion from random weights (decoded at K = 10, the overlay's default, vs K = 20 for "
               "`ar2diff`: from scratch, K = 20 adds 0.15 BLEU in `docs/results/bench_quality_cpu.md`). "
               "The paper's setting (AR pretraining on a "
               "general English corpus, diffusion continued pretraining, de→en) is `experiments/ar2diff/compare_multi30k.sh`; "
               "here the pretraining stage is the task's own data.",
    "ar2diff_english": "AR2Diff's own setting at CPU scale. Pretraining (once, seed 0) on general English text "
                       "(`experiments/claims/english_lm.yaml`: Brown + the local Wikipedia sample, 96-token blocks, 8k BPE): "
                       "(1) 1,800 AR language-modelling steps, (2) 1,800 steps of masked-diffusion continued pretraining from "
                       "those weights (prefix attention, prefix-LM split of each block). (3) Fine-tuning on Multi30k de→en "
                       "(`experiments/claims/multi30k_de_en.yaml`), 1,800 steps per arm: `ar2diff` = masked diffusion from (2), "
                       "`ar_finetune` = the AR recipe from (1), `diffusion_scratch` = masked diffusion from random weights; all "
                       "three use the English tokenizer and decode with K = 20 (diffusion) or greedy (AR).",
    "ar2diff_squad": "The `ar2diff_english` pretraining (1) and (2), fine-tuned 1,800 steps per arm on SQuAD v1.1 extractive QA "
                     "(`experiments/claims/squad.yaml`: the 44-article local train subset, question first, the paragraph cut to "
                     "96 tokens — the demo model's length; test = the first 2,000 official dev questions, F1 and exact match "
                     "against all gold answers). Same three arms and decoding as `ar2diff_english`. On a CPU one seed per "
                     "arm was run (`--seeds 0`): every arm stays below the noise floor (F1 < 5), so no more were.",
    "decode_length": "Random weights (speed does not depend on them), d256×4, vocab 8k, prompt 32 tokens: AR greedy with the "
                     "KV cache (EOS forbidden, so every row makes N tokens) vs 10 full denoiser passes over prompt + N.",
    "fastdiss": "From scratch (continuous diffusion, softmax x̂₀, self-conditioning), K sweep at test time; for `--gpu`.",
}
# comparisons besides "every arm vs the baseline": (arm, reference arm)
PAIRS = {claim: [("ar2diff", "ar_finetune")] for claim in ("ar2diff", "ar2diff_english", "ar2diff_squad")}
# below the noise floor at CPU budgets, so not in the CPU default: importance_commongen (run there with --arms
# uniform only) and ar2diff_squad (run there with --seeds 0 only)
# claims not run on the CPU whose baseline's learning curve (benchmarks/learning_curve.py, JSON in docs/results/)
# says how far the CPU gets: claim → (file glob, the curve's arm that is the claim's baseline)
CURVES = {"fastdiss": ("learning_curve_cpu*.json", "continuous")}
CLAIMS_FLOOR = 15.0  # BLEU the baseline of a claim must reach before its seeds are spent (issue 16)
CPU_CLAIMS = ("importance", "adaptive", "ar2diff", "ar2diff_english", "task_adapt", "decode_length")
# the question each claim answers, and its arms compared (baseline first)
QUESTIONS = {
    "importance": ("p(t) ∝ v(t)^α beats uniform t at equal steps", "uniform"),
    "importance_commongen": ("p(t) ∝ v(t)^α beats uniform t at equal steps, CommonGen (CIDEr-D)", "uniform"),
    "adaptive": ("calibrated early stopping saves 40–60% of the steps at ≤ 0.1 BLEU loss", None),
    "ar2diff": ("AR-initialised diffusion beats diffusion from scratch at equal fine-tuning steps", "diffusion_scratch"),
    "ar2diff_english": ("the same, pretrained on English text (AR → diffusion), fine-tuned on Multi30k de→en", "diffusion_scratch"),
    "ar2diff_squad": ("the same pretraining, fine-tuned on SQuAD extractive QA (F1)", "diffusion_scratch"),
    "decode_length": ("diffusion at 10 steps decodes long outputs faster than AR with a KV cache", None),
    "fastdiss": ("FastDiSS at K = 5 matches many-step quality and beats plain self-conditioning", "self_conditioning"),
    "task_adapt": ("TaskAdapt at 1/4 budget matches task-specific training at the full budget", "task_only"),
}


# ----------------------------------------------------------------------------------------------- one run
def stage_checkpoint(out: Path, name: str) -> Path:
    return out / name / "last.ckpt"


def budget(args) -> int:
    return args.steps or (GPU_STEPS if args.gpu else STEPS)


def common(args, seed: int, root: Path, steps: int | None = None) -> list[str]:
    return settings(args.gpu) + [f"--seed_everything={seed}", f"--trainer.max_steps={budget(args) if steps is None else steps}",
                                 "--trainer.max_time=null", f"--trainer.default_root_dir={root}"]


def train(configs: list[str], overrides: list[str], ckpt_dir: Path, tensorboard: Path | None = None):
    """Fit the CLI's recipe (TensorBoard into the directory ``tensorboard`` when given) → (cli, record)."""
    logger = ["--trainer.logger=false"] if tensorboard is None else [
        f"--trainer.logger.init_args.save_dir={tensorboard.parent}", f"--trainer.logger.init_args.name={tensorboard.name}",
        "--trainer.logger.init_args.version=run"]
    cli = build(configs, overrides + logger, checkpoint_dir=ckpt_dir)
    clock = StepClock()
    cli.trainer.callbacks.append(clock)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli, {"steps": cli.trainer.global_step, "tokens_seen": clock.tokens, "train_s": time.perf_counter() - t0}


def ensure_stage(args, out: Path, name: str) -> Path:
    """The checkpoint of stage ``name`` (and of the stages it continues from), trained once at seed 0."""
    stage, path = STAGES[name], stage_checkpoint(out, name)
    if not path.is_file():
        init = [f"{k}={ensure_stage(args, out, stage.init)}" for k in stage.init_keys] if stage.init else []
        print(f"[claims] training the shared checkpoint {name} → {path}", flush=True)
        train(stage.overlays, common(args, 0, out / name) + stage.overrides + init, path.parent)
    return path


def test_scores(cli, model=None) -> dict:
    """Every ``test/*`` metric of the data module (``bleu``, ``cider``, …), ``decode_steps``, ``test_loss``, ``test_s``."""
    t0 = time.perf_counter()
    s = cli.trainer.test(model or cli.model, datamodule=cli.datamodule, verbose=False)[0]
    scores = {k.removeprefix("test/"): float(v) for k, v in s.items() if k.startswith("test/")}
    scores["test_loss"] = scores.pop("loss")
    return {**scores, "test_s": time.perf_counter() - t0}


def per_bin_test_loss(model, datamodule, bins: int = 10, batches: int = 4) -> list[float]:
    """Mean test loss at the centre of each of ``bins`` equal t bins (the first ``batches`` test batches, fixed noise)."""
    import torch

    from diffusion_lm.recipes.base import seeded

    model.eval()
    loader = datamodule.test_dataloader()
    out = []
    for k in range(bins):
        t_c, total, n = (k + 0.5) / bins, 0.0, 0
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            batch = {key: v.to(model.device) if torch.is_tensor(v) else v for key, v in batch.items()}
            B = batch["input_ids"].shape[0]
            with torch.no_grad(), seeded(1000 * k + i, model.device):
                res = model.process.eval_loss(model.eval_model, batch, torch.full((B,), t_c, device=model.device),
                                              torch.ones(B, device=model.device))
            total, n = total + float(res.per_example.sum()), n + B
        out.append(total / max(n, 1))
    return out


def run_training_arm(args, claim: str, name: str, seed: int, out: Path) -> dict:
    arm = CLAIMS[claim][name]
    root = out / claim / name / f"seed{seed}"
    steps = round(arm.step_share * budget(args))
    overrides = common(args, seed, root, steps) + arm.overrides
    if arm.init:
        overrides += [f"{k}={ensure_stage(args, out, arm.init)}" for k in arm.init_keys]
    if steps:
        cli, rec = train(arm.overlays, overrides, root / "checkpoints", tensorboard=out / "tb" / f"{claim}_{name}_seed{seed}")
    else:  # the starting weights as they are
        cli, rec = build(arm.overlays, overrides + ["--trainer.logger=false"]), {"steps": 0, "tokens_seen": 0, "train_s": 0.0}
    denoiser = cli.model.denoiser
    rec.update(claim=claim, arm=name, seed=seed, overlays=[DEMO, *arm.overlays], overrides=arm.overrides, init=arm.init,
               command=command_line(arm, seed, steps), trained_params=denoiser.num_parameters(trainable_only=True),
               params=denoiser.num_parameters())
    gen_cfg = cli.config.get("model.init_args.generator")
    if arm.ks:
        rec["by_k"] = []
        for k in arm.ks:
            cli.model.generator = generator_with_steps(gen_cfg.as_dict(), k)
            rec["by_k"].append({"k": k, **test_scores(cli)})
        rec.update(max(rec["by_k"], key=lambda e: e["bleu"]))
    else:
        rec.update(test_scores(cli))
    if claim.startswith("importance"):
        rec["bin_loss"] = per_bin_test_loss(cli.model, cli.datamodule)
    return rec


def run_adaptive(args, seed: int, out: Path) -> dict:
    """Calibrate ε on validation for the uniform AR2Diff checkpoint of ``seed``; test at ε and at fixed K."""
    from diffusion_lm.cli.calibrate import calibrate
    from diffusion_lm.diffusion import MaskPredictSampler

    src = out / "importance" / "uniform" / f"seed{seed}" / "checkpoints" / "last.ckpt"
    if not src.is_file():
        raise SystemExit(f"[claims] adaptive needs {src}: run --claims importance --arms uniform --seeds {seed} first")
    root = out / "adaptive" / "calibrated" / f"seed{seed}"
    overrides = common(args, seed, root) + ["--trainer.limit_val_batches=1.0", "--trainer.logger=false",
                                            f"{INIT_FROM}={ensure_stage(args, out, 'ar')}"]
    cli = build([], overrides)
    cal = calibrate(cli.trainer, cli.model, cli.datamodule, ckpt_path=str(src), epsilons=EPSILONS, output_dir=str(root),
                    store=False)
    shown = f"runs/claims/importance/uniform/seed{seed}/checkpoints/last.ckpt"  # under the default --out
    rec = {"claim": "adaptive", "arm": "calibrated", "seed": seed, "checkpoint": shown, "calibration": cal,
           "epsilon": cal["chosen"]["epsilon"], **test_scores(cli)}
    rec["fixed"] = []
    for k in FIXED_KS:
        cli.model.generator = MaskPredictSampler(steps=k, remask=True, schedule="linear")
        rec["fixed"].append({"k": k, **test_scores(cli)})
    rec["command"] = f"python benchmarks/claims.py --claims adaptive --seeds {seed}"
    return rec


def run_decode_length(args, out: Path) -> dict:
    dest = out / "decode_length"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "decode_speed.py"), "--lengths", "64", "128", "256", "512", "1024",
           "--batch-sizes", "1", "16", "--steps", "10", "--repeats", "3", "--out", str(dest)]
    if args.gpu:
        cmd += ["--device", "cuda", "--dtype", "bfloat16"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    import csv

    device = "cuda" if args.gpu else "cpu"
    with open(dest / f"decode_speed_{device}.csv") as f:
        rows = list(csv.DictReader(f))
    return {"claim": "decode_length", "arm": device, "seed": 0, "rows": rows, "wall_s": time.perf_counter() - t0,
            "command": shlex.join(["python", "benchmarks/decode_speed.py", *cmd[2:-1], "runs/claims/decode_length"])}  # the default --out


def command_line(arm: Arm, seed: int, steps: int) -> str:
    cfg = " ".join(f"--config {c}" for c in [DEMO, *arm.overlays])
    init = "".join(f" {k}={stage_checkpoint(Path('runs/claims'), arm.init)}" for k in arm.init_keys) if arm.init else ""
    run = f"fit {cfg}{init} --seed_everything={seed} --trainer.max_steps={steps}" if steps else f"test {cfg}{init}"
    return f"diffusion-lm {run} " + " ".join(arm.overrides)


def run_one(args, claim: str, name: str, seed: int) -> dict:
    out = Path(args.out)
    if claim == "adaptive":
        return run_adaptive(args, seed, out)
    if claim == "decode_length":
        return run_decode_length(args, out)
    return run_training_arm(args, claim, name, seed, out)


# ----------------------------------------------------------------------------------------------- report
def records(out: Path, claim: str, name: str) -> list[dict]:
    arm = CLAIMS[claim][name]
    if arm.same_as:
        claim, name = arm.same_as.split("/")
    d = out / claim / name
    return [json.loads(p.read_text()) for p in sorted(d.glob("seed*.json"))]


def mean_std(xs: list[float]) -> tuple[float, float]:
    return (statistics.fmean(xs), statistics.stdev(xs)) if len(xs) > 1 else (xs[0], float("nan"))


def fmt(xs: list[float], digits: int = 2) -> str:
    m, s = mean_std(xs)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(xs) > 1 else f"{m:.{digits}f} (1 seed)"


def verdict(base: list[float], other: list[float], higher_is_better: bool = True, floor: float | None = FLOOR,
            parity: bool = False, digits: int = 2) -> str:
    """confirmed / not confirmed / inconclusive (difference within 2 std, fewer than 3 seeds, or below the BLEU
    ``floor``). For a claim of parity (``parity``) a difference within 2 std, or in the claimed arm's favour, confirms it."""
    if floor is not None and max(statistics.fmean(base), statistics.fmean(other)) < floor:
        return f"inconclusive (both below {floor:g}: noise)"
    if len(base) < 3 or len(other) < 3:
        return "inconclusive (fewer than 3 seeds)"
    diff = statistics.fmean(other) - statistics.fmean(base)
    spread = 2 * max(statistics.stdev(base), statistics.stdev(other))
    if abs(diff) <= spread:
        word = "confirmed, within noise" if parity else "inconclusive"
        return f"{word} (difference {diff:+.{digits}f} within 2 std = {spread:.{digits}f})"
    better = diff > 0 if higher_is_better else diff < 0
    return f"{'confirmed' if better else 'not confirmed'} ({diff:+.{digits}f}, 2 std = {spread:.{digits}f})"


def trained_share(rec: dict) -> str:
    if "trained_params" not in rec:
        return "—"
    return f"{rec['trained_params'] / 1e6:.2f} M / {rec['params'] / 1e6:.2f} M ({100 * rec['trained_params'] / rec['params']:.0f}%)"


def gpu_command(claim: str) -> str:
    return f"GPU: `python benchmarks/claims.py --gpu --claims {claim}`"


def not_run(claim: str, docs: Path) -> str:
    """Why a claim without records was not run on the CPU: its baseline's best point on a learning curve."""
    gpu = gpu_command(claim)
    pattern, arm = CURVES.get(claim, (None, None))
    points = [r for f in sorted((docs / "results").glob(pattern)) for r in json.loads(f.read_text()) if r["arm"] == arm] \
        if pattern else []
    if not points:
        return f"not run on the CPU; {gpu}"
    best = max(points, key=lambda r: r["bleu"])
    return (f"3 seeds not run on the CPU: its baseline (`{arm}` from scratch) reaches at most {best['bleu']:.2f} BLEU there "
            f"(K = {best['k']}, {best['step']:,} steps; one seed of each arm on the learning curve of "
            f"`benchmarks/learning_curve.py`), short of the {CLAIMS_FLOOR:g} BLEU the claims need; {gpu}")


def report_training(out: Path, claim: str, docs: Path) -> tuple[list[str], str, dict]:
    base_name, metric = QUESTIONS[claim][1], METRIC.get(claim, "bleu")
    name_m, digits = METRIC_NAME[metric], 3 if metric == "cider" else 2
    floor = FLOOR if metric in PERCENT_METRICS else None
    floor_key = metric if floor is not None else "bleu"  # CIDEr-D is judged where the outputs' SacreBLEU clears the floor
    other = SECOND_METRIC.get(claim)
    second = f" test {METRIC_NAME[other]} |" if other else ""
    lines = [f"| arm | seeds | steps | trained parameters | train wall (s) | test {name_m} |{second} mean decode steps |",
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if other else "") + "---:|"]
    data, verdicts = {}, []
    for name in CLAIMS[claim]:
        recs = records(out, claim, name)
        if not recs:
            lines.append(f"| {name} | 0 | — | — | — | not run |" + (" — |" if other else "") + " — |")
            continue
        data[name] = recs
        lines.append(f"| {name} | {len(recs)} | {recs[0]['steps']} | {trained_share(recs[0])} | {fmt([r['train_s'] for r in recs], 0)} | "
                     f"{fmt([r[metric] for r in recs], digits)} |" + (f" {fmt([r[other] for r in recs])} |" if other else "")
                     + f" {fmt([r['decode_steps'] for r in recs], 1)} |")

    def judge(ref: list[dict], arm: list[dict]) -> str:
        if metric != "bleu" and all("bleu" in r for r in ref + arm) and \
                max(statistics.fmean(r["bleu"] for r in ref), statistics.fmean(r["bleu"] for r in arm)) < FLOOR:
            return f"inconclusive (SacreBLEU of both below {FLOOR:g}: the outputs are noise, whatever {name_m} says)"
        return verdict([r[metric] for r in ref], [r[metric] for r in arm], floor=floor, parity=claim in PARITY, digits=digits)

    gpu = gpu_command(claim)
    if set(data) == {base_name} and statistics.fmean(r.get(floor_key, FLOOR) for r in data[base_name]) < FLOOR:
        recs = data[base_name]
        also = f", SacreBLEU {fmt([r['bleu'] for r in recs])}" if floor_key != metric else ""
        return lines, (f"not run on the CPU: its baseline `{base_name}` stays below the noise floor there ({name_m} "
                       f"{fmt([r[metric] for r in recs], digits)}{also}, {len(recs)} seeds), so the other arms were not trained; "
                       f"{gpu}"), data

    if base_name in data:
        for name, recs in data.items():
            if name != base_name and name in JUDGED.get(claim, data):
                verdicts.append(f"{name} vs {base_name}: {judge(data[base_name], recs)}")
    for name, ref in PAIRS.get(claim, []):
        if name in data and ref in data:
            verdicts.append(f"{name} vs {ref}: {judge(data[ref], data[name])}")
    if not data and claim not in CPU_CLAIMS:
        return lines, not_run(claim, docs), data
    return lines, "; ".join(verdicts) or "not run", data


def report_adaptive(out: Path) -> tuple[list[str], str, dict]:
    recs = records(out, "adaptive", "calibrated")
    if not recs:
        return ["not run"], "not run", {}
    lines = ["| decoding | test BLEU | mean steps |", "|---|---:|---:|"]
    eps = ", ".join(f"{r['epsilon']:g}" for r in recs)
    lines.append(f"| adaptive, calibrated ε ({eps}) | {fmt([r['bleu'] for r in recs])} | "
                 f"{fmt([r['decode_steps'] for r in recs], 1)} |")
    for i, k in enumerate(FIXED_KS):
        lines.append(f"| fixed K = {k} | {fmt([r['fixed'][i]['bleu'] for r in recs])} | {k} |")
    full = [r["fixed"][-1]["bleu"] for r in recs]
    ada = [r["bleu"] for r in recs]
    saved = 1 - statistics.fmean(r["decode_steps"] for r in recs) / FIXED_KS[-1]
    drop = statistics.fmean(full) - statistics.fmean(ada)
    ok = 0.4 <= saved and drop <= 0.1
    v = (f"{'confirmed' if ok else 'not confirmed'}: {100 * saved:.0f}% fewer steps than K = {FIXED_KS[-1]} "
         f"at {-drop:+.2f} BLEU ({len(recs)} seeds; the claim: −40–60% steps at −0.1)")
    if not ok:  # what the smallest ε > 0 would have cost on validation
        first = [min((p for p in r["calibration"]["curve"] if p["epsilon"] > 0), key=lambda p: p["epsilon"]) for r in recs]
        base = [next(p for p in r["calibration"]["curve"] if p["epsilon"] == 0) for r in recs]
        v += (f"; the smallest ε tried ({first[0]['epsilon']:g}) stops after {statistics.fmean(p['mean_steps'] for p in first):.1f} "
              f"steps at {statistics.fmean(p['metric'] - b['metric'] for p, b in zip(first, base, strict=True)):+.2f} validation BLEU")
    return lines, v, {"calibrated": recs}


def report_decode(out: Path) -> tuple[list[str], str, dict]:
    recs = sorted((out / "decode_length").glob("*/seed*.json"))
    if not recs:
        return ["not run"], "not run", {}
    rec = json.loads(recs[0].read_text())
    rows = rec["rows"]
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return lines, decode_verdict(rows), {"cpu": [rec]}


def decode_verdict(rows: list[dict]) -> str:
    """Per batch size: confirmed where diffusion is faster at every length, with the range of AR ÷ diffusion."""
    parts = []
    for b in sorted({r["batch"] for r in rows}, key=int):
        ratio = [float(r["speedup"]) for r in rows if r["batch"] == b]  # AR time ÷ diffusion time
        lengths = [int(r["length"]) for r in rows if r["batch"] == b]
        word = "confirmed" if min(ratio) > 1 else "not confirmed" if max(ratio) < 1 else "mixed"
        parts.append(f"batch {b}: {word} (AR ÷ diffusion time {min(ratio):.2f}–{max(ratio):.2f} over {min(lengths)}–{max(lengths)} tokens)")
    return "; ".join(parts)


def plot(claim: str, data: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if claim == "adaptive":
        recs = data["calibrated"]
        for r in recs:
            axes[0].plot([e["k"] for e in r["fixed"]], [e["bleu"] for e in r["fixed"]], "o-", color="grey", alpha=0.6)
            axes[0].plot([r["decode_steps"]], [r["bleu"]], "r*", ms=12)
            c = r["calibration"]["curve"]
            axes[1].plot([p["mean_steps"] for p in c], [p["metric"] for p in c], "o-", label=f"seed {r['seed']}")
        axes[0].set(xlabel="mean decoding steps", ylabel="test SacreBLEU", title="fixed K (grey) vs calibrated ε (★)")
        axes[1].set(xlabel="mean decoding steps", ylabel="validation SacreBLEU", title="calibration sweep over ε")
        axes[1].legend(fontsize=8)
    elif claim == "decode_length":
        rows = data["cpu"][0]["rows"]
        ar_key = next(k for k in rows[0] if k.startswith("ar"))
        df_key = next(k for k in rows[0] if k.startswith("diff"))
        for ax, b in zip(axes, sorted({r["batch"] for r in rows}, key=int), strict=True):
            sel = [r for r in rows if r["batch"] == b]
            ax.plot([int(r["length"]) for r in sel], [float(r[ar_key]) for r in sel], "o-", label="AR, KV cache")
            ax.plot([int(r["length"]) for r in sel], [float(r[df_key]) for r in sel], "s-", label="diffusion, 10 steps")
            ax.set(xscale="log", yscale="log", xlabel="output length (tokens)", ylabel="seconds per batch", title=f"batch {b}")
            ax.legend(fontsize=8)
    else:
        names, metric = list(data), METRIC.get(claim, "bleu")
        bleu = [[r[metric] for r in data[n]] for n in names]
        axes[0].bar(names, [statistics.fmean(b) for b in bleu], yerr=[statistics.stdev(b) if len(b) > 1 else 0 for b in bleu],
                    capsize=4, color="#3a7")
        for i, b in enumerate(bleu):
            axes[0].plot([i] * len(b), b, "k.", ms=5)
        if metric == "bleu":
            axes[0].axhline(FLOOR, color="red", ls=":", lw=1, label=f"noise floor ({FLOOR:g})")
            axes[0].legend(fontsize=8)
        axes[0].set(ylabel=f"test {METRIC_NAME[metric]} (mean ± std, dots: seeds)", title=claim)
        plt.setp(axes[0].get_xticklabels(), rotation=20, ha="right", fontsize=8)
        if claim.startswith("importance"):
            for n in names:
                losses = [r["bin_loss"] for r in data[n] if "bin_loss" in r]
                if losses:
                    K = len(losses[0])
                    axes[1].plot([(k + 0.5) / K for k in range(K)], [statistics.fmean(x[k] for x in losses) for k in range(K)],
                                 "o-", ms=3, label=n)
            axes[1].set(xlabel="t (masked share)", ylabel="test loss (mean over seeds)", title="test loss per noise level")
            axes[1].legend(fontsize=8)
        elif any("by_k" in r for recs in data.values() for r in recs):
            for n in names:
                recs = [r for r in data[n] if "by_k" in r]
                if recs:
                    ks = [e["k"] for e in recs[0]["by_k"]]
                    axes[1].plot(ks, [statistics.fmean(r["by_k"][i]["bleu"] for r in recs) for i in range(len(ks))], "o-", label=n)
            axes[1].set(xscale="log", xlabel="K", ylabel="test SacreBLEU", title="BLEU vs K")
            axes[1].legend(fontsize=8)
        else:
            axes[1].axis("off")
    fig.tight_layout()
    tmp = dest.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, dest)
    plt.close(fig)


BEGIN, END = "<!-- claims:begin (generated by benchmarks/claims.py --report) -->", "<!-- claims:end -->"
VERDICTS_BEGIN, VERDICTS_END = "<!-- verdicts:begin (generated by benchmarks/claims.py --report) -->", "<!-- verdicts:end -->"


def replace_block(page: Path, begin: str, end: str, block: str) -> None:
    """Rewrite the text between ``begin`` and ``end`` of ``page`` (atomically); the rest of the page is kept."""
    text = page.read_text()
    head, rest = text.split(begin, 1)
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(head + begin + "\n" + block + "\n" + end + rest.split(end, 1)[1])
    os.replace(tmp, page)


def report(out: Path, docs: Path) -> dict[str, str]:
    (docs / "results" / "claims").mkdir(parents=True, exist_ok=True)
    sections, verdicts = [], {}
    for claim in CLAIMS:
        if claim == "adaptive":
            lines, v, data = report_adaptive(out)
        elif claim == "decode_length":
            lines, v, data = report_decode(out)
        else:
            lines, v, data = report_training(out, claim, docs)
        verdicts[claim] = v
        png = docs / "results" / "claims" / f"{claim}.png"
        if data:
            plot(claim, data, png)
            tmp = png.with_suffix(".tmp.json")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, png.with_suffix(".json"))
        cmds = sorted({r.get("command", "") for recs in data.values() for r in recs} - {""})
        wall = sum(r.get("train_s", 0) + r.get("test_s", 0) + r.get("wall_s", 0) for recs in data.values() for r in recs)
        sections.append("\n".join([
            f"### `{claim}` — {QUESTIONS[claim][0]}", "",
            f"**Verdict: {v}**", "", SETUP.get(claim, ""), "", *lines, "",
            *([f"![{claim}](results/claims/{claim}.png)", ""] if data else []),
            f"Command: `python benchmarks/claims.py --claims {claim}`; measured wall time {wall / 60:.0f} min. Runs:", "",
            *[f"    {c}" for c in cmds], ""]))
    summary = ["| claim | verdict |", "|---|---|"] + [f"| `{c}` — {QUESTIONS[c][0]} | {v} |" for c, v in verdicts.items()]
    page = docs / "results.md"
    if not page.is_file():
        page.write_text("# Results\n\n" + BEGIN + "\n" + END + "\n")
    replace_block(page, BEGIN, END, "\n".join(["", *summary, "", *sections]))
    readme = docs.parent / "README.md"
    if readme.is_file() and VERDICTS_BEGIN in readme.read_text():
        replace_block(readme, VERDICTS_BEGIN, VERDICTS_END, "\n".join(summary))
    return verdicts


# ----------------------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--claims", nargs="+", default=None, choices=list(CLAIMS), help=f"default: {' '.join(CPU_CLAIMS)} (CPU)")
    p.add_argument("--arms", nargs="+", default=None, help="only these arms of the chosen claims")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--gpu", action="store_true", help=f"bf16, 16k-token batches, {GPU_STEPS} steps per arm")
    p.add_argument("--steps", type=int, default=None, help=f"training steps per arm (default {STEPS}; --gpu {GPU_STEPS})")
    p.add_argument("--out", default="runs/claims")
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--report", action="store_true", help="only aggregate what is written")
    p.add_argument("--run-prefix", default="", help="command prefix for each run's process (e.g. 'nice -n 5')")
    p.add_argument("--one", nargs=3, metavar=("CLAIM", "ARM", "SEED"), help=argparse.SUPPRESS)  # internal
    args = p.parse_args()
    out = Path(args.out)
    if args.one:
        claim, name, seed = args.one[0], args.one[1], int(args.one[2])
        rec = run_one(args, claim, name, seed)
        dest = out / claim / name / f"seed{seed}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rec, indent=1))
        os.replace(tmp, dest)
        return
    if not args.report:
        for claim in args.claims or (list(CLAIMS) if args.gpu else CPU_CLAIMS):
            for name, arm in CLAIMS[claim].items():
                if (args.arms and name not in args.arms) or arm.same_as:
                    continue
                for seed in ([0] if claim == "decode_length" else args.seeds):
                    dest = out / claim / name / f"seed{seed}.json"
                    if dest.is_file():
                        print(f"[claims] {claim}/{name}/seed{seed}: done before, skipped", flush=True)
                        continue
                    print(f"[claims] {claim}/{name}/seed{seed} …", flush=True)
                    cmd = shlex.split(args.run_prefix) + [sys.executable, __file__, "--one", claim, name, str(seed),
                                                          "--out", str(out)] + (["--gpu"] if args.gpu else []) + \
                        (["--steps", str(args.steps)] if args.steps else [])
                    subprocess.run(cmd, check=True, cwd=ROOT)
    for c, v in report(out, Path(args.docs)).items():
        print(f"[claims] {c}: {v}")


if __name__ == "__main__":
    main()
