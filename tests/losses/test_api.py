"""The loss API: golden values, torchaudio parity, reductions, FastEmit, clamp, sigma, omega, dtypes, validation,
the backend table, and equal results from every available backend.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import pytest
import torch

import speechkit.losses.backends as backends
from speechkit.losses import (
    BackendError,
    MultiblankRNNTLoss,
    RNNTLoss,
    TDTLoss,
    TransducerInputError,
    available_backends,
    multiblank_rnnt_loss,
    rnnt_loss,
    tdt_loss,
)
from speechkit.losses.reference import (
    multiblank_rnnt_loss_reference,
    rnnt_loss_reference,
    tdt_loss_reference,
)

RNNT_GOLDEN_LOGITS = [
    [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]],
    [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.1], [0.7, 0.1, 0.2, 0.1, 0.1]],
]
RNNT_GOLDEN_GRAD = [
    [[-0.13116688, -0.3999269, 0.17703125, 0.17703125, 0.17703125],
     [-0.18572757, 0.12247056, -0.18168412, 0.12247056, 0.12247056],
     [-0.32091254, 0.06269141, 0.06928472, 0.12624499, 0.06269141]],
    [[0.05456069, -0.21824276, 0.05456069, 0.05456069, 0.05456069],
     [0.12073959, 0.12073959, -0.48295835, 0.12073959, 0.12073959],
     [-0.6925882, 0.16871116, 0.18645467, 0.16871116, 0.16871116]],
]
TDT_GOLDEN_GRAD = [
    [[-0.649628, 0.25, 0.25, 0.149628, 0.267258, -0.167926, -0.099332],
     [0.016519, 0.016519, 0.016519, -0.049556, 0.022025, -0.012272, -0.009753]],
    [[-0.048927, 0.017149, 0.017149, 0.014629, -0.011432, -0.011432, 0.022865],
     [0.125315, 0.125315, 0.125315, -0.375945, 0.167087, 0.13027, -0.297357]],
    [[-0.025723, 0.008574, 0.008574, 0.008574, -0.022865, 0.011432, 0.011432],
     [0.133889, 0.133889, 0.133889, -0.401667, 0.178519, -0.357038, 0.178519]],
]


def _lens(*xs: int) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.long)


def _grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, x)
    return g


def _batch(k: int, seed: int = 0, dtype: torch.dtype = torch.float32, v: int = 4):
    """A ragged batch: B=3, T=6, U+1=4 (T and U padded beyond the longest sample); labels in [0, v)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 6, 4, k, generator=g, dtype=dtype)
    targets = torch.randint(0, v, (3, 3), generator=g)
    return logits, targets, _lens(5, 2, 4), _lens(2, 0, 1)


# --------------------------------------------------------------------------------------------------------------
# Golden values through the API
# --------------------------------------------------------------------------------------------------------------


def _backend_or_skip(name: str) -> None:
    why = backends.unavailable_reason(name, torch.device("cpu"))
    if why is not None:
        pytest.skip(f"{name} unavailable: {why}")


