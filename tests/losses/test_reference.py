"""The pure-PyTorch transducer references are proven, not just self-consistent.

- golden values (transducers.md section 10: NeMo's RNN-T and TDT test cases), cost and every gradient entry;
- RNN-T equals torchaudio's ``rnnt_loss`` (costs and gradients, ragged lengths, clamp);
- TDT and multi-blank equal a brute-force sum over every alignment path on tiny lattices (T <= 3, U <= 2), costs and
  gradients, with sigma checked as a shift of ``sigma * (number of arcs)`` per path;
- FastEmit and clamp equal NeMo's gradient formulas (an independent numpy alpha/beta implementation);
- ``gradcheck`` in float64 for all three;
- edge cases: empty targets, one frame, impossible alignments, padding, -inf logits, half precision.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from speechkit.losses.reference import (
    ClampGrad,
    multiblank_lattice,
    multiblank_rnnt_loss_reference,
    rnnt_lattice,
    rnnt_loss_reference,
    tdt_lattice,
    tdt_loss_reference,
)

# --------------------------------------------------------------------------------------------------------------
# Golden values (transducers.md section 10)
# --------------------------------------------------------------------------------------------------------------

RNNT_GOLDEN_LOGITS = [
    [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]],
    [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.1], [0.7, 0.1, 0.2, 0.1, 0.1]],
]
RNNT_GOLDEN_COST = 4.495666
RNNT_GOLDEN_GRAD = [
    [[-0.13116688, -0.3999269, 0.17703125, 0.17703125, 0.17703125],
     [-0.18572757, 0.12247056, -0.18168412, 0.12247056, 0.12247056],
     [-0.32091254, 0.06269141, 0.06928472, 0.12624499, 0.06269141]],
    [[0.05456069, -0.21824276, 0.05456069, 0.05456069, 0.05456069],
     [0.12073959, 0.12073959, -0.48295835, 0.12073959, 0.12073959],
     [-0.6925882, 0.16871116, 0.18645467, 0.16871116, 0.16871116]],
]
TDT_GOLDEN_COST = 4.155739
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rnnt_golden(dtype: torch.dtype) -> None:
    z = torch.tensor([RNNT_GOLDEN_LOGITS], dtype=dtype, requires_grad=True)
    cost = rnnt_loss_reference(z, torch.tensor([[1, 2]]), _lens(2), _lens(2), blank=0)
    cost.sum().backward()
    assert cost.dtype == dtype
    assert cost.item() == pytest.approx(RNNT_GOLDEN_COST, abs=1e-5)
    torch.testing.assert_close(z.grad[0], torch.tensor(RNNT_GOLDEN_GRAD, dtype=dtype), atol=1e-6, rtol=0)


def test_tdt_golden() -> None:
    z = torch.zeros(1, 3, 2, 7, dtype=torch.float64, requires_grad=True)
    cost = tdt_loss_reference(z, torch.tensor([[0]]), _lens(3), _lens(1), durations=[0, 1, 2], blank=3, sigma=0.05)
    cost.sum().backward()
    assert cost.item() == pytest.approx(TDT_GOLDEN_COST, abs=1e-6)
    torch.testing.assert_close(z.grad[0], torch.tensor(TDT_GOLDEN_GRAD, dtype=torch.float64), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------------------
# Brute force: enumerate every path
# --------------------------------------------------------------------------------------------------------------


def _arcs(kind: str, lp: torch.Tensor, ld: torch.Tensor | None, t: int, u: int, y: list[int], blank: int,
          durs: tuple[int, ...]) -> list[tuple[int, int, torch.Tensor]]:
    """Outgoing arcs of node (t, u): (t', u', log-weight)."""
    out = []
    has_label = u < len(y)
    if kind == "rnnt":
        out.append((t + 1, u, lp[t, u, blank]))
        if has_label:
            out.append((t, u + 1, lp[t, u, y[u]]))
    elif kind == "tdt":
        for i, d in enumerate(durs):
            if d > 0:
                out.append((t + d, u, lp[t, u, blank] + ld[t, u, i]))
            if has_label:
                out.append((t + d, u + 1, lp[t, u, y[u]] + ld[t, u, i]))
    else:  # multi-blank: durs are the big-blank durations
        out.append((t + 1, u, lp[t, u, blank]))
        for i, m in enumerate(durs):
            out.append((t + m, u, lp[t, u, blank - 1 - i]))
        if has_label:
            out.append((t, u + 1, lp[t, u, y[u]]))
    return out


def _paths(kind: str, lp: torch.Tensor, ld: torch.Tensor | None, y: list[int], t_len: int, blank: int,
           durs: tuple[int, ...]) -> list[tuple[torch.Tensor, int]]:
    """(log-weight, number of arcs) of every complete path of one sample."""
    done: list[tuple[torch.Tensor, int]] = []

    def walk(t: int, u: int, score: torch.Tensor, n: int) -> None:
        for t2, u2, w in _arcs(kind, lp, ld, t, u, y, blank, durs):
            is_blank = u2 == u
            if is_blank and t2 == t_len and u == len(y):
                done.append((score + w, n + 1))  # terminal blank lands exactly on T
            elif t2 < t_len:
                walk(t2, u2, score + w, n + 1)

    walk(0, 0, torch.zeros((), dtype=lp.dtype), 0)
    return done


def _brute_force_cost(kind: str, logits: torch.Tensor, targets: torch.Tensor, t_lens: torch.Tensor,
                      u_lens: torch.Tensor, durs: tuple[int, ...], blank: int, sigma: float) -> torch.Tensor:
    costs = []
    for b in range(logits.shape[0]):
        z = logits[b]
        if kind == "tdt":
            k_tok = z.shape[-1] - len(durs)
            lp = torch.log_softmax(z[..., :k_tok], -1) - sigma
            ld = torch.log_softmax(z[..., k_tok:], -1)
        else:
            lp, ld = torch.log_softmax(z, -1) - sigma, None
        y = targets[b, : int(u_lens[b])].tolist()
        paths = _paths(kind, lp, ld, y, int(t_lens[b]), blank, durs)
        if not paths:
            costs.append(torch.tensor(math.inf, dtype=z.dtype))
        else:
            costs.append(-torch.logsumexp(torch.stack([s for s, _ in paths]), 0))
    return torch.stack(costs)


def _reference(kind: str, logits: torch.Tensor, targets: torch.Tensor, t_lens: torch.Tensor, u_lens: torch.Tensor,
               durs: tuple[int, ...], blank: int, sigma: float, **kw: float) -> torch.Tensor:
    if kind == "rnnt":
        return rnnt_loss_reference(logits, targets, t_lens, u_lens, blank, **kw)
    if kind == "tdt":
        return tdt_loss_reference(logits, targets, t_lens, u_lens, durs, blank, sigma, **kw)
    return multiblank_rnnt_loss_reference(logits, targets, t_lens, u_lens, durs, blank, sigma, **kw)


BRUTE_CASES = [
    ("rnnt", ()),
    ("tdt", (0, 1, 2)),
    ("tdt", (1, 2)),
    ("tdt", (0, 1, 3)),
    ("multiblank", (2,)),
    ("multiblank", (2, 3)),
]


@pytest.mark.parametrize(
    ("kind", "durs", "sigma"), [(k, d, s) for k, d in BRUTE_CASES for s in (0.0, 0.07) if k != "rnnt" or s == 0.0]
)
def test_matches_brute_force(kind: str, durs: tuple[int, ...], sigma: float) -> None:
    """Every (T_b, L_b) with T_b <= 3, L_b <= 2 in one padded batch: costs and gradients equal brute force."""
    g = torch.Generator().manual_seed(hash((kind, durs, sigma)) % 2**31)
    shapes = list(itertools.product([1, 2, 3], [0, 1, 2]))
    b, t, u1 = len(shapes), 3, 3
    v = 3  # real tokens
    k = v + 1 + (len(durs) if kind != "rnnt" else 0)
    blank = v if kind == "tdt" or kind == "rnnt" else k - 1
    logits = torch.randn(b, t, u1, k, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, v, (b, u1 - 1), generator=g)
    t_lens = _lens(*[s[0] for s in shapes])
    u_lens = _lens(*[s[1] for s in shapes])
    ref = _reference(kind, logits, targets, t_lens, u_lens, durs, blank, sigma)
    bf = _brute_force_cost(kind, logits, targets, t_lens, u_lens, durs, blank, sigma)
    torch.testing.assert_close(ref, bf, rtol=1e-10, atol=1e-10)
    finite = torch.isfinite(bf)
    (g_ref,) = torch.autograd.grad(ref[finite].sum(), logits)
    (g_bf,) = torch.autograd.grad(bf[finite].sum(), logits)
    torch.testing.assert_close(g_ref, g_bf, rtol=1e-9, atol=1e-10)
    if kind == "tdt" and 0 not in durs:  # without duration 0 a label must consume a frame: T_b <= L_b is impossible
        assert all(not f for f, (tb, lb) in zip(finite.tolist(), shapes, strict=True) if tb <= lb)


@pytest.mark.parametrize(("kind", "durs"), [c for c in BRUTE_CASES if c[0] != "rnnt"])
def test_sigma_shifts_each_path_by_its_arc_count(kind: str, durs: tuple[int, ...]) -> None:
    sigma = 0.3
    g = torch.Generator().manual_seed(7)
    k = 4 + (len(durs))
    logits = torch.randn(1, 4, 3, k, generator=g, dtype=torch.float64)
    targets = torch.tensor([[0, 2]])
    blank = 3 if kind == "tdt" else k - 1
    t_lens, u_lens = _lens(4), _lens(2)
    z = logits[0]
    if kind == "tdt":
        lp, ld = torch.log_softmax(z[..., :4], -1), torch.log_softmax(z[..., 4:], -1)
    else:
        lp, ld = torch.log_softmax(z, -1), None
    paths = _paths(kind, lp, ld, [0, 2], 4, blank, durs)
    assert len({n for _, n in paths}) > 1, "the case should mix paths of different lengths"
    expected = -torch.logsumexp(torch.stack([s - sigma * n for s, n in paths]), 0)
    got = _reference(kind, logits, targets, t_lens, u_lens, durs, blank, sigma)
    assert got.item() == pytest.approx(expected.item(), abs=1e-12)


# --------------------------------------------------------------------------------------------------------------
# torchaudio
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clamp", [-1.0, 0.05])
@pytest.mark.parametrize("blank", [0, 5])
def test_rnnt_matches_torchaudio(clamp: float, blank: int) -> None:
    ta = pytest.importorskip("torchaudio.functional")
    g = torch.Generator().manual_seed(3)
    b, t, u1, k = 4, 7, 4, 6
    logits = torch.randn(b, t, u1, k, generator=g) * 2
    targets = torch.randint(1 if blank == 0 else 0, k - 1 if blank == 5 else k, (b, u1 - 1), generator=g)
    t_lens, u_lens = _lens(7, 3, 5, 1), _lens(3, 1, 0, 2)
    x = logits.clone().requires_grad_()
    ours = rnnt_loss_reference(x, targets, t_lens, u_lens, blank=blank, clamp=clamp)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    y = logits.clone().requires_grad_()
    theirs = ta.rnnt_loss(y, targets.int(), t_lens.int(), u_lens.int(), blank=blank, reduction="none", clamp=clamp)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), y)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# FastEmit and clamp against NeMo's formulas (independent numpy alpha/beta)
# --------------------------------------------------------------------------------------------------------------


def _numpy_rnnt(z: np.ndarray, y: list[int], blank: int, lam: float, clamp: float) -> tuple[float, np.ndarray]:
    """One sample, loops: reported cost and the FastEmit + clamp logit gradient of transducers.md section 2."""
    t_len, u_len, _ = z.shape
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    a = np.full((t_len, u_len), -np.inf)
    bt = np.full((t_len, u_len), -np.inf)
    a[0, 0] = 0.0
    for t in range(t_len):
        for u in range(u_len):
            if t == 0 and u == 0:
                continue
            terms = []
            if t > 0:
                terms.append(a[t - 1, u] + lp[t - 1, u, blank])
            if u > 0:
                terms.append(a[t, u - 1] + lp[t, u - 1, y[u - 1]])
            a[t, u] = np.logaddexp.reduce(terms)
    for t in reversed(range(t_len)):
        for u in reversed(range(u_len)):
            if t == t_len - 1 and u == u_len - 1:
                bt[t, u] = lp[t, u, blank]
                continue
            terms = []
            if t < t_len - 1:
                terms.append(bt[t + 1, u] + lp[t, u, blank])
            if u < u_len - 1:
                terms.append(bt[t, u + 1] + lp[t, u, y[u]])
            bt[t, u] = np.logaddexp.reduce(terms)
    log_p = a[-1, -1] + lp[-1, -1, blank]
    assert abs(log_p - bt[0, 0]) < 1e-9
    grad = np.zeros_like(z)
    p = np.exp(lp)
    for t in range(t_len):
        for u in range(u_len):
            occ = np.exp(a[t, u] + bt[t, u] - log_p)
            if t < t_len - 1:
                e_blank = np.exp(a[t, u] + lp[t, u, blank] + bt[t + 1, u] - log_p)
            elif u == u_len - 1:
                e_blank = np.exp(a[t, u] + lp[t, u, blank] - log_p)
            else:
                e_blank = 0.0
            e_y = np.exp(a[t, u] + lp[t, u, y[u]] + bt[t, u + 1] - log_p) if u < u_len - 1 else 0.0
            g = p[t, u] * occ
            g[blank] -= e_blank
            if u < u_len - 1:
                g[y[u]] -= e_y
                g += lam * p[t, u] * e_y
                g[y[u]] -= lam * e_y
            grad[t, u] = g
    if clamp > 0:
        grad = np.clip(grad, -clamp, clamp)
    return -(1 + lam) * log_p, grad


@pytest.mark.parametrize("lam", [1.0, 0.01, 1e-5])
@pytest.mark.parametrize("clamp", [-1.0, 0.1])
def test_fastemit_and_clamp_match_formula(lam: float, clamp: float) -> None:
    g = torch.Generator().manual_seed(11)
    b, t, u1, k = 3, 5, 4, 5
    logits = torch.randn(b, t, u1, k, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, k - 1, (b, u1 - 1), generator=g)
    t_lens, u_lens = _lens(5, 4, 2), _lens(3, 2, 3)
    costs = rnnt_loss_reference(logits, targets, t_lens, u_lens, blank=k - 1, fastemit_lambda=lam, clamp=clamp)
    (grad,) = torch.autograd.grad(costs.sum(), logits)
    for i in range(b):
        tb, ub = int(t_lens[i]), int(u_lens[i]) + 1
        cost, g_np = _numpy_rnnt(logits[i, :tb, :ub].detach().numpy(), targets[i].tolist(), k - 1, lam, clamp)
        assert costs[i].item() == pytest.approx(cost, rel=1e-12)
        np.testing.assert_allclose(grad[i, :tb, :ub].numpy(), g_np, rtol=1e-9, atol=1e-12)
        assert grad[i, tb:].abs().sum() == 0 and grad[i, :, ub:].abs().sum() == 0


@pytest.mark.parametrize(("kind", "durs"), [("tdt", (0, 1, 2)), ("multiblank", (2, 3))])
def test_fastemit_tdt_multiblank_formula(kind: str, durs: tuple[int, ...]) -> None:
    """FastEmit adds ``lambda * (p_k - [k = y_u]) * O_y`` to the token gradient and leaves the duration one alone."""
    lam = 0.5
    g = torch.Generator().manual_seed(5)
    k_tok = 4 if kind == "tdt" else 4 + len(durs)
    k = k_tok + (len(durs) if kind == "tdt" else 0)
    blank = 3 if kind == "tdt" else k - 1
    logits = torch.randn(1, 3, 3, k, generator=g, dtype=torch.float64, requires_grad=True)
    targets, t_lens, u_lens = torch.tensor([[0, 2]]), _lens(3), _lens(2)
    plain = _reference(kind, logits, targets, t_lens, u_lens, durs, blank, 0.05)
    (g_plain,) = torch.autograd.grad(plain.sum(), logits)
    fe = _reference(kind, logits, targets, t_lens, u_lens, durs, blank, 0.05, fastemit_lambda=lam)
    (g_fe,) = torch.autograd.grad(fe.sum(), logits)
    assert fe.item() == pytest.approx((1 + lam) * plain.item(), rel=1e-12)
    # O_y(t, u) = -d(log P)/d(label log-prob), from the brute-force sum over paths.
    z = logits.detach()
    lp = torch.log_softmax(z[0, ..., :k_tok], -1).requires_grad_()
    ld = torch.log_softmax(z[0, ..., k_tok:], -1) if kind == "tdt" else None
    paths = _paths(kind, lp - 0.05, ld, [0, 2], 3, blank, durs)
    log_p = torch.logsumexp(torch.stack([s for s, _ in paths]), 0)
    (d_lp,) = torch.autograd.grad(log_p, lp)
    p = lp.detach().exp()
    expected = g_plain.clone()
    for t, u in itertools.product(range(3), range(2)):
        y = targets[0, u].item()
        o_y = d_lp[t, u, y]
        expected[0, t, u, :k_tok] += lam * p[t, u] * o_y
        expected[0, t, u, y] -= lam * o_y
    torch.testing.assert_close(g_fe, expected, rtol=1e-9, atol=1e-12)


def test_tdt_clamp_leaves_duration_gradient_alone() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 3, 4 + 3, generator=g, dtype=torch.float64) * 3
    args = (torch.tensor([[0, 1], [2, 0]]), _lens(4, 3), _lens(2, 1), (0, 1, 2))
    x = logits.clone().requires_grad_()
    (g_free,) = torch.autograd.grad(tdt_loss_reference(x, *args).sum(), x)
    x = logits.clone().requires_grad_()
    (g_clip,) = torch.autograd.grad(tdt_loss_reference(x, *args, clamp=0.02).sum(), x)
    torch.testing.assert_close(g_clip[..., :4], g_free[..., :4].clamp(-0.02, 0.02))
    torch.testing.assert_close(g_clip[..., 4:], g_free[..., 4:])
    assert g_free[..., 4:].abs().max() > 0.02  # the duration gradient would have been clipped


def test_clamp_grad_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="clamp > 0"):
        ClampGrad.apply(torch.zeros(2, requires_grad=True), -1.0)


# --------------------------------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "durs"), [("rnnt", ()), ("tdt", (0, 1, 2)), ("tdt", (1, 3)), ("multiblank", (2, 3))])
def test_gradcheck(kind: str, durs: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(1)
    k = 4 + len(durs)
    blank = 3 if kind != "multiblank" else k - 1
    logits = torch.randn(2, 4, 3, k, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[0, 1], [2, 0]])
    t_lens, u_lens = _lens(4, 3), _lens(2, 1)
    sigma = 0.0 if kind == "rnnt" else 0.05
    assert torch.autograd.gradcheck(
        lambda x: _reference(kind, x, targets, t_lens, u_lens, durs, blank, sigma), (logits,)
    )


def test_gradcheck_with_inactive_clamp_and_cost_scaling() -> None:
    """A clamp above every gradient is the identity, and FastEmit's reported cost scales its value only."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    args = (torch.tensor([[1]]), _lens(3), _lens(1))
    assert torch.autograd.gradcheck(lambda x: rnnt_loss_reference(x, *args, clamp=10.0), (logits,))


