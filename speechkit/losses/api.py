"""The transducer loss API: validation, backend dispatch, reductions, the autograd Function, nn.Module wrappers.

The functions follow torchaudio's ``rnnt_loss`` naming; the joint layouts are NeMo's (:mod:`speechkit.losses.layout`).
Each loss is computed by a backend (:mod:`speechkit.losses.backends`) that returns the per-sample costs and, in the
same pass, the per-sample logit gradients; the gradients are stored and the backward pass only scales them by the
upstream gradient of each sample, so every reduction (and any later concatenation of per-sample costs) is exact.

Conventions, all checked with errors that name the argument:

- ``logits`` may be padded: ``T >= max(logit_lengths)`` and ``U+1 >= max(target_lengths)+1``; padded cells get
  zero gradient. Lengths: ``1 <= logit_lengths <= T``, ``0 <= target_lengths <= U``.
- ``targets`` ``(B, S)`` needs ``S >= max(target_lengths)``; entries past each length are ignored; valid entries
  must be token ids (not the blank, nor a big blank). Targets narrower than ``U`` are padded here.
- ``logits``, ``targets`` and both length tensors must be on one device.
- ``clamp > 0`` clips each sample's logit gradient to ``[-clamp, clamp]`` before the reduction scales it;
  ``clamp <= 0`` turns it off. FastEmit reports ``-(1 + lambda) log P`` and back-propagates FastEmit's gradient.
- Reductions: ``"none"`` ``(B,)``; ``"sum"``; ``"mean"`` = mean over the batch (torchaudio's ``mean``, NeMo's
  ``mean_batch``); ``"mean_volume"`` = ``sum(costs) / sum(target_lengths)`` (NeMo's).
- dtypes: float16/bfloat16/float32/float64 logits. A backend that does not take the dtype directly (the Numba CPU
  kernels are float32 only) gets a float32 copy, logged once; gradients come back in the logits' dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from speechkit.losses.backends import BACKENDS, get_backend, log_once
from speechkit.losses.layout import (
    LayoutError,
    resolve_blank,
    validate_big_blank_durations,
    validate_durations,
)

__all__ = [
    "MultiblankRNNTLoss",
    "RNNTLoss",
    "Reduction",
    "TDTLoss",
    "TransducerInputError",
    "multiblank_rnnt_loss",
    "rnnt_loss",
    "tdt_loss",
]

Reduction = Literal["none", "sum", "mean", "mean_volume"]
_REDUCTIONS = ("none", "sum", "mean", "mean_volume")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INT_DTYPES = (torch.int32, torch.int64)

CostGrad = tuple[Tensor, Tensor | None]


class TransducerInputError(ValueError):
    """A transducer loss got inputs or options it cannot use; the message names the argument."""


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


def _check_options(
    reduction: str, clamp: float, fastemit_lambda: float, backend: str, sigma: float = 0.0, omega: float = 0.0
) -> float:
    """Validate scalar options; returns the clamp the backends get (``-1.0`` when off)."""
    if reduction not in _REDUCTIONS:
        raise TransducerInputError(f"reduction={reduction!r} is unknown; choose one of {', '.join(_REDUCTIONS)}")
    if backend != "auto" and backend not in BACKENDS:
        raise TransducerInputError(f"backend={backend!r} is unknown; choose one of: auto, {', '.join(BACKENDS)}")
    for name, value in (("clamp", clamp), ("fastemit_lambda", fastemit_lambda), ("sigma", sigma), ("omega", omega)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise TransducerInputError(f"{name} must be a finite number, got {value!r}")
    if fastemit_lambda < 0:
        raise TransducerInputError(f"fastemit_lambda must be >= 0, got {fastemit_lambda}")
    if sigma < 0:
        raise TransducerInputError(f"sigma must be >= 0 (it under-normalises the token log-probs), got {sigma}")
    if not 0.0 <= omega <= 1.0:
        raise TransducerInputError(f"omega must be a probability in [0, 1], got {omega}")
    return float(clamp) if clamp > 0 else -1.0


def _logits_width(logits: Tensor) -> int:
    """Check that ``logits`` is a 4-D float tensor; returns its last dimension K."""
    if not isinstance(logits, Tensor):
        raise TransducerInputError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 4:
        raise TransducerInputError(f"logits must have shape (B, T, U+1, K), got {tuple(logits.shape)}")
    if logits.dtype not in _FLOAT_DTYPES:
        raise TransducerInputError(f"logits must be float16, bfloat16, float32 or float64, got {logits.dtype}")
    return logits.shape[-1]


def _check_tensors(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    num_token_classes: int,
    blank: int,
    forbidden: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Check shapes, dtypes, devices, lengths and target values; returns the tensors ready for a backend.

    Args:
        forbidden: ``[lo, hi]`` inclusive range of token-class ids a target may not take (the blank, and for
            multi-blank the big blanks below it).
    """
    for name, x in (("targets", targets), ("logit_lengths", logit_lengths), ("target_lengths", target_lengths)):
        if not isinstance(x, Tensor):
            raise TransducerInputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    b, t, u1, _ = logits.shape
    if b == 0 or t == 0 or u1 == 0:
        raise TransducerInputError(f"logits has an empty dimension: shape {tuple(logits.shape)}")
    if targets.dim() != 2 or targets.shape[0] != b:
        raise TransducerInputError(f"targets must have shape (B={b}, S), got {tuple(targets.shape)}")
    for name, x in (("targets", targets), ("logit_lengths", logit_lengths), ("target_lengths", target_lengths)):
        if x.dtype not in _INT_DTYPES:
            raise TransducerInputError(f"{name} must be int32 or int64, got {x.dtype}")
        if x.device != logits.device:
            raise TransducerInputError(f"{name} is on {x.device} but logits are on {logits.device}")
    for name, x in (("logit_lengths", logit_lengths), ("target_lengths", target_lengths)):
        if tuple(x.shape) != (b,):
            raise TransducerInputError(f"{name} must have shape (B={b},), got {tuple(x.shape)}")

    # One host sync for every data-dependent check.
    s = targets.shape[1]
    in_len = torch.arange(s, device=targets.device).view(1, s) < target_lengths.view(b, 1)
    bad = in_len & ((targets < 0) | (targets >= num_token_classes) |
                    ((targets >= forbidden[0]) & (targets <= forbidden[1])))
    flat_bad = bad.reshape(-1)
    first = flat_bad.long().argmax() if s > 0 else torch.zeros((), dtype=torch.long, device=targets.device)
    first_val = targets.reshape(-1)[first] if s > 0 else first
    stats = torch.stack([
        logit_lengths.min().long(), logit_lengths.max().long(), target_lengths.min().long(),
        target_lengths.max().long(), flat_bad.sum().long(), first.long(), first_val.long(),
    ]).tolist()
    t_min, t_max, l_min, l_max, n_bad, first_i, first_v = stats
    if t_min < 1:
        raise TransducerInputError(f"logit_lengths must be >= 1, got {t_min}")
    if t_max > t:
        raise TransducerInputError(f"logit_lengths has {t_max}, more than the {t} frames of logits (dim 1)")
    if l_min < 0:
        raise TransducerInputError(f"target_lengths must be >= 0, got {l_min}")
    if l_max > u1 - 1:
        raise TransducerInputError(
            f"target_lengths has {l_max} but logits (dim 2 = U+1 = {u1}) have room for {u1 - 1} labels"
        )
    if l_max > s:
        raise TransducerInputError(f"target_lengths has {l_max} but targets has only {s} columns")
    if n_bad:
        lo, hi = forbidden
        what = f"blank {blank}" if lo == hi else f"blanks {lo}..{hi}"
        raise TransducerInputError(
            f"targets has {n_bad} value(s) that are not token ids: each must be in [0, {num_token_classes}) and "
            f"not the {what}; e.g. {first_v} at (sample {first_i // s}, position {first_i % s})"
        )

    if s < u1 - 1:  # backends read one label per row u < U; padded columns are never used
        targets = torch.cat([targets, targets.new_zeros(b, u1 - 1 - s)], dim=1)
    if not logits.is_contiguous() and not _is_row_view(logits):
        logits = logits.contiguous()
    return logits, targets.contiguous(), logit_lengths.contiguous(), target_lengths.contiguous()