ALL_BACKENDS = ["torch", "numba", "numba_cuda"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_rnnt_golden_through_api(backend: str) -> None:
    _backend_or_skip(backend)
    z = torch.tensor([RNNT_GOLDEN_LOGITS], requires_grad=True)
    loss = rnnt_loss(z, torch.tensor([[1, 2]]), _lens(2), _lens(2), blank=0, reduction="sum", backend=backend)
    assert loss.item() == pytest.approx(4.495666, abs=1e-5)
    torch.testing.assert_close(_grad(loss, z)[0], torch.tensor(RNNT_GOLDEN_GRAD), atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_tdt_golden_through_api(backend: str) -> None:
    _backend_or_skip(backend)
    z = torch.zeros(1, 3, 2, 7, requires_grad=True)
    loss = tdt_loss(z, torch.tensor([[0]]), _lens(3), _lens(1), durations=[0, 1, 2], blank=3, sigma=0.05,
                    reduction="sum", backend=backend)
    assert loss.item() == pytest.approx(4.155739, abs=1e-5)
    torch.testing.assert_close(_grad(loss, z)[0], torch.tensor(TDT_GOLDEN_GRAD), atol=1e-6, rtol=0)


def test_tdt_blank_minus_one_is_last_token_class() -> None:
    z = torch.zeros(1, 3, 2, 7)
    args = (torch.tensor([[0]]), _lens(3), _lens(1), [0, 1, 2])
    a = tdt_loss(z, *args, blank=-1, sigma=0.05, backend="torch")
    b = tdt_loss(z, *args, blank=3, sigma=0.05, backend="torch")
    assert a.item() == b.item()


# --------------------------------------------------------------------------------------------------------------
# torchaudio parity and reductions
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("clamp", [-1.0, 0.02])
def test_rnnt_matches_torchaudio(reduction: str, clamp: float) -> None:
    ta = pytest.importorskip("torchaudio.functional")
    logits, targets, t_lens, u_lens = _batch(5)
    # torchaudio requires T == max(T_b) and U+1 == max(L_b)+1, so compare on the narrowed lattice.
    logits = logits[:, :5, :3].contiguous()
    x = logits.clone().requires_grad_()
    ours = rnnt_loss(x, targets, t_lens, u_lens, reduction=reduction, clamp=clamp, backend="torch")
    y = logits.clone().requires_grad_()
    theirs = ta.rnnt_loss(y, targets[:, :2].int(), t_lens.int(), u_lens.int(), blank=4, reduction=reduction,
                          clamp=clamp)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-5)
    upstream = torch.rand(ours.shape)  # any upstream gradient is scaled per sample
    torch.testing.assert_close(_grad((ours * upstream).sum(), x), _grad((theirs * upstream).sum(), y),
                               rtol=1e-5, atol=1e-6)


def test_reductions() -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    per = rnnt_loss(logits, targets, t_lens, u_lens, reduction="none", backend="torch")
    assert per.shape == (3,)
    assert rnnt_loss(logits, targets, t_lens, u_lens, reduction="sum", backend="torch").item() == pytest.approx(
        per.sum().item())
    assert rnnt_loss(logits, targets, t_lens, u_lens, reduction="mean", backend="torch").item() == pytest.approx(
        per.mean().item())
    vol = rnnt_loss(logits, targets, t_lens, u_lens, reduction="mean_volume", backend="torch")
    assert vol.item() == pytest.approx(per.sum().item() / 3)  # target lengths 2 + 0 + 1
    # mean_volume gradient: each sample's gradient / sum(target_lengths).
    x = logits.clone().requires_grad_()
    g_vol = _grad(rnnt_loss(x, targets, t_lens, u_lens, reduction="mean_volume", backend="torch"), x)
    g_sum = _grad(rnnt_loss(x, targets, t_lens, u_lens, reduction="sum", backend="torch"), x)
    torch.testing.assert_close(g_vol, g_sum / 3)
    # All-empty targets: mean_volume divides by 1, not 0.
    empty = rnnt_loss(logits, targets, t_lens, _lens(0, 0, 0), reduction="mean_volume", backend="torch")
    assert math.isfinite(empty.item())


def test_padding_beyond_the_longest_sample_changes_nothing() -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    x = logits.clone().requires_grad_()
    full = rnnt_loss(x, targets, t_lens, u_lens, reduction="none", backend="torch")
    g = _grad(full.sum(), x)
    y = logits[:, :5, :3].clone().requires_grad_()
    tight = rnnt_loss(y, targets[:, :2], t_lens, u_lens, reduction="none", backend="torch")
    torch.testing.assert_close(full, tight)
    torch.testing.assert_close(g[:, :5, :3], _grad(tight.sum(), y))
    assert g[:, 5:].abs().sum() == 0 and g[:, :, 3:].abs().sum() == 0
    assert g[1, 2:].abs().sum() == 0 and g[1, :, 1:].abs().sum() == 0  # sample 1: T_b = 2, no labels


def test_targets_narrower_than_u_are_padded() -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    a = rnnt_loss(logits, targets[:, :2], t_lens, u_lens, reduction="none", backend="torch")
    b = rnnt_loss(logits, targets, t_lens, u_lens, reduction="none", backend="torch")
    torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------------------------------------------
# FastEmit, clamp, sigma, omega
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [1.0, 0.01, 1e-5])
def test_fastemit_cost_and_gradient(lam: float) -> None:
    logits, targets, t_lens, u_lens = _batch(5, dtype=torch.float64)
    x = logits.clone().requires_grad_()
    plain = rnnt_loss(x, targets, t_lens, u_lens, reduction="none", backend="torch")
    fe = rnnt_loss(x, targets, t_lens, u_lens, reduction="none", fastemit_lambda=lam, backend="torch")
    torch.testing.assert_close(fe, (1 + lam) * plain)
    # The gradient is FastEmit's (checked against the formula in test_reference.py), not d(reported cost).
    ref = rnnt_loss_reference(x, targets, t_lens, u_lens, fastemit_lambda=lam)
    g_fe = _grad(fe.sum(), x)
    torch.testing.assert_close(g_fe, _grad(ref.sum(), x))
    assert not torch.allclose(g_fe, (1 + lam) * _grad(plain.sum(), x))


