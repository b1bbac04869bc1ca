"""Pure-PyTorch transducer losses: the specification every kernel is tested against.

Three losses share one lattice (transducers.md sections 2-4):

- **RNN-T**: a blank moves one frame on (t, u) -> (t+1, u); a label moves one row on (t, u) -> (t, u+1).
- **TDT**: every arc also predicts a duration d from its own softmax; a label goes to (t+d, u+1) for any d, a blank
  to (t+d, u) for d > 0 only; each arc scores ``log p_token - sigma + log p_duration``.
- **multi-blank RNN-T**: besides the blank (one frame), big blank i moves ``m_i`` frames; one softmax over all
  classes, ``- sigma`` on every arc.

Every path ends with a blank that lands exactly on frame ``T_b`` in the last row ``u = L_b``; a label can never land
on or beyond ``T_b``. The forward variable ``log alpha(t, u)`` is computed one anti-diagonal ``n = t + u`` at a
time: every cell of a diagonal depends only on earlier diagonals, so all of them are computed at once with tensor
ops, and autograd provides the gradients. True ``-inf`` marks unreachable cells; the log-sum-exp used here gives
``-inf`` (not NaN) when all its terms are ``-inf`` and passes zero gradient to them.

FastEmit and clamp are defined by what they do to the gradient, so they are small autograd Functions:
:class:`FastEmitGrad` scales the gradient reaching the label log-probs by ``1 + lambda``; :class:`ScaleCost` reports
``-(1 + lambda) log P`` without changing the gradient; :class:`ClampGrad` clips the gradient reaching the logits to
``[-clamp, clamp]``. Clamp acts on the gradient as it arrives at the logits: it is the per-sample gradient of
``-log P`` only when each cost's upstream gradient is 1 (``costs.sum().backward()``), which is how
:mod:`speechkit.losses.backends` calls these functions. The loss API (``speechkit.losses.rnnt_loss`` ...) always
clips per sample, before the reduction's scale.

These functions are for tests and as a slow fallback; they work on any device and in float32 or float64
(float16/bfloat16 inputs are computed in float32).

Example:
    >>> import torch
    >>> logits = torch.randn(2, 5, 3, 4, requires_grad=True)   # B=2, T=5, U+1=3, V+1=4 (blank = 3)
    >>> targets = torch.tensor([[0, 2], [1, 0]])
    >>> costs = rnnt_loss_reference(logits, targets, torch.tensor([5, 4]), torch.tensor([2, 1]))
    >>> costs.shape
    torch.Size([2])
    >>> costs.sum().backward()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from speechkit.losses.layout import resolve_blank, validate_big_blank_durations, validate_durations

__all__ = [
    "ClampGrad",
    "FastEmitGrad",
    "Lattice",
    "ScaleCost",
    "multiblank_lattice",
    "multiblank_rnnt_loss_reference",
    "rnnt_lattice",
    "rnnt_loss_reference",
    "tdt_lattice",
    "tdt_loss_reference",
]

_NEG_INF = float("-inf")


# ---------------------------------------------------------------------------------------------------------------
# Gradient-modifying autograd Functions
# ---------------------------------------------------------------------------------------------------------------


class ClampGrad(torch.autograd.Function):
    """Identity in forward; clips the incoming gradient elementwise to ``[-clamp, clamp]`` in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, clamp: float) -> Tensor:  # type: ignore[override]
        if not clamp > 0:
            raise ValueError(f"ClampGrad needs clamp > 0, got {clamp}")
        ctx.clamp = float(clamp)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad.clamp(-ctx.clamp, ctx.clamp), None


class FastEmitGrad(torch.autograd.Function):
    """Identity in forward; multiplies the gradient by ``1 + lambda`` in backward.

    Applied to the label log-probs ``log p(y_u | t, u)``, this up-weights the label-emission arcs exactly as
    FastEmit prescribes: after the log-softmax backward the logit gradient becomes
    ``grad + lambda * p_k * E_y - lambda * [k = y_u] * E_y`` (transducers.md section 2).
    """

    @staticmethod
    def forward(ctx, x: Tensor, fastemit_lambda: float) -> Tensor:  # type: ignore[override]
        ctx.scale = 1.0 + float(fastemit_lambda)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


