"""Part 1: what the machine is — device, memory, library versions, and its measured bf16 matmul rate."""

from __future__ import annotations

import platform

import lightning as L
import torch

from benchmarks.bench_train import datasheet_peak, measured_matmul_peak

from ..scale import Scale


def run(scale: Scale, opts) -> dict:  # noqa: ARG001 — every part's run() takes the same arguments
    device = torch.device(scale.device)
    cuda = device.type == "cuda"
    props = torch.cuda.get_device_properties(device) if cuda else None
    peak = measured_matmul_peak(device, torch.bfloat16)  # 8192³ on CUDA (1024³ on the CPU smoke)
    sheet = datasheet_peak(device, "bf16-mixed")
    return {
        "device": props.name if cuda else f"CPU ({platform.processor() or platform.machine()}, "
                                          f"{torch.get_num_threads()} threads)",
        "device_memory_gib": props.total_memory / 2**30 if cuda else None,
        "device_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "matmul_size": 8192 if cuda else 1024,
        "bf16_matmul_tflops": peak / 1e12,
        "bf16_datasheet_tflops": sheet and sheet / 1e12,
    }