def test_clamp_is_per_sample_before_the_reduction() -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    logits = logits * 4
    x = logits.clone().requires_grad_()
    g_free = _grad(rnnt_loss(x, targets, t_lens, u_lens, reduction="sum", backend="torch"), x)
    g_mean = _grad(rnnt_loss(x, targets, t_lens, u_lens, reduction="mean", clamp=0.05, backend="torch"), x)
    torch.testing.assert_close(g_mean, g_free.clamp(-0.05, 0.05) / 3)
    # clamp <= 0 means off.
    g_off = _grad(rnnt_loss(x, targets, t_lens, u_lens, reduction="sum", clamp=0.0, backend="torch"), x)
    torch.testing.assert_close(g_off, g_free)


def test_sigma_changes_cost_not_normalisation() -> None:
    """sigma lowers every token arc: TDT cost grows, the duration part is untouched by sigma's definition."""
    logits, targets, t_lens, u_lens = _batch(5 + 3)
    a = tdt_loss(logits, targets, t_lens, u_lens, [0, 1, 2], reduction="none", backend="torch")
    b = tdt_loss(logits, targets, t_lens, u_lens, [0, 1, 2], sigma=0.1, reduction="none", backend="torch")
    assert (b > a).all()
    torch.testing.assert_close(b, tdt_loss_reference(logits, targets, t_lens, u_lens, (0, 1, 2), sigma=0.1))


def test_omega_zero_and_one() -> None:
    logits, targets, t_lens, u_lens = _batch(5 + 3, dtype=torch.float64)
    x = logits.clone().requires_grad_()
    kw = dict(durations=[0, 1, 2], sigma=0.05, reduction="none", fastemit_lambda=0.01, backend="torch")
    tdt = tdt_loss(x, targets, t_lens, u_lens, omega=0.0, **kw)
    torch.testing.assert_close(tdt, tdt_loss_reference(x, targets, t_lens, u_lens, (0, 1, 2), sigma=0.05,
                                                        fastemit_lambda=0.01))
    rnnt = tdt_loss(x, targets, t_lens, u_lens, omega=1.0, **kw)
    tok = x[..., :5]
    expected = rnnt_loss_reference(tok, targets, t_lens, u_lens, fastemit_lambda=0.01)  # blank V, no sigma
    torch.testing.assert_close(rnnt, expected)
    g = _grad(rnnt.sum(), x)
    assert g[..., 5:].abs().sum() == 0
    torch.testing.assert_close(g[..., :5], _grad(expected.sum(), x)[..., :5])


