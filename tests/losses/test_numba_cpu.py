"""The Numba CPU kernels (speechkit.losses.numba_cpu) against the PyTorch reference and NeMo's golden values.

The reference runs in float64 on the same (float32) logits, so it is the exact answer for the kernels' inputs:
costs must agree to 1e-6 relative and gradients to 2e-5 absolute (the kernels accumulate in float64 but return
float32 gradients built with a float32 exp). Shapes are tiny; the first test to run pays Numba's compile time once
per machine (``cache=True``), after that the whole file takes a few seconds.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from speechkit.losses import numba_cpu as nc
from speechkit.losses import reference as ref

COST_RTOL = 1e-6
GRAD_ATOL = 2e-5


def _batch(seed: int, B: int, T: int, U: int, K: int, *, pad_t: int = 0, pad_u: int = 0, vocab: int | None = None,
           ragged: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random logits (B, T+pad_t, U+1+pad_u, K) and ragged lengths (the longest sample fills T and U)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T + pad_t, U + 1 + pad_u, K, generator=g) * 2.0
    targets = torch.randint(0, vocab if vocab is not None else K - 1, (B, U + pad_u), generator=g)
    if ragged and B > 1:
        logit_lengths = torch.randint(1, T + 1, (B,), generator=g)
        target_lengths = torch.randint(0, U + 1, (B,), generator=g)
        logit_lengths[0], target_lengths[0] = T, U
    else:
        logit_lengths = torch.full((B,), T)
        target_lengths = torch.full((B,), U)
    return logits, targets, logit_lengths, target_lengths


@pytest.fixture
def all_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use every thread even on tiny joints, so the parallel paths (rows split across threads, alpha and beta side
    by side) run in these tests; normally small joints run on one thread."""
    monkeypatch.setattr(nc, "_ELEMENTS_PER_THREAD", 1)


def _ref_cost_grad(fn, logits: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().double().requires_grad_(True)
    costs = fn(x, *args, **kwargs)
    costs.sum().backward()  # per-sample gradients (samples are independent), as the backend contract
    return costs.detach(), x.grad


def _assert_close(costs, grads, ref_costs, ref_grads) -> None:
    assert costs.dtype == torch.float32 and grads.dtype == torch.float32
    torch.testing.assert_close(costs.double(), ref_costs, rtol=COST_RTOL, atol=1e-6)
    torch.testing.assert_close(grads.double(), ref_grads, rtol=0, atol=GRAD_ATOL)


def test_vectorisable_exp_accuracy() -> None:
    x = np.concatenate([np.linspace(-87.4, 88.0, 4001), [0.0, -1e-8, 1e-8]]).astype(np.float32)
    got = np.array([nc._exp32(v) for v in x], dtype=np.float64)
    np.testing.assert_allclose(got, np.exp(x.astype(np.float64)), rtol=1.2e-7, atol=0)
    assert nc._exp32(np.float32(-np.inf)) == 0.0 and nc._exp32(np.float32(-100.0)) == 0.0


# ------------------------------------------------------------------------------------------------------------
# golden values (transducers.md section 10)


def test_rnnt_golden_small() -> None:
    z = torch.tensor([[[[.1, .6, .1, .1, .1], [.1, .1, .6, .1, .1], [.1, .1, .2, .8, .1]],
                       [[.1, .6, .1, .1, .1], [.1, .1, .2, .1, .1], [.7, .1, .2, .1, .1]]]])
    expected = torch.tensor([[[[-.13116688, -.3999269, .17703125, .17703125, .17703125],
                               [-.18572757, .12247056, -.18168412, .12247056, .12247056],
                               [-.32091254, .06269141, .06928472, .12624499, .06269141]],
                              [[.05456069, -.21824276, .05456069, .05456069, .05456069],
                               [.12073959, .12073959, -.48295835, .12073959, .12073959],
                               [-.6925882, .16871116, .18645467, .16871116, .16871116]]]])
    costs, grads = nc.rnnt_cost_grad(z, torch.tensor([[1, 2]]), torch.tensor([2]), torch.tensor([2]),
                                     blank=0, fastemit_lambda=0.0, clamp=-1.0, need_grad=True)
    torch.testing.assert_close(costs, torch.tensor([4.495666]), rtol=1e-6, atol=0)
    torch.testing.assert_close(grads, expected, rtol=0, atol=1e-6)


def test_tdt_golden_fixed_case() -> None:
    expected = torch.tensor([[
        [[-.649628, .25, .25, .149628, .267258, -.167926, -.099332],
         [.016519, .016519, .016519, -.049556, .022025, -.012272, -.009753]],
        [[-.048927, .017149, .017149, .014629, -.011432, -.011432, .022865],
         [.125315, .125315, .125315, -.375945, .167087, .13027, -.297357]],
        [[-.025723, .008574, .008574, .008574, -.022865, .011432, .011432],
         [.133889, .133889, .133889, -.401667, .178519, -.357038, .178519]]]])
    costs, grads = nc.tdt_cost_grad(torch.zeros(1, 3, 2, 7), torch.tensor([[0]]), torch.tensor([3]),
                                    torch.tensor([1]), blank=3, durations=(0, 1, 2), sigma=0.05,
                                    fastemit_lambda=0.0, clamp=-1.0, need_grad=True)
    torch.testing.assert_close(costs, torch.tensor([4.155739]), rtol=1e-6, atol=0)
    torch.testing.assert_close(grads, expected, rtol=0, atol=2e-6)


def test_rnnt_matches_torchaudio() -> None:
    torchaudio_f = pytest.importorskip("torchaudio.functional")
    logits, targets, tl, ll = _batch(0, 3, 7, 4, 9, ragged=False)
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, 8, 0.0, -1.0, True)
    x = logits.clone().requires_grad_(True)
    ta = torchaudio_f.rnnt_loss(x, targets.int(), tl.int(), ll.int(), blank=8, reduction="none")
    ta.sum().backward()
    torch.testing.assert_close(costs, ta.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads, x.grad, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# kernels == reference


@pytest.mark.parametrize("blank", [-1, 0, 3])
def test_rnnt_matches_reference_ragged_and_padded(blank: int, all_threads: None) -> None:
    K = 7
    b = blank % K
    logits, targets, tl, ll = _batch(1, 4, 6, 4, K, pad_t=2, pad_u=1)
    targets[targets == b] = (b + 1) % K  # targets never hold the blank
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, b, 0.0, -1.0, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.rnnt_loss_reference, logits, targets, tl, ll, b))


