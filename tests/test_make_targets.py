"""`make train-<benchmark> ARGS="--trainer.fast_dev_run=true …"` runs for every benchmark target on CPU.

On the fixture data root (always) and on the real files (when present). The shipped configs are
GPU-sized, so the smoke runs add overrides that only shrink the work (batch budgets, data, 2 sampling
steps); the benchmarks without a local training split train on an evaluation split, as their configs
document. Without that override the target stops with the one-line missing-split error (tested too).
The targets call this worktree's code through ``CLI="python -m diffusion_lm.cli"`` and the running
interpreter's environment (``-o …/.installed``: never reinstalls anything).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .benchmark_fixtures import write_all_benchmarks
from .real_data import real_data_root

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
SHRINK = ("--trainer.fast_dev_run=true --data.init_args.num_workers=0 --data.init_args.max_tokens=1024 "
          "--data.init_args.eval_max_tokens=1024 --data.init_args.limit_train=64 --data.init_args.limit_eval=8 "
          "--data.init_args.bpe_vocab_size=500 --model.init_args.generator.init_args.steps=2")
NO_TRAIN = "--data.init_args.splits.train=validation"
TARGETS = {
    "train-wmt14": NO_TRAIN,
    "train-wmt14-enfr": NO_TRAIN,
    "train-iwslt14": NO_TRAIN,
    "train-xsum": "--data.init_args.splits='{train: test, validation: test}'",
    "train-commongen": "",
    "train-squad": "",
    "train-mbpp": "",
}


def make(target: str, args: str, data_root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIFFUSION_LM_DATA": str(data_root), "DIFFUSION_LM_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    cmd = ["make", "--no-print-directory", "-o", str(VENV / ".installed"), f"VENV={VENV}",
           f"CLI={sys.executable} -m diffusion_lm.cli", target,
           f"ARGS={args} --trainer.default_root_dir={tmp_path} --trainer.logger.init_args.save_dir={tmp_path}/runs"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return write_all_benchmarks(tmp_path_factory.mktemp("bench"))


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_make_target_fast_dev_run_on_fixture(target, fixture_root, tmp_path):
    r = make(target, f"{SHRINK} {TARGETS[target]}", fixture_root, tmp_path)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "fast_dev_run" in r.stdout + r.stderr and "max_steps=1" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target", ["train-wmt14", "train-iwslt14", "train-xsum"])
def test_make_target_without_training_split_says_so(target, fixture_root, tmp_path):
    r = make(target, "--trainer.fast_dev_run=true", fixture_root, tmp_path)
    assert r.returncode != 0
    assert "error: no train split" in r.stderr and "has no training split" in r.stderr
    assert "--data.init_args.splits" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_make_target_fast_dev_run_on_real_data(target, tmp_path):
    root = real_data_root()
    if root is None:
        pytest.skip("real data not found (set DIFFUSION_LM_DATA)")
    r = make(target, f"{SHRINK} {TARGETS[target]}", root, tmp_path)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