def test_omega_draws_once_per_call_with_the_generator() -> None:
    logits, targets, t_lens, u_lens = _batch(5 + 3)
    logits, targets, t_lens, u_lens = logits[:1, :3, :3], targets[:1], _lens(3), _lens(2)
    kw = dict(durations=[0, 1, 2], reduction="sum", backend="torch")
    l_tdt = tdt_loss(logits, targets, t_lens, u_lens, omega=0.0, **kw).item()
    l_rnnt = tdt_loss(logits, targets, t_lens, u_lens, omega=1.0, **kw).item()
    assert abs(l_tdt - l_rnnt) > 1e-3
    omega, n = 0.3, 300
    gen = torch.Generator().manual_seed(123)
    values = [tdt_loss(logits, targets, t_lens, u_lens, omega=omega, generator=gen, **kw).item() for _ in range(n)]
    picks = [abs(v - l_rnnt) < 1e-5 for v in values]
    assert all(p or abs(v - l_tdt) < 1e-5 for p, v in zip(picks, values, strict=True))
    freq = sum(picks) / n
    assert abs(freq - omega) < 4 * math.sqrt(omega * (1 - omega) / n)
    # The mean over draws estimates omega * L_RNNT + (1 - omega) * L_TDT.
    expected = omega * l_rnnt + (1 - omega) * l_tdt
    assert abs(sum(values) / n - expected) < 4 * abs(l_rnnt - l_tdt) * math.sqrt(omega * (1 - omega) / n)
    # The same seed gives the same draws; the global RNG is not touched by a call with a generator.
    gen2 = torch.Generator().manual_seed(123)
    state = torch.get_rng_state()
    again = [tdt_loss(logits, targets, t_lens, u_lens, omega=omega, generator=gen2, **kw).item() for _ in range(20)]
    assert again == values[:20]
    assert torch.equal(state, torch.get_rng_state())


# --------------------------------------------------------------------------------------------------------------
# Multi-blank, modules, dtypes
# --------------------------------------------------------------------------------------------------------------


def test_multiblank_through_api_and_module() -> None:
    logits, targets, t_lens, u_lens = _batch(5 + 2)
    x = logits.clone().requires_grad_()
    loss = multiblank_rnnt_loss(x, targets, t_lens, u_lens, [2, 3], sigma=0.05, reduction="none", backend="torch")
    ref = multiblank_rnnt_loss_reference(x, targets, t_lens, u_lens, (2, 3), sigma=0.05)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(_grad(loss.sum(), x), _grad(ref.sum(), x))
    mod = MultiblankRNNTLoss([2, 3], sigma=0.05, reduction="none", backend="torch")
    torch.testing.assert_close(mod(logits, targets, t_lens, u_lens), loss.detach())
    assert "big_blank_durations=[2, 3]" in repr(mod)


def test_modules_equal_functions() -> None:
    logits, targets, t_lens, u_lens = _batch(5 + 3)
    tdt = TDTLoss([0, 1, 2], sigma=0.02, reduction="sum", backend="torch")
    assert tdt(logits, targets, t_lens, u_lens).item() == pytest.approx(
        tdt_loss(logits, targets, t_lens, u_lens, [0, 1, 2], sigma=0.02, reduction="sum", backend="torch").item())
    rn = RNNTLoss(reduction="sum", fastemit_lambda=0.1, backend="torch")
    assert rn(logits[..., :5], targets, t_lens, u_lens).item() == pytest.approx(
        rnnt_loss(logits[..., :5], targets, t_lens, u_lens, reduction="sum", fastemit_lambda=0.1,
                  backend="torch").item())
    with pytest.raises(TransducerInputError, match="durations must contain 1"):
        TDTLoss([0, 2])
    with pytest.raises(TransducerInputError, match="reduction"):
        RNNTLoss(reduction="avg")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_keep_gradient_dtype(dtype: torch.dtype) -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    x = logits.to(dtype).requires_grad_()
    loss = rnnt_loss(x, targets, t_lens, u_lens, backend="torch")
    loss.backward()
    assert x.grad.dtype == dtype
    ref = rnnt_loss(x.detach().float(), targets, t_lens, u_lens, backend="torch")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_no_grad_and_int32_inputs() -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    with torch.no_grad():
        a = rnnt_loss(logits.requires_grad_(), targets.int(), t_lens.int(), u_lens.int(), reduction="none",
                      backend="torch")
    assert a.grad_fn is None
    b = rnnt_loss(logits.detach(), targets, t_lens, u_lens, reduction="none", backend="torch")
    torch.testing.assert_close(a, b)


