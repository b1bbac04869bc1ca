"""Numba CPU kernels for the RNN-T, TDT and multi-blank RNN-T losses (the ``"numba"`` backend).

All three losses run on one *lattice* engine. A lattice node is ``(t, u)`` ("frame t, u labels emitted") and every
node has two families of outgoing arcs:

* blank arcs ``j``: advance ``bd[j] > 0`` frames, keep u; scored by the token class ``bcls[j]`` (plus the duration
  log-prob ``bdi[j]`` for TDT). RNN-T has one (blank, 1 frame); multi-blank adds one per big blank
  (class ``blank-1-i``, ``m_i`` frames); TDT has one per positive duration (all on the blank class).
* label arcs ``j``: advance ``ld[j] >= 0`` frames and emit ``y_u``. RNN-T and multi-blank have one (0 frames); TDT has
  one per duration.

A blank arc that lands exactly on ``T`` at the last row is terminal; no arc may overshoot ``T`` and no label arc may
reach it. With these rules the three losses of ``transducers.md`` sections 2-4 are the same three passes:

1. ``_row_pass`` (parallel over the ``B*T`` frames): one streaming read of the joint. Per ``(b, t, u)`` it computes the
   log-softmax denominator ``denom = -logsumexp_k z`` of the token logits (and, for TDT, the duration log-softmax)
   and keeps only the handful of arc weights the recursions need. Log-probs are never materialised.
2. ``_lattice_pass`` (parallel over ``2*B`` tasks: the alpha and the beta recursion of every sample run side by side,
   so a single long utterance still uses two cores): float64, true ``-inf``.
3. ``_grad_pass`` (parallel over the ``B*T`` frames): the second streaming read of the joint, writing every gradient
   element in one pass into one preallocated buffer, padded cells included (as zeros); only the few entries of a
   row that carry arc terms (blank classes, the label) are rewritten while the row is still in L1. The gradient with respect to
   the raw logits is ``softmax_k * c - (occupancy of the arcs labelled k)`` (section 2), with FastEmit folded into
   ``c`` and the label term, then the clamp; for TDT the duration softmax is fused the same way
   (``g_z = g_delta - p * sum(g_delta)``).

Speed notes: the joint is the only large array and is read twice and the gradient written once, which is the floor
for a loss that returns dense gradients. ``exp`` is a float32 polynomial that LLVM vectorises (libm's ``expf``
does not vectorise under Numba without SVML and is ~15x slower here); its relative error is below 1e-7. Max
reductions use eight accumulators because LLVM will not vectorise Numba's NaN-aware ``max`` reduction. The row
kernels use fastmath without ``nnan``/``ninf`` so ``-inf`` logits (masking) stay exact zeros of the softmax. Rows
are passed to the inner loops as slices: indexing ``z[base + k]`` with a computed index makes Numba emit
negative-index wraparound code that stops LLVM from vectorising (measured 6x slower).

Memory: besides the returned gradient (one joint-sized float32 buffer, allocated once), the workspace is
``(6 + number of arcs + D)`` float64 per ``(b, t, u)`` cell: O(B*T*U), about 3% of the joint at V=1024.

The launchers take torch tensors, honour strides (the TDT ``omega`` branch passes the token slice
``logits[..., :V+1]``, a view whose rows are not contiguous with each other; it is read in place, not copied) and
run with as many Numba threads as torch uses (fewer for small joints, see ``_num_threads``), restoring Numba's
previous setting afterwards.
"""

from __future__ import annotations

import ctypes
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import torch
from numba import njit, prange

__all__ = [
    "Lattice",
    "multiblank_cost_grad",
    "multiblank_lattice",
    "rnnt_cost_grad",
    "rnnt_lattice",
    "tdt_cost_grad",
    "tdt_lattice",
]

# fastmath minus "nnan"/"ninf": those two would let LLVM assume that -inf never occurs, and -inf logits (masked
# classes) and -inf lattice weights (impossible arcs) are legal inputs.
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
_NEG_INF = -math.inf


# ----------------------------------------------------------------------------------------------------------------
# scalar helpers


