# diffusion_lm — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/diffusion-lm
ARGS ?=

# Data root: $DIFFUSION_LM_DATA if set, else a sibling shared/data checkout, else ./data
DIFFUSION_LM_DATA ?= $(firstword $(wildcard $(abspath ../shared/data)) $(CURDIR)/data)
export DIFFUSION_LM_DATA
export TOKENIZERS_PARALLELISM ?= false

HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
# CPU machines get the CPU build of torch 2.13; on other CPU boxes add
# TORCH_INDEX=https://download.pytorch.org/whl/cpu so pip does not fetch the CUDA build.
TORCH_SPEC ?= $(if $(HAS_GPU),torch,torch==2.13.0)
TORCH_INDEX ?=
# Accelerator flags for the training targets: DDP over every visible GPU in bf16, else one CPU process.
DEVICE_ARGS ?= $(if $(HAS_GPU),--trainer.accelerator=gpu --trainer.devices=-1 --trainer.strategy=ddp --trainer.precision=bf16-mixed,--trainer.accelerator=cpu --trainer.devices=1)
# bench-train: the GPT-2-small-size denoiser at L = 128/256/1024 on a GPU; a reduced model on a CPU
BENCH_ARGS ?= $(if $(HAS_GPU),--measure-peak --out runs/bench_train.json,--device cpu --d-model 256 --n-layers 4 --n-heads 4 --vocab 8192 --lengths 64 128 256 --tokens-per-batch 2048 --warmup 3 --steps 24 --repeats 3 --precision 32-true --no-compile --measure-peak --out runs/bench_train_cpu.json)
DEMO_ARGS ?= $(if $(HAS_GPU),--trainer.precision=bf16-mixed --trainer.max_time=00:00:05:00 --trainer.max_steps=10000 --data.init_args.max_tokens=16384)

.PHONY: help install demo lint test test-all tensorboard train-multi30k train-wmt14 train-wmt14-enfr train-iwslt14 \
	train-xsum train-commongen train-squad train-mbpp ablation-task-specific bench-train ar2diff-demo \
	distill-multi30k gpu-check clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'
	@echo "  data root: $(DIFFUSION_LM_DATA)   GPU: $(if $(HAS_GPU),yes,no)"

install: $(VENV)/.installed ## create .venv and install torch + diffusion_lm[dev]

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

demo: install ## train a small diffusion LM on Multi30k (AR, then masked diffusion: ~7 min on CPU), sample, print test BLEU
	@rm -rf runs/demo/checkpoints runs/demo/ar
	$(CLI) fit --config experiments/demo.yaml --config experiments/multi30k/autoregressive_demo.yaml --config experiments/demo_pretrain.yaml $(DEMO_ARGS) $(ARGS)
	$(CLI) fit --config experiments/demo.yaml $(DEMO_ARGS) $(ARGS)
	$(CLI) test --config experiments/demo.yaml --ckpt_path runs/demo/checkpoints/last.ckpt $(DEMO_ARGS) $(ARGS)

lint: install ## ruff: style, imports, bugbear, unused arguments (configured in pyproject.toml)
	$(VENV)/bin/ruff check .

test: install ## the test suite (CPU, no network; the `slow` marker is left out)
	$(PY) -m pytest -m "not slow" -q $(ARGS)

test-all: install ## every test, slow ones included
	$(PY) -m pytest -q $(ARGS)

tensorboard: install ## TensorBoard on runs/ (losses, per-timestep statistics, samples)
	$(VENV)/bin/tensorboard --logdir runs $(ARGS)

.PHONY: bench-quality
bench-quality: install ## every recipe family at one size and wall-clock budget on Multi30k: BLEU table + PNG (≤ 60 min on CPU)
	$(PY) benchmarks/quality.py $(if $(HAS_GPU),--gpu) $(ARGS)

.PHONY: claims
claims: install ## the three papers' claims, 3 seeds per arm → docs/results.md (resumable; ≈ 2 h on 2 CPU cores)
	$(PY) benchmarks/claims.py $(if $(HAS_GPU),--gpu) $(ARGS)

.PHONY: learning-curve
learning-curve: install ## test BLEU vs training steps, continuous diffusion and FastDiSS from scratch (resumable; ≈ 75 min on 2 CPU cores)
	$(PY) benchmarks/learning_curve.py $(if $(HAS_GPU),--gpu) $(ARGS)

.PHONY: bench-train
bench-train: install ## training tokens/s + MFU: Lightning recipe vs a bare PyTorch loop (docs/performance.md)
	@mkdir -p runs
	$(PY) benchmarks/bench_train.py $(BENCH_ARGS) $(ARGS)

# gpu-check: on a box without this Makefile's venv (e.g. a bare GPU image with torch and lightning),
# `make gpu-check PY=python3` runs with that interpreter and skips `install`. SMOKE=1: toy sizes on the CPU,
# written to runs/gpu_check_smoke (GPU_CHECK_ARGS="--out-dir …" elsewhere), never over docs/results.
GPU_CHECK_ARGS ?=
gpu-check: $(if $(filter command line,$(origin PY)),,install) ## GPU figures in one ≤ 8 min run → docs/results/gpu_check.md (SMOKE=1: CPU toy run)
	$(PY) benchmarks/gpu_check.py $(if $(SMOKE),--smoke) $(GPU_CHECK_ARGS) $(ARGS)

