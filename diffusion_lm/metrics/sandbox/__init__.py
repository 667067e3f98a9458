"""Confined execution of generated Python programs (MBPP pass@k)."""

from .runner import SandboxLimits, SandboxResult, run_program

__all__ = ["SandboxLimits", "SandboxResult", "run_program"]