# --------------------------------------------------------------------------------------------------------------
# Lattices and edge cases
# --------------------------------------------------------------------------------------------------------------


def test_alphas_and_padding() -> None:
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 5, 4, 5, generator=g)
    targets, t_lens, u_lens = torch.tensor([[0, 1, 2], [3, 0, 0]]), _lens(5, 3), _lens(3, 1)
    lat = rnnt_lattice(logits, targets, t_lens, u_lens)
    assert lat.log_alpha.shape == (2, 5, 4)
    assert (lat.log_alpha[:, 0, 0] == 0).all()
    assert torch.isneginf(lat.log_alpha[1, 3:]).all() and torch.isneginf(lat.log_alpha[1, :, 2:]).all()
    lp = torch.log_softmax(logits, -1)
    for b, (tb, lb) in enumerate([(5, 3), (3, 1)]):
        assert lat.log_prob[b].item() == pytest.approx((lat.log_alpha[b, tb - 1, lb] + lp[b, tb - 1, lb, 4]).item(),
                                                       abs=1e-5)
    # Padded cells are ignored even when they hold garbage; they get zero gradient.
    x = logits.clone()
    x[1, 3:] = 1e4
    x[1, :, 2:] = -1e4
    x.requires_grad_()
    costs = rnnt_loss_reference(x, targets, t_lens, u_lens)
    torch.testing.assert_close(costs, -lat.log_prob)
    costs.sum().backward()
    assert x.grad[1, 3:].abs().sum() == 0 and x.grad[1, :, 2:].abs().sum() == 0