# prepare: the tokenizer and tokenised splits of a config, cached once (fit builds missing ones itself)
PREPARE_CONFIG ?= experiments/wmt14/from_scratch.yaml
.PHONY: prepare prepare-multi30k bench-data
prepare: install ## tokenise a config's splits into the data cache before a (multi-node) run (PREPARE_CONFIG=…)
	$(CLI) prepare --config $(PREPARE_CONFIG) $(ARGS)

prepare-multi30k: install ## tokenise Multi30k for experiments/multi30k/from_scratch.yaml and print the cache paths
	$(CLI) prepare --config experiments/multi30k/from_scratch.yaml $(ARGS)

bench-data: install ## data set-up at 1 M pairs: first-run/cached setup, RSS per DDP rank, loader tokens/s (docs/performance.md)
	$(PY) benchmarks/bench_data.py $(ARGS)

train-multi30k: install ## Multi30k en→de from scratch (ARGS="--trainer.max_steps=…" to override)
	$(CLI) fit --config experiments/multi30k/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

train-wmt14: install ## WMT14 en→de from scratch (needs the training split: Hub `wmt/wmt14` or local files)
	$(CLI) fit --config experiments/wmt14/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

train-wmt14-enfr: install ## WMT14 en→fr from scratch (needs the training split: Hub `wmt/wmt14` or local files)
	$(CLI) fit --config experiments/wmt14_enfr/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

train-iwslt14: install ## IWSLT14 de→en from scratch (needs the training split: Hub or fairseq's script)
	$(CLI) fit --config experiments/iwslt14/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

train-xsum: install ## XSum summarisation from scratch (needs train/validation: Hub `EdinburghNLP/xsum`)
	$(CLI) fit --config experiments/xsum/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

train-commongen: install ## CommonGen v1.0 from scratch (local data; CIDEr-D)
	$(CLI) fit --config experiments/commongen/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

train-squad: install ## SQuAD v1.1 question answering from scratch (local train subset; EM/F1)
	$(CLI) fit --config experiments/squad/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

train-mbpp: install ## MBPP code generation from scratch (local data; sandboxed pass@1)
	$(CLI) fit --config experiments/mbpp/from_scratch.yaml $(DEVICE_ARGS) $(ARGS)

ablation-task-specific: install ## Multi30k: uniform vs importance t, TaskAdapt at 1/4 budget (SCALE=gpu|cpu; docs/task_specific_training.md)
	PY=$(PY) SCALE=$(or $(SCALE),$(if $(HAS_GPU),gpu,cpu)) experiments/multi30k/task_specific/ablation.sh

# AR2Diff at small scale: AR pretraining on local English text → diffusion continued pretraining → Multi30k de→en,
# chained through runs/ar2diff/stage{1,2,3}/last.ckpt (the full budgets: experiments/ar2diff/compare_multi30k.sh).
AR2DIFF = experiments/ar2diff
AR2DIFF_ARGS ?= $(if $(HAS_GPU),--trainer.accelerator=gpu --trainer.devices=1 --trainer.precision=bf16-mixed,--trainer.accelerator=cpu) --trainer.enable_progress_bar=false
ar2diff-demo: install ## AR2Diff's three stages end to end at small scale (~15 min on CPU), then test BLEU
	@rm -rf runs/ar2diff/stage1 runs/ar2diff/stage2 runs/ar2diff/stage3
	$(CLI) fit --config $(AR2DIFF)/stage1_ar_pretrain.yaml --trainer.max_time=00:00:04:00 --data.init_args.limit_train_tokens=1000000 --data.init_args.bpe_train_chars=3000000 $(AR2DIFF_ARGS) $(ARGS)
	$(CLI) fit --config $(AR2DIFF)/stage2_diffusion_pretrain.yaml --trainer.max_time=00:00:02:00 --data.init_args.limit_train_tokens=1000000 $(AR2DIFF_ARGS) $(ARGS)
	$(CLI) fit --config $(AR2DIFF)/stage3_finetune_multi30k.yaml --trainer.max_time=00:00:04:00 $(AR2DIFF_ARGS) $(ARGS)
	$(CLI) test --config $(AR2DIFF)/stage3_finetune_multi30k.yaml --ckpt_path runs/ar2diff/stage3/last.ckpt --data.init_args.limit_eval=200 $(AR2DIFF_ARGS) $(ARGS)

# Sequence-level knowledge distillation (Kim & Rush 2016; docs/distillation.md): the AR teacher decodes the
# training split of its data module into OUT/<dataset>/train.jsonl.gz; evaluation splits are copied unchanged.
OUT ?= runs/distill
distill-multi30k: install ## CKPT=<AR teacher .ckpt> [OUT=runs/distill]: distilled Multi30k train split (then experiments/multi30k/distilled.yaml)
	@test -n "$(CKPT)" || { echo "error: CKPT=<Autoregressive teacher checkpoint> is required (experiments/multi30k/ar_teacher.yaml trains one)" >&2; exit 2; }
	$(CLI) distill --ckpt_path $(CKPT) --output_dir $(OUT) $(ARGS)

clean: ## remove runs/ and caches (keeps .venv)
	rm -rf runs lightning_logs .pytest_cache
