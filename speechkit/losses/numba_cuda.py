"""Numba CUDA kernels for the RNN-T, TDT and multi-blank RNN-T losses: the ``numba_cuda`` backend.

The math is transducers.md sections 2-4; the launch layout follows section 6 with two changes: the alpha/beta
wavefronts tile over ``u`` so there is no limit on the label length (NeMo stops at 1024), and every ``-inf`` is a
true ``-inf`` (NeMo uses -10000). One call runs, on PyTorch's current stream and without a host synchronisation:

| step | kernel            | grid x block                      | writes                                               |
| ---- | ----------------- | --------------------------------- | ---------------------------------------------------- |
| 1    | ``denominators``  | B*T*U1 rows x ``row_threads``     | ``denom = -logsumexp(token logits)`` (B, T, U1); TDT: duration log-probs (B, T, U1, D) |
| 2    | ``alphas_*``      | B samples x ``wavefront_threads`` | log alpha (B, T, U1), log P (B,)                     |
| 3    | ``costs``         | ceil(B/128) x min(B, 128)         | ``-(1 + lambda) log P`` (B,)                         |
| 4    | ``betas_*``       | B samples x ``wavefront_threads`` | log beta (B, T, U1), beta(0, 0) (B,)                 |
| 5    | ``grads_*``       | B*T*U1 rows x ``row_threads``     | the gradient (B, T, U1, K), once, zero in padding    |

Steps 4-5 run only when a gradient is wanted. RNN-T is run by the multi-blank kernels with no big blank (the
standard blank is the only blank arc); TDT has its own kernels because its arcs also carry a duration log-prob.

Inputs are read where they lie: a non-contiguous view (the TDT omega branch passes ``logits[..., :V+1]``) is indexed
through its strides, float16 is read and converted per element, and bfloat16 travels as an int16 view whose bits are
shifted into the top half of a float32. All arithmetic and the workspace (denominators, alpha, beta) are float32; the
gradient is written in the logits' dtype. Durations and big-blank durations live in a small device tensor cached per
(tuple, device), so no per-call host-to-device copy happens.

Under ``NUMBA_ENABLE_CUDASIM=1`` (set by ``tests/conftest.py`` on machines without a GPU, before numba is imported)
the same kernels run in Numba's CUDA simulator on CPU tensors, so CPU CI checks their logic on tiny shapes.

Example:
    >>> import torch
    >>> logits = torch.randn(2, 5, 3, 4)          # B=2, T=5, U+1=3, V+1=4 (blank = 3)
    >>> targets = torch.tensor([[0, 2], [1, 0]])
    >>> device = "cpu" if SIMULATED else "cuda"
    >>> costs, grads = rnnt_cost_grad(logits.to(device), targets.to(device), torch.tensor([5, 4], device=device),
    ...                               torch.tensor([2, 1], device=device), 3, 0.0, -1.0, True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numba import config as _numba_config
from numba import cuda, float32, int16, int32, int64
from torch import Tensor

__all__ = [
    "SIMULATED",
    "LaunchConfig",
    "KernelOutputs",
    "default_launch",
    "transducer_kernels",
    "rnnt_cost_grad",
    "tdt_cost_grad",
    "multiblank_cost_grad",
]

#: True when numba runs CUDA kernels in its simulator (``NUMBA_ENABLE_CUDASIM=1``): the backend then takes CPU tensors.
SIMULATED: bool = bool(_numba_config.ENABLE_CUDASIM)

Kind = Literal["rnnt", "tdt", "multiblank"]

# A float32 constant: a Python float would make numba promote the arithmetic around it to float64.
NEG_INF = np.float32(-np.inf)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)

_LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class LaunchConfig:
    """Threads per block of the kernels.

    Attributes:
        row_threads: threads per (b, t, u) row in the denominator and gradient kernels; they stride over the
            classes. A power of two (the denominator kernel's shared-memory tree reduction halves it).
        wavefront_threads: the most threads per sample in the alpha/beta kernels; ``u`` is tiled over them
            (``u = tid, tid + n, ...``), so labels longer than the block are fine. The launch uses
            ``min(wavefront_threads, U+1 rounded up to a warp)``. 256 keeps a block launchable whatever the
            kernel's register count (256 threads x 255 registers fits the 64K register file).
    """

    row_threads: int = 128
    wavefront_threads: int = 256

    def __post_init__(self) -> None:
        if self.row_threads < 1 or self.row_threads & (self.row_threads - 1):
            raise ValueError(f"row_threads must be a power of two >= 1, got {self.row_threads}")
        if not 1 <= self.wavefront_threads <= 1024:
            raise ValueError(f"wavefront_threads must be in [1, 1024], got {self.wavefront_threads}")


def default_launch() -> LaunchConfig:
    """Block sizes for this process: 128/256 on a GPU, 4/4 in the simulator (it runs every thread in Python)."""
    return LaunchConfig(row_threads=4, wavefront_threads=4) if SIMULATED else LaunchConfig()


@dataclass
class KernelOutputs:
    """Everything one kernel run computed (the intermediates are exposed for tests).

    Values outside a sample's lattice (``t >= T_b`` or ``u > L_b``) are unspecified in ``alphas``, ``betas``,
    ``denominators`` and ``duration_log_probs``; ``grads`` is zero there.

    Attributes:
        costs: ``(B,)`` float32 reported cost ``-(1 + lambda) log P``.
        grads: logits-shaped gradient of ``-log P`` (FastEmit and clamp applied) in the logits' dtype, or None.
        log_likelihood: ``(B,)`` float32 ``log P`` from the forward pass (``-inf`` when no path exists).
        log_likelihood_backward: ``(B,)`` float32 ``beta(0, 0)``, equal to ``log P`` up to rounding; None
            without gradient.
        alphas: ``(B, T, U+1)`` float32 log forward variables.
        betas: ``(B, T, U+1)`` float32 log backward variables (including the final blank); None without gradient.
        denominators: ``(B, T, U+1)`` float32 ``-logsumexp`` of the token logits of each row.
        duration_log_probs: ``(B, T, U+1, D)`` float32 TDT duration log-probs; None for other losses.
    """

    costs: Tensor
    grads: Tensor | None
    log_likelihood: Tensor
    log_likelihood_backward: Tensor | None
    alphas: Tensor
    betas: Tensor | None
    denominators: Tensor
    duration_log_probs: Tensor | None


# -------------------------------------------------------------------------------------------------------------------
# Device functions
# -------------------------------------------------------------------------------------------------------------------

# Reinterpreting 32 bits as a float (and back) is the one primitive the simulator cannot run like a GPU: libdevice is
# only a stub there, so it gets a numpy bit view. Everything around it (shifts, rounding) is shared code.
if SIMULATED:

    @cuda.jit(device=True)
    def _bits_to_float(bits):
        return np.array(bits, dtype=np.int32).view(np.float32)[()]

    @cuda.jit(device=True)
    def _float_to_bits(value):
        return np.array(value, dtype=np.float32).view(np.int32)[()]

else:
    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def _bits_to_float(bits):
        return libdevice.int_as_float(bits)

    @cuda.jit(device=True)
    def _float_to_bits(value):
        return libdevice.float_as_int(value)


@cuda.jit(device=True)
def _load_float(z, b, t, u, k):
    """One logit as float32 (float32 or float16 storage)."""
    return float32(z[b, t, u, k])


@cuda.jit(device=True)
def _load_bf16(z, b, t, u, k):
    """One bfloat16 logit (stored as int16 bits) as float32: bf16 is the top half of a float32."""
    return _bits_to_float(int32(int32(z[b, t, u, k]) << 16))


@cuda.jit(device=True)
def _store_float(g, b, t, u, k, value):
    g[b, t, u, k] = value  # numba casts float32 to the array's dtype (float32 or float16, round to nearest)


@cuda.jit(device=True)
def _store_bf16(g, b, t, u, k, value):
    """Round a float32 to bfloat16 (nearest, ties to even; NaN stays NaN) and store its bits in int16 storage."""
    bits = int64(_float_to_bits(float32(value))) & 0xFFFFFFFF  # the float's bits as an unsigned number
    if (bits & 0x7FFFFFFF) > 0x7F800000:
        half = int64(0x7FC0)  # a quiet NaN: rounding could carry a NaN's mantissa into infinity
    else:
        half = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    if half >= 0x8000:
        half -= 0x10000  # int16 storage is signed
    g[b, t, u, k] = int16(half)


@cuda.jit(device=True)
def _log_add(a, b):
    """``log(exp(a) + exp(b))`` that keeps a true ``-inf`` (no ``-inf - -inf`` NaN)."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@cuda.jit(device=True)
def _fmax(a, b):
    """The larger of two floats (numba 0.68's CUDA target cannot compile the builtin max on float32)."""
    return a if a > b else b


@cuda.jit(device=True)
def _clip(g, c):
    """``g`` clipped to ``[-c, c]``."""
    if g > c:
        return c
    if g < -c:
        return -c
    return g


@cuda.jit(device=True)
def _row_index(z):
    """The (b, t, u) row of this block in a grid of B*T*U1 blocks."""
    t_max = z.shape[1]
    u1_max = z.shape[2]
    row = cuda.blockIdx.x
    return row // (t_max * u1_max), (row // u1_max) % t_max, row % u1_max


@cuda.jit
def _costs_kernel(log_like, fastemit_lambda, costs):
    """Step 3: one thread per sample."""
    b = cuda.grid(1)
    if b < costs.shape[0]:
        # The cost NeMo reports under FastEmit; the gradient is FastEmit's, not this scaled cost's derivative.
        costs[b] = -(_ONE + fastemit_lambda) * log_like[b]


# -------------------------------------------------------------------------------------------------------------------
# Kernels, built per storage format (float vs bfloat16 bits) so that loads and stores are compile-time choices
# -------------------------------------------------------------------------------------------------------------------


@functools.cache
def _denominator_kernel(bf16: bool, threads: int) -> Any:
    """Step 1: per-row token log-softmax denominators (and TDT duration log-probs); ``threads`` per block."""
    load = _load_bf16 if bf16 else _load_float

    @cuda.jit
    def denominators(z, n_tok, logit_lengths, target_lengths, denom, dur_logp):
        b, t, u = _row_index(z)
        tid = cuda.threadIdx.x
        if t >= logit_lengths[b] or u > target_lengths[b]:
            # Padding: never read. The branch is uniform across the block, so no thread misses a syncthreads.
            if tid == 0:
                denom[b, t, u] = _ZERO
            return
        partial = cuda.shared.array(threads, float32)

        # Row maximum: each thread scans a stride of the classes, then a shared-memory tree halves the partials.
        m = NEG_INF
        k = tid
        while k < n_tok:
            m = _fmax(m, load(z, b, t, u, k))
            k += threads
        partial[tid] = m
        cuda.syncthreads()
        s = threads // 2
        while s > 0:
            if tid < s:
                partial[tid] = _fmax(partial[tid], partial[tid + s])
            cuda.syncthreads()
            s //= 2
        row_max = partial[0]
        cuda.syncthreads()  # every thread has read partial[0] before the sum reuses the slots

        acc = _ZERO
        k = tid
        while k < n_tok:
            acc += math.exp(load(z, b, t, u, k) - row_max)
            k += threads
        partial[tid] = acc
        cuda.syncthreads()
        s = threads // 2
        while s > 0:
            if tid < s:
                partial[tid] += partial[tid + s]
            cuda.syncthreads()
            s //= 2
        if tid == 0:
            denom[b, t, u] = -(row_max + math.log(partial[0]))

        # TDT: the D duration logits have their own softmax. D is tiny (about 5), so each thread normalises its
        # own entries serially instead of paying for another reduction.
        n_dur = z.shape[3] - n_tok
        i = tid
        while i < n_dur:
            dm = NEG_INF
            for j in range(n_dur):
                dm = _fmax(dm, load(z, b, t, u, n_tok + j))
            ds = _ZERO
            for j in range(n_dur):
                ds += math.exp(load(z, b, t, u, n_tok + j) - dm)
            dur_logp[b, t, u, i] = load(z, b, t, u, n_tok + i) - dm - math.log(ds)
            i += threads

    return denominators


@dataclass(frozen=True)
class _LatticeKernels:
    alphas_multiblank: Any
    betas_multiblank: Any
    grads_multiblank: Any
    alphas_tdt: Any
    betas_tdt: Any
    grads_tdt: Any


@functools.cache
def _lattice_kernels(bf16: bool) -> _LatticeKernels:
    """Steps 2, 4 and 5 for both lattice families, reading logits as float/float16 (``bf16=False``) or bfloat16 bits."""
    load = _load_bf16 if bf16 else _load_float
    store = _store_bf16 if bf16 else _store_float

    @cuda.jit(device=True)
    def log_prob(z, denom, b, t, u, k, sigma):
        """Token log-prob of class k at (t, u), shifted by -sigma (logit under-normalisation)."""
        return load(z, b, t, u, k) + denom[b, t, u] - sigma

    # --- multi-blank RNN-T (RNN-T = no big blank) -----------------------------------------------------------------
    # Arcs out of (t, u): blank -> (t+1, u); big blank i (class blank-1-i) -> (t+m_i, u); label y_u -> (t, u+1).
    # A blank arc landing exactly on T_b from the last row ends the path.

    @cuda.jit
    def alphas_multiblank(z, denom, targets, logit_lengths, target_lengths, blank, big, n_big, sigma, alphas,
                          log_like):
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        t_b = logit_lengths[b]
        u_b = target_lengths[b] + 1
        # Anti-diagonal n = t + u only needs earlier diagonals: one sync per diagonal, u tiled over the threads.
        for n in range(t_b + u_b - 1):
            u = tid
            while u < u_b:
                t = n - u
                if t >= 0 and t < t_b:
                    if n == 0:
                        a = _ZERO
                    else:
                        a = NEG_INF
                        if t > 0:
                            a = _log_add(a, alphas[b, t - 1, u] + log_prob(z, denom, b, t - 1, u, blank, sigma))
                        if u > 0:
                            y = targets[b, u - 1]
                            a = _log_add(a, alphas[b, t, u - 1] + log_prob(z, denom, b, t, u - 1, y, sigma))
                        for i in range(n_big):
                            m = big[i]
                            if t >= m:
                                a = _log_add(
                                    a, alphas[b, t - m, u] + log_prob(z, denom, b, t - m, u, blank - 1 - i, sigma)
                                )
                    alphas[b, t, u] = a
                u += nt
            cuda.syncthreads()
        if tid == 0:
            ll = NEG_INF
            if t_b > 0:
                last = u_b - 1
                ll = alphas[b, t_b - 1, last] + log_prob(z, denom, b, t_b - 1, last, blank, sigma)
                for i in range(n_big):
                    m = big[i]
                    if t_b >= m:
                        ll = _log_add(
                            ll, alphas[b, t_b - m, last] + log_prob(z, denom, b, t_b - m, last, blank - 1 - i, sigma)
                        )
            log_like[b] = ll

    @cuda.jit
    def betas_multiblank(z, denom, targets, logit_lengths, target_lengths, blank, big, n_big, sigma, betas,
                         log_like_backward):
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        t_b = logit_lengths[b]
        u_b = target_lengths[b] + 1
        for n in range(t_b + u_b - 2, -1, -1):
            u = tid
            while u < u_b:
                t = n - u
                if t >= 0 and t < t_b:
                    last_row = u == u_b - 1
                    lp_blank = log_prob(z, denom, b, t, u, blank, sigma)
                    if t == t_b - 1 and last_row:
                        bt = lp_blank  # the final blank
                    else:
                        bt = NEG_INF
                        if t < t_b - 1:
                            bt = _log_add(bt, betas[b, t + 1, u] + lp_blank)
                        if not last_row:
                            bt = _log_add(bt, betas[b, t, u + 1] + log_prob(z, denom, b, t, u, targets[b, u], sigma))
                    for i in range(n_big):
                        m = big[i]
                        if t + m < t_b:
                            bt = _log_add(bt, betas[b, t + m, u] + log_prob(z, denom, b, t, u, blank - 1 - i, sigma))
                        elif t + m == t_b and last_row:
                            bt = _log_add(bt, log_prob(z, denom, b, t, u, blank - 1 - i, sigma))
                    betas[b, t, u] = bt
                u += nt
            cuda.syncthreads()
        if tid == 0:
            log_like_backward[b] = betas[b, 0, 0] if t_b > 0 else NEG_INF

    @cuda.jit
    def grads_multiblank(z, denom, alphas, betas, log_like, targets, logit_lengths, target_lengths, blank, big,
                         n_big, sigma, fastemit_lambda, clamp, grads):
        b, t, u = _row_index(z)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        n_cls = z.shape[3]
        t_b = logit_lengths[b]
        u_b = target_lengths[b] + 1
        ll = log_like[b]
        if t >= t_b or u >= u_b or ll == NEG_INF:
            # Padding, or no path at all (cost +inf): nothing to learn from, write zeros rather than NaN.
            k = tid
            while k < n_cls:
                store(grads, b, t, u, k, _ZERO)
                k += nt
            return
        a = alphas[b, t, u]
        occ = math.exp(a + betas[b, t, u] - ll)  # posterior mass through (t, u)
        last_row = u == u_b - 1
        e_blank = _ZERO
        if t < t_b - 1:
            e_blank = math.exp(a + log_prob(z, denom, b, t, u, blank, sigma) + betas[b, t + 1, u] - ll)
        elif last_row:
            e_blank = math.exp(a + log_prob(z, denom, b, t, u, blank, sigma) - ll)
        y = -1
        e_label = _ZERO
        if not last_row:
            y = targets[b, u]
            e_label = math.exp(a + log_prob(z, denom, b, t, u, y, sigma) + betas[b, t, u + 1] - ll)
        den = denom[b, t, u]
        k = tid
        while k < n_cls:
            p = math.exp(load(z, b, t, u, k) + den)  # the true softmax: sigma shifts arcs, not probabilities
            # softmax * occupancy minus the occupancy of every arc labelled k; FastEmit up-weights the label arc.
            g = p * occ + fastemit_lambda * p * e_label
            if k == blank:
                g -= e_blank
            if k == y:
                g -= (_ONE + fastemit_lambda) * e_label
            if k < blank and k >= blank - n_big:
                i = blank - 1 - k
                m = big[i]
                if t + m < t_b:
                    g -= math.exp(a + log_prob(z, denom, b, t, u, k, sigma) + betas[b, t + m, u] - ll)
                elif t + m == t_b and last_row:
                    g -= math.exp(a + log_prob(z, denom, b, t, u, k, sigma) - ll)
            if clamp > _ZERO:
                g = _clip(g, clamp)
            store(grads, b, t, u, k, g)
            k += nt

    # --- TDT ------------------------------------------------------------------------------------------------------
    # Arcs out of (t, u) for each duration d_i: blank -> (t+d_i, u) if d_i > 0; label y_u -> (t+d_i, u+1) if
    # t+d_i < T_b. Each scores token log-prob - sigma + duration log-prob. A blank landing exactly on T_b from the
    # last row ends the path; durations are sorted, so loops may stop at the first d_i that is too long.

    @cuda.jit(device=True)
    def tdt_arc_occupancies(z, denom, dur_logp, alphas, betas, ll, targets, t_b, u_b, b, t, u, blank, i, d, sigma):
        """Posterior mass of the blank and the label arc of duration ``d`` (index i) leaving (t, u)."""
        a = alphas[b, t, u]
        lpd = dur_logp[b, t, u, i]
        last_row = u == u_b - 1
        o_blank = _ZERO
        if d > 0:
            if t + d < t_b:
                o_blank = math.exp(a + log_prob(z, denom, b, t, u, blank, sigma) + lpd + betas[b, t + d, u] - ll)
            elif t + d == t_b and last_row:
                o_blank = math.exp(a + log_prob(z, denom, b, t, u, blank, sigma) + lpd - ll)
        o_label = _ZERO
        if not last_row and t + d < t_b:
            y = targets[b, u]
            o_label = math.exp(a + log_prob(z, denom, b, t, u, y, sigma) + lpd + betas[b, t + d, u + 1] - ll)
        return o_blank, o_label

    @cuda.jit
    def alphas_tdt(z, denom, dur_logp, targets, logit_lengths, target_lengths, blank, durations, n_dur, sigma,
                   alphas, log_like):
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        t_b = logit_lengths[b]
        u_b = target_lengths[b] + 1
        # Every arc goes to a later diagonal (a d=0 label still moves u), so the same wavefront works.
        for n in range(t_b + u_b - 1):
            u = tid
            while u < u_b:
                t = n - u
                if t >= 0 and t < t_b:
                    if n == 0:
                        a = _ZERO
                    else:
                        a = NEG_INF
                        for i in range(n_dur):
                            d = durations[i]
                            if d > t:
                                break
                            if d > 0:
                                a = _log_add(a, alphas[b, t - d, u] + log_prob(z, denom, b, t - d, u, blank, sigma)
                                             + dur_logp[b, t - d, u, i])
                            if u > 0:
                                y = targets[b, u - 1]
                                a = _log_add(a, alphas[b, t - d, u - 1]
                                             + log_prob(z, denom, b, t - d, u - 1, y, sigma)
                                             + dur_logp[b, t - d, u - 1, i])
                    alphas[b, t, u] = a
                u += nt
            cuda.syncthreads()
        if tid == 0:
            ll = NEG_INF
            last = u_b - 1
            for i in range(n_dur):
                d = durations[i]
                if d > t_b:
                    break
                if d > 0:
                    ll = _log_add(ll, alphas[b, t_b - d, last] + log_prob(z, denom, b, t_b - d, last, blank, sigma)
                                  + dur_logp[b, t_b - d, last, i])
            log_like[b] = ll

    @cuda.jit
    def betas_tdt(z, denom, dur_logp, targets, logit_lengths, target_lengths, blank, durations, n_dur, sigma,
                  betas, log_like_backward):
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        t_b = logit_lengths[b]
        u_b = target_lengths[b] + 1
        for n in range(t_b + u_b - 2, -1, -1):
            u = tid
            while u < u_b:
                t = n - u
                if t >= 0 and t < t_b:
                    last_row = u == u_b - 1
                    lp_blank = log_prob(z, denom, b, t, u, blank, sigma)
                    lp_label = NEG_INF
                    if not last_row:
                        lp_label = log_prob(z, denom, b, t, u, targets[b, u], sigma)
                    bt = NEG_INF
                    for i in range(n_dur):
                        d = durations[i]
                        if t + d > t_b:
                            break
                        lpd = dur_logp[b, t, u, i]
                        if d > 0:
                            if t + d < t_b:
                                bt = _log_add(bt, betas[b, t + d, u] + lp_blank + lpd)
                            elif last_row:  # t + d == T_b: the final blank
                                bt = _log_add(bt, lp_blank + lpd)
                        if not last_row and t + d < t_b:
                            bt = _log_add(bt, betas[b, t + d, u + 1] + lp_label + lpd)
                    betas[b, t, u] = bt
                u += nt
            cuda.syncthreads()
        if tid == 0:
            log_like_backward[b] = betas[b, 0, 0] if t_b > 0 else NEG_INF

    @cuda.jit
    def grads_tdt(z, denom, dur_logp, alphas, betas, log_like, targets, logit_lengths, target_lengths, blank,
                  durations, n_dur, sigma, fastemit_lambda, clamp, grads):
        b, t, u = _row_index(z)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        n_cls = z.shape[3]
        n_tok = n_cls - n_dur
        t_b = logit_lengths[b]
        u_b = target_lengths[b] + 1
        ll = log_like[b]
        if t >= t_b or u >= u_b or ll == NEG_INF:
            k = tid
            while k < n_cls:
                store(grads, b, t, u, k, _ZERO)
                k += nt
            return
        occ = math.exp(alphas[b, t, u] + betas[b, t, u] - ll)
        # Per-row arc masses summed over durations; every thread needs them (FastEmit touches every class), and
        # recomputing 2D exponentials per thread is cheaper than a shared-memory round trip for D of about 5.
        sum_blank = _ZERO
        sum_label = _ZERO
        for i in range(n_dur):
            o_blank, o_label = tdt_arc_occupancies(z, denom, dur_logp, alphas, betas, ll, targets, t_b, u_b, b, t,
                                                   u, blank, i, durations[i], sigma)
            sum_blank += o_blank
            sum_label += o_label
        y = -1
        if u < u_b - 1:
            y = targets[b, u]
        den = denom[b, t, u]
        k = tid
        while k < n_cls:
            if k < n_tok:
                p = math.exp(load(z, b, t, u, k) + den)
                g = p * occ + fastemit_lambda * p * sum_label
                if k == blank:
                    g -= sum_blank
                if k == y:
                    g -= (_ONE + fastemit_lambda) * sum_label
                if clamp > _ZERO:
                    g = _clip(g, clamp)
            else:
                # Duration logit: the duration log-prob gradient -(O_blank + O_label) through its own softmax,
                # g_z = g_delta - p * sum(g_delta), with sum(g_delta) = -occ. No FastEmit, no clamp here.
                i = k - n_tok
                o_blank, o_label = tdt_arc_occupancies(z, denom, dur_logp, alphas, betas, ll, targets, t_b, u_b,
                                                       b, t, u, blank, i, durations[i], sigma)
                g = math.exp(dur_logp[b, t, u, i]) * occ - o_blank - o_label
            store(grads, b, t, u, k, g)
            k += nt

    return _LatticeKernels(alphas_multiblank, betas_multiblank, grads_multiblank, alphas_tdt, betas_tdt, grads_tdt)


# -------------------------------------------------------------------------------------------------------------------
# Host side
# -------------------------------------------------------------------------------------------------------------------

_DURATION_CACHE: dict[tuple[tuple[int, ...], str], Tensor] = {}


def _device_durations(durations: tuple[int, ...], device: torch.device) -> Tensor:
    """A small int32 tensor of ``durations`` on ``device``, made once per (tuple, device)."""
    key = (durations, str(device))
    cached = _DURATION_CACHE.get(key)
    if cached is None:
        # One element at least: an empty device array may have a null pointer. Kernels read only n entries.
        cached = torch.tensor(durations or (0,), dtype=torch.int32, device=device)
        _DURATION_CACHE[key] = cached
    return cached


def _kernel_array(x: Tensor) -> Any:
    """A zero-copy kernel argument for ``x``: its strides are kept, bfloat16 becomes its int16 bits."""
    x = x.detach()
    if x.dtype == torch.bfloat16:
        x = x.view(torch.int16)
    if SIMULATED:
        # Wrapping the numpy view directly (not cuda.to_device) lets the kernel write into the tensor's memory and
        # read strided views without a copy, like as_cuda_array does on a GPU.
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return FakeCUDAArray(x.numpy())
    # sync=False: the kernels run on the tensor's (current) stream, so numba need not wait for it.
    return cuda.as_cuda_array(x, sync=False)


@contextlib.contextmanager
def _launch_context(device: torch.device) -> Iterator[Any]:
    """Select the device for numba and yield the stream to launch on (PyTorch's current stream)."""
    if SIMULATED:
        yield 0
        return
    with cuda.gpus[device.index if device.index is not None else torch.cuda.current_device()]:
        yield cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)