def test_token_slice_view_is_accepted() -> None:
    """A row view (last dim narrower than the row stride) goes to backends as is: no copy, same result."""
    logits, targets, t_lens, u_lens = _batch(5 + 3)
    view = logits[..., :5]
    assert not view.is_contiguous()
    a = rnnt_loss(view, targets, t_lens, u_lens, reduction="none", backend="torch")
    b = rnnt_loss(view.contiguous(), targets, t_lens, u_lens, reduction="none", backend="torch")
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_single_frame_and_empty_targets(backend: str) -> None:
    """T = 1 and U+1 = 1 (no labels, zero-width targets): the only path is one blank."""
    _backend_or_skip(backend)
    logits = torch.randn(2, 1, 1, 5 + 3)
    targets, ones, zeros = torch.zeros(2, 0, dtype=torch.long), _lens(1, 1), _lens(0, 0)
    x = logits.clone().requires_grad_()
    costs = rnnt_loss(x[..., :5], targets, ones, zeros, reduction="none", backend=backend)
    torch.testing.assert_close(costs, -torch.log_softmax(logits[:, 0, 0, :5], -1)[:, 4])
    p = torch.softmax(logits[:, 0, 0, :5], -1)
    torch.testing.assert_close(_grad(costs.sum(), x)[:, 0, 0, :5], p - torch.eye(5)[4])
    costs = tdt_loss(logits, targets, ones, zeros, [0, 1, 2], reduction="none", backend=backend)
    expected = -(torch.log_softmax(logits[:, 0, 0, :5], -1)[:, 4] + torch.log_softmax(logits[:, 0, 0, 5:], -1)[:, 1])
    torch.testing.assert_close(costs, expected)
    costs = multiblank_rnnt_loss(logits[..., :7], targets, ones, zeros, [2, 3], reduction="none", backend=backend)
    torch.testing.assert_close(costs, -torch.log_softmax(logits[:, 0, 0, :7], -1)[:, 6])


@pytest.mark.parametrize("reduction", ["none", "mean", "mean_volume"])
def test_api_gradient_matches_finite_differences(reduction: str) -> None:
    """The Function's stored per-sample gradients, scaled in backward, are the true gradient (float64, torch).

    torch.autograd.gradcheck cannot be used: it runs backward several times on one graph, which the loss refuses
    because backward scales the saved gradient in place (one joint-sized buffer). So each derivative comes from
    its own forward, and a directional finite difference checks it.
    """
    logits, targets, t_lens, u_lens = _batch(5 + 3, dtype=torch.float64)
    x0 = logits[:2, :4, :3].clone()
    t_lens, u_lens = _lens(4, 2), _lens(2, 1)
    calls = {
        "tdt": lambda z: tdt_loss(z, targets[:2], t_lens, u_lens, [0, 1, 2], sigma=0.05, reduction=reduction,
                                  backend="torch"),
        "rnnt": lambda z: rnnt_loss(z[..., :5], targets[:2], t_lens, u_lens, reduction=reduction, backend="torch"),
    }
    gen = torch.Generator().manual_seed(0)
    for fn in calls.values():
        w = torch.randn(2 if reduction == "none" else (), generator=gen, dtype=torch.float64)
        x = x0.clone().requires_grad_()
        (fn(x) * w).sum().backward()
        v = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        eps = 1e-6
        numeric = ((fn(x0 + eps * v) * w).sum() - (fn(x0 - eps * v) * w).sum()) / (2 * eps)
        torch.testing.assert_close((x.grad * v).sum(), numeric, rtol=1e-6, atol=1e-8)


