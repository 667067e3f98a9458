#!/usr/bin/env bash
# End-to-end exact-resume check through the CLI on real data (Multi30k, the demo's masked-diffusion stage from
# scratch at reduced size):
# run A trains N steps straight; run B is SIGKILLed right after its step-N/2 checkpoint and resumed with
# --ckpt_path last. The per-step training losses logged by both runs must be identical.
#   DIFFUSION_LM_DATA=… benchmarks/resume_check.sh [N] [workdir]
set -euo pipefail
N=${1:-40}
OUT=${2:-runs/resume_check}
HALF=$((N / 2))
PY=${PY:-python}
rm -rf "$OUT"
common=(fit --config experiments/demo.yaml --config experiments/quality/masked.yaml --trainer.max_steps "$N" --trainer.max_time null
        --trainer.log_every_n_steps 1 --trainer.enable_progress_bar false
        --model.init_args.denoiser.d_model 128 --model.init_args.denoiser.n_layers 2 --model.init_args.denoiser.n_heads 2
        --data.init_args.bpe_vocab_size 4000 --data.init_args.num_workers 2)
run() {  # $1 = name, then extra args
  local name=$1; shift
  "$PY" -m diffusion_lm.cli "${common[@]}" \
    --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir "$OUT" --trainer.logger.name "$name" \
    --trainer.logger.version 0 --trainer.logger.flush_logs_every_n_steps 1 \
    --trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint \
    --trainer.callbacks.dirpath "$OUT/$name/ckpt" --trainer.callbacks.every_n_train_steps "$HALF" \
    --trainer.callbacks.save_last true "$@"
}
run straight
# run B: kill -9 as soon as the step-N/2 checkpoint exists (mid-epoch, no chance to clean up)
run killed &
pid=$!
while [ ! -f "$OUT/killed/ckpt/last.ckpt" ]; do sleep 0.2; done
sleep 1; kill -9 "$pid" || true; wait "$pid" || true
mv "$OUT/killed/version_0/metrics.csv" "$OUT/killed/first_half.csv"
run killed --ckpt_path last
"$PY" - "$OUT" "$N" <<'PY'
import csv, sys
out, n = sys.argv[1], int(sys.argv[2])
def losses(path):
    return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(open(path)) if r.get("train/loss")}
a = losses(f"{out}/straight/version_0/metrics.csv")
b = {**losses(f"{out}/killed/first_half.csv"), **losses(f"{out}/killed/version_0/metrics.csv")}
steps = sorted(a)
common = [s for s in steps if s in b]  # SIGKILL can drop the killed run's last unflushed log rows
same = [s for s in common if abs(a[s] - b[s]) <= 1e-6 * abs(a[s])]
print(f"steps logged: straight {len(a)}, killed+resumed {len(b)}; identical losses: {len(same)}/{len(common)} common steps")
print(f"final step {steps[-1]}: straight {a[steps[-1]]:.6f}  resumed {b.get(steps[-1], float('nan')):.6f}")
ok = len(same) == len(common) and steps[-1] in b and len(common) >= n // 2
sys.exit(0 if ok else 1)
PY
