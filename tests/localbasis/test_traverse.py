import pytest
import torch

import latentfast as lf
from nets import Mapping


def test_traverse_linear_values_and_shape():
    w = torch.randn(3, 5, 8)
    d = torch.randn(8)
    alphas = [-2.0, 0.0, 0.5]
    out = lf.traverse_linear(w, d, alphas)
    assert out.shape == (3, 5, 3, 8)
    for i, a in enumerate(alphas):
        torch.testing.assert_close(out[:, :, i], w + a * d)


def test_traverse_linear_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        lf.traverse_linear(torch.randn(4, 8), torch.randn(7), [1.0])


def test_apply_to_layers():
    ws = torch.randn(2, 6, 4)
    d = torch.randn(4)
    out = lf.apply_to_layers(ws, d, range(2, 5), 3.0)
    torch.testing.assert_close(out[:, 2:5], ws[:, 2:5] + 3.0 * d)
    torch.testing.assert_close(out[:, [0, 1, 5]], ws[:, [0, 1, 5]])
    per_sample = lf.apply_to_layers(ws, torch.randn(2, 4), slice(0, 1), torch.tensor([1.0, -1.0]))
    assert per_sample.shape == ws.shape
    with pytest.raises(ValueError, match="layers"):
        lf.apply_to_layers(ws, d, [7], 1.0)
    with pytest.raises(ValueError, match="ws"):
        lf.apply_to_layers(ws[0], d, [1], 1.0)
    with pytest.raises(ValueError, match="direction"):
        lf.apply_to_layers(ws, torch.randn(5), [1], 1.0)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Mapping(24, 3).double()


@pytest.mark.parametrize("scale", [True, False])
def test_first_step_follows_v_and_outputs_are_f_of_inputs(net, scale):
    z = torch.randn(3, 24, dtype=torch.float64)
    idx, step, n = 2, 0.05, 4
    tr = lf.traverse_iterative(net, z, idx, num_steps=n, step=step, scale_by_singular_value=scale)
    S = 2 * n + 1
    assert tr.inputs.shape == (3, S, 24) and tr.outputs.shape == (3, S, 24) and tr.indices.shape == (3, S)
    lb = lf.local_basis(net, z, method="exact")
    delta = step / lb.singular_values[:, idx] if scale else torch.full((3,), step, dtype=torch.float64)
    v = lb.input_basis[:, :, idx]
    torch.testing.assert_close(tr.inputs[:, n + 1], z + delta[:, None] * v, rtol=0, atol=1e-12)
    torch.testing.assert_close(tr.inputs[:, n - 1], z - delta[:, None] * v, rtol=0, atol=1e-12)
    torch.testing.assert_close(tr.inputs[:, n], z)
    with torch.no_grad():
        expected = net(tr.inputs.reshape(-1, 24)).reshape(3, S, 24)
    torch.testing.assert_close(tr.outputs, expected, rtol=0, atol=1e-12)
    if scale:  # the output moves by about `step` per step
        moved = (tr.outputs[:, n + 1] - tr.outputs[:, n]).norm(dim=1)
        assert float((moved / step - 1).abs().max()) < 0.2


def test_follows_the_matching_direction_with_consistent_sign(net):
    z = torch.randn(2, 24, dtype=torch.float64)
    n = 6
    tr = lf.traverse_iterative(net, z, 0, num_steps=n, step=0.02)
    # consecutive steps go the same way: the step vectors on each side keep a positive cosine
    steps = tr.inputs[:, 1:] - tr.inputs[:, :-1]
    cos = torch.nn.functional.cosine_similarity(steps[:, 1:], steps[:, :-1], dim=-1)
    assert float(cos.min()) > 0.5
    assert bool((tr.indices[:, n] == 0).all())


def test_batched_equals_single(net):
    z = torch.randn(3, 24, dtype=torch.float64)
    batched = lf.traverse_iterative(net, z, 1, num_steps=3, step=0.05)
    single = lf.traverse_iterative(net, z[1], 1, num_steps=3, step=0.05)
    torch.testing.assert_close(batched.inputs[1], single.inputs, rtol=0, atol=1e-10)
    torch.testing.assert_close(batched.outputs[1], single.outputs, rtol=0, atol=1e-10)


def test_traverse_iterative_bad_index(net):
    with pytest.raises(ValueError, match="index"):
        lf.traverse_iterative(net, torch.randn(24, dtype=torch.float64), 30, num_steps=2, step=0.1)
    with pytest.raises(ValueError, match="num_steps"):
        lf.traverse_iterative(net, torch.randn(24, dtype=torch.float64), 0, num_steps=0, step=0.1)
