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


# ---------------------------------------------------------------------------------------------------------------
# the shared converters (issue 10): one mechanism for ints, counts, numbers and their sequences

import math  # noqa: E402

import numpy as np  # noqa: E402


@pytest.mark.parametrize("value,expected", [
    (3, [3]), (np.int64(3), [3]), (torch.tensor(3), [3]), (np.array(3), [3]), ([1, 2], [1, 2]), ((1,), [1]),
    (range(2, 5), [2, 3, 4]), (np.arange(2, 5), [2, 3, 4]), (torch.arange(2, 5), [2, 3, 4]),
    ([np.int32(1), torch.tensor(2)], [1, 2]),
])
def test_as_int_sequence_accepts(value, expected):
    got = _checks.as_int_sequence("k", value)
    assert got == expected and all(type(v) is int for v in got)


@pytest.mark.parametrize("value,exc,pattern", [
    (True, TypeError, r"^k: expected an int or a sequence of ints, got True"),
    ([True], TypeError, r"^k: expected ints, got True"),
    (2.0, TypeError, r"^k: expected an int or a sequence"),
    ([1, 2.5], TypeError, r"^k: expected ints, got 2.5"),
    (np.array([1.0]), TypeError, r"^k: expected ints"),
    ([], ValueError, r"^k: expected at least one int"),
    (np.zeros((2, 2), dtype=np.int64), ValueError, r"^k: expected an int or a 1-D sequence"),
    ("12", TypeError, r"^k: expected an int or a sequence"),
    ([0], ValueError, r"^k: expected an int in \[1, inf\], got 0"),
])
def test_as_int_sequence_refuses(value, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _checks.as_int_sequence("k", value, low=1)


def test_counts_and_numbers():
    assert _checks.as_positive_int("n", np.int64(4)) == 4 and _checks.as_positive_int("n", torch.tensor(2)) == 2
    for bad, exc in [(0, ValueError), (-5, ValueError), (2.0, TypeError), (True, TypeError), (None, TypeError)]:
        with pytest.raises(exc, match=r"^n: expected an int"):
            _checks.as_positive_int("n", bad)
    assert _checks.as_float("step", np.float32(0.5)) == 0.5 and _checks.as_float("step", torch.tensor(2)) == 2.0
    assert _checks.as_float_sequence("eps", 0.1) == [0.1]
    assert _checks.as_float_sequence("eps", np.array([1e-3, 1.0])) == [1e-3, 1.0]
    assert _checks.as_float_sequence("eps", torch.tensor([0.5])) == [0.5]
    for bad, exc, pattern in [(math.nan, ValueError, "finite"), ([math.inf], ValueError, "finite"),
                              ([], ValueError, "at least one"), ("0.1", TypeError, "a number"),
                              (True, TypeError, "a number"), ([1.0, None], TypeError, "a real number")]:
        with pytest.raises(exc, match=rf"^eps: expected .*{pattern}"):
            _checks.as_float_sequence("eps", bad)
    with pytest.raises(ValueError, match=r"^tol: expected a positive number, got 0.0"):
        _checks.as_float("tol", 0.0, positive=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_orthonormality_tolerance_follows_the_dtype(dtype):
    """A basis orthonormal to the dtype's precision is accepted; a clearly unnormalised one is not."""
    assert _checks.float_compute_dtype(dtype) == (torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
    Q = torch.linalg.qr(torch.randn(8, 512, 10, dtype=torch.float64)).Q
    _checks.check_orthonormal("Q", Q.to(dtype))  # rounded to the dtype: accepted
    _checks.check_orthonormal("Q", Q.float().to(dtype))  # float32-made, then cast: accepted
    tol = _checks.orthonormal_tolerance(dtype)
    assert tol == max(1e-5, 4 * torch.finfo(dtype).eps)
    with pytest.raises(ValueError, match=r"^Q: expected orthonormal columns"):
        _checks.check_orthonormal("Q", (Q * (1 + 4 * tol)).to(dtype))
