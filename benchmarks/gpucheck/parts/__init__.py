"""The parts of the GPU check, in the order they run (see ``benchmarks/gpucheck/registry.py``)."""
