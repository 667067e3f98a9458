import math

import pytest
import torch

from diffusion_lm.diffusion.schedule import ALPHA_BAR_MAX, ALPHA_BAR_MIN, SCHEDULES, get_schedule

T = torch.linspace(0, 1, 1001)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_monotone_bounded_finite(name):
    s = get_schedule(name)
    a = s.alpha_bar(T)
    assert torch.all(a[1:] <= a[:-1]), "ᾱ must not increase with t"
    assert torch.all((a >= ALPHA_BAR_MIN) & (a <= ALPHA_BAR_MAX))
    for f in (s.alpha_bar, s.snr, s.log_snr, s.corruption_rate):
        v = f(torch.tensor([0.0, 1.0]))
        assert torch.isfinite(v).all(), f"{name}.{f.__name__} not finite at the endpoints"


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_endpoints(name):
    s = get_schedule(name)
    assert s.alpha_bar(torch.tensor(0.0)) > 0.98  # almost clean
    assert s.alpha_bar(torch.tensor(1.0)) < 0.02  # almost pure noise
    # clamped outside [0, 1] and keeps shapes
    assert s.alpha_bar(torch.full((2, 3), 2.0)).shape == (2, 3)
    assert torch.allclose(s.alpha_bar(torch.tensor(-1.0)), s.alpha_bar(torch.tensor(0.0)))


def test_closed_forms():
    t = torch.tensor([0.25])
    assert math.isclose(get_schedule("sqrt").alpha_bar(t).item(), 1 - math.sqrt(0.25 + 1e-4), rel_tol=1e-5)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731 — one-line local helper (the cosine schedule's closed form)
    assert math.isclose(get_schedule("cosine").alpha_bar(t).item(), f(0.25) / f(0.0), rel_tol=1e-5)
    assert math.isclose(get_schedule("linear").alpha_bar(t).item(), math.exp(-(0.1 * 0.25 + 0.5 * 19.9 * 0.0625)), rel_tol=1e-5)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        get_schedule("quadratic")


def test_truncated_schedule_uses_only_levels_above_t_min():
    from diffusion_lm.diffusion import SqrtSchedule, TruncatedSchedule

    base, cut = SqrtSchedule(), TruncatedSchedule(SqrtSchedule(), t_min=0.4)
    torch.testing.assert_close(cut.alpha_bar(torch.tensor(0.0)), base.alpha_bar(torch.tensor(0.4)))
    torch.testing.assert_close(cut.alpha_bar(torch.tensor(1.0)), base.alpha_bar(torch.tensor(1.0)))
    torch.testing.assert_close(cut.alpha_bar(T), base.alpha_bar(0.4 + 0.6 * T))
    a = cut.alpha_bar(T)
    assert torch.all(a[1:] <= a[:-1]) and a.max() <= base.alpha_bar(torch.tensor(0.4)) + 1e-7
    torch.testing.assert_close(TruncatedSchedule(SqrtSchedule(), 0.0).alpha_bar(T), base.alpha_bar(T))
    with pytest.raises(ValueError, match="t_min"):
        TruncatedSchedule(t_min=1.0)