@pytest.mark.parametrize("durations", [(0, 1, 2, 3, 4), (1, 2, 3), (0, 1, 3)])
@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_tdt_matches_reference(durations: tuple[int, ...], sigma: float, all_threads: None) -> None:
    V, D = 6, len(durations)
    logits, targets, tl, ll = _batch(2, 4, 8, 4, V + 1 + D, pad_t=1, pad_u=1, vocab=V)
    costs, grads = nc.tdt_cost_grad(logits, targets, tl, ll, V, durations, sigma, 0.0, -1.0, True)
    rc, rg = _ref_cost_grad(ref.tdt_loss_reference, logits, targets, tl, ll, durations, V, sigma)
    finite = torch.isfinite(rc)  # without duration 0, U > T has no alignment (checked separately)
    _assert_close(costs[finite], grads[finite], rc[finite], rg[finite])


@pytest.mark.parametrize("big", [(2, 4, 8), (2, 3)])
@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_multiblank_matches_reference(big: tuple[int, ...], sigma: float, all_threads: None) -> None:
    V, N = 5, len(big)
    logits, targets, tl, ll = _batch(3, 4, 9, 3, V + N + 1, pad_t=2, vocab=V)
    costs, grads = nc.multiblank_cost_grad(logits, targets, tl, ll, V + N, big, sigma, 0.0, -1.0, True)
    _assert_close(costs, grads,
                  *_ref_cost_grad(ref.multiblank_rnnt_loss_reference, logits, targets, tl, ll, big, V + N, sigma))


@pytest.mark.parametrize("T,U", [(1, 0), (1, 3), (5, 0), (1, 1)])
def test_edge_shapes_t1_u1(T: int, U: int) -> None:
    """T=1 (a single frame) and U=1 (no labels: one lattice row) for all three losses."""
    V = 4
    logits, targets, tl, ll = _batch(4, 2, T, U, V + 1, ragged=False)
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.rnnt_loss_reference, logits, targets, tl, ll, V))

    lt, _, _, _ = _batch(5, 2, T, U, V + 1 + 3, ragged=False)
    costs, grads = nc.tdt_cost_grad(lt, targets, tl, ll, V, (0, 1, 2), 0.05, 0.0, -1.0, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.tdt_loss_reference, lt, targets, tl, ll, (0, 1, 2), V, 0.05))

    lm, _, _, _ = _batch(6, 2, T, U, V + 1 + 2, ragged=False)
    costs, grads = nc.multiblank_cost_grad(lm, targets, tl, ll, V + 2, (2, 4), 0.05, 0.0, -1.0, True)
    _assert_close(costs, grads,
                  *_ref_cost_grad(ref.multiblank_rnnt_loss_reference, lm, targets, tl, ll, (2, 4), V + 2, 0.05))


