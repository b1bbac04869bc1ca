"""Which implementation computes a transducer loss: an explicit table, availability checks, actionable errors.

| name         | implementation                              | devices                                       | logits dtypes          |
| ------------ | ------------------------------------------- | --------------------------------------------- | ---------------------- |
| ``torch``    | :mod:`speechkit.losses.reference` + autograd | any                                           | float16/bf16/32/64     |
| ``numba``    | :mod:`speechkit.losses.numba_cpu`            | CPU                                           | float32                |
| ``numba_cuda`` | :mod:`speechkit.losses.numba_cuda`         | CUDA (CPU tensors under ``NUMBA_ENABLE_CUDASIM=1``) | float16/bf16/float32 |

``"auto"`` picks ``numba_cuda`` for CUDA tensors and ``numba`` for CPU tensors. Only when that backend cannot be
used (numba not importable, no CUDA driver for numba) does it fall back to ``torch`` -- a slow path -- and it says
so once in the log. An explicitly named backend never falls back: it raises :class:`BackendError` naming what is
missing and which backends would work.

Every backend exposes three functions with one contract (arguments already validated, ``blank`` already an index
``>= 0``)::

    rnnt_cost_grad(logits, targets, logit_lengths, target_lengths, blank, fastemit_lambda, clamp, need_grad)
    tdt_cost_grad(logits, targets, logit_lengths, target_lengths, blank, durations, sigma, fastemit_lambda,
                  clamp, need_grad)
    multiblank_cost_grad(logits, targets, logit_lengths, target_lengths, blank, big_blank_durations, sigma,
                         fastemit_lambda, clamp, need_grad)

each returning ``(costs, grads)``: ``costs`` ``(B,)`` the reported cost ``-(1 + lambda) log P`` and ``grads`` the
per-sample gradient of ``-log P`` (FastEmit and clamp applied) with respect to all logits, shape and dtype of
``logits``, zero in padded cells, or ``None`` when ``need_grad`` is False.

numba is imported only when a numba backend is first used, never by ``import speechkit.losses``.

Example:
    >>> import torch
    >>> available_backends(torch.device("cpu"))  # doctest: +SKIP
    ['torch', 'numba']
    >>> name, impl = get_backend("torch", torch.device("cpu"))
    >>> name
    'torch'
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import torch
from torch import Tensor

from speechkit.losses import reference

__all__ = [
    "BACKENDS",
    "BackendError",
    "BackendSpec",
    "TransducerBackend",
    "available_backends",
    "get_backend",
    "log_once",
    "resolve_backend",
    "unavailable_reason",
]

logger = logging.getLogger("speechkit.losses")

_LOGGED: set[str] = set()


def log_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key not in _LOGGED:
        _LOGGED.add(key)
        logger.warning(message)


class BackendError(RuntimeError):
    """A loss backend was asked for that is unknown or cannot run here; the message says what would work."""


class TransducerBackend(Protocol):
    """What every backend module provides (see the module docstring for the contract)."""

    def rnnt_cost_grad(
        self, logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int,
        fastemit_lambda: float, clamp: float, need_grad: bool,
    ) -> tuple[Tensor, Tensor | None]: ...

    def tdt_cost_grad(
        self, logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int,
        durations: tuple[int, ...], sigma: float, fastemit_lambda: float, clamp: float, need_grad: bool,
    ) -> tuple[Tensor, Tensor | None]: ...

    def multiblank_cost_grad(
        self, logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int,
        big_blank_durations: tuple[int, ...], sigma: float, fastemit_lambda: float, clamp: float, need_grad: bool,
    ) -> tuple[Tensor, Tensor | None]: ...


@dataclass(frozen=True)
class BackendSpec:
    """One row of the backend table.

    Attributes:
        name: the ``backend=`` value.
        module: import path of the implementation (``None``: built in, the PyTorch reference).
        dtypes: logits dtypes the kernels take directly; the loss API converts others to float32 (logging once).
        description: one line for error messages and docs.
    """

    name: str
    module: str | None
    dtypes: tuple[torch.dtype, ...]
    description: str


BACKENDS: dict[str, BackendSpec] = {
    "torch": BackendSpec(
        "torch", None, (torch.float16, torch.bfloat16, torch.float32, torch.float64),
        "pure-PyTorch reference with autograd (any device, slow, for tests and as a fallback)",
    ),
    "numba": BackendSpec(
        "numba", "speechkit.losses.numba_cpu", (torch.float32,), "Numba CPU kernels (CPU tensors, float32)"
    ),
    "numba_cuda": BackendSpec(
        "numba_cuda", "speechkit.losses.numba_cuda", (torch.float16, torch.bfloat16, torch.float32),
        "Numba CUDA kernels (CUDA tensors; CPU tensors under NUMBA_ENABLE_CUDASIM=1)",
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# The "torch" backend: the reference behind the cost_grad contract
# ---------------------------------------------------------------------------------------------------------------


def _autograd_cost_grad(fn: Any, logits: Tensor, need_grad: bool, *args: Any) -> tuple[Tensor, Tensor | None]:
    if not need_grad:
        with torch.no_grad():
            return fn(logits, *args).detach(), None
    with torch.enable_grad():
        x = logits.detach().requires_grad_(True)
        costs = fn(x, *args)
        # Samples are independent, so the gradient of the sum is each sample's gradient with upstream 1: clamp
        # therefore clips the per-sample gradient, as the kernels do.
        (grads,) = torch.autograd.grad(costs.sum(), x)
    return costs.detach(), grads


class _TorchBackend:
    """The PyTorch reference wrapped in the backend contract (stateless)."""

    @staticmethod
    def rnnt_cost_grad(
        logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int,
        fastemit_lambda: float, clamp: float, need_grad: bool,
    ) -> tuple[Tensor, Tensor | None]:
        def fn(x: Tensor) -> Tensor:
            return reference.rnnt_loss_reference(
                x, targets, logit_lengths, target_lengths, blank, fastemit_lambda, clamp
            )

        return _autograd_cost_grad(fn, logits, need_grad)

    @staticmethod
    def tdt_cost_grad(
        logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int,
        durations: tuple[int, ...], sigma: float, fastemit_lambda: float, clamp: float, need_grad: bool,
    ) -> tuple[Tensor, Tensor | None]:
        def fn(x: Tensor) -> Tensor:
            return reference.tdt_loss_reference(
                x, targets, logit_lengths, target_lengths, durations, blank, sigma, fastemit_lambda, clamp
            )

        return _autograd_cost_grad(fn, logits, need_grad)

    @staticmethod
    def multiblank_cost_grad(
        logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int,
        big_blank_durations: tuple[int, ...], sigma: float, fastemit_lambda: float, clamp: float, need_grad: bool,
    ) -> tuple[Tensor, Tensor | None]:
        def fn(x: Tensor) -> Tensor:
            return reference.multiblank_rnnt_loss_reference(
                x, targets, logit_lengths, target_lengths, big_blank_durations, blank, sigma, fastemit_lambda, clamp
            )

        return _autograd_cost_grad(fn, logits, need_grad)


# ---------------------------------------------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------------------------------------------

_MODULES: dict[str, ModuleType] = {}
_IMPORT_ERRORS: dict[str, str] = {}


def _cuda_sim() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _load(spec: BackendSpec) -> ModuleType | None:
    """Import a backend's module once; remember why it failed."""
    assert spec.module is not None
    if spec.module in _MODULES:
        return _MODULES[spec.module]
    if spec.module in _IMPORT_ERRORS:
        return None
    if importlib.util.find_spec("numba") is None:
        _IMPORT_ERRORS[spec.module] = "numba is not installed (pip install 'numba>=0.68,<0.69')"
        return None
    try:
        mod = importlib.import_module(spec.module)
    except ImportError as e:  # numba broken, numba-cuda missing, or the kernel module not present
        _IMPORT_ERRORS[spec.module] = f"importing {spec.module} failed: {e}"
        return None
    missing = [f for f in ("rnnt_cost_grad", "tdt_cost_grad", "multiblank_cost_grad") if not hasattr(mod, f)]
    if missing:
        _IMPORT_ERRORS[spec.module] = f"{spec.module} lacks {', '.join(missing)}"
        return None
    _MODULES[spec.module] = mod
    return mod