def _is_row_view(x: Tensor) -> bool:
    """Contiguous except that each (b, t, u) row may be a slice of a wider row (the kernels honour strides)."""
    return x.stride(-1) == 1 and x.stride(2) >= x.shape[3] and x.stride(1) == x.stride(2) * x.shape[2] and (
        x.stride(0) == x.stride(1) * x.shape[1]
    )


# ---------------------------------------------------------------------------------------------------------------
# The autograd Function and dispatch
# ---------------------------------------------------------------------------------------------------------------


class _TransducerLoss(torch.autograd.Function):
    """Costs from a backend; the backend's per-sample gradients are saved and scaled in backward."""

    @staticmethod
    def forward(ctx, logits: Tensor, run: Callable[[bool], CostGrad]) -> Tensor:  # type: ignore[override]
        costs, grads = run(True)
        assert grads is not None
        ctx.logits_dtype = logits.dtype
        ctx.consumed = False
        # save_for_backward (not a ctx attribute) so the joint-sized buffer is freed with the graph (NeMo PR #11144).
        ctx.save_for_backward(grads)
        return costs

    @staticmethod
    def backward(ctx, grad_costs: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        if ctx.consumed:
            raise RuntimeError(
                "the transducer loss scales its saved gradient in place, so its backward runs once per loss call "
                "(retain_graph=True with a second backward is not supported): compute the loss again")
        ctx.consumed = True
        (grads,) = ctx.saved_tensors
        # In place: the saved buffer becomes the returned gradient, so forward + backward hold one joint-sized
        # gradient, not two (the memory target of the loss benchmark).
        grads.mul_(grad_costs.to(grads.dtype).view(-1, 1, 1, 1))
        return grads.to(ctx.logits_dtype), None


def _backend_logits(logits: Tensor, name: str) -> Tensor:
    """The logits in a dtype the backend takes (a float32 copy otherwise, logged once)."""
    if logits.dtype in BACKENDS[name].dtypes:
        return logits
    log_once(
        f"dtype:{name}:{logits.dtype}",
        f"transducer loss: backend {name!r} takes {', '.join(str(d) for d in BACKENDS[name].dtypes)} logits; "
        f"converting {logits.dtype} logits to a float32 copy (one extra joint-sized tensor)",
    )
    return logits.float()


def _run(logits: Tensor, compute: Callable[[Tensor, bool], CostGrad]) -> Tensor:
    """Call ``compute(logits, need_grad)`` and attach its gradients to ``logits`` through the Function."""
    if torch.is_grad_enabled() and logits.requires_grad:
        return _TransducerLoss.apply(logits, lambda need_grad: compute(logits.detach(), need_grad))
    costs, _ = compute(logits.detach(), False)
    return costs


def _reduce(costs: Tensor, target_lengths: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return costs
    if reduction == "sum":
        return costs.sum()
    if reduction == "mean":
        return costs.mean()
    # mean_volume: cost per label; an all-empty batch divides by 1 rather than 0.
    return costs.sum() / target_lengths.sum().clamp(min=1).to(costs.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Functional API
# ---------------------------------------------------------------------------------------------------------------


def rnnt_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int = -1,
    reduction: Reduction = "mean",
    clamp: float = -1.0,
    fastemit_lambda: float = 0.0,
    backend: str = "auto",
) -> Tensor:
    """Standard RNN-T loss (Graves 2012) with fused log-softmax, optional FastEmit and gradient clamp.

    Args:
        logits: ``(B, T, U+1, V+1)`` raw joint outputs (no log-softmax applied); float16/bfloat16/float32/float64.
        targets: ``(B, S)`` int32/int64 labels, ``S >= max(target_lengths)``.
        logit_lengths: ``(B,)`` frames per sample, ``1 <= T_b <= T``.
        target_lengths: ``(B,)`` labels per sample, ``0 <= L_b <= U``.
        blank: blank index; ``-1`` = the last class (V).
        reduction: ``"none"`` -> ``(B,)``, ``"sum"``, ``"mean"`` (batch mean) or ``"mean_volume"``
            (``sum(costs) / sum(target_lengths)``).
        clamp: if > 0, clip each sample's logit gradient to ``[-clamp, clamp]``.
        fastemit_lambda: FastEmit regularisation; the reported cost is ``-(1 + lambda) log P``.
        backend: ``"auto"``, ``"torch"``, ``"numba"`` or ``"numba_cuda"`` (:mod:`speechkit.losses.backends`).

    Returns:
        The reduced cost (a scalar, or ``(B,)`` for ``"none"``), float32 (float64 with float64 logits on the
        ``torch`` backend).

    Example:
        >>> import torch
        >>> logits = torch.randn(2, 10, 4, 6, requires_grad=True)
        >>> targets = torch.tensor([[1, 2, 3], [4, 0, 0]])
        >>> loss = rnnt_loss(logits, targets, torch.tensor([10, 7]), torch.tensor([3, 1]), backend="torch")
        >>> loss.backward()
    """
    clamp = _check_options(reduction, clamp, fastemit_lambda, backend)
    k = _logits_width(logits)
    if k < 2:
        raise TransducerInputError(f"logits must have at least 2 classes (a token and the blank), got {k}")
    blank_i = _resolve(blank, k)
    logits, targets, logit_lengths, target_lengths = _check_tensors(
        logits, targets, logit_lengths, target_lengths, k, blank_i, (blank_i, blank_i)
    )
    name, impl = get_backend(backend, logits.device)
    lam = float(fastemit_lambda)

    def compute(x: Tensor, need_grad: bool) -> CostGrad:
        return impl.rnnt_cost_grad(
            _backend_logits(x, name), targets, logit_lengths, target_lengths, blank_i, lam, clamp, need_grad
        )

    return _reduce(_run(logits, compute), target_lengths, reduction)


def tdt_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    durations: Sequence[int],
    blank: int = -1,
    sigma: float = 0.0,
    omega: float = 0.0,
    reduction: Reduction = "mean",
    clamp: float = -1.0,
    fastemit_lambda: float = 0.0,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> Tensor:
    """Token-and-Duration Transducer loss (Xu et al., ICML 2023).

    The token logits and the duration logits get separate softmaxes; a label arc may advance any duration
    (including 0), a blank arc only a duration > 0, and the path ends with a blank landing exactly on frame T_b.

    Args:
        logits: ``(B, T, U+1, V+1+D)``: ``[tokens 0..V-1 | blank V | D duration logits]``.
        targets: ``(B, S)`` int32/int64 labels, ``S >= max(target_lengths)``.
        logit_lengths: ``(B,)`` frames per sample, ``1 <= T_b <= T``.
        target_lengths: ``(B,)`` labels per sample, ``0 <= L_b <= U``.
        durations: the D frame advances, sorted, unique, containing 1 (0 optional), e.g. ``[0, 1, 2, 3, 4]``.
        blank: blank index among the ``V+1`` token classes; ``-1`` = V (never a duration logit).
        sigma: logit under-normalisation subtracted from every token log-prob (NeMo's configs use 0.02-0.05).
        omega: probability that this call uses the standard RNN-T loss on the token logits instead (no sigma,
            zero duration gradient); one draw per call, from ``generator`` if given.
        reduction: as in :func:`rnnt_loss`.
        clamp: if > 0, clip each sample's *token*-logit gradient to ``[-clamp, clamp]`` (duration logits are not
            clipped).
        fastemit_lambda: FastEmit regularisation (token gradient only); reported cost ``-(1 + lambda) log P``.
        generator: random source for the omega draw (default: torch's global generator).
        backend: as in :func:`rnnt_loss`.

    Returns:
        The reduced cost (a scalar, or ``(B,)`` for ``"none"``).

    Example:
        >>> import torch
        >>> logits = torch.randn(2, 10, 4, 6 + 5, requires_grad=True)   # V=5, durations 0..4
        >>> targets = torch.tensor([[1, 2, 3], [4, 0, 0]])
        >>> loss = tdt_loss(logits, targets, torch.tensor([10, 7]), torch.tensor([3, 1]),
        ...                 durations=[0, 1, 2, 3, 4], sigma=0.05, backend="torch")
        >>> loss.backward()
    """
    clamp = _check_options(reduction, clamp, fastemit_lambda, backend, sigma=sigma, omega=omega)
    try:
        durs = validate_durations(durations)
    except LayoutError as e:
        raise TransducerInputError(str(e)) from e
    n_dur = len(durs)
    k = _logits_width(logits)
    k_tok = k - n_dur
    if k_tok < 2:
        raise TransducerInputError(
            f"logits has {k} outputs per (t, u) but {n_dur} durations need at least {n_dur + 2} "
            f"(a token, the blank and the duration logits)"
        )
    blank_i = _resolve(blank, k_tok)
    logits, targets, logit_lengths, target_lengths = _check_tensors(
        logits, targets, logit_lengths, target_lengths, k_tok, blank_i, (blank_i, blank_i)
    )
    name, impl = get_backend(backend, logits.device)
    lam, sig = float(fastemit_lambda), float(sigma)
    use_rnnt = _draw(omega, generator)

    def compute(x: Tensor, need_grad: bool) -> CostGrad:
        x = _backend_logits(x, name)
        if not use_rnnt:
            return impl.tdt_cost_grad(
                x, targets, logit_lengths, target_lengths, blank_i, durs, sig, lam, clamp, need_grad
            )
        # The RNN-T branch reads the token part through a view (no copy); duration logits get zero gradient.
        costs, grads = impl.rnnt_cost_grad(
            x[..., :k_tok], targets, logit_lengths, target_lengths, blank_i, lam, clamp, need_grad
        )
        if grads is not None:
            grads = torch.nn.functional.pad(grads, (0, n_dur))
        return costs, grads

    return _reduce(_run(logits, compute), target_lengths, reduction)


def multiblank_rnnt_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    big_blank_durations: Sequence[int],
    blank: int = -1,
    sigma: float = 0.0,
    reduction: Reduction = "mean",
    clamp: float = -1.0,
    fastemit_lambda: float = 0.0,
    backend: str = "auto",
) -> Tensor:
    """Multi-blank RNN-T loss (Xu et al., arXiv 2211.03541): big blanks that skip several frames.

    Args:
        logits: ``(B, T, U+1, V+N+1)`` in NeMo's layout ``[tokens 0..V-1 | big blanks V..V+N-1 | blank V+N]``,
            one softmax; the big blank of duration ``big_blank_durations[i]`` sits at index ``blank-1-i``.
        targets: ``(B, S)`` int32/int64 labels (token ids ``< blank - N``), ``S >= max(target_lengths)``.
        logit_lengths: ``(B,)`` frames per sample, ``1 <= T_b <= T``.
        target_lengths: ``(B,)`` labels per sample, ``0 <= L_b <= U``.
        big_blank_durations: the N big-blank durations, each > 1, sorted, unique (e.g. ``[2, 4, 8]``).
        blank: the standard blank; ``-1`` = the last class (V+N), never a big blank.
        sigma: logit under-normalisation subtracted from every log-prob (NeMo's config: 0.05).
        reduction: as in :func:`rnnt_loss`.
        clamp: if > 0, clip each sample's logit gradient to ``[-clamp, clamp]``.
        fastemit_lambda: FastEmit regularisation; reported cost ``-(1 + lambda) log P``.
        backend: as in :func:`rnnt_loss`.

    Returns:
        The reduced cost (a scalar, or ``(B,)`` for ``"none"``).

    Example:
        >>> import torch
        >>> logits = torch.randn(2, 10, 4, 6 + 3, requires_grad=True)   # V=5, big blanks [2, 4, 8]
        >>> targets = torch.tensor([[1, 2, 3], [4, 0, 0]])
        >>> loss = multiblank_rnnt_loss(logits, targets, torch.tensor([10, 7]), torch.tensor([3, 1]),
        ...                             big_blank_durations=[2, 4, 8], sigma=0.05, backend="torch")
        >>> loss.backward()
    """
    clamp = _check_options(reduction, clamp, fastemit_lambda, backend, sigma=sigma)
    try:
        big = validate_big_blank_durations(big_blank_durations)
    except LayoutError as e:
        raise TransducerInputError(str(e)) from e
    n_big = len(big)
    k = _logits_width(logits)
    if k < n_big + 2:
        raise TransducerInputError(
            f"logits has {k} outputs per (t, u) but {n_big} big blanks need at least {n_big + 2} "
            f"(a token, the big blanks and the blank)"
        )
    blank_i = _resolve(blank, k)
    if blank_i - n_big < 1:
        raise TransducerInputError(
            f"blank={blank} (index {blank_i}) leaves no room below it for {n_big} big blanks and a token: "
            f"big blank i sits at index blank-1-i"
        )
    logits, targets, logit_lengths, target_lengths = _check_tensors(
        logits, targets, logit_lengths, target_lengths, k, blank_i, (blank_i - n_big, blank_i)
    )
    name, impl = get_backend(backend, logits.device)
    lam, sig = float(fastemit_lambda), float(sigma)

    def compute(x: Tensor, need_grad: bool) -> CostGrad:
        return impl.multiblank_cost_grad(
            _backend_logits(x, name), targets, logit_lengths, target_lengths, blank_i, big, sig, lam, clamp,
            need_grad,
        )

    return _reduce(_run(logits, compute), target_lengths, reduction)


def _resolve(blank: int, num_token_classes: int) -> int:
    if not isinstance(blank, int) or isinstance(blank, bool):
        raise TransducerInputError(f"blank must be an int, got {blank!r}")
    try:
        return resolve_blank(blank, num_token_classes)
    except LayoutError as e:
        raise TransducerInputError(str(e)) from e


def _draw(omega: float, generator: torch.Generator | None) -> bool:
    """One Bernoulli(omega) draw per call: True means "use the RNN-T loss for the whole batch"."""
    if omega <= 0.0:
        return False
    if omega >= 1.0:
        return True
    device = generator.device if generator is not None else torch.device("cpu")
    return bool(torch.rand((), generator=generator, device=device).item() < omega)


# ---------------------------------------------------------------------------------------------------------------
# nn.Module wrappers
# ---------------------------------------------------------------------------------------------------------------


class RNNTLoss(nn.Module):
    """Module form of :func:`rnnt_loss`; options are checked at construction.

    Example:
        >>> import torch
        >>> loss_fn = RNNTLoss(reduction="mean", backend="torch")
        >>> logits = torch.randn(1, 4, 3, 5)
        >>> loss_fn(logits, torch.tensor([[1, 2]]), torch.tensor([4]), torch.tensor([2])).shape
        torch.Size([])
    """

    def __init__(
        self,
        blank: int = -1,
        reduction: Reduction = "mean",
        clamp: float = -1.0,
        fastemit_lambda: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_options(reduction, clamp, fastemit_lambda, backend)
        self.blank, self.reduction, self.clamp = blank, reduction, clamp
        self.fastemit_lambda, self.backend = fastemit_lambda, backend

    def forward(self, logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor) -> Tensor:
        """See :func:`rnnt_loss` (shapes: ``(B, T, U+1, V+1)``, ``(B, S)``, ``(B,)``, ``(B,)``)."""
        return rnnt_loss(
            logits, targets, logit_lengths, target_lengths, blank=self.blank, reduction=self.reduction,
            clamp=self.clamp, fastemit_lambda=self.fastemit_lambda, backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (f"blank={self.blank}, reduction={self.reduction!r}, clamp={self.clamp}, "
                f"fastemit_lambda={self.fastemit_lambda}, backend={self.backend!r}")


class TDTLoss(nn.Module):
    """Module form of :func:`tdt_loss`; the duration list and options are checked at construction.

    Args:
        generator: random source for the omega draw, kept for every call (default: torch's global generator).

    Example:
        >>> import torch
        >>> loss_fn = TDTLoss(durations=[0, 1, 2], sigma=0.05, backend="torch")
        >>> logits = torch.randn(1, 4, 3, 5 + 3)
        >>> loss_fn(logits, torch.tensor([[1, 2]]), torch.tensor([4]), torch.tensor([2])).shape
        torch.Size([])
    """

    def __init__(
        self,
        durations: Sequence[int],
        blank: int = -1,
        sigma: float = 0.0,
        omega: float = 0.0,
        reduction: Reduction = "mean",
        clamp: float = -1.0,
        fastemit_lambda: float = 0.0,
        backend: str = "auto",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_options(reduction, clamp, fastemit_lambda, backend, sigma=sigma, omega=omega)
        try:
            self.durations = validate_durations(durations)
        except LayoutError as e:
            raise TransducerInputError(str(e)) from e
        self.blank, self.sigma, self.omega, self.reduction = blank, sigma, omega, reduction
        self.clamp, self.fastemit_lambda, self.backend, self.generator = clamp, fastemit_lambda, backend, generator

    def forward(self, logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor) -> Tensor:
        """See :func:`tdt_loss` (shapes: ``(B, T, U+1, V+1+D)``, ``(B, S)``, ``(B,)``, ``(B,)``)."""
        return tdt_loss(
            logits, targets, logit_lengths, target_lengths, self.durations, blank=self.blank, sigma=self.sigma,
            omega=self.omega, reduction=self.reduction, clamp=self.clamp, fastemit_lambda=self.fastemit_lambda,
            generator=self.generator, backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (f"durations={list(self.durations)}, blank={self.blank}, sigma={self.sigma}, omega={self.omega}, "
                f"reduction={self.reduction!r}, clamp={self.clamp}, fastemit_lambda={self.fastemit_lambda}, "
                f"backend={self.backend!r}")


class MultiblankRNNTLoss(nn.Module):
    """Module form of :func:`multiblank_rnnt_loss`; the big-blank list and options are checked at construction.

    Example:
        >>> import torch
        >>> loss_fn = MultiblankRNNTLoss(big_blank_durations=[2, 4], sigma=0.05, backend="torch")
        >>> logits = torch.randn(1, 4, 3, 5 + 2)
        >>> loss_fn(logits, torch.tensor([[1, 2]]), torch.tensor([4]), torch.tensor([2])).shape
        torch.Size([])
    """

    def __init__(
        self,
        big_blank_durations: Sequence[int],
        blank: int = -1,
        sigma: float = 0.0,
        reduction: Reduction = "mean",
        clamp: float = -1.0,
        fastemit_lambda: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_options(reduction, clamp, fastemit_lambda, backend, sigma=sigma)
        try:
            self.big_blank_durations = validate_big_blank_durations(big_blank_durations)
        except LayoutError as e:
            raise TransducerInputError(str(e)) from e
        self.blank, self.sigma, self.reduction = blank, sigma, reduction
        self.clamp, self.fastemit_lambda, self.backend = clamp, fastemit_lambda, backend

    def forward(self, logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor) -> Tensor:
        """See :func:`multiblank_rnnt_loss` (shapes: ``(B, T, U+1, V+N+1)``, ``(B, S)``, ``(B,)``, ``(B,)``)."""
        return multiblank_rnnt_loss(
            logits, targets, logit_lengths, target_lengths, self.big_blank_durations, blank=self.blank,
            sigma=self.sigma, reduction=self.reduction, clamp=self.clamp, fastemit_lambda=self.fastemit_lambda,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (f"big_blank_durations={list(self.big_blank_durations)}, blank={self.blank}, sigma={self.sigma}, "
                f"reduction={self.reduction!r}, clamp={self.clamp}, fastemit_lambda={self.fastemit_lambda}, "
                f"backend={self.backend!r}")
