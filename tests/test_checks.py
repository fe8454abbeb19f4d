"""_checks.check_finite: the fast aminmax test must catch every NaN/Inf wherever it sits."""
import pytest
import torch

from latentfast import _checks


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_finds_any_bad_entry(dtype, n, bad):
    for pos in sorted({0, n // 2, n - 1}):
        x = torch.randn(n, dtype=torch.float64).to(dtype)
        _checks.check_finite("x", x)  # finite: passes
        x[pos] = bad
        with pytest.raises(ValueError, match=r"^x: expected finite values, got 1 NaN/Inf entries"):
            _checks.check_finite("x", x)
        strided = x.view(1, -1).expand(2, -1).t()  # non-contiguous view of the same entries
        with pytest.raises(ValueError, match=r"got 2 NaN/Inf entries"):
            _checks.check_finite("x", strided)


def test_check_finite_empty_and_integer():
    _checks.check_finite("x", torch.empty(0, 3))
    _checks.check_finite("x", torch.arange(5))
