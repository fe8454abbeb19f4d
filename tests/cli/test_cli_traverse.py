"""`traverse --iterative --direction`: the iterative traversal that follows, at each step, the local direction
best aligned with the given one (issue 10)."""
import numpy as np
import pytest
import torch

from latentfast import cli
from latentfast import traverse_iterative


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_following_a_direction_on_a_linear_map_is_the_straight_line(sign):
    """f(z) = A z: the local basis is the same everywhere, so following u_2 (given with noise, either sign)
    moves f(z) by exactly `step` along sign * u_2 per step, both ways."""
    torch.manual_seed(0)
    A = torch.randn(6, 5, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    f = lambda z: z @ A.T
    d = sign * U[:, 2] + 0.2 * U[:, 0] * 0.3  # best aligned with u_2 (|cos| largest there)
    z0 = torch.randn(5, dtype=torch.float64)
    tr = traverse_iterative(f, z0, direction=d / d.norm(), num_steps=3, step=0.5, method="exact")
    assert tr.inputs.shape == (7, 5) and tr.outputs.shape == (7, 6) and tr.indices.tolist() == [2] * 7
    expected = f(z0)[None] + 0.5 * torch.arange(-3, 4, dtype=torch.float64)[:, None] * sign * U[:, 2][None]
    torch.testing.assert_close(tr.outputs, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tr.outputs, f(tr.inputs))


def test_traverse_iterative_with_a_direction(tmp_path, tiny_generator):
    d = tmp_path / "d.npy"
    np.save(d, np.random.default_rng(1).normal(size=32).astype(np.float32))
    out = tmp_path / "t.png"
    assert cli.main(["traverse", "--direction", str(d), "--iterative", "--steps", "2", "--frames", "3",
                     "--out", str(out), "--quiet"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