class ScaleCost(torch.autograd.Function):
    """Multiplies the cost by ``1 + lambda`` in forward and leaves the gradient unchanged.

    NeMo reports the FastEmit cost as ``-(1 + lambda) log P`` but its gradient is the FastEmit gradient of
    ``-log P``, not the derivative of the reported value; this Function reproduces both.
    """

    @staticmethod
    def forward(ctx, x: Tensor, fastemit_lambda: float) -> Tensor:  # type: ignore[override]
        return x * (1.0 + float(fastemit_lambda))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


# ---------------------------------------------------------------------------------------------------------------
# The shared lattice
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Lattice:
    """The forward variables of a transducer lattice.

    Attributes:
        log_alpha: ``(B, T, U+1)`` log forward probabilities; ``-inf`` where unreachable or padded
            (``t >= T_b`` or ``u > L_b``).
        log_prob: ``(B,)`` log-likelihood ``log P(y | x)`` of each sample (``-inf`` if no path exists).
    """

    log_alpha: Tensor
    log_prob: Tensor


def _logsumexp(x: Tensor, dim: int) -> Tensor:
    """log-sum-exp that returns -inf for all -inf inputs with zero (not NaN) gradient."""
    m = x.detach().amax(dim=dim, keepdim=True)
    # Shifting by a detached max is exact: the shift cancels analytically, and the max has no gradient path.
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = torch.exp(x - m).sum(dim=dim)
    pos = s > 0
    # Double where: log() only ever sees positive values, so masked cells get gradient 0 instead of 0 * inf.
    out = torch.log(torch.where(pos, s, torch.ones_like(s))) + m.squeeze(dim)
    return torch.where(pos, out, torch.full_like(out, _NEG_INF))