def test_second_backward_on_one_graph_is_refused_clearly() -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    x = logits.clone().requires_grad_()
    loss = rnnt_loss(x, targets, t_lens, u_lens, backend="torch")
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward runs once per loss call"):
        loss.backward()


# --------------------------------------------------------------------------------------------------------------
# Validation errors name the argument
# --------------------------------------------------------------------------------------------------------------


def _rnnt_call(**over):
    logits, targets, t_lens, u_lens = _batch(5)
    kw = dict(logits=logits, targets=targets, logit_lengths=t_lens, target_lengths=u_lens, backend="torch")
    kw.update(over)
    return rnnt_loss(**kw)


@pytest.mark.parametrize(("over", "match"), [
    (dict(logits=torch.randn(3, 6, 4)), "logits must have shape"),
    (dict(logits=torch.randn(3, 6, 4, 1)), "at least 2 classes"),
    (dict(logits=torch.zeros(3, 6, 4, 5, dtype=torch.long)), "logits must be float"),
    (dict(targets=torch.zeros(2, 3, dtype=torch.long)), "targets must have shape"),
    (dict(targets=torch.zeros(3, 3)), "targets must be int32 or int64"),
    (dict(logit_lengths=_lens(5, 2)), r"logit_lengths must have shape \(B=3,\)"),
    (dict(logit_lengths=_lens(7, 2, 4)), "logit_lengths has 7, more than the 6 frames"),
    (dict(logit_lengths=_lens(0, 2, 4)), "logit_lengths must be >= 1"),
    (dict(target_lengths=_lens(4, 0, 1)), "target_lengths has 4 but logits"),
    (dict(target_lengths=_lens(-1, 0, 1)), "target_lengths must be >= 0"),
    (dict(targets=torch.zeros(3, 1, dtype=torch.long)), "target_lengths has 2 but targets has only 1 columns"),
    (dict(targets=torch.tensor([[0, 4, 0], [0, 0, 0], [0, 0, 0]])), r"not the blank 4; e.g. 4 at \(sample 0, position 1\)"),
    (dict(targets=torch.tensor([[0, 9, 0], [0, 0, 0], [0, 0, 0]])), "must be in \\[0, 5\\)"),
    (dict(targets=torch.tensor([[0, -1, 0], [0, 0, 0], [0, 0, 0]])), "not token ids"),
    (dict(blank=5), "blank=5 is outside the 5 token classes"),
    (dict(blank=1.0), "blank must be an int"),
    (dict(reduction="avg"), "reduction='avg' is unknown"),
    (dict(backend="cuda_ext"), "backend='cuda_ext' is unknown"),
    (dict(fastemit_lambda=-0.1), "fastemit_lambda must be >= 0"),
    (dict(clamp=float("nan")), "clamp must be a finite number"),
    (dict(logit_lengths=[5, 2, 4]), "logit_lengths must be a torch.Tensor"),
])
def test_rnnt_validation(over: dict, match: str) -> None:
    with pytest.raises(TransducerInputError, match=match):
        _rnnt_call(**over)


def test_padding_beyond_target_length_is_not_validated() -> None:
    """Entries past target_lengths may hold anything (blank, -1): they are padding."""
    logits, _, t_lens, u_lens = _batch(5)
    targets = torch.tensor([[0, 1, -1], [4, 4, 4], [2, 99, -7]])
    rnnt_loss(logits, targets, t_lens, u_lens, backend="torch")


