#!/usr/bin/env bash
# AR vs diffusion-from-scratch vs AR2Diff on Multi30k de→en at a fixed fine-tuning budget (docs/ar2diff.md).
# Every step is one `diffusion-lm` run; LOCK (e.g. "flock /tmp/diffusion_lm_cpu.lock") serialises them with
# other jobs on a shared machine. EXTRA is appended to every command (e.g. GPU flags). Logs: runs/ar2diff/logs/.
#   experiments/ar2diff/compare_multi30k.sh            # all steps
#   experiments/ar2diff/compare_multi30k.sh stage3 test_stage3   # selected steps
set -euo pipefail
cd "$(dirname "$0")/../.."
CLI=${CLI:-diffusion-lm}
LOCK=${LOCK:-}
EXTRA=${EXTRA:-}
E=experiments/ar2diff
mkdir -p runs/ar2diff/logs

run() {  # name, then the diffusion-lm arguments
  local name=$1; shift
  echo "== $name: $CLI $* $EXTRA"
  local start=$(date +%s)
  $LOCK $CLI "$@" $EXTRA > "runs/ar2diff/logs/$name.log" 2>&1
  echo "   done in $(( $(date +%s) - start )) s (log: runs/ar2diff/logs/$name.log)"
}

declare -A STEPS=(
  [stage1]="fit --config $E/stage1_ar_pretrain.yaml"
  [stage2]="fit --config $E/stage2_diffusion_pretrain.yaml"
  [stage3]="fit --config $E/stage3_finetune_multi30k.yaml"
  [ar]="fit --config $E/ar_finetune_multi30k.yaml"
  [scratch]="fit --config $E/diffusion_from_scratch_multi30k.yaml"
  [test_stage3]="test --config $E/stage3_finetune_multi30k.yaml --ckpt_path runs/ar2diff/stage3/last.ckpt"
  [test_ar]="test --config $E/ar_finetune_multi30k.yaml --ckpt_path runs/ar2diff/ar_finetune/last.ckpt"
  [test_ar_beam4]="test --config $E/ar_finetune_multi30k.yaml --ckpt_path runs/ar2diff/ar_finetune/last.ckpt --model.init_args.decoder.beam_size=4"
  [test_scratch]="test --config $E/diffusion_from_scratch_multi30k.yaml --ckpt_path runs/ar2diff/from_scratch/last.ckpt"
)
ORDER=(stage1 stage2 stage3 ar scratch test_stage3 test_ar test_ar_beam4 test_scratch)
for step in "${@:-${ORDER[@]}}"; do
  [[ -n "${STEPS[$step]:-}" ]] || { echo "unknown step $step (one of: ${ORDER[*]})"; exit 2; }
  run "$step" ${STEPS[$step]}
done