def _numba_cuda_ready() -> str | None:
    """None when numba can launch CUDA kernels here, else the reason."""
    try:
        from numba import cuda
    except ImportError as e:
        return f"numba.cuda cannot be imported: {e}"
    try:
        if cuda.is_available():
            return None
    except Exception as e:  # a broken driver raises instead of answering False
        return f"numba.cuda cannot find a usable CUDA driver: {e}"
    return "numba.cuda finds no usable CUDA driver/GPU"


def unavailable_reason(name: str, device: torch.device) -> str | None:
    """Why backend ``name`` cannot compute a loss for logits on ``device``; ``None`` if it can.

    Raises:
        BackendError: ``name`` is not in the table.
    """
    if name not in BACKENDS:
        raise BackendError(f"backend={name!r} is unknown; choose one of: auto, {', '.join(BACKENDS)}")
    spec = BACKENDS[name]
    if spec.module is None:
        return None
    if name == "numba" and device.type != "cpu":
        return f"numba runs on CPU tensors, the logits are on {device}"
    if name == "numba_cuda":
        if device.type == "cpu" and not _cuda_sim():
            return "numba_cuda needs a CUDA device (logits are on cpu; CPU tensors only under NUMBA_ENABLE_CUDASIM=1)"
        if device.type not in ("cpu", "cuda"):
            return f"numba_cuda needs a CUDA device, the logits are on {device}"
    if _load(spec) is None:
        return _IMPORT_ERRORS[spec.module]
    if name == "numba_cuda" and device.type == "cuda":
        return _numba_cuda_ready()
    return None


