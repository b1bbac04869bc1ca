"""TitaNet: a 1-D depthwise-separable CNN with squeeze-and-excitation for utterance embeddings (speaker id, LID).

Koluguri, Park, Ginsburg, ICASSP 2022. Encoder: prolog (kernel 3) -> three mega-blocks of ``repeat`` sub-blocks
(kernels 7, 11, 15; residual; dropout) -> epilog (kernel 1, ``epilog_channels``), every block with a global-context
SE (:class:`~speechkit.modules.convblocks.ConvBlock`). Decoder: attentive statistics pooling (each frame
concatenated with the utterance's mean and std -> 1x1 conv to ``attention_channels`` + ReLU + BN -> tanh -> 1x1
conv back to ``C`` -> softmax over time per channel -> weighted mean and std), BatchNorm, a linear map to the
embedding, and a classifier (bias-free on L2-normalised embeddings and weights when ``angular``, for additive
angular margin losses).

Sizes (80 mels, 192-d embedding, 107 classes, angular): ``channels=256`` (TitaNet-S) encoder 4,056,816 parameters
and ``channels=1024`` (TitaNet-L) 19,353,840; decoder 2,788,992 - all equal to NeMo 3.0.0's ``ConvASREncoder`` /
``SpeakerDecoder`` built from the titanet block table (checked with the NeMo peer).

Example:
    >>> import torch
    >>> model = TitaNet(TitaNetConfig(channels=32, epilog_channels=64, attention_channels=16, embedding_dim=8,
    ...                               num_classes=3)).eval()
    >>> logits, emb = model(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> tuple(logits.shape), tuple(emb.shape)
    ((2, 3), (2, 8))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from speechkit.audio.features import FeatureConfig, MelFrontend
from speechkit.modules.convblocks import ConvBlock, time_mask

__all__ = ["AttentiveStatsPool", "TitaNet", "TitaNetConfig"]


@dataclass
class TitaNetConfig:
    """Network settings (defaults: TitaNet-S for 107-language LID).

    Attributes:
        features: log-mel front end (80 mels, per-feature normalisation).
        channels: width of the prolog and mega-blocks (256 S, 512 M, 1024 L).
        repeat: sub-blocks per mega-block.
        kernels: kernel widths of the mega-blocks.
        epilog_channels: width of the last (kernel 1) block.
        dropout: dropout in the mega-blocks.
        se_reduction: squeeze-and-excitation hidden size divisor.
        attention_channels: hidden width of the attentive pooling.
        embedding_dim: utterance embedding size.
        num_classes: output classes.
        angular: cosine classifier without bias (for angular-margin losses) instead of a plain linear layer.
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    channels: int = 256
    repeat: int = 3
    kernels: list[int] = field(default_factory=lambda: [7, 11, 15])
    epilog_channels: int = 3072
    dropout: float = 0.1
    se_reduction: int = 8
    attention_channels: int = 128
    embedding_dim: int = 192
    num_classes: int = 107
    angular: bool = True


class AttentiveStatsPool(nn.Module):
    """Channel- and context-dependent attentive statistics pooling.

    Args:
        channels: ``C``.
        attention_channels: hidden width.

    Shape:
        ``x (B, C, T), x_lens (B,) -> (B, 2C)`` (weighted mean, then weighted std).
    """

    def __init__(self, channels: int, attention_channels: int = 128) -> None:
        super().__init__()
        self.hidden = nn.Conv1d(3 * channels, attention_channels, 1)
        self.norm = nn.BatchNorm1d(attention_channels)
        self.score = nn.Conv1d(attention_channels, channels, 1)

    @staticmethod
    def _stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * w).sum(-1)
        var = ((x - mean[..., None]) ** 2 * w).sum(-1)
        return mean, var.clamp(min=1e-10).sqrt()

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        mask = time_mask(x_lens, x.shape[-1])[:, None, :]
        uniform = mask.to(x.dtype) / x_lens.clamp(min=1)[:, None, None].to(x.dtype)
        mean, std = self._stats(x, uniform)
        t = x.shape[-1]
        context = torch.cat([x, mean[..., None].expand(-1, -1, t), std[..., None].expand(-1, -1, t)], dim=1)
        scores = self.score(torch.tanh(self.norm(torch.relu(self.hidden(context)))))
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        mean, std = self._stats(x, weights)
        return torch.cat([mean, std], dim=1)


class TitaNet(nn.Module):
    """Log-mel front end + TitaNet encoder + attentive pooling + embedding + classifier.

    Args:
        cfg: the network settings.
    """

    def __init__(self, cfg: TitaNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = MelFrontend(cfg.features)
        c = cfg.channels
        blocks = [ConvBlock(cfg.features.n_mels, c, 3, se=True, se_reduction=cfg.se_reduction)]
        blocks += [ConvBlock(c, c, k, cfg.repeat, dropout=cfg.dropout, residual=True, se=True,
                             se_reduction=cfg.se_reduction) for k in cfg.kernels]
        blocks.append(ConvBlock(c, cfg.epilog_channels, 1, se=True, se_reduction=cfg.se_reduction))
        self.encoder = nn.ModuleList(blocks)
        self.pool = AttentiveStatsPool(cfg.epilog_channels, cfg.attention_channels)
        self.pool_norm = nn.BatchNorm1d(2 * cfg.epilog_channels)
        self.embed = nn.Linear(2 * cfg.epilog_channels, cfg.embedding_dim)
        self.classifier = nn.Linear(cfg.embedding_dim, cfg.num_classes, bias=not cfg.angular)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms ``(B, N)``, lengths ``(B,)`` -> ``(logits (B, num_classes), embeddings (B, embedding_dim))``.

        With ``angular`` the logits are cosines in [-1, 1] (scale and margin belong to the loss).
        """
        y, lens = self.frontend(x, x_lens)
        for block in self.encoder:
            y, lens = block(y, lens)
        emb = self.embed(self.pool_norm(self.pool(y, lens)))
        if self.cfg.angular:
            logits = F.linear(F.normalize(emb, dim=-1), F.normalize(self.classifier.weight, dim=-1))
        else:
            logits = self.classifier(emb)
        return logits, emb
