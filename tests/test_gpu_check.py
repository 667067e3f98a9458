"""`make gpu-check SMOKE=1` end to end on a tiny Multi30k fixture (every part at toy size on the CPU, report
in a temp dir), and the cap: a part that overruns it is stopped, and what did not run says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .benchmark_fixtures import write_translation

REPO = Path(__file__).resolve().parents[1]
PARTS = ["environment", "correctness", "training", "decoding", "quality_diffusion", "quality_ar"]


@pytest.fixture(scope="module")
def multi30k_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gpu-check-data")
    write_translation(root, "multi30k", "en", "de", splits=("train", "validation", "test"), n=80)
    return root


def env(data_root: Path, tmp: Path) -> dict:
    return {**os.environ, "DIFFUSION_LM_DATA": str(data_root), "DIFFUSION_LM_CACHE": str(tmp / "cache"),
            "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def test_make_gpu_check_smoke_writes_every_part(multi30k_root, tmp_path):
    out = tmp_path / "report"
    t0 = time.perf_counter()
    r = subprocess.run(["make", "--no-print-directory", "gpu-check", "SMOKE=1", f"PY={sys.executable}",
                        f"GPU_CHECK_ARGS=--out-dir {out} --work-dir {tmp_path / 'work'}"],
                       cwd=REPO, env=env(multi30k_root, tmp_path), capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    print(f"smoke run: {time.perf_counter() - t0:.0f} s")  # ~35 s on 2 idle cores; not asserted (shared CI cores)
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["scale"] == "smoke" and report["commit"] and report["date"] and report["device"].startswith("CPU")
    assert list(report["parts"]) == PARTS
    for name, entry in report["parts"].items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["wall_s"] <= entry["cap_s"]
    parts = {k: v["result"] for k, v in report["parts"].items()}
    assert parts["environment"]["bf16_matmul_tflops"] > 0 and parts["environment"]["torch"]
    c = parts["correctness"]
    assert len(c["loss_fp32_eager"]) == len(c["loss_bf16_compiled"]) == c["steps"] > 0
    assert c["graph_breaks"] >= 0 and c["graphs"] >= 1 and c["sync_check"]["status"] == "not applicable (CPU)"
    t = parts["training"]
    assert t["lightning_tokens_per_s"] > 0 and t["bare_tokens_per_s"] > 0 and t["ratio"] > 0 and t["lightning_mfu"] > 0
    rows = parts["decoding"]["rows"]
    assert {(r["batch"], r["length"]) for r in rows} == {(1, 8), (1, 16), (4, 8), (4, 16)}
    assert all(r[f"{k}_tokens_per_s"] > 0 for r in rows for k in ("ar", "continuous", "masked"))
    assert parts["quality_diffusion"]["recipe"] == "AR2Diff" and parts["quality_ar"]["recipe"] == "Autoregressive"
    assert parts["quality_diffusion"]["pretrain"]["steps"] == 3  # the demo recipe's AR stage counts in its budget
    assert all(parts[q]["steps"] == 3 and parts[q]["test_bleu"] >= 0 for q in ("quality_diffusion", "quality_ar"))
    assert len(report["targets"]) == 5
    assert all(t["verdict"] in ("pass", "miss") and t["measured"] is not None and t["unit"] for t in report["targets"])
    md = (out / "gpu_check.md").read_text()
    assert "## Targets" in md and "Smoke scale" in md and "tokens/s" in md and "not run" not in md


def test_a_part_past_its_cap_is_stopped_and_the_rest_is_not_run(tmp_path):
    out = tmp_path / "report"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out-dir", str(out),
                        "--parts", "environment", "--cap", "environment=1"],
                       cwd=REPO, env=env(tmp_path, tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.perf_counter() - t0 < 20  # importing torch alone takes longer than the 1 s cap
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["parts"]["environment"]["status"] == "timed out" and report["parts"]["environment"]["cap_s"] == 1
    assert all(report["parts"][p]["status"] == "not run" for p in PARTS[1:])
    assert all(t["verdict"] == "not run" for t in report["targets"])
    assert "timed out" in (out / "gpu_check.md").read_text()