def available_backends(device: torch.device | str) -> list[str]:
    """Backends that can compute a loss for logits on ``device`` (imports numba on first call)."""
    device = torch.device(device)
    return [name for name in BACKENDS if unavailable_reason(name, device) is None]


def resolve_backend(name: str, device: torch.device | str) -> str:
    """Turn ``name`` (or ``"auto"``) into the backend that will run, or raise an actionable error.

    Raises:
        BackendError: ``name`` is unknown, or it is unavailable for ``device``.
    """
    device = torch.device(device)
    if name == "auto":
        preferred = "numba_cuda" if device.type == "cuda" else "numba"
        why = unavailable_reason(preferred, device)
        if why is None:
            return preferred
        log_once(
            f"fallback:{preferred}:{device.type}",
            f"transducer loss: backend 'auto' falls back to the slow PyTorch reference on {device} because "
            f"{preferred} is unavailable ({why}); pass backend='torch' to silence this or fix the cause",
        )
        return "torch"
    why = unavailable_reason(name, device)
    if why is not None:
        others = [n for n in BACKENDS if n != name and unavailable_reason(n, device) is None]
        raise BackendError(f"{why}; available for {device}: {', '.join(others)}")
    return name


def get_backend(name: str, device: torch.device | str) -> tuple[str, TransducerBackend]:
    """Resolve ``name`` for ``device`` and return ``(resolved name, implementation)``.

    Raises:
        BackendError: see :func:`resolve_backend`.
    """
    resolved = resolve_backend(name, device)
    spec = BACKENDS[resolved]
    if spec.module is None:
        return resolved, _TorchBackend()  # type: ignore[return-value]
    return resolved, _MODULES[spec.module]  # type: ignore[return-value]