@njit(fastmath=_FAST, cache=True)
def _exp32(x: float) -> float:  # pragma: no cover - compiled
    """exp(x) in float32 without a libm call, so that the row loops vectorise.

    Cody-Waite range reduction ``x = k*ln2 + r`` with ``|r| <= ln2/2``, a degree-7 Taylor polynomial for ``exp(r)``
    and ``2**k`` built in the exponent bits: relative error < 1e-7 (below one float32 ulp) on [-87.5, 88]. Inputs
    below -87.5 return exactly 0 (so ``-inf`` gives 0); inputs above 88 saturate at ``exp(88)`` (the arguments are
    log-probs here, <= ~0).
    """
    xc = min(max(x, np.float32(-87.5)), np.float32(88.0))
    k = np.floor(xc * np.float32(1.4426950408889634) + np.float32(0.5))
    r = xc - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    e = np.int32((np.int32(k) + np.int32(127)) << np.int32(23))
    v = p * e.view(np.float32)
    return np.float32(0.0) if x < np.float32(-87.5) else v


@njit(fastmath=_FAST, cache=True)
def _row_max(x: np.ndarray) -> float:  # pragma: no cover - compiled
    """max(x) with eight independent accumulators (vectorises; a single one does not)."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(-np.inf)
    i = 0
    while i + 8 <= n:
        a0 = max(a0, x[i])
        a1 = max(a1, x[i + 1])
        a2 = max(a2, x[i + 2])
        a3 = max(a3, x[i + 3])
        a4 = max(a4, x[i + 4])
        a5 = max(a5, x[i + 5])
        a6 = max(a6, x[i + 6])
        a7 = max(a7, x[i + 7])
        i += 8
    while i < n:
        a0 = max(a0, x[i])
        i += 1
    return max(max(max(a0, a1), max(a2, a3)), max(max(a4, a5), max(a6, a7)))


@njit(fastmath=_FAST, cache=True)
def _sum_exp(x: np.ndarray, shift: float) -> float:  # pragma: no cover - compiled
    """sum_k exp(x[k] - shift) in float32 (vectorised)."""
    s = np.float32(0.0)
    for k in range(x.shape[0]):
        s += _exp32(x[k] - shift)
    return s


@njit(fastmath=_FAST, cache=True)
def _scaled_softmax(x: np.ndarray, out: np.ndarray, shift: float, scale: float) -> None:  # pragma: no cover
    """out[k] = exp(x[k] + shift) * scale (vectorised)."""
    for k in range(x.shape[0]):
        out[k] = _exp32(x[k] + shift) * scale


@njit(fastmath=_FAST, cache=True)
def _scaled_softmax_clamped(x: np.ndarray, out: np.ndarray, shift: float, scale: float,
                            clamp: float) -> None:  # pragma: no cover - compiled
    """out[k] = clip(exp(x[k] + shift) * scale, -clamp, clamp) (vectorised)."""
    for k in range(x.shape[0]):
        out[k] = min(max(_exp32(x[k] + shift) * scale, -clamp), clamp)


@njit(cache=True)
def _lse(a: float, b: float) -> float:  # pragma: no cover - compiled
    """log(exp(a) + exp(b)) in float64, exact for -inf operands."""
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


# ----------------------------------------------------------------------------------------------------------------
# pass 1: denominators and arc weights


@njit(parallel=True, fastmath=_FAST, cache=True)
def _row_pass(z, zsb, zst, zsu, T, ktok, ndur, targets, tlen, ulen, bcls, bdi, ldi, sigma,
              denom, wb, wl, dlp):  # pragma: no cover - compiled
    """Per valid (b, t, u): token log-softmax denominator, duration log-probs and the arc weights.

    Writes ``denom[b,t,u] = -logsumexp(z[b,t,u,:ktok])``, ``dlp[b,t,u,i] = log_softmax(z[b,t,u,ktok:])_i``,
    ``wb[b,t,u,j] = l(bcls[j]) - sigma + dlp[bdi[j]]`` and ``wl[b,t,u,j] = l(y_u) - sigma + dlp[ldi[j]]``
    (a negative ``bdi``/``ldi`` means "no duration term"). Cells outside the lengths are left untouched.
    """
    nb = bcls.shape[0]
    nl = ldi.shape[0]
    nrows = tlen.shape[0] * T
    for r in prange(nrows):
        b = r // T
        t = r - b * T
        if t >= tlen[b]:
            continue
        ub = ulen[b]
        for u in range(ub):
            base = b * zsb + t * zst + u * zsu
            # Slices, not z[base + k]: Numba's negative-index handling of a computed index blocks vectorisation.
            row = z[base:base + ktok]
            m = _row_max(row)
            s = _sum_exp(row, m)
            dn = -(np.float64(m) + math.log(np.float64(s)))
            denom[b, t, u] = dn
            if ndur > 0:
                dm = _NEG_INF
                for i in range(ndur):
                    dm = max(dm, np.float64(z[base + ktok + i]))
                ds = 0.0
                for i in range(ndur):
                    ds += math.exp(np.float64(z[base + ktok + i]) - dm)
                dnorm = dm + math.log(ds)
                for i in range(ndur):
                    dlp[b, t, u, i] = np.float64(z[base + ktok + i]) - dnorm
            for j in range(nb):
                w = np.float64(z[base + bcls[j]]) + dn - sigma
                if bdi[j] >= 0:
                    w += dlp[b, t, u, bdi[j]]
                wb[b, t, u, j] = w
            if u + 1 < ub:
                ly = np.float64(z[base + targets[b, u]]) + dn - sigma
                for j in range(nl):
                    w = ly
                    if ldi[j] >= 0:
                        w += dlp[b, t, u, ldi[j]]
                    wl[b, t, u, j] = w


# ----------------------------------------------------------------------------------------------------------------
# pass 2: alpha / beta recursions (float64, no fastmath: the -inf logic must stay exact)


@njit(cache=True)
def _alpha(b, tlen, ulen, bd, ld, wb, wl, alpha, logp):  # pragma: no cover - compiled
    """Forward variables of sample b. Each cell is one log-sum-exp over its incoming arcs (max first, then one
    exp per arc and a single log), which is about twice as fast as folding the arcs in pairwise."""
    tb = tlen[b]
    ub = ulen[b]
    nb = bd.shape[0]
    nl = ld.shape[0]
    for t in range(tb):
        for u in range(ub):
            if t == 0 and u == 0:
                alpha[b, 0, 0] = 0.0
                continue
            m = _NEG_INF
            for j in range(nb):
                d = bd[j]
                if t >= d:
                    m = max(m, alpha[b, t - d, u] + wb[b, t - d, u, j])
            if u > 0:
                for j in range(nl):
                    d = ld[j]
                    if t >= d:
                        m = max(m, alpha[b, t - d, u - 1] + wl[b, t - d, u - 1, j])
            if m == _NEG_INF:
                alpha[b, t, u] = _NEG_INF
                continue
            s = 0.0
            for j in range(nb):
                d = bd[j]
                if t >= d:
                    s += math.exp(alpha[b, t - d, u] + wb[b, t - d, u, j] - m)
            if u > 0:
                for j in range(nl):
                    d = ld[j]
                    if t >= d:
                        s += math.exp(alpha[b, t - d, u - 1] + wl[b, t - d, u - 1, j] - m)
            alpha[b, t, u] = m + math.log(s)
    ll = _NEG_INF
    for j in range(nb):
        d = bd[j]
        if 0 < d <= tb:
            ll = _lse(ll, alpha[b, tb - d, ub - 1] + wb[b, tb - d, ub - 1, j])
    logp[b] = ll


@njit(cache=True)
def _beta(b, tlen, ulen, bd, ld, wb, wl, beta):  # pragma: no cover - compiled
    """Backward variables of sample b, including the terminal blank (beta(0, 0) == logP)."""
    tb = tlen[b]
    ub = ulen[b]
    nb = bd.shape[0]
    nl = ld.shape[0]
    for t in range(tb - 1, -1, -1):
        for u in range(ub - 1, -1, -1):
            last = u == ub - 1
            m = _NEG_INF
            for j in range(nb):
                tn = t + bd[j]
                if tn < tb:
                    m = max(m, beta[b, tn, u] + wb[b, t, u, j])
                elif tn == tb and last:
                    m = max(m, wb[b, t, u, j])  # terminal blank: lands exactly on T
            if not last:
                for j in range(nl):
                    tn = t + ld[j]
                    if tn < tb:
                        m = max(m, beta[b, tn, u + 1] + wl[b, t, u, j])
            if m == _NEG_INF:
                beta[b, t, u] = _NEG_INF
                continue
            s = 0.0
            for j in range(nb):
                tn = t + bd[j]
                if tn < tb:
                    s += math.exp(beta[b, tn, u] + wb[b, t, u, j] - m)
                elif tn == tb and last:
                    s += math.exp(wb[b, t, u, j] - m)
            if not last:
                for j in range(nl):
                    tn = t + ld[j]
                    if tn < tb:
                        s += math.exp(beta[b, tn, u + 1] + wl[b, t, u, j] - m)
            beta[b, t, u] = m + math.log(s)


@njit(parallel=True, cache=True)
def _lattice_pass(tlen, ulen, bd, ld, wb, wl, alpha, beta, logp, need_beta):  # pragma: no cover - compiled
    """alpha (and beta) of every sample; with beta, task 2b is sample b's alpha and 2b+1 its beta."""
    nbatch = tlen.shape[0]
    ntask = 2 * nbatch if need_beta else nbatch
    for i in prange(ntask):
        if need_beta:
            b = i // 2
            if i % 2 == 0:
                _alpha(b, tlen, ulen, bd, ld, wb, wl, alpha, logp)
            else:
                _beta(b, tlen, ulen, bd, ld, wb, wl, beta)
        else:
            _alpha(np.int64(i), tlen, ulen, bd, ld, wb, wl, alpha, logp)  # int64: one compiled signature


