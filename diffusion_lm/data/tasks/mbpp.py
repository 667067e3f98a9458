"""MBPP (Austin et al. 2021, "Program Synthesis with Large Language Models"): problem + tests → Python code."""

from __future__ import annotations

from typing import Any, Literal

from torchmetrics import Metric

from ...metrics.pass_at_k import PassAtK
from ..seq2seq import Seq2SeqDataModule


def test_program(row: dict) -> str:
    """The script a solution must pass: imports, set-up code, then the ``assert`` lines. It starts with a
    ``# MBPP task <id>`` comment so that two problems with the same tests (tasks 11–510 have one such pair)
    stay two problems for pass@k."""
    task = f"# MBPP task {row['task_id']}" if "task_id" in row else ""
    parts = [task, *row.get("test_imports", []), row.get("test_setup_code", ""), *row["test_list"]]
    return "\n".join(p.replace("\r\n", "\n") for p in parts if p)


class MBPP(Seq2SeqDataModule):
    """Input = the problem text and its three tests (as in the MBPP prompt), target = the reference code
    (``\\r\\n`` line endings normalised); references = ``[test program]`` (see :func:`test_program`), which
    the pass@k metric executes after each generated program in the sandbox
    (:mod:`diffusion_lm.metrics.sandbox`).

    Local layout: ``<root>/mbpp/{train,validation,test}.jsonl.gz`` (full: 374 / 90 / 500 problems) or
    ``sanitized_{train,validation,test}.jsonl.gz`` (120 / 43 / 257); Hub fallback:
    ``google-research-datasets/mbpp`` (config ``full`` / ``sanitized``).

    Args:
        variant: ``full`` or ``sanitized`` (hand-verified subset).
        pass_k: The k of pass@k to report (``pass@1`` …).
        samples_per_problem: Evaluation examples per problem (each decoded with its own noise); ≥ k for pass@k.
        timeout_s: Wall-clock limit per program.
        memory_mb: Memory limit per program.
        exec_workers: Programs executed concurrently.
        strict_sandbox: Refuse to execute when seccomp or Landlock is unavailable (keep True).
        **kwargs: See :class:`~diffusion_lm.data.Seq2SeqDataModule`.
    """

    def __init__(self, variant: Literal["full", "sanitized"] = "full", pass_k: list[int] = [1],  # noqa: B006 — a default jsonargparse shows; never mutated
                 samples_per_problem: int = 1, timeout_s: float = 10.0, memory_mb: int = 1024, exec_workers: int = 4,
                 strict_sandbox: bool = True, **kwargs: Any) -> None:
        kwargs["dataset"] = kwargs.get("dataset") or "mbpp"
        kwargs["hub_id"] = kwargs.get("hub_id") or "google-research-datasets/mbpp"
        kwargs["hub_config"] = kwargs.get("hub_config") or variant
        if variant == "sanitized":  # the local files of the hand-verified subset are sanitized_<split>
            splits = {s: s for s in ("train", "validation", "test")} | dict(kwargs.get("splits") or {})
            kwargs["splits"] = {k: v if v.startswith("sanitized_") else f"sanitized_{v}" for k, v in splits.items()}
        super().__init__(**kwargs)
        self.variant, self.pass_k, self.samples_per_problem = variant, list(pass_k), samples_per_problem
        self.exec_args = dict(timeout_s=timeout_s, memory_mb=memory_mb, workers=exec_workers, strict_sandbox=strict_sandbox)

    def required_fields(self) -> list[str]:
        return ["code", "test_list"]

    def hub_rows(self, split_file: str) -> list[dict]:
        return super().hub_rows(split_file.removeprefix("sanitized_"))

    def to_example(self, row: dict) -> dict:
        text = row.get("text") or row.get("prompt") or ""
        tests = "\n".join(row["test_list"])
        return {"src": f"{text.strip()}\n{tests}", "tgt": row["code"].replace("\r\n", "\n").strip(),
                "refs": [test_program(row)]}

    def repeats(self, split: str) -> int:
        """n samples per evaluation problem for pass@k, k ≤ n; training examples are not repeated."""
        return 1 if split == "train" else self.samples_per_problem

    def task_metrics(self) -> dict[str, Metric]:
        return {"pass_at_k": PassAtK(k=self.pass_k, **self.exec_args)}