@pytest.mark.parametrize("lam", [1.0, 0.01, 1e-5])
def test_fastemit(lam: float) -> None:
    V = 5
    logits, targets, tl, ll = _batch(7, 3, 6, 3, V + 1)
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, V, lam, -1.0, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.rnnt_loss_reference, logits, targets, tl, ll, V, lam))
    # the reported cost is -(1 + lambda) log P; the gradient is not its derivative
    c0, _ = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, False)
    torch.testing.assert_close(costs, c0 * (1 + lam), rtol=1e-6, atol=0)

    lt, _, _, _ = _batch(8, 3, 6, 3, V + 1 + 3)
    costs, grads = nc.tdt_cost_grad(lt, targets, tl, ll, V, (0, 1, 2), 0.05, lam, -1.0, True)
    _assert_close(costs, grads,
                  *_ref_cost_grad(ref.tdt_loss_reference, lt, targets, tl, ll, (0, 1, 2), V, 0.05, lam))

    lm, _, _, _ = _batch(9, 3, 6, 3, V + 1 + 2)
    costs, grads = nc.multiblank_cost_grad(lm, targets, tl, ll, V + 2, (2, 3), 0.05, lam, -1.0, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.multiblank_rnnt_loss_reference, lm, targets, tl, ll, (2, 3),
                                                V + 2, 0.05, lam))


def test_clamp() -> None:
    """clamp clips token-logit gradients (after FastEmit); TDT duration gradients are not clipped."""
    V, c = 5, 0.05
    logits, targets, tl, ll = _batch(10, 3, 6, 3, V + 1)
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.5, c, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.rnnt_loss_reference, logits, targets, tl, ll, V, 0.5, c))
    assert grads.abs().max() <= c + 1e-7
    assert (grads.abs() == torch.tensor(c, dtype=torch.float32)).any()  # the clamp was active

    lt, _, _, _ = _batch(11, 3, 6, 3, V + 1 + 3)
    costs, grads = nc.tdt_cost_grad(lt, targets, tl, ll, V, (0, 1, 2), 0.05, 0.0, c, True)
    _assert_close(costs, grads,
                  *_ref_cost_grad(ref.tdt_loss_reference, lt, targets, tl, ll, (0, 1, 2), V, 0.05, 0.0, c))
    assert grads[..., : V + 1].abs().max() <= c + 1e-7
    assert grads[..., V + 1:].abs().max() > c  # duration logits are not clipped

    lm, _, _, _ = _batch(12, 3, 6, 3, V + 1 + 2)
    costs, grads = nc.multiblank_cost_grad(lm, targets, tl, ll, V + 2, (2, 3), 0.05, 0.0, c, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.multiblank_rnnt_loss_reference, lm, targets, tl, ll, (2, 3),
                                                V + 2, 0.05, 0.0, c))


