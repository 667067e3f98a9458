"""Part 3: training speed — ``benchmarks/bench_train.py`` at L = 256 (Lightning recipe vs bare compiled loop)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks import bench_train

from ..scale import Scale


def run(scale: Scale, opts) -> dict:  # noqa: ARG001 — every part's run() takes the same arguments
    with tempfile.TemporaryDirectory() as tmp:
        out = bench_train.main([*scale.bench_train_args, "--out", str(Path(tmp) / "bench.json")])
    row = out["results"][0]
    mfu = {name: row[name]["mfu_measured"] if row[name]["mfu_measured"] is not None else row[name]["mfu_datasheet"]
           for name in ("lightning", "bare")}
    return {
        "length": row["length"], "batch": row["batch"], "params_M": out["info"]["params_M"],
        "precision": out["info"]["precision"], "compile": out["info"]["compile"],
        "lightning_tokens_per_s": row["lightning"]["tokens_per_sec"],
        "bare_tokens_per_s": row["bare"]["tokens_per_sec"],
        "ratio": row["ratio"],
        "lightning_tflops": row["lightning"]["tflops"], "bare_tflops": row["bare"]["tflops"],
        "lightning_mfu": mfu["lightning"], "bare_mfu": mfu["bare"],
        "mfu_peak": "measured matmul" if row["lightning"]["mfu_measured"] is not None else "datasheet",
        "peak_measured_tflops": out["info"]["peak_measured_matmul_tflops"],
        "peak_datasheet_tflops": out["info"]["peak_datasheet_tflops"],
        "lightning_peak_mem_gib": row["lightning"]["peak_mem_gib"], "bare_peak_mem_gib": row["bare"]["peak_mem_gib"],
    }
