"""ConvBlock: shapes, lengths under stride, parameter counts, and padding does not change valid outputs."""

from __future__ import annotations

import pytest
import torch

from speechkit.modules.convblocks import ConvBlock, SeparableConv1d, SqueezeExcite, conv_out_lengths


@pytest.mark.parametrize(("stride", "kernel", "dilation"), [(1, 11, 1), (2, 11, 1), (1, 29, 2), (3, 5, 1)])
def test_lengths_match_conv_output(stride: int, kernel: int, dilation: int) -> None:
    conv = SeparableConv1d(4, 6, kernel, stride, dilation)
    for t in (1, 2, 7, 20, 21):
        y, lens = conv(torch.randn(1, 4, t), torch.tensor([t]))
        assert y.shape == (1, 6, lens.item()) == (1, 6, -(-t // stride))


def test_separable_parameter_count() -> None:
    sep = SeparableConv1d(64, 128, 11)
    assert sum(p.numel() for p in sep.parameters()) == 64 * 11 + 64 * 128
    full = SeparableConv1d(64, 128, 1, separable=False)
    assert sum(p.numel() for p in full.parameters()) == 64 * 128


def test_even_kernel_rejected() -> None:
    with pytest.raises(ValueError, match="odd"):
        SeparableConv1d(4, 4, 4)


@pytest.mark.parametrize("se", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_padding_invariance(se: bool, stride: int) -> None:
    torch.manual_seed(0)
    block = ConvBlock(8, 16, 7, repeat=3, stride=stride, residual=True, se=se).eval()
    a, b = torch.randn(1, 8, 30), torch.randn(1, 8, 17)
    batch = torch.zeros(2, 8, 30)
    batch[0], batch[1, :, :17] = a[0], b[0]
    batch[1, :, 17:] = 5.0  # garbage in the padding must not leak into valid frames
    y, lens = block(batch, torch.tensor([30, 17]))
    ya, _ = block(a, torch.tensor([30]))
    yb, lb = block(b, torch.tensor([17]))
    assert lens.tolist() == [-(-30 // stride), -(-17 // stride)]
    torch.testing.assert_close(y[0:1], ya, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[1:2, :, : lb.item()], yb, atol=1e-5, rtol=1e-5)


def test_squeeze_excite_gates_channels() -> None:
    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(2, 16, 9)
    y = se(x, torch.tensor([9, 4]))
    assert y.shape == x.shape
    ratio = y / x
    # One gate per (utterance, channel), constant over time, in (0, 1).
    torch.testing.assert_close(ratio, ratio[:, :, :1].expand_as(ratio))
    assert ((ratio > 0) & (ratio < 1)).all()


def test_conv_out_lengths_doc_example() -> None:
    assert conv_out_lengths(torch.tensor([100, 99]), 11, 2, 1).tolist() == [50, 50]


def test_gradients_flow() -> None:
    block = ConvBlock(4, 4, 3, repeat=2, residual=True, se=True, dropout=0.1)
    y, _ = block(torch.randn(2, 4, 10), torch.tensor([10, 6]))
    y.sum().backward()
    assert all(p.grad is not None for p in block.parameters())
