"""dw_striding subsampling: output lengths, shapes, padding invariance and causality."""

from __future__ import annotations

import pytest
import torch

from speechkit.modules.subsampling import DwStridingSubsampling, subsampled_lengths


def _reference_lengths(n: int, factor: int, causal: bool) -> int:
    # Convolution arithmetic, stage by stage: floor((L + pad_left + pad_right - kernel) / stride) + 1.
    pads = 3 if causal else 2
    while factor > 1:
        n = (n + pads - 3) // 2 + 1
        factor //= 2
    return n


@pytest.mark.parametrize("factor", [2, 4, 8, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_lengths_formula(factor: int, causal: bool) -> None:
    ns = torch.arange(0, 300)
    got = subsampled_lengths(ns, factor, causal)
    want = torch.tensor([_reference_lengths(int(n), factor, causal) for n in ns])
    assert torch.equal(got, want)
    assert subsampled_lengths(123, factor, causal) == _reference_lengths(123, factor, causal)  # plain ints too


def test_known_lengths() -> None:
    assert subsampled_lengths(1000) == 125  # 10 s of 10 ms frames -> 80 ms frames
    assert subsampled_lengths(105, 8, causal=True) == 14  # the first chunk of a [70, 13] streaming model
    assert subsampled_lengths(112, 8, causal=True) == 15
    assert subsampled_lengths(1) == 1 and subsampled_lengths(0) == 0


@pytest.mark.parametrize("factor", [4, 8, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_shapes_match_lengths(factor: int, causal: bool) -> None:
    torch.manual_seed(0)
    sub = DwStridingSubsampling(feat_in=80, d_model=24, factor=factor, channels=8, causal=causal)
    assert sub.out.in_features == 8 * subsampled_lengths(80, factor, causal)
    lengths = torch.tensor([97, 40, 1])
    y, y_lens = sub(torch.randn(3, 97, 80), lengths)
    assert y.shape == (3, subsampled_lengths(97, factor, causal), 24)
    assert y_lens.dtype == torch.int64
    assert torch.equal(y_lens, subsampled_lengths(lengths, factor, causal))


@pytest.mark.parametrize("causal", [False, True])
def test_batched_equals_single(causal: bool) -> None:
    torch.manual_seed(1)
    sub = DwStridingSubsampling(feat_in=80, d_model=16, factor=8, channels=8, causal=causal)
    lengths = [83, 50, 9]
    x = torch.full((3, 83, 80), 5.0)  # junk padding: must not leak into valid frames
    singles = []
    for i, n in enumerate(lengths):
        xi = torch.randn(1, n, 80)
        x[i, :n] = xi[0]
        singles.append(sub(xi, torch.tensor([n]))[0][0])
    y, y_lens = sub(x, torch.tensor(lengths))
    for i, n in enumerate(y_lens.tolist()):
        assert n == singles[i].size(0)
        torch.testing.assert_close(y[i, :n], singles[i], rtol=1e-5, atol=1e-5)


def test_causal_output_ignores_future_frames() -> None:
    # Causal padding: output frame t of an 8x stack sees input frames <= 8 t only.
    torch.manual_seed(2)
    sub = DwStridingSubsampling(feat_in=80, d_model=16, factor=8, channels=8, causal=True)
    x = torch.randn(1, 120, 80)
    y, _ = sub(x, torch.tensor([120]))
    for t in (0, 3, 7, 12):
        x2 = x.clone()
        x2[:, 8 * t + 1:] = torch.randn_like(x2[:, 8 * t + 1:])
        y2, _ = sub(x2, torch.tensor([120]))
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1])
        x3 = x.clone()
        x3[:, 8 * t] += 1.0  # the newest frame it may see does change it
        assert not torch.allclose(sub(x3, torch.tensor([120]))[0][:, t], y[:, t])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="factor"):
        DwStridingSubsampling(80, 16, factor=6)
    sub = DwStridingSubsampling(80, 16, factor=4, channels=4)
    with pytest.raises(ValueError, match=r"\(B, T, 80\)"):
        sub(torch.randn(2, 64, 10), torch.tensor([10, 10]))


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_equals_whole(causal: bool) -> None:
    # Chunks of output frames are computed from just the input frames they depend on; any chunk size gives the
    # whole-sequence numbers (edges, ragged lengths and all).
    torch.manual_seed(3)
    sub = DwStridingSubsampling(feat_in=80, d_model=16, factor=8, channels=8, causal=causal)
    x, lengths = torch.randn(3, 131, 80), torch.tensor([131, 64, 3])
    sub.chunk = 0
    want, want_lens = sub(x, lengths)
    for chunk in (1, 2, 5, 16, None):
        sub.chunk = chunk
        got, got_lens = sub(x, lengths)
        assert torch.equal(got_lens, want_lens)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_empty_input() -> None:
    sub = DwStridingSubsampling(feat_in=80, d_model=16, factor=8, channels=4)
    y, y_lens = sub(torch.randn(2, 0, 80), torch.tensor([0, 0]))
    assert y.shape == (2, 0, 16) and y_lens.tolist() == [0, 0]