def test_lattices_of_tdt_and_multiblank() -> None:
    logits = torch.randn(1, 4, 3, 7)
    lat = tdt_lattice(logits, torch.tensor([[0, 1]]), _lens(4), _lens(2), (0, 1, 2))
    assert lat.log_alpha.shape == (1, 4, 3) and lat.log_alpha[0, 0, 0] == 0 and torch.isfinite(lat.log_prob).all()
    lat = multiblank_lattice(logits, torch.tensor([[0, 1]]), _lens(4), _lens(2), (2, 3))
    assert lat.log_alpha.shape == (1, 4, 3) and torch.isfinite(lat.log_prob).all()


@pytest.mark.parametrize(("kind", "durs"), [("rnnt", ()), ("tdt", (0, 1, 2)), ("multiblank", (2,))])
def test_empty_targets_and_single_frame(kind: str, durs: tuple[int, ...]) -> None:
    k = 4 + len(durs)
    blank = 3 if kind != "multiblank" else k - 1
    logits = torch.randn(2, 1, 1, k, dtype=torch.float64, requires_grad=True)
    targets = torch.zeros(2, 0, dtype=torch.long)
    costs = _reference(kind, logits, targets, _lens(1, 1), _lens(0, 0), durs, blank, 0.0)
    # One frame, no labels: the only path is one blank (of duration 1).
    if kind == "tdt":
        expected = -(torch.log_softmax(logits[:, 0, 0, :4], -1)[:, blank] + torch.log_softmax(logits[:, 0, 0, 4:], -1)[:, 1])
    else:
        expected = -torch.log_softmax(logits[:, 0, 0], -1)[:, blank]
    torch.testing.assert_close(costs, expected)
    assert torch.autograd.gradcheck(
        lambda x: _reference(kind, x, targets, _lens(1, 1), _lens(0, 0), durs, blank, 0.0), (logits,)
    )


