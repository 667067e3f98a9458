#!/usr/bin/env bash
# The task-specific training ablation on Multi30k en→de (docs/task_specific_training.md):
#   pretrain       FromScratch on Tatoeba en→de (provides TaskAdapt's weights and every row's tokenizer)
#   uniform        FromScratch on Multi30k, uniform t                      budget B steps
#   importance_aX  FromScratch on Multi30k, p(t) ∝ v(t)^α, α = X           budget B steps
#   task_adapt     TaskAdapt from the pretrained checkpoint                 budget B/4 steps
#   scratch_q      FromScratch, uniform t (the from-scratch row at B/4)     budget B/4 steps
# Each row trains (fit), then decodes the Multi30k test set (test_2016_flickr) from its last.ckpt.
#
#   SCALE=gpu experiments/multi30k/task_specific/ablation.sh    # the YAMLs as written, one GPU, bf16
#   SCALE=cpu experiments/multi30k/task_specific/ablation.sh    # reduced scale for a small CPU box
#   ROWS="uniform importance_a1" SCALE=cpu …                     # a subset of rows
#   EXTRA="--trainer.limit_test_batches=2" …                      # more CLI arguments for every fit and test
#   for s in 0 1 2; do SEED=$s SCALE=gpu …; done                   # three seeds (the pretrain row is trained once)
# Results: runs/task_specific/<row>/seed<k>/ (TensorBoard, checkpoints) and runs/task_specific/results.tsv.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DIR=experiments/multi30k/task_specific
OUT=runs/task_specific
PY=${PY:-python}
SCALE=${SCALE:-gpu}
SEED=${SEED:-0}
ROWS=${ROWS:-"pretrain uniform importance_a1 importance_a0.5 importance_a2 task_adapt scratch_q"}
read -ra EXTRA <<< "${EXTRA:-}"
PRETRAINED=$OUT/pretrain_tatoeba/checkpoints/last.ckpt

if [[ $SCALE == gpu ]]; then
  B=${B:-40000}; PRETRAIN_B=${PRETRAIN_B:-40000}
  COMMON=(--trainer.accelerator=gpu --trainer.devices=1 --trainer.precision=bf16-mixed)
  ARCH=()
  SAMPLER=()
elif [[ $SCALE == cpu ]]; then
  # the demo's model (d 128, 3 layers, softmax x̂0) and 2048-token batches: ~3–4 steps/s on 2 cores
  B=${B:-800}; PRETRAIN_B=${PRETRAIN_B:-1000}
  COMMON=(--trainer.accelerator=cpu --trainer.devices=1 --trainer.val_check_interval=$((B / 2))
          --trainer.enable_progress_bar=false
          --model.init_args.warmup_steps=100 --model.init_args.ema_decay=0.995 --model.init_args.val_generate_batches=1
          --model.init_args.timestep_log_every=50 --data.init_args.max_src_len=48 --data.init_args.max_tgt_len=48
          --data.init_args.max_tokens=2048 --data.init_args.eval_max_tokens=8192 --data.init_args.num_workers=0
          --model.init_args.process=diffusion_lm.diffusion.GaussianDiffusion
          --model.init_args.process.init_args.prediction=softmax)
  ARCH=(--model.init_args.denoiser.d_model=128 --model.init_args.denoiser.n_layers=3 --model.init_args.denoiser.n_heads=4
        --model.init_args.denoiser.embed_dim=64 --model.init_args.denoiser.max_len=112 --model.init_args.denoiser.position=rope)
  SAMPLER=(--model.init_args.timestep_sampler.init_args.pilot_steps=$((B / 10))
           --model.init_args.timestep_sampler.init_args.estimate_every=2
           --model.init_args.timestep_sampler.init_args.estimator.init_args.examples=16)
else
  echo "SCALE must be gpu or cpu" >&2; exit 2
fi

row() {  # row NAME CONFIG STEPS ARGS… : fit, then test the last checkpoint
  local name=$1 config=$2 steps=$3; shift 3
  local version=seed$SEED
  [[ $name == pretrain_tatoeba ]] && version=seed0
  local args=(--config "$config" --trainer.max_steps="$steps" --trainer.max_time=null --seed_everything="${version#seed}"
              --trainer.logger.init_args.name="$name" --trainer.logger.init_args.version="$version" "${COMMON[@]}" "$@" "${EXTRA[@]}")
  if [[ $name == pretrain_tatoeba && -f $PRETRAINED && $SEED != 0 ]]; then
    echo "=== $name: $PRETRAINED exists (trained at seed 0), kept for seed $SEED"; return
  fi
  rm -rf "${OUT:?}/$name/$version"
  echo "=== $name: $PY -m diffusion_lm.cli fit ${args[*]}"
  local t0=$SECONDS
  "$PY" -m diffusion_lm.cli fit "${args[@]}"
  local fit_s=$((SECONDS - t0))
  local ckpt=$OUT/$name/$version/checkpoints/last.ckpt
  [[ $name == pretrain_tatoeba ]] && ckpt=$PRETRAINED
  "$PY" -m diffusion_lm.cli test "${args[@]}" --ckpt_path "$ckpt" --weights_only=false 2>&1 | tee "$OUT/$name/$version.test.log"
  local bleu loss
  bleu=$(grep -a "test/bleu" "$OUT/$name/$version.test.log" | grep -oE "[0-9]+\.[0-9]+" | tail -1)
  loss=$(grep -a "test/loss" "$OUT/$name/$version.test.log" | grep -oE "[0-9]+\.[0-9]+" | tail -1)
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$SEED" "$SCALE" "$steps" "$fit_s" "$loss" "$bleu" | tee -a "$OUT/results.tsv"
}

mkdir -p "$OUT"
[[ -f $OUT/results.tsv ]] || printf "row\tseed\tscale\tsteps\tfit_seconds\ttest_loss\ttest_bleu\n" > "$OUT/results.tsv"
for r in $ROWS; do
  case $r in
    pretrain) row pretrain_tatoeba $DIR/pretrain_tatoeba.yaml "$PRETRAIN_B" "${ARCH[@]}" \
                $([[ $SCALE == cpu ]] && echo --data.init_args.bpe_vocab_size=4000) ;;
    uniform) row uniform $DIR/uniform.yaml "$B" "${ARCH[@]}" ;;
    importance_a*) row "$r" $DIR/importance.yaml "$B" "${ARCH[@]}" "${SAMPLER[@]}" \
                     --model.init_args.timestep_sampler.init_args.alpha="${r#importance_a}" ;;
    task_adapt) row task_adapt $DIR/task_adapt.yaml $((B / 4)) "${SAMPLER[@]}" \
                  $([[ $SCALE == cpu ]] && echo --model.init_args.timestep_sampler.init_args.pilot_steps=$((B / 40))) ;;
    scratch_q) row scratch_q $DIR/uniform.yaml $((B / 4)) "${ARCH[@]}" ;;
    *) echo "unknown row $r" >&2; exit 2 ;;
  esac
done
column -t "$OUT/results.tsv"
