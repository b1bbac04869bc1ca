"""1-D time-channel separable convolution blocks, shared by MarbleNet (VAD) and TitaNet (speaker / language id).

A *sub-block* is a time-channel separable convolution (a depthwise convolution over time, one filter per channel,
then a pointwise 1x1 convolution that mixes channels) followed by BatchNorm, ReLU and dropout. A :class:`ConvBlock`
stacks ``repeat`` sub-blocks; with ``residual`` the block input goes through a pointwise convolution + BatchNorm and
is added before the last ReLU. An optional squeeze-and-excitation (:class:`SqueezeExcite`) gates the channels of the
last sub-block's output with a context vector averaged over the whole (valid part of the) utterance.

Padded frames are zeroed before every convolution ("conv mask"), so a padded batch gives the same valid outputs as
each utterance run alone. Convolutions carry no bias (BatchNorm follows each one).

Shapes: ``x`` is ``(B, C, T)``; ``x_lens`` is ``(B,)`` valid frames; a stride ``s`` turns ``T`` into ``ceil(T / s)``.
"""

from __future__ import annotations

import torch
from torch import nn

from speechkit.modules.dropout import Dropout

__all__ = ["ConvBlock", "SeparableConv1d", "SqueezeExcite", "conv_out_lengths", "time_mask"]


def time_mask(x_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``(B, T)`` mask, True on valid frames."""
    return torch.arange(max_len, device=x_lens.device)[None, :] < x_lens[:, None]


def conv_out_lengths(x_lens: torch.Tensor, kernel_size: int, stride: int, dilation: int) -> torch.Tensor:
    """Valid output frames of a 'same'-padded convolution: ``ceil(T / stride)`` for odd kernels.

    Example:
        >>> conv_out_lengths(torch.tensor([10, 9, 1]), 11, 2, 1).tolist()
        [5, 5, 1]
    """
    pad = dilation * (kernel_size - 1) // 2
    return torch.div(x_lens + 2 * pad - dilation * (kernel_size - 1) - 1, stride, rounding_mode="floor") + 1


class SeparableConv1d(nn.Module):
    """Depthwise conv over time (one filter per input channel) + pointwise 1x1 conv; ``separable=False`` gives a
    plain ``Conv1d``. 'Same' padding, no bias.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: odd kernel width in frames.
        stride: time stride.
        dilation: time dilation.
        separable: depthwise + pointwise (True) or one full convolution (False).

    Shape:
        ``(B, C_in, T) -> (B, C_out, T')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 separable: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        pad = dilation * (kernel_size - 1) // 2
        if separable:
            self.depthwise: nn.Conv1d | None = nn.Conv1d(in_channels, in_channels, kernel_size, stride=stride,
                                                         padding=pad, dilation=dilation, groups=in_channels, bias=False)
            self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        else:
            self.depthwise = None
            self.pointwise = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=pad,
                                       dilation=dilation, bias=False)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * time_mask(x_lens, x.shape[-1])[:, None, :].to(x.dtype)
        if self.depthwise is not None:
            x = self.depthwise(x)
        return self.pointwise(x), conv_out_lengths(x_lens, self.kernel_size, self.stride, self.dilation)


class SqueezeExcite(nn.Module):
    """Channel gate from the masked time average: ``x * sigmoid(W2 relu(W1 mean_t(x)))`` (bias-free linears).

    Args:
        channels: ``C``.
        reduction: hidden size is ``C // reduction``.

    Shape:
        ``(B, C, T) -> (B, C, T)``.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        mask = time_mask(x_lens, x.shape[-1])[:, None, :].to(x.dtype)
        context = (x * mask).sum(-1) / x_lens.clamp(min=1)[:, None].to(x.dtype)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(context))))
        return x * gate[:, :, None]


class ConvBlock(nn.Module):
    """``repeat`` x (separable conv -> BN -> ReLU -> dropout), optional SE and pointwise+BN residual.

    With a residual, the last sub-block's ReLU and dropout come after the residual sum. Only the first sub-block
    strides.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: odd kernel width.
        repeat: sub-blocks (``R`` of MarbleNet's ``BxRxC``).
        stride: time stride of the first sub-block.
        dilation: time dilation of every sub-block.
        dropout: dropout probability after each ReLU.
        residual: add ``BN(pointwise(x))`` of the block input (strided like the block) before the last ReLU.
        separable: time-channel separable (True) or full convolutions (False).
        se: squeeze-and-excitation on the last sub-block's output.
        se_reduction: SE hidden size divisor.

    Shape:
        ``x (B, C_in, T), x_lens (B,) -> y (B, C_out, T'), y_lens (B,)`` with ``T' = ceil(T / stride)``.

    Example:
        >>> block = ConvBlock(80, 64, 13, repeat=2, residual=True).eval()
        >>> y, y_lens = block(torch.randn(2, 80, 50), torch.tensor([50, 30]))
        >>> tuple(y.shape), y_lens.tolist()
        ((2, 64, 50), [50, 30])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, repeat: int = 1, stride: int = 1,
                 dilation: int = 1, dropout: float = 0.0, residual: bool = False, separable: bool = True,
                 se: bool = False, se_reduction: int = 8) -> None:
        super().__init__()
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(repeat):
            self.convs.append(SeparableConv1d(in_channels if i == 0 else out_channels, out_channels, kernel_size,
                                              stride if i == 0 else 1, dilation, separable))
            self.norms.append(nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.1))
        self.se = SqueezeExcite(out_channels, se_reduction) if se else None
        self.residual: nn.ModuleList | None = None
        if residual:
            self.residual = nn.ModuleList([nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
                                           nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.1)])
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inp, inp_lens = x, x_lens
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x, x_lens = conv(x, x_lens)
            x = norm(x)
            if i < last:
                x = self.dropout(torch.relu(x))
        if self.se is not None:
            x = self.se(x, x_lens)
        if self.residual is not None:
            masked = inp * time_mask(inp_lens, inp.shape[-1])[:, None, :].to(inp.dtype)
            x = x + self.residual[1](self.residual[0](masked))
        return self.dropout(torch.relu(x)), x_lens