def test_sigma_shifts_token_logprobs_only() -> None:
    """With sigma, a TDT path of n arcs loses n*sigma; the duration softmax is untouched (so the gradient of
    a lattice whose every path has the same number of arcs does not change)."""
    V = 3
    logits, targets, tl, ll = _batch(13, 1, 1, 2, V + 1 + 2, vocab=V, ragged=False)  # durations (0, 1): T=1 forces d
    c0, g0 = nc.tdt_cost_grad(logits, targets, tl, ll, V, (0, 1), 0.0, 0.0, -1.0, True)
    c1, g1 = nc.tdt_cost_grad(logits, targets, tl, ll, V, (0, 1), 0.25, 0.0, -1.0, True)
    # T=1: labels must use duration 0, the final blank duration 1: exactly U+1 = 3 arcs on every path
    torch.testing.assert_close(c1 - c0, torch.tensor([3 * 0.25]), rtol=0, atol=1e-5)
    torch.testing.assert_close(g1, g0, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# layout, strides, padding, long utterances


def test_strided_token_view_is_read_in_place() -> None:
    """The TDT omega branch passes logits[..., :V+1]: a view, read without a copy, same answer as a copy."""
    V, D = 6, 5
    full, targets, tl, ll = _batch(14, 3, 7, 4, V + 1 + D, vocab=V)
    view = full[..., : V + 1]
    assert not view.is_contiguous()
    flat, strides = nc._flat_view(view)
    assert np.shares_memory(flat, full.numpy()) and strides == full.stride()[:3]
    costs, grads = nc.rnnt_cost_grad(view, targets, tl, ll, V, 0.0, -1.0, True)
    c2, g2 = nc.rnnt_cost_grad(view.contiguous(), targets, tl, ll, V, 0.0, -1.0, True)
    assert torch.equal(costs, c2) and torch.equal(grads, g2)
    assert grads.shape == view.shape and grads.is_contiguous()
    _assert_close(costs, grads, *_ref_cost_grad(ref.rnnt_loss_reference, view, targets, tl, ll, V))


def test_padded_cells_are_exactly_zero(all_threads: None) -> None:
    V = 4
    logits, targets, tl, ll = _batch(15, 4, 6, 3, V + 1 + 3, pad_t=3, pad_u=2, vocab=V)
    for costs, grads in (
        nc.rnnt_cost_grad(logits[..., : V + 1], targets, tl, ll, V, 0.1, 0.3, True),
        nc.tdt_cost_grad(logits, targets, tl, ll, V, (0, 1, 2), 0.05, 0.1, -1.0, True),
        nc.multiblank_cost_grad(logits[..., : V + 3], targets, tl, ll, V + 2, (2, 3), 0.05, 0.1, -1.0, True),
    ):
        T, U1 = grads.shape[1], grads.shape[2]
        t = torch.arange(T).view(1, T, 1)
        u = torch.arange(U1).view(1, 1, U1)
        padded = (t >= tl.view(-1, 1, 1)) | (u > ll.view(-1, 1, 1))
        assert padded.any() and torch.all(grads[padded] == 0)
        assert torch.all(grads[~padded].abs().sum(-1) > 0)
        assert torch.isfinite(costs).all()


def test_single_long_utterance_time_parallel_path(all_threads: None) -> None:
    """B=1, long T: the row passes split the frames across threads; alpha and beta run side by side."""
    V = 8
    logits, targets, tl, ll = _batch(16, 1, 300, 30, V + 1, vocab=V)
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
    _assert_close(costs, grads, *_ref_cost_grad(ref.rnnt_loss_reference, logits, targets, tl, ll, V))
    lt, _, _, _ = _batch(17, 1, 300, 30, V + 1 + 5, vocab=V)
    costs, grads = nc.tdt_cost_grad(lt, targets, tl, ll, V, (0, 1, 2, 3, 4), 0.05, 0.0, -1.0, True)
    _assert_close(costs, grads,
                  *_ref_cost_grad(ref.tdt_loss_reference, lt, targets, tl, ll, (0, 1, 2, 3, 4), V, 0.05))


def test_huge_page_hint_keeps_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gradient buffer's huge-page hint (normally for buffers >= 32 MB) changes nothing but speed."""
    V = 1023
    logits, targets, tl, ll = _batch(26, 2, 40, 12, V + 1, vocab=V)  # a 8 MB joint: holds whole 2 MB pages
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
    monkeypatch.setattr(nc, "_HUGEPAGE_MIN_BYTES", 0)
    c2, g2 = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
    assert torch.equal(costs, c2) and torch.equal(grads, g2)
    _assert_close(c2, g2, *_ref_cost_grad(ref.rnnt_loss_reference, logits, targets, tl, ll, V))


def test_lattice_intermediates() -> None:
    """alpha equals the reference's; beta(0, 0) == logP (beta includes the terminal blank)."""
    V = 5
    logits, targets, tl, ll = _batch(18, 3, 7, 3, V + 1 + 3, pad_t=1, vocab=V)
    for lat, rlat in (
        (nc.rnnt_lattice(logits[..., : V + 1], targets, tl, ll, V),
         ref.rnnt_lattice(logits[..., : V + 1].double(), targets, tl, ll, V)),
        (nc.tdt_lattice(logits, targets, tl, ll, V, (0, 1, 2), 0.05),
         ref.tdt_lattice(logits.double(), targets, tl, ll, (0, 1, 2), V, 0.05)),
        (nc.multiblank_lattice(logits[..., : V + 3], targets, tl, ll, V + 2, (2, 3), 0.05),
         ref.multiblank_lattice(logits[..., : V + 3].double(), targets, tl, ll, (2, 3), V + 2, 0.05)),
    ):
        torch.testing.assert_close(lat.log_alpha, rlat.log_alpha, rtol=0, atol=1e-5)
        torch.testing.assert_close(lat.log_prob, rlat.log_prob, rtol=1e-7, atol=1e-6)
        torch.testing.assert_close(lat.log_beta[:, 0, 0], lat.log_prob, rtol=1e-9, atol=1e-9)


def test_need_grad_false_gives_costs_only() -> None:
    V = 4
    logits, targets, tl, ll = _batch(19, 3, 5, 2, V + 1)
    c0, g0 = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, False)
    c1, _ = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
    assert g0 is None and torch.equal(c0, c1)