def test_tdt_and_multiblank_validation() -> None:
    logits, targets, t_lens, u_lens = _batch(5 + 3)
    with pytest.raises(TransducerInputError, match="sorted ascending"):
        tdt_loss(logits, targets, t_lens, u_lens, [0, 2, 1], backend="torch")
    with pytest.raises(TransducerInputError, match="must contain 1"):
        tdt_loss(logits, targets, t_lens, u_lens, [0, 2, 3], backend="torch")
    with pytest.raises(TransducerInputError, match="must not repeat"):
        tdt_loss(logits, targets, t_lens, u_lens, [0, 1, 1], backend="torch")
    with pytest.raises(TransducerInputError, match="need at least 10"):
        tdt_loss(logits, targets, t_lens, u_lens, list(range(8)), backend="torch")
    with pytest.raises(TransducerInputError, match="omega must be a probability"):
        tdt_loss(logits, targets, t_lens, u_lens, [0, 1, 2], omega=1.5, backend="torch")
    with pytest.raises(TransducerInputError, match="sigma must be >= 0"):
        tdt_loss(logits, targets, t_lens, u_lens, [0, 1, 2], sigma=-0.1, backend="torch")
    # blank=-1 is the last *token* class (index 4), never a duration logit: a target 5 is out of range.
    with pytest.raises(TransducerInputError, match=r"must be in \[0, 5\)"):
        tdt_loss(logits, torch.full_like(targets, 5), t_lens, u_lens, [0, 1, 2], backend="torch")
    with pytest.raises(TransducerInputError, match="blank=5 is outside the 5 token classes"):
        tdt_loss(logits, targets, t_lens, u_lens, [0, 1, 2], blank=5, backend="torch")
    logits = logits[..., :7]  # multi-blank: V=4 tokens, big blanks at 5 (duration 2) and 4 (duration 4), blank 6
    with pytest.raises(TransducerInputError, match="unique and sorted"):
        multiblank_rnnt_loss(logits, targets, t_lens, u_lens, [4, 2], backend="torch")
    with pytest.raises(TransducerInputError, match=">= 2"):
        multiblank_rnnt_loss(logits, targets, t_lens, u_lens, [1, 2], backend="torch")
    with pytest.raises(TransducerInputError, match=r"not the blanks 4\.\.6; e\.g\. 5"):
        multiblank_rnnt_loss(logits, torch.full_like(targets, 5), t_lens, u_lens, [2, 4], backend="torch")
    with pytest.raises(TransducerInputError, match="no room below it"):
        multiblank_rnnt_loss(logits, targets, t_lens, u_lens, [2, 4], blank=2, backend="torch")
    with pytest.raises(TransducerInputError, match="need at least 5"):
        multiblank_rnnt_loss(logits[..., :4], targets, t_lens, u_lens, [2, 4, 8], backend="torch")


def test_device_mismatch_is_named() -> None:
    logits, targets, t_lens, u_lens = _batch(5)
    with pytest.raises(TransducerInputError, match="target_lengths is on meta but logits are on cpu"):
        rnnt_loss(logits, targets, t_lens, u_lens.to("meta"), backend="torch")


# --------------------------------------------------------------------------------------------------------------
# The backend table
# --------------------------------------------------------------------------------------------------------------


def test_backend_table_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert "torch" in available_backends(cpu)
    assert backends.resolve_backend("torch", cpu) == "torch"
    with pytest.raises(BackendError, match="unknown"):
        backends.resolve_backend("fast", cpu)
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    with pytest.raises(BackendError, match=r"numba_cuda needs a CUDA device .*; available for cpu: .*torch"):
        backends.resolve_backend("numba_cuda", cpu)
    with pytest.raises(BackendError, match="numba runs on CPU tensors"):
        backends.resolve_backend("numba", torch.device("meta"))