def _check_inputs(logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor) -> None:
    """Cheap checks for direct callers; the loss API has validated lengths and values already."""
    if SIMULATED and logits.device.type != "cpu":
        raise ValueError(
            f"logits are on {logits.device}, but numba runs CUDA kernels in its simulator "
            "(NUMBA_ENABLE_CUDASIM=1), which takes CPU tensors; unset NUMBA_ENABLE_CUDASIM to use the GPU"
        )
    if not SIMULATED and logits.device.type != "cuda":
        raise ValueError(f"numba_cuda needs CUDA tensors, logits are on {logits.device}")
    if logits.dim() != 4:
        raise ValueError(f"logits must be 4-D (B, T, U+1, K), got shape {tuple(logits.shape)}")
    if logits.dtype not in _LOGIT_DTYPES:
        raise ValueError(f"logits must be float32, float16 or bfloat16 for numba_cuda, got {logits.dtype}")
    for name, x, dim in (("targets", targets, 2), ("logit_lengths", logit_lengths, 1),
                         ("target_lengths", target_lengths, 1)):
        if x.dim() != dim or x.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{name} must be a {dim}-D int32/int64 tensor, got {x.dtype} of shape {tuple(x.shape)}")
        if x.device != logits.device:
            raise ValueError(f"{name} is on {x.device} but logits are on {logits.device}")


