"""`make gpu-check`: everything only a GPU can show, measured in one short run (benchmarks/gpu_check.py)."""