def test_auto_falls_back_once_with_a_log(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(backends, "_LOGGED", set())
    real = backends.unavailable_reason

    def no_numba(name: str, device: torch.device) -> str | None:
        return "numba is not installed" if name.startswith("numba") else real(name, device)

    monkeypatch.setattr(backends, "unavailable_reason", no_numba)
    logits, targets, t_lens, u_lens = _batch(5)
    with caplog.at_level(logging.WARNING, logger="speechkit.losses"):
        a = rnnt_loss(logits, targets, t_lens, u_lens, backend="auto")
        b = rnnt_loss(logits, targets, t_lens, u_lens, backend="auto")
    msgs = [r.getMessage() for r in caplog.records if "falls back" in r.getMessage()]
    assert len(msgs) == 1 and "numba is not installed" in msgs[0]
    assert a.item() == b.item() == rnnt_loss(logits, targets, t_lens, u_lens, backend="torch").item()


def test_import_does_not_load_numba() -> None:
    code = "import sys, speechkit.losses; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------------------
# Every available backend gives the same costs and gradients
# --------------------------------------------------------------------------------------------------------------


BACKEND_NAMES = ["numba", "numba_cuda"]
KINDS = ["rnnt", "tdt", "tdt_no0", "tdt_omega", "multiblank"]
OPTS = {"plain": dict(), "fe+clamp": dict(fastemit_lambda=0.01, clamp=0.05)}
# The CUDA simulator takes seconds per call, so on CPU only the plain cases of numba_cuda run by default.
AGREE_CASES = [
    pytest.param(name, kind, opt, id=f"{name}-{kind}-{opt}",
                 marks=[pytest.mark.slow] if name == "numba_cuda" and opt != "plain" else [])
    for name in BACKEND_NAMES for kind in KINDS for opt in OPTS
]


@pytest.mark.parametrize(("name", "kind", "opt"), AGREE_CASES)
def test_backends_agree_with_torch(name: str, kind: str, opt: str) -> None:
    _backend_or_skip(name)
    if kind == "rnnt":
        fn, k, extra = rnnt_loss, 5, {}
    elif kind.startswith("tdt"):
        durs = [1, 2, 3] if kind == "tdt_no0" else [0, 1, 2]
        fn, k, extra = tdt_loss, 5 + 3, dict(durations=durs, sigma=0.05)
        if kind == "tdt_omega":
            extra["omega"] = 1.0
    else:
        fn, k, extra = multiblank_rnnt_loss, 5 + 2, dict(big_blank_durations=[2, 3], sigma=0.05)
    logits, targets, t_lens, u_lens = _batch(k, seed=KINDS.index(kind))
    if name == "numba_cuda" and logits.device.type == "cpu":  # simulator: a smaller, still ragged and padded batch
        logits, targets, t_lens, u_lens = logits[:2, :5, :3], targets[:2, :2], t_lens[:2].clamp(max=4), u_lens[:2]
    logits = logits * 2
    # Padding past each target length holds junk a kernel must never read as a class index.
    pad = torch.arange(targets.shape[1]).view(1, -1) >= u_lens.view(-1, 1)
    targets = torch.where(pad, torch.tensor([-1, 10**6]).repeat(targets.numel())[: targets.numel()].view_as(targets),
                          targets)
    upstream = torch.tensor([0.5, 2.0, -1.0])[: logits.shape[0]]
    # The plain cases pass a row view of a wider tensor (backends honour strides); its extra columns get no gradient.
    wide = torch.cat([logits, torch.randn_like(logits[..., :3])], dim=-1) if opt == "plain" else logits
    results = {}
    for backend in ("torch", name):
        x = wide.clone().requires_grad_()
        costs = fn(x[..., :k], targets, t_lens, u_lens, reduction="none", backend=backend, **extra, **OPTS[opt])
        g = _grad((costs * upstream).sum(), x)
        assert g[..., k:].abs().sum() == 0
        results[backend] = (costs.detach(), g)
    torch.testing.assert_close(results[name][0], results["torch"][0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(results[name][1], results["torch"][1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_backend_half_precision_on_cpu(name: str, caplog: pytest.LogCaptureFixture) -> None:
    _backend_or_skip(name)
    logits, targets, t_lens, u_lens = _batch(5)
    logits, targets, t_lens, u_lens = logits[:2, :4, :3], targets[:2, :2], t_lens[:2].clamp(max=4), u_lens[:2]
    x = logits.half().requires_grad_()
    loss = rnnt_loss(x, targets, t_lens, u_lens, backend=name)
    loss.backward()
    assert x.grad.dtype == torch.float16
    ref = rnnt_loss(logits.half().float(), targets, t_lens, u_lens, backend="torch")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-3)