# ----------------------------------------------------------------------------------------------------------------
# pass 3: gradient with respect to the raw logits


@njit(fastmath=_FAST, cache=True)
def _fill_zero(g, base, n):  # pragma: no cover - compiled
    out = g[base:base + n]
    for k in range(n):
        out[k] = np.float32(0.0)


@njit(parallel=True, fastmath=_FAST, cache=True)
def _grad_pass(z, zsb, zst, zsu, g, gsb, gst, gsu, T, U1, ktok, ndur, targets, tlen, ulen,
               bcls, bslot, ucls, bd, bdi, ld, ldi, lam, clamp,
               denom, wb, wl, dlp, alpha, beta, logp):  # pragma: no cover - compiled
    """Write d(-logP)/dz (FastEmit, clamp) for every element of g, zeros outside the lengths."""
    nb = bcls.shape[0]
    nl = ld.shape[0]
    nu = ucls.shape[0]
    width = ktok + ndur
    nrows = tlen.shape[0] * T
    clamp32 = np.float32(clamp)
    for r in prange(nrows):
        b = r // T
        t = r - b * T
        tb = tlen[b]
        ub = ulen[b]
        ll = logp[b]
        if t >= tb or not (ll > _NEG_INF and ll < math.inf):
            # padded frame, or an impossible alignment (logP = -inf): the loss has no gradient there
            for u in range(U1):
                _fill_zero(g, b * gsb + t * gst + u * gsu, width)
            continue
        occ_cls = np.empty(nu, dtype=np.float64)
        occ_dur = np.empty(max(ndur, 1), dtype=np.float64)
        for u in range(U1):
            gbase = b * gsb + t * gst + u * gsu
            if u >= ub:
                _fill_zero(g, gbase, width)
                continue
            zbase = b * zsb + t * zst + u * zsu
            a = alpha[b, t, u]
            for m in range(nu):
                occ_cls[m] = 0.0
            for i in range(ndur):
                occ_dur[i] = 0.0
            total = 0.0
            for j in range(nb):
                tn = t + bd[j]
                o = 0.0
                if tn < tb:
                    o = math.exp(a + wb[b, t, u, j] + beta[b, tn, u] - ll)
                elif tn == tb and u == ub - 1:
                    o = math.exp(a + wb[b, t, u, j] - ll)
                occ_cls[bslot[j]] += o
                if bdi[j] >= 0:
                    occ_dur[bdi[j]] += o
                total += o
            emit = 0.0
            y = -1
            if u + 1 < ub:
                y = targets[b, u]
                for j in range(nl):
                    tn = t + ld[j]
                    if tn < tb:
                        o = math.exp(a + wl[b, t, u, j] + beta[b, tn, u + 1] - ll)
                        emit += o
                        if ldi[j] >= 0:
                            occ_dur[ldi[j]] += o
            total += emit
            # FastEmit scales the label arcs' posterior by (1+lam) before the softmax backward: the softmax part
            # gains lam * emit and the label entry loses (1+lam) * emit (transducers.md section 2).
            coef = total + lam * emit
            dn = np.float32(denom[b, t, u])
            c32 = np.float32(coef)
            if coef == 0.0:
                _fill_zero(g, gbase, ktok)
            elif clamp > 0.0:
                _scaled_softmax_clamped(z[zbase:zbase + ktok], g[gbase:gbase + ktok], dn, c32, clamp32)
            else:
                _scaled_softmax(z[zbase:zbase + ktok], g[gbase:gbase + ktok], dn, c32)
            # the few entries that carry arc terms, recomputed in float64 from the same inputs
            label_done = False
            for m in range(nu):
                k = ucls[m]
                v = math.exp(np.float64(z[zbase + k]) + denom[b, t, u]) * coef - occ_cls[m]
                if k == y:
                    v -= (1.0 + lam) * emit
                    label_done = True
                if clamp > 0.0:
                    v = min(max(v, -clamp), clamp)
                g[gbase + k] = v
            if y >= 0 and not label_done:
                v = math.exp(np.float64(z[zbase + y]) + denom[b, t, u]) * coef - (1.0 + lam) * emit
                if clamp > 0.0:
                    v = min(max(v, -clamp), clamp)
                g[gbase + y] = v
            # TDT duration logits: own softmax, no FastEmit and no clamp (as NeMo)
            for i in range(ndur):
                g[gbase + ktok + i] = math.exp(dlp[b, t, u, i]) * total - occ_dur[i]


