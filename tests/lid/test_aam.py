"""Additive angular margin softmax: the margin lands on the target angle only, scale, fallback, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from speechkit.losses.aam import AAMSoftmaxLoss, aam_logits, aam_softmax_loss


def test_margin_on_target_logit_only() -> None:
    cos = torch.tensor([[0.8, 0.3, -0.5], [0.1, 0.6, 0.2]])
    targets = torch.tensor([0, 2])
    m, s = 0.3, 10.0
    out = aam_logits(cos, targets, m, s)
    expected = s * cos.clone()
    expected[0, 0] = s * math.cos(math.acos(0.8) + m)
    expected[1, 2] = s * math.cos(math.acos(0.2) + m)
    torch.testing.assert_close(out, expected)
    # Non-target logits are just scaled; the target one is lowered.
    assert out[0, 0] < s * cos[0, 0] and out[1, 2] < s * cos[1, 2]


def test_loss_is_cross_entropy_of_margined_logits() -> None:
    torch.manual_seed(0)
    cos = torch.rand(5, 4) * 2 - 1
    targets = torch.tensor([0, 1, 2, 3, 1])
    loss = aam_softmax_loss(cos, targets, 0.2, 30.0)
    ref = F.cross_entropy(aam_logits(cos, targets, 0.2, 30.0), targets)
    torch.testing.assert_close(loss, ref)
    # margin 0: the plain scaled-cosine softmax
    torch.testing.assert_close(aam_softmax_loss(cos, targets, 0.0, 7.0), F.cross_entropy(7.0 * cos, targets))
    per = aam_softmax_loss(cos, targets, 0.2, 30.0, reduction="none")
    assert per.shape == (5,)
    torch.testing.assert_close(per.mean(), loss)
    torch.testing.assert_close(aam_softmax_loss(cos, targets, 0.2, 30.0, reduction="sum"), per.sum())
    # A margin makes the same prediction cost more.
    assert float(aam_softmax_loss(cos, targets, 0.2, 30.0)) > float(aam_softmax_loss(cos, targets, 0.0, 30.0))


def test_fallback_past_pi_minus_margin_is_continuous_and_monotonic() -> None:
    m = 0.5
    thetas = torch.linspace(0.0, math.pi, 400, dtype=torch.float64)
    cos = torch.cos(thetas)[:, None]
    target = aam_logits(torch.cat([cos, torch.zeros_like(cos)], 1), torch.zeros(400, dtype=torch.long), m, 1.0)[:, 0]
    # Decreasing in theta everywhere (cos(theta + m) alone would turn back up past pi - m).
    assert bool((target[1:] <= target[:-1] + 1e-12).all())
    # Continuous at theta = pi - m: both branches give -1.
    near = torch.tensor([[math.cos(math.pi - m - 1e-6), 0.0], [math.cos(math.pi - m + 1e-6), 0.0]], dtype=torch.float64)
    pair = aam_logits(near, torch.tensor([0, 0]), m, 1.0)[:, 0]
    assert abs(float(pair[0]) + 1.0) < 1e-4 and abs(float(pair[1]) + 1.0) < 1e-4


def test_gradcheck_float64() -> None:
    torch.manual_seed(1)
    cos = (torch.rand(3, 4, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    targets = torch.tensor([1, 0, 3])
    assert torch.autograd.gradcheck(lambda c: aam_softmax_loss(c, targets, 0.2, 5.0), (cos,))
    # The gradient pushes the target cosine up and the others down.
    cos.grad = None
    aam_softmax_loss(cos, targets, 0.2, 5.0).backward()
    g = cos.grad
    assert g is not None
    for i, t in enumerate(targets.tolist()):
        assert g[i, t] < 0 and all(g[i, j] > 0 for j in range(4) if j != t)


def test_module_and_bad_input() -> None:
    cos = torch.tensor([[0.5, -0.5]])
    assert float(AAMSoftmaxLoss(0.2, 30.0)(cos, torch.tensor([0]))) == pytest.approx(
        float(aam_softmax_loss(cos, torch.tensor([0]))))
    with pytest.raises(ValueError, match="targets must lie"):
        aam_softmax_loss(cos, torch.tensor([2]))
    with pytest.raises(ValueError, match=r"shape \(B, C\)"):
        aam_softmax_loss(cos[0], torch.tensor([0]))
    with pytest.raises(ValueError, match="margin"):
        aam_softmax_loss(cos, torch.tensor([0]), margin=2.0)
    with pytest.raises(ValueError, match="reduction"):
        aam_softmax_loss(cos, torch.tensor([0]), reduction="avg")
    with pytest.raises(ValueError, match="scale"):
        AAMSoftmaxLoss(0.2, 0.0)