def transducer_kernels(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    *,
    kind: Kind,
    blank: int,
    durations: tuple[int, ...] = (),
    sigma: float = 0.0,
    fastemit_lambda: float = 0.0,
    clamp: float = -1.0,
    need_grad: bool = True,
    launch: LaunchConfig | None = None,
) -> KernelOutputs:
    """Run the kernels for one loss and return the costs, the gradient and the intermediates.

    Args:
        logits: ``(B, T, U+1, K)`` float32/float16/bfloat16 on the GPU (CPU under the simulator); may be a view
            whose last dimension is a prefix of longer rows. ``K`` is ``V+1`` (RNN-T), ``V+1+D`` (TDT: token
            logits then D duration logits) or ``V+N+1`` (multi-blank).
        targets: ``(B, S)`` int32/int64 labels, ``S >= max(target_lengths)``.
        logit_lengths: ``(B,)`` int32/int64 frames ``T_b <= T``.
        target_lengths: ``(B,)`` int32/int64 labels ``L_b <= U``.
        kind: ``"rnnt"``, ``"tdt"`` or ``"multiblank"``.
        blank: the blank's class index (already resolved, ``>= 0``).
        durations: TDT durations or multi-blank big-blank durations (validated, sorted); ignored for RNN-T.
        sigma: subtracted from every token log-prob (TDT, multi-blank).
        fastemit_lambda: FastEmit lambda.
        clamp: if > 0, token-logit gradients are clipped to ``[-clamp, clamp]``.
        need_grad: also run the backward variables and the gradient kernel.
        launch: block sizes (default :func:`default_launch`).

    Returns:
        A :class:`KernelOutputs`.
    """
    _check_inputs(logits, targets, logit_lengths, target_lengths)
    launch = launch or default_launch()
    batch, t_max, u1_max, n_cls = logits.shape
    device = logits.device
    if kind == "rnnt":
        durations = ()
    elif kind not in ("tdt", "multiblank"):
        raise ValueError(f"kind must be 'rnnt', 'tdt' or 'multiblank', got {kind!r}")
    n_dur = len(durations) if kind == "tdt" else 0
    n_tok = n_cls - n_dur
    if not 0 <= blank < n_tok:
        raise ValueError(f"blank={blank} is not one of the {n_tok} token classes")
    if kind == "multiblank" and blank - len(durations) < 0:
        raise ValueError(f"blank={blank} leaves no room for {len(durations)} big blanks below it")

    f32 = {"dtype": torch.float32, "device": device}
    denom = torch.empty((batch, t_max, u1_max), **f32)
    alphas = torch.empty((batch, t_max, u1_max), **f32)
    log_like = torch.empty((batch,), **f32)
    costs = torch.empty((batch,), **f32)
    dur_logp = torch.empty((batch, t_max, u1_max, n_dur) if n_dur else (1, 1, 1, 1), **f32)
    betas = log_like_backward = grads = None
    if need_grad:
        betas = torch.empty((batch, t_max, u1_max), **f32)
        log_like_backward = torch.empty((batch,), **f32)
        grads = torch.empty(logits.shape, dtype=logits.dtype, device=device)
    outputs = KernelOutputs(costs, grads, log_like, log_like_backward, alphas, betas, denom,
                            dur_logp if n_dur else None)
    if batch == 0:
        return outputs
    if t_max * u1_max == 0:
        raise ValueError(f"logits have no (t, u) cells: shape {tuple(logits.shape)}")
    if targets.shape[1] == 0:  # no labels anywhere; give the kernels a readable (never read) column
        targets = torch.zeros((batch, 1), dtype=targets.dtype, device=device)

    bf16 = logits.dtype == torch.bfloat16
    rows = batch * t_max * u1_max
    row_threads = launch.row_threads
    warp = 1 if SIMULATED else 32
    wave_threads = min(launch.wavefront_threads, -(-u1_max // warp) * warp)
    cost_threads = min(batch, 128)
    dev_durations = _device_durations(tuple(durations), device)
    lam = np.float32(fastemit_lambda)
    sig = np.float32(sigma if kind != "rnnt" else 0.0)
    clp = np.float32(clamp)
    kernels = _lattice_kernels(bf16)

    with _launch_context(device) as stream:
        z = _kernel_array(logits)
        y = _kernel_array(targets)
        t_len = _kernel_array(logit_lengths)
        l_len = _kernel_array(target_lengths)
        d_arr = _kernel_array(dev_durations)
        w_denom, w_alpha, w_ll = _kernel_array(denom), _kernel_array(alphas), _kernel_array(log_like)
        w_dur = _kernel_array(dur_logp)

        _denominator_kernel(bf16, row_threads)[rows, row_threads, stream](z, n_tok, t_len, l_len, w_denom, w_dur)
        if kind == "tdt":
            kernels.alphas_tdt[batch, wave_threads, stream](
                z, w_denom, w_dur, y, t_len, l_len, blank, d_arr, n_dur, sig, w_alpha, w_ll)
        else:
            kernels.alphas_multiblank[batch, wave_threads, stream](
                z, w_denom, y, t_len, l_len, blank, d_arr, len(durations), sig, w_alpha, w_ll)
        _costs_kernel[-(-batch // cost_threads), cost_threads, stream](w_ll, lam, _kernel_array(costs))

        if need_grad:
            assert betas is not None and log_like_backward is not None and grads is not None
            w_beta, w_llb, w_grad = _kernel_array(betas), _kernel_array(log_like_backward), _kernel_array(grads)
            if kind == "tdt":
                kernels.betas_tdt[batch, wave_threads, stream](
                    z, w_denom, w_dur, y, t_len, l_len, blank, d_arr, n_dur, sig, w_beta, w_llb)
                kernels.grads_tdt[rows, row_threads, stream](
                    z, w_denom, w_dur, w_alpha, w_beta, w_ll, y, t_len, l_len, blank, d_arr, n_dur, sig, lam, clp,
                    w_grad)
            else:
                kernels.betas_multiblank[batch, wave_threads, stream](
                    z, w_denom, y, t_len, l_len, blank, d_arr, len(durations), sig, w_beta, w_llb)
                kernels.grads_multiblank[rows, row_threads, stream](
                    z, w_denom, w_alpha, w_beta, w_ll, y, t_len, l_len, blank, d_arr, len(durations), sig, lam,
                    clp, w_grad)
    return outputs


# -------------------------------------------------------------------------------------------------------------------
# The backend contract (speechkit/losses/backends.py)
# -------------------------------------------------------------------------------------------------------------------


def rnnt_cost_grad(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    fastemit_lambda: float,
    clamp: float,
    need_grad: bool,
    *,
    launch: LaunchConfig | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Standard RNN-T: per-sample costs and gradients.

    Args:
        logits: ``(B, T, U+1, V+1)`` float32/float16/bfloat16; may be a view of longer rows (TDT omega branch).
        targets: ``(B, S)`` labels; logit_lengths, target_lengths: ``(B,)``.
        blank: blank index (resolved, ``>= 0``).
        fastemit_lambda: FastEmit lambda; clamp: gradient clip (``<= 0``: off).
        need_grad: compute the gradient too.
        launch: block sizes (default :func:`default_launch`).

    Returns:
        ``(costs (B,) float32, grads like logits or None)``.
    """
    out = transducer_kernels(logits, targets, logit_lengths, target_lengths, kind="rnnt", blank=blank,
                             fastemit_lambda=fastemit_lambda, clamp=clamp, need_grad=need_grad, launch=launch)
    return out.costs, out.grads


def tdt_cost_grad(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    durations: tuple[int, ...],
    sigma: float,
    fastemit_lambda: float,
    clamp: float,
    need_grad: bool,
    *,
    launch: LaunchConfig | None = None,
) -> tuple[Tensor, Tensor | None]:
    """TDT: per-sample costs and gradients, duration logits included (their softmax is fused).

    Args:
        logits: ``(B, T, U+1, V+1+D)``: token logits then D duration logits.
        targets: ``(B, S)`` labels; logit_lengths, target_lengths: ``(B,)``.
        blank: blank index among the token classes (resolved).
        durations: the D durations, sorted, unique, containing 1.
        sigma: token log-prob shift; fastemit_lambda: FastEmit lambda; clamp: token gradient clip (``<= 0``: off).
        need_grad: compute the gradient too.
        launch: block sizes (default :func:`default_launch`).

    Returns:
        ``(costs (B,) float32, grads like logits or None)``.
    """
    out = transducer_kernels(logits, targets, logit_lengths, target_lengths, kind="tdt", blank=blank,
                             durations=tuple(durations), sigma=sigma, fastemit_lambda=fastemit_lambda, clamp=clamp,
                             need_grad=need_grad, launch=launch)
    return out.costs, out.grads


def multiblank_cost_grad(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    big_blank_durations: tuple[int, ...],
    sigma: float,
    fastemit_lambda: float,
    clamp: float,
    need_grad: bool,
    *,
    launch: LaunchConfig | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Multi-blank RNN-T: per-sample costs and gradients.

    Args:
        logits: ``(B, T, U+1, V+N+1)`` in the layout ``[tokens | big blanks | blank]``, one softmax.
        targets: ``(B, S)`` labels; logit_lengths, target_lengths: ``(B,)``.
        blank: the standard blank (resolved); big blank i (duration ``big_blank_durations[i]``) is ``blank-1-i``.
        big_blank_durations: N durations > 1, sorted.
        sigma: log-prob shift on every arc; fastemit_lambda: FastEmit lambda; clamp: gradient clip (``<= 0``: off).
        need_grad: compute the gradient too.
        launch: block sizes (default :func:`default_launch`).

    Returns:
        ``(costs (B,) float32, grads like logits or None)``.
    """
    out = transducer_kernels(logits, targets, logit_lengths, target_lengths, kind="multiblank", blank=blank,
                             durations=tuple(big_blank_durations), sigma=sigma, fastemit_lambda=fastemit_lambda,
                             clamp=clamp, need_grad=need_grad, launch=launch)
    return out.costs, out.grads