# ----------------------------------------------------------------------------------------------------------------
# launchers


@dataclass(frozen=True)
class _Arcs:
    """The arc families of one loss (see the module docstring), as small int64 arrays for the kernels."""

    ktok: int  # width of the token softmax
    ndur: int  # TDT duration logits after the token logits (0 otherwise)
    bcls: np.ndarray  # (NB,) token class scoring blank arc j
    bd: np.ndarray  # (NB,) frames blank arc j advances (> 0)
    bdi: np.ndarray  # (NB,) duration index of blank arc j, -1 = none
    ld: np.ndarray  # (NL,) frames label arc j advances (>= 0)
    ldi: np.ndarray  # (NL,) duration index of label arc j, -1 = none
    ucls: np.ndarray  # (NU,) distinct blank classes
    bslot: np.ndarray  # (NB,) position of bcls[j] in ucls


def _arcs(ktok: int, ndur: int, blank_arcs: list[tuple[int, int, int]], label_arcs: list[tuple[int, int]]) -> _Arcs:
    i64 = np.int64
    ucls = sorted({c for c, _, _ in blank_arcs})
    return _Arcs(
        ktok=ktok, ndur=ndur,
        bcls=np.array([c for c, _, _ in blank_arcs], dtype=i64),
        bd=np.array([d for _, d, _ in blank_arcs], dtype=i64),
        bdi=np.array([i for _, _, i in blank_arcs], dtype=i64),
        ld=np.array([d for d, _ in label_arcs], dtype=i64),
        ldi=np.array([i for _, i in label_arcs], dtype=i64),
        ucls=np.array(ucls, dtype=i64),
        bslot=np.array([ucls.index(c) for c, _, _ in blank_arcs], dtype=i64),
    )


