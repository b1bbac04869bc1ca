"""MarbleNet: a small 1-D time-channel separable CNN for voice activity detection (Jia et al., ICASSP 2021).

Two variants, one network class:

* ``mode="frame"`` (default): the 20 ms frame VAD. The prolog convolution strides by 2 over 10 ms log-mel frames,
  so the encoder emits one vector per 20 ms, and a per-frame linear layer gives speech / non-speech logits.
  Features: 80 log-mels, no normalisation (NeMo's frame VAD uses the same). 91,378 parameters
  (encoder 91,120, the same count as NeMo's ``marblenet_3x2x64_20ms`` encoder checked with nemo 3.0.0, + head 258).
* ``mode="segment"``: the original clip classifier (0.63 s windows): no stride, average pooling over time, then the
  linear layer. NeMo feeds it 64 MFCCs; speechkit uses its own log-mel front end with 64 mels instead (no DCT): the
  network sees the same number of input channels, so the parameter count is the same (encoder 88,896, + 258).

Layout ``BxRxC`` = 3x2x64: prolog (128 ch, k 11) -> three residual blocks of two sub-blocks (64 ch, k 13/15/17) ->
epilog (128 ch, k 29, dilation 2) -> a full 1x1 convolution (128 ch). Blocks are
:class:`~speechkit.modules.convblocks.ConvBlock`.

Example:
    >>> import torch
    >>> model = MarbleNet(MarbleNetConfig()).eval()
    >>> probs, lens = model.speech_probs(torch.zeros(1, 16000), torch.tensor([16000]))
    >>> tuple(probs.shape), lens.tolist()  # the front end pads one frame; 50 valid 20 ms frames
    ((1, 51), [50])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from speechkit.audio.features import FeatureConfig, MelFrontend
from speechkit.modules.convblocks import ConvBlock

__all__ = ["BlockSpec", "MarbleNet", "MarbleNetConfig", "marblenet_blocks"]


@dataclass
class BlockSpec:
    """One :class:`ConvBlock` of the encoder (see its arguments)."""

    channels: int
    kernel: int
    repeat: int = 1
    stride: int = 1
    dilation: int = 1
    residual: bool = False
    separable: bool = True


def marblenet_blocks(blocks: int = 3, repeat: int = 2, channels: int = 64, stride: int = 2) -> list[BlockSpec]:
    """The ``BxRxC`` block list; ``stride`` is the prolog's (2 for the 20 ms frame VAD, 1 for the segment model)."""
    out = [BlockSpec(2 * channels, 11, stride=stride)]
    out += [BlockSpec(channels, 13 + 2 * i, repeat, residual=True) for i in range(blocks)]
    out += [BlockSpec(2 * channels, 29, dilation=2), BlockSpec(2 * channels, 1, separable=False)]
    return out


def _frame_features() -> FeatureConfig:
    return FeatureConfig(n_mels=80, normalize="none", pad_to=0)


@dataclass
class MarbleNetConfig:
    """Network settings.

    Attributes:
        mode: ``"frame"`` (one prediction per ``frame_shift``) or ``"segment"`` (one per input clip).
        features: the log-mel front end (10 ms hop).
        blocks: encoder blocks; the default is 3x2x64 with a stride-2 prolog (20 ms frames).
        dropout: dropout after every ReLU.
        num_classes: output classes (2: non-speech, speech).
    """

    mode: str = "frame"
    features: FeatureConfig = field(default_factory=_frame_features)
    blocks: list[BlockSpec] = field(default_factory=marblenet_blocks)
    dropout: float = 0.0
    num_classes: int = 2

    @property
    def stride(self) -> int:
        """Total time stride of the encoder in feature frames."""
        s = 1
        for b in self.blocks:
            s *= b.stride
        return s

    @property
    def frame_shift(self) -> float:
        """Seconds per output frame (0.02 for the default)."""
        return self.stride * self.features.window_stride


class MarbleNet(nn.Module):
    """Log-mel front end + separable-conv encoder + speech/non-speech head.

    Args:
        cfg: the network settings.

    Raises:
        ValueError: an unknown ``mode`` or an empty block list.
    """

    def __init__(self, cfg: MarbleNetConfig) -> None:
        super().__init__()
        if cfg.mode not in ("frame", "segment"):
            raise ValueError(f"MarbleNetConfig.mode={cfg.mode!r}: choose 'frame' or 'segment'")
        if not cfg.blocks:
            raise ValueError("MarbleNetConfig.blocks is empty")
        self.cfg = cfg
        self.frontend = MelFrontend(cfg.features)
        layers = []
        c_in = cfg.features.n_mels
        for b in cfg.blocks:
            layers.append(ConvBlock(c_in, b.channels, b.kernel, b.repeat, b.stride, b.dilation, cfg.dropout,
                                    b.residual, b.separable))
            c_in = b.channels
        self.encoder = nn.ModuleList(layers)
        self.head = nn.Linear(c_in, cfg.num_classes)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(B, F, T)`` -> encoder output ``(B, C, T')``, lengths ``(B,)``."""
        x, lens = feats, feat_lens
        for block in self.encoder:
            x, lens = block(x, lens)
        return x, lens

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms -> logits.

        Args:
            x: padded waveforms at ``cfg.features.sample_rate``, shape ``(B, N)``.
            x_lens: valid samples, shape ``(B,)``.

        Returns:
            ``(logits, lens)``: frame mode ``(B, T', num_classes)`` and valid frames ``(B,)``: ``lens`` is
            ``ceil((x_lens // hop) / stride)`` (``N / 320`` for 16 kHz audio of whole 20 ms frames); the padded
            ``T'`` may be one frame longer (the front end's extra frame);
            segment mode ``(B, num_classes)`` and ones.
        """
        feats, feat_lens = self.frontend(x, x_lens)
        y, y_lens = self.encode(feats, feat_lens)
        if self.cfg.mode == "segment":
            mask = (torch.arange(y.shape[-1], device=y.device)[None, :] < y_lens[:, None]).to(y.dtype)
            pooled = (y * mask[:, None, :]).sum(-1) / y_lens.clamp(min=1)[:, None].to(y.dtype)
            return self.head(pooled), torch.ones_like(y_lens)
        return self.head(y.transpose(1, 2)), y_lens

    @torch.no_grad()
    def speech_probs(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech probability per frame (frame mode ``(B, T')``) or per clip (segment mode ``(B, 1)``)."""
        logits, lens = self(x, x_lens)
        probs = torch.softmax(logits.float(), dim=-1)[..., 1]
        return (probs[:, None] if probs.dim() == 1 else probs), lens

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