def _compute_dtype(logits: Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _label_index(targets: Tensor, u1: int, num_classes: int) -> Tensor:
    """``(B, U+1)`` class index of the label emitted from row u (row U has none: index 0, masked later)."""
    b = targets.shape[0]
    y = targets[:, : u1 - 1].long()
    if y.shape[1] < u1:  # pad the last row (no label) and any rows the targets do not cover
        y = torch.cat([y, y.new_zeros(b, u1 - y.shape[1])], dim=1)
    # Padding beyond target_lengths may hold any value (-1, blank, ...); only valid cells are ever used.
    return y.clamp(0, num_classes - 1)


def _gather_labels(log_probs: Tensor, targets: Tensor) -> Tensor:
    """``(B, T, U+1)`` log-prob of the label y_u at every (t, u)."""
    b, t, u1, k = log_probs.shape
    idx = _label_index(targets, u1, k).to(log_probs.device)
    idx = idx.view(b, 1, u1, 1).expand(b, t, u1, 1)
    return log_probs.gather(-1, idx).squeeze(-1)


def _valid_cells(logit_lengths: Tensor, target_lengths: Tensor, t: int, u1: int, device: torch.device) -> Tensor:
    """``(B, T, U+1)`` bool: the cell (t, u) exists for the sample (t < T_b and u <= L_b)."""
    tt = torch.arange(t, device=device).view(1, t, 1)
    uu = torch.arange(u1, device=device).view(1, 1, u1)
    return (tt < logit_lengths.to(device).view(-1, 1, 1)) & (uu <= target_lengths.to(device).view(-1, 1, 1))


def _skew(w: Tensor) -> Tensor:
    """``(B, T, U1)`` -> ``(B, T+U1-1, U1)`` with ``out[:, n, u] = w[:, n-u, u]`` (``-inf`` off the grid)."""
    b, t, u1 = w.shape
    n = t + u1 - 1
    tt = torch.arange(n, device=w.device).view(n, 1) - torch.arange(u1, device=w.device).view(1, u1)
    inside = (tt >= 0) & (tt < t)
    uu = torch.arange(u1, device=w.device).view(1, u1).expand(n, u1)
    out = w[:, tt.clamp(0, t - 1), uu]
    return torch.where(inside, out, torch.full_like(out, _NEG_INF))


def _run_lattice(
    blank_arcs: Sequence[tuple[int, Tensor]],
    label_arcs: Sequence[tuple[int, Tensor]],
    logit_lengths: Tensor,
    target_lengths: Tensor,
) -> Lattice:
    """Forward algorithm over anti-diagonals.

    Args:
        blank_arcs: ``(d, w)`` pairs: a blank arc from (t, u) to (t+d, u) with log-weight ``w[b, t, u]``, d >= 1.
        label_arcs: ``(d, w)`` pairs: a label arc from (t, u) to (t+d, u+1) with log-weight ``w[b, t, u]``, d >= 0.
        logit_lengths: ``(B,)`` frames T_b per sample.
        target_lengths: ``(B,)`` labels L_b per sample.

    All weights have shape ``(B, T, U+1)``.
    """
    w0 = blank_arcs[0][1]
    b, t, u1 = w0.shape
    device = w0.device
    logit_lengths = logit_lengths.to(device).long()
    target_lengths = target_lengths.to(device).long()
    valid = _valid_cells(logit_lengths, target_lengths, t, u1, device)
    neg = torch.full_like(w0, _NEG_INF)
    # Arcs may only leave cells that exist; arcs landing outside are cut by masking alpha below.
    sk_blank = [(d, _skew(torch.where(valid, w, neg))) for d, w in blank_arcs]
    sk_label = [(d, _skew(torch.where(valid, w, neg))) for d, w in label_arcs]
    n_diag = t + u1 - 1
    uu = torch.arange(u1, device=device).view(1, u1)
    col_inf = torch.full((b, 1), _NEG_INF, dtype=w0.dtype, device=device)

    alphas: list[Tensor] = []
    first = torch.full((b, u1), _NEG_INF, dtype=w0.dtype, device=device)
    alphas.append(torch.where(uu == 0, torch.zeros_like(first), first))  # alpha(0, 0) = 0
    for n in range(1, n_diag):
        terms = []
        for d, sk in sk_blank:  # from (t-d, u): diagonal n-d, same u
            if n - d >= 0:
                terms.append(alphas[n - d] + sk[:, n - d])
        for d, sk in sk_label:  # from (t-d, u-1): diagonal n-d-1, shifted one row
            if n - d - 1 >= 0:
                x = alphas[n - d - 1] + sk[:, n - d - 1]
                terms.append(torch.cat([col_inf, x[:, :-1]], dim=1))
        a = _logsumexp(torch.stack(terms), dim=0) if terms else first
        tt = n - uu
        ok = (tt >= 0) & (tt < logit_lengths.view(b, 1)) & (uu <= target_lengths.view(b, 1))
        alphas.append(torch.where(ok, a, first))

    diag = torch.stack(alphas, dim=1)  # (B, N, U1), diag[:, t+u, u] = alpha(t, u)
    tt = torch.arange(t, device=device).view(t, 1)
    nn_idx = (tt + uu).expand(t, u1)
    log_alpha = diag[:, nn_idx, uu.expand(t, u1)]
    log_alpha = torch.where(valid, log_alpha, neg)

    # Termination: a blank arc from (T_b - d, L_b) lands exactly on T_b.
    bi = torch.arange(b, device=device)
    last_u = target_lengths
    finals = []
    for d, w in blank_arcs:
        t0 = logit_lengths - d
        t0c = t0.clamp(min=0)
        x = log_alpha[bi, t0c, last_u] + w[bi, t0c, last_u]
        finals.append(torch.where(t0 >= 0, x, torch.full_like(x, _NEG_INF)))
    log_prob = _logsumexp(torch.stack(finals), dim=0)
    return Lattice(log_alpha=log_alpha, log_prob=log_prob)


def _prepare(logits: Tensor, clamp: float) -> Tensor:
    z = logits.to(_compute_dtype(logits))
    if clamp > 0:
        z = ClampGrad.apply(z, clamp)
    return z


def _finish(lattice: Lattice, fastemit_lambda: float) -> Tensor:
    costs = -lattice.log_prob
    if fastemit_lambda != 0.0:
        costs = ScaleCost.apply(costs, fastemit_lambda)
    return costs


def _labels(log_probs: Tensor, targets: Tensor, fastemit_lambda: float) -> Tensor:
    ly = _gather_labels(log_probs, targets)
    if fastemit_lambda != 0.0:
        ly = FastEmitGrad.apply(ly, fastemit_lambda)
    return ly


# ---------------------------------------------------------------------------------------------------------------
# RNN-T
# ---------------------------------------------------------------------------------------------------------------


def rnnt_lattice(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int = -1,
    fastemit_lambda: float = 0.0,
    clamp: float = -1.0,
) -> Lattice:
    """Forward variables of the standard RNN-T lattice (arguments as :func:`rnnt_loss_reference`)."""
    k = logits.shape[-1]
    blank = resolve_blank(blank, k)
    z = _prepare(logits, clamp)
    lp = torch.log_softmax(z, dim=-1)
    return _run_lattice(
        [(1, lp[..., blank])], [(0, _labels(lp, targets, fastemit_lambda))], logit_lengths, target_lengths
    )


def rnnt_loss_reference(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int = -1,
    fastemit_lambda: float = 0.0,
    clamp: float = -1.0,
) -> Tensor:
    """Per-sample RNN-T cost ``-log P(y | x)`` with autograd gradients.

    Args:
        logits: ``(B, T, U+1, V+1)`` raw joint outputs (the log-softmax is taken here); T and U+1 may exceed
            the longest lengths (padding gets zero gradient).
        targets: ``(B, S)`` integer labels, ``S >= max(target_lengths)``; entries past a sample's length are
            ignored.
        logit_lengths: ``(B,)`` frames T_b, ``1 <= T_b <= T``.
        target_lengths: ``(B,)`` labels L_b, ``L_b + 1 <= U + 1``.
        blank: blank class index; ``-1`` is the last class.
        fastemit_lambda: FastEmit lambda; the cost is reported as ``-(1 + lambda) log P`` and the gradient is
            FastEmit's (label arcs up-weighted by ``1 + lambda``).
        clamp: if > 0, the gradient reaching the logits is clipped to ``[-clamp, clamp]``.

    Returns:
        ``(B,)`` costs in float32 (float64 for float64 logits).
    """
    return _finish(
        rnnt_lattice(logits, targets, logit_lengths, target_lengths, blank, fastemit_lambda, clamp), fastemit_lambda
    )


# ---------------------------------------------------------------------------------------------------------------
# TDT
# ---------------------------------------------------------------------------------------------------------------


def tdt_lattice(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    durations: Sequence[int],
    blank: int = -1,
    sigma: float = 0.0,
    fastemit_lambda: float = 0.0,
    clamp: float = -1.0,
) -> Lattice:
    """Forward variables of the TDT lattice (arguments as :func:`tdt_loss_reference`)."""
    durations = validate_durations(durations)
    n_dur = len(durations)
    k_tok = logits.shape[-1] - n_dur
    if k_tok < 2:
        raise ValueError(
            f"logits has {logits.shape[-1]} outputs per (t, u): too few for {n_dur} durations plus tokens and blank"
        )
    blank = resolve_blank(blank, k_tok)
    z = logits.to(_compute_dtype(logits))
    tok, dur = z[..., :k_tok], z[..., k_tok:]
    if clamp > 0:  # clamp acts on the token logits only, never on the duration logits
        tok = ClampGrad.apply(tok, clamp)
    lp = torch.log_softmax(tok, dim=-1) - sigma
    ld = torch.log_softmax(dur, dim=-1)
    lb = lp[..., blank]
    ly = _labels(lp, targets, fastemit_lambda)
    blank_arcs = [(d, lb + ld[..., i]) for i, d in enumerate(durations) if d > 0]
    label_arcs = [(d, ly + ld[..., i]) for i, d in enumerate(durations)]
    return _run_lattice(blank_arcs, label_arcs, logit_lengths, target_lengths)


def tdt_loss_reference(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    durations: Sequence[int],
    blank: int = -1,
    sigma: float = 0.0,
    fastemit_lambda: float = 0.0,
    clamp: float = -1.0,
) -> Tensor:
    """Per-sample TDT cost ``-log P(y | x)`` with autograd gradients.

    Args:
        logits: ``(B, T, U+1, V+1+D)``: token logits (``V+1`` classes, one softmax) then D duration logits
            (their own softmax).
        targets: ``(B, S)`` integer labels, ``S >= max(target_lengths)``.
        logit_lengths: ``(B,)`` frames T_b.
        target_lengths: ``(B,)`` labels L_b.
        durations: the D frame advances, sorted, unique, containing 1 (e.g. ``[0, 1, 2, 3, 4]``).
        blank: blank index among the token classes; ``-1`` is the last token class (never a duration logit).
        sigma: subtracted from every token log-prob (logit under-normalisation), not from duration log-probs.
        fastemit_lambda: FastEmit lambda (token gradient only; reported cost ``-(1 + lambda) log P``).
        clamp: if > 0, the gradient reaching the *token* logits is clipped to ``[-clamp, clamp]``.

    Returns:
        ``(B,)`` costs in float32 (float64 for float64 logits).
    """
    lat = tdt_lattice(
        logits, targets, logit_lengths, target_lengths, durations, blank, sigma, fastemit_lambda, clamp
    )
    return _finish(lat, fastemit_lambda)


# ---------------------------------------------------------------------------------------------------------------
# Multi-blank RNN-T
# ---------------------------------------------------------------------------------------------------------------


def multiblank_lattice(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    big_blank_durations: Sequence[int],
    blank: int = -1,
    sigma: float = 0.0,
    fastemit_lambda: float = 0.0,
    clamp: float = -1.0,
) -> Lattice:
    """Forward variables of the multi-blank lattice (arguments as :func:`multiblank_rnnt_loss_reference`)."""
    big = validate_big_blank_durations(big_blank_durations)
    k = logits.shape[-1]
    blank = resolve_blank(blank, k)
    if blank - len(big) < 0:
        raise ValueError(f"blank={blank} leaves no room for {len(big)} big blanks below it (index blank-1-i)")
    z = _prepare(logits, clamp)
    lp = torch.log_softmax(z, dim=-1) - sigma
    blank_arcs = [(1, lp[..., blank])] + [(m, lp[..., blank - 1 - i]) for i, m in enumerate(big)]
    label_arcs = [(0, _labels(lp, targets, fastemit_lambda))]
    return _run_lattice(blank_arcs, label_arcs, logit_lengths, target_lengths)


def multiblank_rnnt_loss_reference(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    big_blank_durations: Sequence[int],
    blank: int = -1,
    sigma: float = 0.0,
    fastemit_lambda: float = 0.0,
    clamp: float = -1.0,
) -> Tensor:
    """Per-sample multi-blank RNN-T cost ``-log P(y | x)`` with autograd gradients.

    Args:
        logits: ``(B, T, U+1, V+N+1)`` in NeMo's layout ``[tokens | big blanks | blank]``, one softmax; the big
            blank of duration ``big_blank_durations[i]`` sits at index ``blank-1-i``.
        targets: ``(B, S)`` integer labels, ``S >= max(target_lengths)``.
        logit_lengths: ``(B,)`` frames T_b.
        target_lengths: ``(B,)`` labels L_b.
        big_blank_durations: N durations > 1, sorted, unique (e.g. ``[2, 4, 8]``).
        blank: the standard blank; ``-1`` is the last class.
        sigma: subtracted from every log-prob (every arc).
        fastemit_lambda: FastEmit lambda (reported cost ``-(1 + lambda) log P``).
        clamp: if > 0, the gradient reaching the logits is clipped to ``[-clamp, clamp]``.

    Returns:
        ``(B,)`` costs in float32 (float64 for float64 logits).
    """
    lat = multiblank_lattice(
        logits, targets, logit_lengths, target_lengths, big_blank_durations, blank, sigma, fastemit_lambda, clamp
    )
    return _finish(lat, fastemit_lambda)