def _rnnt_arcs(width: int, blank: int) -> _Arcs:
    if not 0 <= blank < width:
        raise ValueError(f"blank={blank} is outside the {width} classes of the logits")
    return _arcs(width, 0, [(blank, 1, -1)], [(0, -1)])


def _multiblank_arcs(width: int, blank: int, big_blank_durations: tuple[int, ...]) -> _Arcs:
    if not 0 <= blank < width:
        raise ValueError(f"blank={blank} is outside the {width} classes of the logits")
    if blank - len(big_blank_durations) < 0:
        raise ValueError(f"blank={blank} leaves no room for {len(big_blank_durations)} big blanks below it")
    if any(m < 1 for m in big_blank_durations):
        raise ValueError(f"big_blank_durations must be positive, got {list(big_blank_durations)}")
    big = [(blank - 1 - i, int(m), -1) for i, m in enumerate(big_blank_durations)]
    return _arcs(width, 0, [(blank, 1, -1), *big], [(0, -1)])


def _tdt_arcs(width: int, blank: int, durations: tuple[int, ...]) -> _Arcs:
    ndur = len(durations)
    ktok = width - ndur
    if ktok < 1 or not 0 <= blank < ktok:
        raise ValueError(f"logits width {width} with {ndur} durations leaves {ktok} token classes; blank={blank}")
    if any(d < 0 for d in durations):
        raise ValueError(f"durations must be >= 0, got {list(durations)}")
    blanks = [(blank, int(d), i) for i, d in enumerate(durations) if d > 0]
    if not blanks:
        raise ValueError(f"durations {list(durations)} have no positive value: a blank could never advance")
    return _arcs(ktok, ndur, blanks, [(int(d), i) for i, d in enumerate(durations)])