def test_impossible_alignment_is_inf_with_zero_grad() -> None:
    """TDT without duration 0 cannot emit more labels than frames: cost inf, gradient 0, no NaN."""
    V = 3
    logits, targets, _, _ = _batch(20, 2, 2, 3, V + 1 + 2, vocab=V, ragged=False)
    tl, ll = torch.tensor([2, 2]), torch.tensor([3, 1])
    costs, grads = nc.tdt_cost_grad(logits, targets, tl, ll, V, (1, 2), 0.0, 0.0, -1.0, True)
    assert torch.isinf(costs[0]) and torch.isfinite(costs[1])
    assert torch.all(grads[0] == 0) and torch.isfinite(grads).all()


def test_minus_inf_logits_are_exact_zeros_of_the_softmax() -> None:
    V = 5
    logits, targets, tl, ll = _batch(21, 2, 5, 2, V + 1, vocab=3)
    logits[..., 4] = float("-inf")  # a masked class never used by the targets
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
    assert torch.isfinite(costs).all() and torch.all(grads[..., 4] == 0)
    _assert_close(costs, grads, *_ref_cost_grad(ref.rnnt_loss_reference, logits, targets, tl, ll, V))


def test_int32_inputs_and_1d_row_targets() -> None:
    V = 4
    logits, targets, tl, ll = _batch(22, 2, 5, 2, V + 1)
    c64, g64 = nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
    c32, g32 = nc.rnnt_cost_grad(logits, targets.int(), tl.int(), ll.int(), V, 0.0, -1.0, True)
    assert torch.equal(c64, c32) and torch.equal(g64, g32)


def test_guards_name_the_argument() -> None:
    V = 4
    logits, targets, tl, ll = _batch(23, 2, 5, 2, V + 1)
    with pytest.raises(TypeError, match="float32"):
        nc.rnnt_cost_grad(logits.double(), targets, tl, ll, V, 0.0, -1.0, True)
    with pytest.raises(ValueError, match="logit_lengths"):
        nc.rnnt_cost_grad(logits, targets, tl + 10, ll, V, 0.0, -1.0, True)
    with pytest.raises(ValueError, match="target_lengths"):
        nc.rnnt_cost_grad(logits, targets, tl, ll + 5, V, 0.0, -1.0, True)
    bad = targets.clone()
    bad[0, 0] = V + 7
    with pytest.raises(ValueError, match="targets"):
        nc.rnnt_cost_grad(logits, bad, tl, torch.tensor([2, 2]), V, 0.0, -1.0, True)


def test_thread_count_follows_torch_and_work_size() -> None:
    most = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    assert nc._num_threads(1000) == 1  # a tiny joint: one thread, no barrier waits
    assert nc._num_threads(1 << 40) == most


def test_thread_settings_are_restored() -> None:
    """numba.set_num_threads must not leak, and torch's thread count must not change (NeMo #8141)."""
    V = 4
    logits, targets, tl, ll = _batch(24, 2, 5, 2, V + 1)
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        nc.rnnt_cost_grad(logits, targets, tl, ll, V, 0.0, -1.0, True)
        assert numba.get_num_threads() == 1
        assert torch.get_num_threads() == torch_threads
    finally:
        numba.set_num_threads(numba_threads)


def test_public_api_numba_backend_matches_torch_backend() -> None:
    """Through speechkit.losses (reductions, autograd Function): numba == torch backend."""
    losses = pytest.importorskip("speechkit.losses")
    V = 5
    logits, targets, tl, ll = _batch(25, 3, 6, 3, V + 1 + 3, vocab=V)
    for fn, kw in ((losses.rnnt_loss, {}), (losses.tdt_loss, {"durations": [0, 1, 2], "sigma": 0.05}),
                   (losses.multiblank_rnnt_loss, {"big_blank_durations": [2, 3], "sigma": 0.05})):
        x = logits[..., : V + 1] if fn is losses.rnnt_loss else logits
        out = {}
        for backend in ("numba", "torch"):
            xi = x.detach().clone().requires_grad_(True)
            loss = fn(xi, targets, tl, ll, reduction="mean_volume", backend=backend, **kw)
            loss.backward()
            out[backend] = (loss.detach(), xi.grad)
        torch.testing.assert_close(out["numba"][0], out["torch"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["numba"][1], out["torch"][1], rtol=0, atol=1e-5)
