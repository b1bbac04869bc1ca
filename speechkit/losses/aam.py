"""Additive angular margin softmax (ArcFace / AAM-softmax) for cosine classifiers.

A cosine classifier (:class:`speechkit.modules.titanet.TitaNet` with ``angular=True``) outputs
``cos(theta_j)``, the cosine between the L2-normalised embedding and the L2-normalised weight of class ``j``. The
loss adds a margin ``m`` to the *angle* of the target class only and multiplies every logit by a scale ``s``:

    logit_j = s * cos(theta_j + m)   if j == target
    logit_j = s * cos(theta_j)       otherwise
    loss    = cross_entropy(logits, target)

so a training example only stops contributing once its target angle is ``m`` radians closer than any other
class: the embeddings of one class are pulled into a tight cone (Deng et al., ArcFace, CVPR 2019; TitaNet uses
``s = 30``, ``m = 0.2``). ``m = 0`` gives the plain scaled-cosine softmax.

``cos(theta + m)`` stops decreasing once ``theta + m`` passes ``pi``; there (``theta > pi - m``: an example
pointing almost exactly away from its class) the target logit is ``cos(theta) - (1 - cos(m))`` instead, which
meets ``cos(theta + m)`` at ``theta = pi - m`` and keeps a useful gradient.

At inference the margin is not used: the class scores are ``softmax(s * cos)`` (or the cosines themselves).

Example:
    >>> import torch
    >>> cos = torch.tensor([[0.9, 0.1, -0.2]])
    >>> float(aam_softmax_loss(cos, torch.tensor([0]), margin=0.0, scale=1.0)) == float(
    ...     torch.nn.functional.cross_entropy(cos, torch.tensor([0])))
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["AAMSoftmaxLoss", "aam_logits", "aam_softmax_loss"]

_REDUCTIONS = ("mean", "sum", "none")
# sin(theta) = sqrt(1 - cos^2) has an infinite derivative at cos = +-1: keep the argument off zero.
_EPS = 1e-7


def _check(cosines: torch.Tensor, targets: torch.Tensor, margin: float, scale: float) -> None:
    if cosines.ndim != 2:
        raise ValueError(f"cosines must have shape (B, C), got {tuple(cosines.shape)}")
    if targets.shape != (cosines.shape[0],):
        raise ValueError(f"targets must have shape ({cosines.shape[0]},), got {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be integer class ids, got {targets.dtype}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= cosines.shape[1]):
        raise ValueError(f"targets must lie in [0, {cosines.shape[1] - 1}], got min {int(targets.min())} "
                         f"max {int(targets.max())}")
    if not 0.0 <= margin < math.pi / 2:
        raise ValueError(f"margin must be in [0, pi/2) radians, got {margin}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")


def aam_logits(cosines: torch.Tensor, targets: torch.Tensor, margin: float = 0.2, scale: float = 30.0) -> torch.Tensor:
    """The margin-adjusted, scaled logits that :func:`aam_softmax_loss` feeds to cross-entropy.

    Args:
        cosines: cosine similarities of a cosine classifier, ``(B, C)``, values in [-1, 1] (clamped).
        targets: class ids ``(B,)``.
        margin: additive angular margin ``m`` in radians.
        scale: logit scale ``s``.

    Returns:
        ``(B, C)``: ``s * cos(theta_j)`` for every class, with the target column replaced by
        ``s * cos(theta_y + m)`` (``s * (cos(theta_y) - 1 + cos(m))`` when ``theta_y > pi - m``).

    Raises:
        ValueError: bad shapes, target ids outside ``[0, C)``, a margin outside ``[0, pi/2)`` or a scale <= 0.
    """
    _check(cosines, targets, margin, scale)
    cos = cosines.clamp(-1.0, 1.0)
    target_cos = cos.gather(1, targets[:, None].long())
    sin = (1.0 - target_cos**2).clamp(min=_EPS).sqrt()
    with_margin = target_cos * math.cos(margin) - sin * math.sin(margin)
    # theta > pi - m  <=>  cos(theta) < cos(pi - m) = -cos(m)
    fallback = target_cos - (1.0 - math.cos(margin))
    target_logit = torch.where(target_cos >= -math.cos(margin), with_margin, fallback)
    return scale * cos.scatter(1, targets[:, None].long(), target_logit)


def aam_softmax_loss(
    cosines: torch.Tensor,
    targets: torch.Tensor,
    margin: float = 0.2,
    scale: float = 30.0,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Additive angular margin softmax loss.

    Args:
        cosines: cosine similarities ``(B, C)`` (the logits of an ``angular`` TitaNet).
        targets: class ids ``(B,)``.
        margin: additive angular margin in radians (TitaNet: 0.2).
        scale: logit scale (TitaNet: 30).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per example, ``(B,)``).
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.

    Returns:
        A scalar, or ``(B,)`` with ``reduction="none"``; computed in float32 at least.

    Raises:
        ValueError: see :func:`aam_logits`, or an unknown ``reduction``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    logits = aam_logits(cosines, targets, margin, scale)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, targets.long(), reduction=reduction, label_smoothing=label_smoothing)


class AAMSoftmaxLoss(nn.Module):
    """:func:`aam_softmax_loss` as a module.

    Args:
        margin: additive angular margin in radians.
        scale: logit scale.
        label_smoothing: as in cross-entropy.

    Shape:
        ``cosines (B, C), targets (B,) -> ()``.
    """

    def __init__(self, margin: float = 0.2, scale: float = 30.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= margin < math.pi / 2 or scale <= 0:
            raise ValueError(f"need 0 <= margin < pi/2 and scale > 0, got margin {margin}, scale {scale}")
        self.margin = margin
        self.scale = scale
        self.label_smoothing = label_smoothing

    def forward(self, cosines: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch (see :func:`aam_softmax_loss`)."""
        return aam_softmax_loss(cosines, targets, self.margin, self.scale, "mean", self.label_smoothing)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, scale={self.scale}, label_smoothing={self.label_smoothing}"