def test_impossible_alignment_is_inf_with_zero_gradient() -> None:
    """TDT without duration 0 cannot emit two labels in one frame: cost inf, gradient 0 (not NaN)."""
    logits = torch.randn(1, 2, 3, 6, requires_grad=True)
    cost = tdt_loss_reference(logits, torch.tensor([[0, 1]]), _lens(1), _lens(2), (1, 2))
    assert torch.isposinf(cost).all()
    cost.sum().backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_neg_inf_logits_are_masked_classes() -> None:
    """A class with logit -inf has probability 0; the loss and its gradient stay finite."""
    logits = torch.randn(1, 3, 2, 5)
    logits[..., 2] = -math.inf
    x = logits.requires_grad_()
    cost = rnnt_loss_reference(x, torch.tensor([[1]]), _lens(3), _lens(1))
    cost.backward()
    assert torch.isfinite(cost).all() and torch.isfinite(x.grad).all()
    assert (x.grad[..., 2] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_computed_in_float32(dtype: torch.dtype) -> None:
    logits = torch.randn(2, 4, 3, 5)
    args = (torch.tensor([[0, 1], [2, 3]]), _lens(4, 2), _lens(2, 1))
    x = logits.to(dtype).requires_grad_()
    cost = rnnt_loss_reference(x, *args)
    cost.sum().backward()
    assert cost.dtype == torch.float32 and x.grad.dtype == dtype
    torch.testing.assert_close(cost, rnnt_loss_reference(logits.to(dtype).float(), *args))


def test_targets_narrower_than_lattice_and_bad_layouts() -> None:
    logits = torch.randn(1, 3, 4, 5)
    short = rnnt_loss_reference(logits, torch.tensor([[1]]), _lens(3), _lens(1))
    padded = rnnt_loss_reference(logits, torch.tensor([[1, 7, -1]]), _lens(3), _lens(1))
    torch.testing.assert_close(short, padded)
    with pytest.raises(ValueError, match="must contain 1"):
        tdt_loss_reference(torch.randn(1, 3, 2, 6), torch.tensor([[0]]), _lens(3), _lens(1), (0, 2))
    with pytest.raises(ValueError, match="no room"):
        multiblank_rnnt_loss_reference(torch.randn(1, 3, 2, 6), torch.tensor([[0]]), _lens(3), _lens(1), (2, 3),
                                       blank=1)
