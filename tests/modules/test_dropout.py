"""speechkit's dropout: nn.Dropout's distribution and gradient, with the cheaper CPU mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speechkit.modules.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_distribution_and_scale(p):
    torch.manual_seed(0)
    x = torch.randn(200_000).abs() + 0.5  # no zeros of its own
    y = dropout(x, p)
    dropped = y == 0
    # 200k Bernoulli draws: the dropped fraction is within 5 standard deviations of p
    assert abs(float(dropped.float().mean()) - p) < 5 * (p * (1 - p) / x.numel()) ** 0.5
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p))


def test_gradient_is_the_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.3)
    g = torch.randn_like(y)
    y.backward(g)
    kept = y.detach() != 0
    torch.testing.assert_close(x.grad, torch.where(kept, g / 0.7, torch.zeros_like(g)))


def test_identity_and_edges():
    x = torch.randn(5, 7)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.2)
    assert module.eval()(x) is x and "p=0.2" in repr(module)
    assert not list(module.parameters()) and module.state_dict() == {}
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            dropout(x, bad)
        with pytest.raises(ValueError, match="dropout probability"):
            Dropout(bad)


def test_seeded_and_a_drop_in_for_nn_dropout():
    """Same seed, same mask; the expected value matches F.dropout's (both unbiased)."""
    x = torch.ones(100_000)
    torch.manual_seed(3)
    a = dropout(x, 0.25)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.25))
    torch.manual_seed(3)
    ref = F.dropout(x, 0.25, True)
    assert abs(float(a.mean()) - 1.0) < 0.02 and abs(float(ref.mean()) - 1.0) < 0.02


def test_the_four_16_bit_lanes_of_a_draw_are_independent():
    """One 64-bit draw feeds four neighbouring elements: each lane drops with probability p, and lanes are uncorrelated."""
    torch.manual_seed(4)
    p, n = 0.3, 400_000
    dropped = (dropout(torch.ones(n), p) == 0).float().view(-1, 4)  # column k: lane k of each draw
    tol = 5 * (p * (1 - p) / (n // 4)) ** 0.5
    for k in range(4):
        assert abs(float(dropped[:, k].mean()) - p) < tol
    centred = dropped - dropped.mean(dim=0)
    corr = (centred.T @ centred) / (n // 4) / (p * (1 - p))
    off_diagonal = corr - torch.diag(torch.diagonal(corr))
    assert float(off_diagonal.abs().max()) < 5 / (n // 4) ** 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_any_shape_and_dtype(dtype):
    """Sizes that are not a multiple of four and low-precision inputs keep their shape and dtype."""
    torch.manual_seed(5)
    x = torch.ones(3, 5, 7, dtype=dtype)
    y = dropout(x, 0.5)
    assert y.shape == x.shape and y.dtype == dtype
    assert set(y.unique().tolist()) <= {0.0, 2.0}