def _flat_view(x: torch.Tensor) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A 1-D numpy array over the memory of a 4-D tensor whose last dim is unit-stride, plus its other strides.

    This is how a strided view (e.g. ``logits[..., :V+1]``) reaches the kernels without a copy: the kernels index
    ``b*sb + t*st + u*su + k`` into the flat array, and the innermost loop over k stays contiguous.
    """
    if x.stride(3) != 1 and x.shape[3] > 1:
        x = x.contiguous()  # a transposed class axis: rare enough that a copy is the simple answer
    extent = 1 + sum((n - 1) * s for n, s in zip(x.shape, x.stride(), strict=True))
    flat = x.detach().as_strided((extent,), (1,), x.storage_offset())
    return flat.numpy(), (x.stride(0), x.stride(1), x.stride(2))


# Below this many joint elements per thread, extra threads cost more than they save: each of the three parallel
# regions ends in a barrier, and on a busy machine a worker that is not scheduled stalls the region for a whole
# scheduler slice (measured on 2 shared cores: B4/T100/U30/V128 takes 2 ms on one thread, 22-28 ms on two).
_ELEMENTS_PER_THREAD = 1 << 22


def _num_threads(work: int) -> int:
    """Threads for a call: torch's intra-op count (never more than Numba's pool), fewer for small joints."""
    most = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    return max(1, min(most, work // _ELEMENTS_PER_THREAD))


# Gradient buffers at least this large ask Linux for transparent huge pages (when the system's THP mode is
# "madvise"): first-touch page faults on a fresh 400 MB buffer cost 0.1-0.3 s with 4 KB pages, several times the
# kernels' own work, and 3-6x less with 2 MB pages (measured here). PyTorch does the same for every CPU allocation
# when THP_MEM_ALLOC_ENABLE=1 is set; this only covers the one buffer the loss allocates.
_HUGEPAGE_MIN_BYTES = 32 << 20
_HUGEPAGE = 2 << 20
_MADV_HUGEPAGE = 14
_madvise = None  # resolved on first use: a ctypes function, or False where unavailable


def _thp_madvise() -> object:
    global _madvise
    if _madvise is None:
        _madvise = False
        try:
            mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
            if sys.platform.startswith("linux") and "[madvise]" in mode:
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                fn.restype = ctypes.c_int
                _madvise = fn
        except (OSError, AttributeError):
            pass
    return _madvise


def _empty_grad(shape: tuple[int, ...]) -> torch.Tensor:
    """torch.empty(shape, float32), hinted to use huge pages when large (a hint only: failures are ignored)."""
    out = torch.empty(shape, dtype=torch.float32)
    nbytes = out.numel() * 4
    if nbytes >= _HUGEPAGE_MIN_BYTES and (madvise := _thp_madvise()):
        start = -(-out.data_ptr() // _HUGEPAGE) * _HUGEPAGE  # whole 2 MB pages inside the buffer, untouched yet
        end = (out.data_ptr() + nbytes) // _HUGEPAGE * _HUGEPAGE
        if end > start:
            madvise(start, end - start, _MADV_HUGEPAGE)
    return out


def _int64(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to(device="cpu", dtype=torch.int64).numpy())


@dataclass
class Lattice:
    """What a call computes besides costs and gradients; exposed so tests can check the recursions.

    Field names follow :class:`speechkit.losses.reference.Lattice`.

    Attributes:
        log_alpha: (B, T, U+1) float64 forward variables, ``-inf`` outside the lengths and where unreachable.
        log_beta: (B, T, U+1) float64 backward variables (including the terminal blank, so
            ``log_beta[b, 0, 0] == log_prob[b]``), ``-inf`` outside the lengths; all ``-inf`` when gradients were
            not requested.
        log_prob: (B,) float64 ``log P(y | x)`` of every sample (``-inf`` when no alignment exists).
    """

    log_alpha: torch.Tensor
    log_beta: torch.Tensor
    log_prob: torch.Tensor


def _check(logits: torch.Tensor, tlen: np.ndarray, llen: np.ndarray, tgt: np.ndarray, arcs: _Arcs) -> None:
    """Cheap O(B*U) guards. The API validates properly; these keep the kernels (which do no bounds checks) from
    reading outside the arrays when called directly with inconsistent inputs."""
    if logits.device.type != "cpu":
        raise ValueError(f"the numba backend runs on CPU tensors; logits are on {logits.device}")
    if logits.dtype != torch.float32:
        raise TypeError(f"the numba CPU backend needs float32 logits, got {logits.dtype}; cast with logits.float()")
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, T, U+1, K), got shape {tuple(logits.shape)}")
    B, T, U1, _ = logits.shape
    if tlen.shape != (B,) or llen.shape != (B,):
        raise ValueError(f"logit_lengths and target_lengths must be ({B},), got {tlen.shape} and {llen.shape}")
    if B and (tlen.min() < 0 or tlen.max() > T):
        raise ValueError(f"logit_lengths must lie in [0, {T}], got {tlen.tolist()}")
    if B and (llen.min() < 0 or llen.max() > U1 - 1 or llen.max() > tgt.shape[1]):
        raise ValueError(f"target_lengths must lie in [0, {min(U1 - 1, tgt.shape[1])}], got {llen.tolist()}")
    if B and tgt.shape[1]:
        valid = np.arange(tgt.shape[1])[None, :] < llen[:, None]
        bad = valid & ((tgt < 0) | (tgt >= arcs.ktok))
        if bad.any():
            raise ValueError(f"targets must lie in [0, {arcs.ktok}) within target_lengths, got {tgt[bad][:5].tolist()}")


def _run(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
         arcs: _Arcs, sigma: float, fastemit_lambda: float, clamp: float, need_grad: bool,
         ) -> tuple[torch.Tensor, torch.Tensor | None, Lattice]:
    tlen = _int64(logit_lengths)
    llen = _int64(target_lengths)
    tgt = _int64(targets)
    if tgt.ndim == 1:
        tgt = tgt[:, None]
    _check(logits, tlen, llen, tgt, arcs)
    B, T, U1, width = logits.shape
    ulen = llen + 1
    if tgt.shape[1] == 0:
        tgt = np.zeros((B, 1), dtype=np.int64)  # kernels index targets[b, u] only for u < L_b; keep it 2-D

    f64 = np.float64
    denom = np.empty((B, T, U1), dtype=f64)
    wb = np.empty((B, T, U1, arcs.bcls.shape[0]), dtype=f64)
    wl = np.empty((B, T, U1, arcs.ld.shape[0]), dtype=f64)
    dlp = np.empty((B, T, U1, max(arcs.ndur, 1)), dtype=f64)
    alpha = np.full((B, T, U1), -np.inf, dtype=f64)
    beta = np.full((B, T, U1), -np.inf, dtype=f64)
    logp = np.full((B,), -np.inf, dtype=f64)
    grads = _empty_grad((B, T, U1, width)) if need_grad else None

    saved_threads = numba.get_num_threads()
    numba.set_num_threads(_num_threads(B * T * U1 * width))
    try:
        if B * T * U1 > 0:
            z, (zsb, zst, zsu) = _flat_view(logits)
            _row_pass(z, zsb, zst, zsu, T, arcs.ktok, arcs.ndur, tgt, tlen, ulen, arcs.bcls, arcs.bdi, arcs.ldi,
                      float(sigma), denom, wb, wl, dlp)
            _lattice_pass(tlen, ulen, arcs.bd, arcs.ld, wb, wl, alpha, beta, logp, need_grad)
            if grads is not None:
                g = grads.view(-1).numpy()
                gs = grads.stride()
                _grad_pass(z, zsb, zst, zsu, g, gs[0], gs[1], gs[2], T, U1, arcs.ktok, arcs.ndur, tgt, tlen, ulen,
                           arcs.bcls, arcs.bslot, arcs.ucls, arcs.bd, arcs.bdi, arcs.ld, arcs.ldi,
                           float(fastemit_lambda), float(clamp), denom, wb, wl, dlp, alpha, beta, logp)
        elif grads is not None:
            grads.zero_()
    finally:
        numba.set_num_threads(saved_threads)
    costs = torch.from_numpy((-(1.0 + fastemit_lambda) * logp).astype(np.float32))
    lattice = Lattice(torch.from_numpy(alpha), torch.from_numpy(beta), torch.from_numpy(logp))
    return costs, grads, lattice


def rnnt_cost_grad(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                   target_lengths: torch.Tensor, blank: int, fastemit_lambda: float, clamp: float,
                   need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Standard RNN-T loss per sample, and its gradient with respect to the logits.

    Args:
        logits: (B, T, U+1, K) float32 raw joint outputs; any strides with a unit-stride last dim are read in place.
        targets: (B, >=U) int64/int32 labels in ``[0, K)``.
        logit_lengths: (B,) frames per sample, ``<= T``.
        target_lengths: (B,) labels per sample, ``<= U``.
        blank: index of the blank, already resolved (``>= 0``).
        fastemit_lambda: FastEmit lambda (0 = off).
        clamp: clip every gradient element to ``[-clamp, clamp]`` when ``> 0``.
        need_grad: compute the gradient (otherwise only alpha runs).

    Returns:
        costs: (B,) float32 ``-(1+lambda) * logP``.
        grads: (B, T, U+1, K) float32 contiguous gradient of ``-logP`` (FastEmit and clamp applied, zero in padded
            cells), or None when ``need_grad`` is False.
    """
    arcs = _rnnt_arcs(logits.shape[-1], blank)
    costs, grads, _ = _run(logits, targets, logit_lengths, target_lengths, arcs, 0.0, fastemit_lambda, clamp,
                           need_grad)
    return costs, grads


