"""CTC head: encoder output -> per-frame log-probabilities over the tokens and the blank (blank = V, the last class).

NeMo's ``ConvASRDecoder`` is a 1x1 ``Conv1d``; a ``Linear`` over the channel dimension is the same map, with the
kernel's last axis squeezed away (:func:`ctc_head_from_nemo`). Used alone (CTC models) or beside a transducer
(hybrid TDT-CTC / RNNT-CTC models).

Example:
    >>> import torch
    >>> head = CTCHead(encoder_dim=80, vocab_size=32)
    >>> head(torch.randn(2, 7, 80)).shape                    # (B, T, V+1), log-probs
    torch.Size([2, 7, 33])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["CTCHead", "ctc_head_from_nemo"]


class CTCHead(nn.Module):
    """Linear projection to ``V + 1`` classes followed by log-softmax.

    Args:
        encoder_dim: D, width of the encoder output.
        vocab_size: V; the blank is class ``V``.
    """

    def __init__(self, encoder_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.blank_id = vocab_size
        self.proj = nn.Linear(encoder_dim, vocab_size + 1)

    def logits(self, y: Tensor) -> Tensor:
        """Unnormalised scores ``(B, T, D) -> (B, T, V+1)``."""
        return self.proj(y)

    def forward(self, y: Tensor) -> Tensor:
        """Log-probabilities ``(B, T, D) -> (B, T, V+1)``, computed in float32 at least (CTC losses want it)."""
        z = self.proj(y)
        return torch.log_softmax(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, dim=-1)


def ctc_head_from_nemo(state_dict: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Rename a NeMo ``ConvASRDecoder`` state dict (``decoder_layers.0.weight`` ``(V+1, D, 1)``) to :class:`CTCHead`.

    Args:
        state_dict: NeMo tensors; keys under ``prefix`` (e.g. ``"ctc_decoder."`` in a hybrid model).
        prefix: the head's prefix in ``state_dict``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == prefix + "decoder_layers.0.weight":
            out["proj.weight"] = value.squeeze(-1)
        elif key == prefix + "decoder_layers.0.bias":
            out["proj.bias"] = value
    return out
