"""pass@k: the unbiased estimator, grouping of samples by problem, and the MBPP reference solutions
passing their own tests in the sandbox (real data, when present)."""

from math import comb

import pytest

from diffusion_lm.data import MBPP
from diffusion_lm.metrics import PassAtK
from diffusion_lm.metrics.pass_at_k import pass_at_k, problem_key, program_for

from .real_data import real_data_root


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (20, 1, 10), (5, 5, 2), (7, 2, 6)])
def test_estimator_equals_the_combinatorial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_samples_are_grouped_by_problem():
    good, bad = "def f(x):\n    return 2 * x", "def f(x):\n    return x"
    tests_a, tests_b = "assert f(2) == 4", "assert f(3) == 6"
    m = PassAtK(k=(1, 2, 3), timeout_s=5)
    # problem A: 1 of 2 samples passes; problem B: 2 of 2
    m.update([good, bad, good, good], [[tests_a], [tests_a], [tests_b], [tests_b]])
    out = m.compute()
    assert out["pass@1"].item() == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert out["pass@2"].item() == pytest.approx(100.0)
    assert out["pass@3"].isnan()  # no problem has 3 samples


def test_problem_key_is_stable():
    # the same on every rank and run (Python's hash() is salted per process; DDP ranks must agree)
    assert problem_key("assert f(1) == 2") == 6676936071693272077
    assert problem_key("a") != problem_key("b") and 0 <= problem_key("a") < 2**63


def test_program_joins_code_and_tests():
    assert program_for("def f():\n    return 1\n\n", "assert f() == 1\n") == "def f():\n    return 1\n\n\nassert f() == 1\n"


def test_reference_solutions_pass_on_real_mbpp():
    """The gold code of the first 40 test problems (CRLF normalised) passes its tests in the sandbox;
    a corrupted copy does not."""
    root = real_data_root()
    if root is None:
        pytest.skip("real data not found (set DIFFUSION_LM_DATA)")
    examples = MBPP(data_dir=str(root), limit_eval=40).load_split("test")
    m = PassAtK(workers=2)
    m.update([ex["tgt"] for ex in examples], [ex["refs"] for ex in examples])
    assert m.compute()["pass@1"].item() >= 95.0
    broken = PassAtK(workers=2)
    broken.update([ex["tgt"].replace("return", "return None and") for ex in examples[:10]],
                  [ex["refs"] for ex in examples[:10]])
    assert broken.compute()["pass@1"].item() <= 20.0
