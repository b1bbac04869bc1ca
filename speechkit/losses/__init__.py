"""Transducer losses: RNN-T, TDT and multi-blank RNN-T, with Numba CPU / Numba CUDA kernels and PyTorch references.

Functional API (torchaudio's argument names, NeMo's joint layouts -- see :mod:`speechkit.losses.layout`):

- :func:`rnnt_loss` -- logits ``(B, T, U+1, V+1)``;
- :func:`tdt_loss` -- logits ``(B, T, U+1, V+1+D)``, token and duration logits normalised separately;
- :func:`multiblank_rnnt_loss` -- logits ``(B, T, U+1, V+N+1)``, one softmax, big blank i at ``blank-1-i``;

and the modules :class:`RNNTLoss`, :class:`TDTLoss`, :class:`MultiblankRNNTLoss`. ``backend`` chooses the
implementation (:mod:`speechkit.losses.backends`): ``"auto"`` (Numba CUDA for CUDA tensors, Numba for CPU tensors),
``"torch"`` (the pure-PyTorch reference in :mod:`speechkit.losses.reference`), ``"numba"``, ``"numba_cuda"``.

Importing this package imports torch but not numba; the kernels are loaded on first use.

Example:
    >>> import torch
    >>> from speechkit.losses import rnnt_loss
    >>> logits = torch.randn(2, 10, 4, 6, requires_grad=True)   # B=2, T=10, U+1=4, V+1=6 (blank = 5)
    >>> targets = torch.tensor([[1, 2, 3], [4, 0, 0]])
    >>> loss = rnnt_loss(logits, targets, torch.tensor([10, 7]), torch.tensor([3, 1]), backend="torch")
    >>> loss.backward()
"""

from speechkit.losses.api import (
    MultiblankRNNTLoss,
    Reduction,
    RNNTLoss,
    TDTLoss,
    TransducerInputError,
    multiblank_rnnt_loss,
    rnnt_loss,
    tdt_loss,
)
from speechkit.losses.backends import BackendError, available_backends
from speechkit.losses.layout import JointLayout, LayoutError

__all__ = [
    "BackendError",
    "JointLayout",
    "LayoutError",
    "MultiblankRNNTLoss",
    "RNNTLoss",
    "Reduction",
    "TDTLoss",
    "TransducerInputError",
    "available_backends",
    "multiblank_rnnt_loss",
    "rnnt_loss",
    "tdt_loss",
]
