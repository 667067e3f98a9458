"""pass@k for code generation (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

Each generated program is executed against its problem's tests in the sandbox
(:mod:`diffusion_lm.metrics.sandbox`). With n programs sampled for a problem and c of them passing,
the unbiased estimator is

    pass@k = 1 − C(n − c, k) / C(n, k)                                         (Chen et al. Eq. 1)

averaged over problems (problems with n < k are left out of pass@k). With one sample per problem,
pass@1 is the fraction of problems solved.

References carry the tests: ``references[i] == [test_program]``, a Python script (imports, set-up
code, ``assert`` statements) that must run without error after the generated code. Samples of the
same problem are recognised by their identical test program, so a data module that repeats each
problem n times gets pass@k for k ≤ n.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ..errors import ConfigError
from .sandbox import SandboxLimits, run_program


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 − C(n−c, k)/C(n, k), as the numerically stable product 1 − Π_{i=n−c+1}^{n} (1 − k/i)."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def problem_key(tests: str) -> int:
    """A stable 63-bit id of a test program (the same on every rank and run, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(tests.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def program_for(code: str, tests: str) -> str:
    return f"{code.rstrip()}\n\n\n{tests.strip()}\n"


class PassAtK(Metric):
    """``update(programs, [[test_program], …])`` executes each program; ``compute()`` →
    ``{"pass@1": …, …}`` in percent. Outcomes are all-gathered under DDP (each rank runs only its own share).

    Args:
        k: The k of pass@k to report.
        timeout_s: Wall-clock limit per program.
        memory_mb: Memory limit per program.
        workers: Programs run concurrently.
        strict_sandbox: Refuse to execute anything when seccomp or Landlock is unavailable.
    """

    full_state_update = False

    def __init__(self, k: Sequence[int] = (1,), timeout_s: float = 10.0, memory_mb: int = 1024, workers: int = 4,
                 strict_sandbox: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(int(x) for x in k)
        self.limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb, strict=strict_sandbox)
        self.workers = workers
        self.add_state("problem", default=[], dist_reduce_fx="cat")
        self.add_state("passed", default=[], dist_reduce_fx="cat")

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} programs but {len(references)} test lists")
        tests = [refs[0] for refs in references]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            results = list(pool.map(lambda a: run_program(program_for(*a), self.limits), zip(predictions, tests)))
        for r in results:
            if r.status == "sandbox_error":
                raise ConfigError(f"MBPP execution refused: {r.stderr.strip()} — generated code is only run when "
                                  "seccomp and Landlock are available (Linux ≥ 5.13); set data.init_args.strict_sandbox=false "
                                  "to run it with resource limits only")
        self.problem.append(torch.tensor([problem_key(t) for t in tests], dtype=torch.long, device=self.device))
        self.passed.append(torch.tensor([r.passed for r in results], dtype=torch.long, device=self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        if isinstance(self.problem, list) and not self.problem:
            return {f"pass@{k}": torch.tensor(0.0, dtype=torch.float64) for k in self.ks}
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for key, ok in zip(dim_zero_cat(self.problem).tolist(), dim_zero_cat(self.passed).tolist()):
            counts[key][0] += 1
            counts[key][1] += ok
        out = {}
        for k in self.ks:
            vals = [pass_at_k(n, c, k) for n, c in counts.values() if n >= k]
            out[f"pass@{k}"] = torch.tensor(100.0 * sum(vals) / len(vals) if vals else float("nan"), dtype=torch.float64)
        return out