def tdt_cost_grad(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                  target_lengths: torch.Tensor, blank: int, durations: tuple[int, ...], sigma: float,
                  fastemit_lambda: float, clamp: float, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """TDT loss per sample, and its gradient with respect to the token *and* duration logits.

    Args:
        logits: (B, T, U+1, V+1+D) float32; the first V+1 entries share one softmax, the last D another.
        targets, logit_lengths, target_lengths, blank, fastemit_lambda, need_grad: as :func:`rnnt_cost_grad`.
        durations: the D frame advances (validated: sorted, unique, contains 1).
        sigma: logit under-normalisation subtracted from every token log-prob (not from the duration log-prob).
        clamp: as :func:`rnnt_cost_grad`, applied to the token logits only.

    Returns:
        costs (B,) float32 and grads (B, T, U+1, V+1+D) float32 (or None), as :func:`rnnt_cost_grad`.
    """
    arcs = _tdt_arcs(logits.shape[-1], blank, tuple(durations))
    costs, grads, _ = _run(logits, targets, logit_lengths, target_lengths, arcs, sigma, fastemit_lambda, clamp,
                           need_grad)
    return costs, grads


def multiblank_cost_grad(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                         target_lengths: torch.Tensor, blank: int, big_blank_durations: tuple[int, ...],
                         sigma: float, fastemit_lambda: float, clamp: float,
                         need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-blank RNN-T loss per sample, and its gradient with respect to the logits.

    Args:
        logits: (B, T, U+1, V+N+1) float32, one softmax; big blank i (duration ``big_blank_durations[i]``) is the
            class ``blank-1-i``.
        big_blank_durations: the N big-blank durations (validated: > 1, unique, ascending).
        sigma: subtracted from every arc's log-prob.
        targets, logit_lengths, target_lengths, blank, fastemit_lambda, clamp, need_grad: as :func:`rnnt_cost_grad`.

    Returns:
        costs (B,) float32 and grads (B, T, U+1, V+N+1) float32 (or None), as :func:`rnnt_cost_grad`.
    """
    arcs = _multiblank_arcs(logits.shape[-1], blank, tuple(big_blank_durations))
    costs, grads, _ = _run(logits, targets, logit_lengths, target_lengths, arcs, sigma, fastemit_lambda, clamp,
                           need_grad)
    return costs, grads


def rnnt_lattice(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                 target_lengths: torch.Tensor, blank: int) -> Lattice:
    """log_alpha, log_beta and log_prob of the RNN-T loss (for tests and debugging; arguments as :func:`rnnt_cost_grad`)."""
    return _run(logits, targets, logit_lengths, target_lengths, _rnnt_arcs(logits.shape[-1], blank),
                0.0, 0.0, -1.0, True)[2]


def tdt_lattice(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                target_lengths: torch.Tensor, blank: int, durations: tuple[int, ...], sigma: float = 0.0) -> Lattice:
    """log_alpha, log_beta and log_prob of the TDT loss (arguments as :func:`tdt_cost_grad`)."""
    return _run(logits, targets, logit_lengths, target_lengths, _tdt_arcs(logits.shape[-1], blank, tuple(durations)),
                sigma, 0.0, -1.0, True)[2]


def multiblank_lattice(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                       target_lengths: torch.Tensor, blank: int, big_blank_durations: tuple[int, ...],
                       sigma: float = 0.0) -> Lattice:
    """log_alpha, log_beta and log_prob of the multi-blank RNN-T loss (arguments as :func:`multiblank_cost_grad`)."""
    arcs = _multiblank_arcs(logits.shape[-1], blank, tuple(big_blank_durations))
    return _run(logits, targets, logit_lengths, target_lengths, arcs, sigma, 0.0, -1.0, True)[2]
