"""The FastConformer encoder: log-mel features ``(B, F, T)`` -> encoder frames ``(B, T / 8, d_model)``.

The whole forward pass is in this file (subsampling and attention live in :mod:`.subsampling` and
:mod:`.attention`):

1. :class:`~speechkit.modules.subsampling.DwStridingSubsampling`: 8x shorter, 80 ms frames, width ``d_model``;
2. :class:`~speechkit.modules.attention.RelPositionalEncoding`: ``x * sqrt(d_model)`` (``xscaling``), dropout,
   and the embeddings of relative distances;
3. ``n_layers`` macaron conformer blocks (:class:`ConformerBlock`)::

       x = x + 0.5 * Dropout(FFN(LN(x)))           # FFN: Linear d->4d, Swish, Dropout, Linear 4d->d
       x = x + Dropout(RelPosMHSA(LN(x)))
       x = x + Dropout(Conv(LN(x)))                # pointwise d->2d, GLU, depthwise k, BN|LN, Swish, pointwise
       x = x + 0.5 * Dropout(FFN(LN(x)))
       x = LN(x)

The numbers equal NeMo's ``ConformerEncoder`` (``rel_pos``, ``dw_striding``) given the same weights:
:func:`nemo_state_dict_to_speechkit` renames a NeMo state dict, and ``tests/modules/test_fastconformer.py`` checks
against golden outputs NeMo computed (``tests/fixtures/make_fastconformer_golden.py``).

Padding never changes valid frames (a batch equals each utterance alone): the subsampling zeroes padded input,
attention ignores padded keys, the convolution module zeroes padded frames before its depthwise convolution, and
the output is zero beyond each length.

Cache-aware streaming (:meth:`FastConformerEncoder.streaming_forward`, :meth:`~FastConformerEncoder.init_state`):
a model with ``chunked_limited`` attention, causal convolutions and causal subsampling encodes a stream chunk by
chunk with explicit caches (:class:`~speechkit.modules.streaming.EncoderStreamState`) and returns exactly the
frames of :meth:`~FastConformerEncoder.forward` on the whole input. Multi-lookahead models list several
``att_context_size`` options: training draws one per forward pass, inference uses the first or the one chosen with
:meth:`~FastConformerEncoder.set_att_context_size`.

Example:
    >>> import torch
    >>> enc = FastConformerEncoder(FastConformerConfig.preset("tiny")).eval()
    >>> y, y_lens = enc(torch.randn(2, 80, 200), torch.tensor([200, 120]))
    >>> tuple(y.shape), y_lens.tolist()
    ((2, 25, 64), [25, 15])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.modules.attention import (
    ATT_CONTEXT_STYLES,
    AttentionContext,
    AttentionMask,
    RelPositionalEncoding,
    RelPositionMultiHeadAttention,
)
from speechkit.modules.dropout import Dropout
from speechkit.modules.streaming import EncoderStreamState, StreamingGeometry, append_frames, drop_frames
from speechkit.modules.subsampling import SUBSAMPLING_FACTORS, DwStridingSubsampling, subsampled_lengths

__all__ = [
    "CONV_CONTEXTS",
    "CONV_NORMS",
    "ConformerBlock",
    "ConvModule",
    "FastConformerConfig",
    "FastConformerConfigError",
    "FastConformerEncoder",
    "FeedForward",
    "nemo_state_dict_to_speechkit",
]

CONV_NORMS = ("batch_norm", "layer_norm")
CONV_CONTEXTS = ("symmetric", "causal")


class FastConformerConfigError(ValueError):
    """A :class:`FastConformerConfig` field has a value the encoder cannot use; the message names the field."""


@dataclass
class FastConformerConfig:
    """Hyper-parameters of the FastConformer encoder (defaults: the Small model, offline).

    Attributes:
        feat_in: feature bins per input frame (80 log-mels).
        d_model: model width.
        n_heads: attention heads (``d_model`` must be divisible by it).
        n_layers: conformer blocks.
        ff_expansion: feed-forward hidden width = ``ff_expansion * d_model``.
        conv_kernel: depthwise convolution kernel (odd).
        conv_norm: normalisation after the depthwise convolution: ``"batch_norm"`` (offline) or ``"layer_norm"``
            (streaming: no batch statistics).
        subsampling_factor: time reduction of the subsampling, a power of two (8 = 80 ms frames).
        subsampling_channels: conv channels of the subsampling.
        causal_downsampling: causal padding in the subsampling (streaming).
        conv_context: ``"symmetric"`` (``(k-1)/2`` frames each side) or ``"causal"`` (``k-1`` past frames only).
        att_context_size: ``(left, right)`` attention context in encoder frames, -1 = unlimited; or a list of such
            pairs for multi-lookahead training (one is drawn per training step with ``att_context_probs``; the first
            is used in evaluation).
        att_context_probs: probabilities of the ``att_context_size`` options (``None`` = uniform).
        att_context_style: ``"regular"`` (band) or ``"chunked_limited"`` (chunks of ``right + 1`` frames).
        global_tokens: the first ``global_tokens`` frames attend to and are attended by all frames (long audio with
            limited context).
        xscaling: scale the subsampled input by ``sqrt(d_model)``.
        dropout: dropout of the residual branches and inside the feed-forward modules.
        dropout_pre_encoder: dropout after the subsampling (and scaling).
        dropout_emb: dropout of the relative position embeddings.
        dropout_att: dropout of the attention probabilities.
        pos_emb_max_len: distances tabulated up front (the table grows for longer inputs).
    """

    feat_in: int = 80
    d_model: int = 176
    n_heads: int = 4
    n_layers: int = 16
    ff_expansion: int = 4
    conv_kernel: int = 9
    conv_norm: str = "batch_norm"
    subsampling_factor: int = 8
    subsampling_channels: int = 256
    causal_downsampling: bool = False
    conv_context: str = "symmetric"
    # Typed Any for OmegaConf, which cannot hold a union of a pair and a list of pairs; validate() checks the shape.
    att_context_size: Any = (-1, -1)  # tuple[int, int] | list[tuple[int, int]]
    att_context_probs: list[float] | None = None
    att_context_style: str = "regular"
    global_tokens: int = 0
    xscaling: bool = True
    dropout: float = 0.1
    dropout_pre_encoder: float = 0.1
    dropout_emb: float = 0.0
    dropout_att: float = 0.1
    pos_emb_max_len: int = 5000

    # (d_model, n_heads, n_layers) of the named sizes; NeMo's FastConformer size table (Small ~14M with its
    # transducer decoder, 12.6M encoder alone).
    PRESETS: ClassVar[dict[str, tuple[int, int, int]]] = {
        "tiny": (64, 2, 2),
        "small": (176, 4, 16),
        "medium": (256, 4, 16),
        "large": (512, 8, 17),
    }

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides: object) -> FastConformerConfig:
        """A named size (``"tiny"``, ``"small"``, ``"medium"``, ``"large"``) with optional field overrides.

        Example:
            >>> FastConformerConfig.preset("small").d_model
            176
            >>> FastConformerConfig.preset("tiny", conv_norm="layer_norm").conv_norm
            'layer_norm'
        """
        if name not in cls.PRESETS:
            raise FastConformerConfigError(f"unknown FastConformer preset {name!r}: choose from {', '.join(cls.PRESETS)}")
        d_model, n_heads, n_layers = cls.PRESETS[name]
        return cls(**{"d_model": d_model, "n_heads": n_heads, "n_layers": n_layers, **overrides})

    @property
    def att_context_options(self) -> list[tuple[int, int]]:
        """``att_context_size`` as a list of ``(left, right)`` pairs (one pair -> a list of one)."""
        sizes = self.att_context_size
        if isinstance(sizes, str):
            raise TypeError("att_context_size is a string")
        if len(sizes) > 0 and all(isinstance(v, int) for v in sizes):
            sizes = [sizes]
        pairs = [tuple(p) for p in sizes]
        if any(len(p) != 2 or not all(isinstance(v, int) for v in p) for p in pairs):
            raise ValueError(f"att_context_size={self.att_context_size!r}: expected (left, right) integer pairs")
        return [(p[0], p[1]) for p in pairs]

    def validate(self) -> None:
        """Check every field.

        Raises:
            FastConformerConfigError: the first bad field, by name, with its value and what was expected.
        """

        def bad(field: str, why: str) -> FastConformerConfigError:
            return FastConformerConfigError(f"FastConformerConfig.{field}={getattr(self, field)!r}: {why}")

        for name in ("feat_in", "d_model", "n_heads", "n_layers", "ff_expansion", "subsampling_channels",
                     "pos_emb_max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "must be a positive integer")
        if self.d_model % self.n_heads:
            raise bad("d_model", f"must be divisible by n_heads={self.n_heads}")
        if self.d_model % 2:
            raise bad("d_model", "must be even (sinusoidal position embeddings)")
        if not isinstance(self.conv_kernel, int) or self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise bad("conv_kernel", "must be an odd positive integer")
        if self.conv_norm not in CONV_NORMS:
            raise bad("conv_norm", f"must be one of {', '.join(CONV_NORMS)}")
        if self.conv_context not in CONV_CONTEXTS:
            raise bad("conv_context", f"must be one of {', '.join(CONV_CONTEXTS)}")
        if self.subsampling_factor not in SUBSAMPLING_FACTORS:
            raise bad("subsampling_factor", f"must be one of {SUBSAMPLING_FACTORS}")
        if self.att_context_style not in ATT_CONTEXT_STYLES:
            raise bad("att_context_style", f"must be one of {', '.join(ATT_CONTEXT_STYLES)}")
        try:
            options = self.att_context_options
        except (TypeError, ValueError, IndexError):
            options = []
        if not options:
            raise bad("att_context_size", "must be (left, right) or a non-empty list of (left, right) pairs")
        for left, right in options:
            try:
                AttentionContext(left, right, self.att_context_style)
            except ValueError as err:
                raise bad("att_context_size", str(err)) from None
        if self.att_context_probs is not None:
            probs = list(self.att_context_probs)
            if len(probs) != len(options):
                raise bad("att_context_probs", f"needs one probability per att_context_size option ({len(options)})")
            if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
                raise bad("att_context_probs", "must be non-negative and sum to 1")
        if not isinstance(self.global_tokens, int) or self.global_tokens < 0:
            raise bad("global_tokens", "must be an integer >= 0")
        for name in ("dropout", "dropout_pre_encoder", "dropout_emb", "dropout_att"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, "must be in [0, 1)")


# ---------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------


class FeedForward(nn.Module):
    """Pre-norm feed-forward branch: ``Linear(Dropout(Swish(Linear(LN(x)))))``; the caller adds the residual.

    Shape: ``(B, T, d_model)`` -> ``(B, T, d_model)``.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.silu(self.linear1(self.norm(x)))))


class ConvModule(nn.Module):
    """Pre-norm convolution branch: LN, pointwise d->2d, GLU, depthwise conv, BN|LN, Swish, pointwise d->d.

    Args:
        d_model: width.
        kernel: depthwise kernel (odd).
        norm: ``"batch_norm"`` or ``"layer_norm"`` after the depthwise convolution.
        causal: the depthwise convolution sees ``kernel - 1`` past frames and no future ones (else
            ``(kernel - 1) / 2`` each side).

    Shape:
        - ``x``: ``(B, T, d_model)``; ``pad_mask``: ``(B, T)`` bool, True on padding; ``cache``: ``(B, d_model,
          kernel - 1)`` depthwise inputs of the frames before ``x`` (streaming; causal only).
        - output: ``(B, T, d_model)``, and the next cache when ``cache`` was given.
    """

    def __init__(self, d_model: int, kernel: int, norm: str = "batch_norm", causal: bool = False) -> None:
        super().__init__()
        self.kernel = kernel
        self.causal = causal
        self.norm = nn.LayerNorm(d_model)
        self.pointwise1 = nn.Linear(d_model, 2 * d_model)
        # Symmetric padding is done by the convolution itself (no copy); causal padding is explicit in forward.
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model, padding=0 if causal else (kernel - 1) // 2)
        self.conv_norm = nn.BatchNorm1d(d_model) if norm == "batch_norm" else nn.LayerNorm(d_model)
        self.pointwise2 = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None,
                cache: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = F.glu(self.pointwise1(self.norm(x)), dim=-1)
        if pad_mask is not None:
            # Padded frames would otherwise leak into the last valid frames through the kernel.
            h = h.masked_fill(pad_mask[..., None], 0.0)
        h = h.transpose(1, 2)  # (B, D, T): channels first for the convolution
        new_cache = None
        if cache is not None:
            if not self.causal:
                raise ValueError("a convolution cache needs conv_context='causal'")
            h = torch.cat([cache, h], dim=2)
            new_cache = h[:, :, -(self.kernel - 1):] if self.kernel > 1 else h[:, :, :0]
        elif self.causal:
            h = F.pad(h, (self.kernel - 1, 0))
        h = self.depthwise(h)
        if isinstance(self.conv_norm, nn.BatchNorm1d):
            h = self.conv_norm(h).transpose(1, 2)
        else:
            h = self.conv_norm(h.transpose(1, 2))
        y = self.pointwise2(F.silu(h))
        return y if new_cache is None else (y, new_cache)


class ConformerBlock(nn.Module):
    """One macaron conformer block: half FFN, relative-position MHSA, convolution, half FFN, LayerNorm.

    Shape:
        - ``x``: ``(B, T, d_model)``; ``pos_emb``: ``(1, 2T - 1, d_model)``; ``pad_mask``: ``(B, T)`` bool, True on
          padding.
        - output: ``(B, T, d_model)``.

    Streaming (:meth:`stream_step`) threads two caches through a block: the attention's ``memory`` (earlier
    normalised attention inputs) and the convolution module's ``cache`` (its last ``kernel - 1`` depthwise inputs).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, conv_kernel: int, conv_norm: str = "batch_norm",
                 causal_conv: bool = False, dropout: float = 0.1, dropout_att: float = 0.1) -> None:
        super().__init__()
        self.ff1 = FeedForward(d_model, d_ff, dropout)
        self.norm_att = nn.LayerNorm(d_model)
        self.att = RelPositionMultiHeadAttention(d_model, n_heads, dropout_att)
        self.conv = ConvModule(d_model, conv_kernel, conv_norm, causal_conv)
        self.ff2 = FeedForward(d_model, d_ff, dropout)
        self.norm_out = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, att_mask: AttentionMask,
                pad_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + 0.5 * self.dropout(self.ff1(x))
        x = x + self.dropout(self.att(self.norm_att(x), pos_emb, att_mask))
        x = x + self.dropout(self.conv(x, pad_mask))
        x = x + 0.5 * self.dropout(self.ff2(x))
        return self.norm_out(x)

    def stream_step(self, x: torch.Tensor, pos_emb: torch.Tensor, att_mask: AttentionMask, pad_mask: torch.Tensor,
                    memory: torch.Tensor, conv_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One block on one chunk, continuing from the caches.

        Args:
            x: the chunk ``(B, T, d_model)``, left-aligned (padding after each row's frames).
            pos_emb: ``(1, 2K - 1, d_model)``, ``K = C + T``.
            att_mask: dense mask ``(B, 1, 1, K)`` over ``memory`` + chunk.
            pad_mask: ``(B, T)`` bool, True on padding.
            memory: ``(B, C, d_model)`` cached attention inputs.
            conv_cache: ``(B, d_model, kernel - 1)`` cached depthwise inputs.

        Returns:
            ``(y, att_in, conv_cache)``: output ``(B, T, d_model)``, this chunk's attention inputs ``(B, T,
            d_model)`` (for the attention cache) and the next convolution cache.
        """
        x = x + 0.5 * self.dropout(self.ff1(x))
        att_in = self.norm_att(x)
        x = x + self.dropout(self.att(att_in, pos_emb, att_mask, memory=memory))
        conv_out, conv_cache = self.conv(x, pad_mask, cache=conv_cache)
        x = x + self.dropout(conv_out)
        x = x + 0.5 * self.dropout(self.ff2(x))
        return self.norm_out(x), att_in, conv_cache


# ---------------------------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------------------------


class FastConformerEncoder(nn.Module):
    """FastConformer encoder.

    Args:
        cfg: hyper-parameters (validated again here).

    Attributes:
        att_context: the attention context used in evaluation (and in training when there is one option); change it
            with :meth:`set_att_context_size`.
        blockwise_min_len: inputs of at least this many encoder frames with a limited left context use the
            memory-efficient blockwise attention (``None`` = always dense).
        block_size: query frames per block of the blockwise attention.

    Shape:
        - ``x``: ``(B, feat_in, T)`` log-mel features, as :class:`speechkit.audio.features.MelFrontend` returns them;
          ``x_lens``: ``(B,)``.
        - output: ``y`` ``(B, T', d_model)`` (batch, time, feature: what a joint network consumes) and ``y_lens``
          ``(B,)`` int64 with ``T' = subsampled_lengths(T)``.
    """

    def __init__(self, cfg: FastConformerConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.subsampling = DwStridingSubsampling(cfg.feat_in, cfg.d_model, cfg.subsampling_factor,
                                                 cfg.subsampling_channels, cfg.causal_downsampling)
        self.pos_enc = RelPositionalEncoding(cfg.d_model, cfg.pos_emb_max_len, cfg.xscaling, cfg.dropout_pre_encoder,
                                             cfg.dropout_emb)
        self.layers = nn.ModuleList(
            ConformerBlock(cfg.d_model, cfg.n_heads, cfg.ff_expansion * cfg.d_model, cfg.conv_kernel, cfg.conv_norm,
                           cfg.conv_context == "causal", cfg.dropout, cfg.dropout_att)
            for _ in range(cfg.n_layers)
        )
        self._contexts = [AttentionContext(left, right, cfg.att_context_style, cfg.global_tokens)
                          for left, right in cfg.att_context_options]
        self.att_context = self._contexts[0]
        self.blockwise_min_len: int | None = 1024
        self.block_size = 64

    @property
    def d_model(self) -> int:
        """Output width."""
        return self.cfg.d_model

    def output_lengths(self, x_lens: torch.Tensor | int) -> torch.Tensor | int:
        """Encoder frames for ``x_lens`` feature frames."""
        return subsampled_lengths(x_lens, self.cfg.subsampling_factor, self.cfg.causal_downsampling)

    def set_att_context_size(self, left: int, right: int) -> None:
        """Use ``(left, right)`` context from now on in evaluation (e.g. another trained look-ahead)."""
        self.att_context = AttentionContext(left, right, self.cfg.att_context_style, self.cfg.global_tokens)

    def _pick_context(self) -> AttentionContext:
        # Multi-lookahead training: one option per forward pass, drawn from torch's RNG so seeding torch makes runs
        # repeatable (and each DDP rank draws from its own seeded stream).
        if self.training and len(self._contexts) > 1:
            probs = self.cfg.att_context_probs
            weights = torch.tensor(probs if probs is not None else [1.0] * len(self._contexts), dtype=torch.float64)
            return self._contexts[int(torch.multinomial(weights, 1))]
        return self.att_context

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode.

        Args:
            x: features ``(B, feat_in, T)``.
            x_lens: valid feature frames per utterance ``(B,)``.

        Returns:
            ``(y, y_lens)``: ``(B, T', d_model)``, zero beyond each length, and ``(B,)`` int64.
        """
        if x.dim() != 3 or x.size(1) != self.cfg.feat_in:
            raise ValueError(f"expected features (B, {self.cfg.feat_in}, T), got {tuple(x.shape)}")
        h, lengths = self.subsampling(x.transpose(1, 2), x_lens)
        h, pos_emb = self.pos_enc(h)
        t = h.size(1)
        att_mask = AttentionMask.build(lengths, t, self._pick_context(), h.dtype, self.block_size,
                                       self.blockwise_min_len)
        pad_mask = torch.arange(t, device=h.device)[None, :] >= lengths[:, None]  # (B, T'), True on padding
        for layer in self.layers:
            h = layer(h, pos_emb, att_mask, pad_mask)
        return h.masked_fill(pad_mask[..., None], 0.0), lengths

    # -- cache-aware streaming ------------------------------------------------------------------------------------

    def _stream_context(self) -> AttentionContext:
        """The evaluation context, checked to be streamable (else a FastConformerConfigError naming the field)."""
        cfg, ctx = self.cfg, self.att_context
        if not cfg.causal_downsampling:
            raise FastConformerConfigError("FastConformerConfig.causal_downsampling=False: streaming needs the causal "
                                           "subsampling (True)")
        if cfg.conv_context != "causal":
            raise FastConformerConfigError(f"FastConformerConfig.conv_context={cfg.conv_context!r}: streaming needs "
                                           "'causal' convolutions")
        if ctx.style != "chunked_limited":
            raise FastConformerConfigError(f"FastConformerConfig.att_context_style={ctx.style!r}: streaming needs "
                                           "'chunked_limited' attention")
        if ctx.left < 0:
            raise FastConformerConfigError(f"FastConformerConfig.att_context_size=({ctx.left}, {ctx.right}): "
                                           "streaming caches the left context, so it must be finite (>= 0)")
        if ctx.global_tokens:
            raise FastConformerConfigError(f"FastConformerConfig.global_tokens={ctx.global_tokens}: global tokens "
                                           "see the future and cannot stream")
        return ctx

    def streaming_geometry(self, hop_s: float = 0.01, frontend_lookahead_s: float = 0.0) -> StreamingGeometry:
        """Chunk sizes and latency of :meth:`streaming_forward` at the current attention context.

        Args:
            hop_s: seconds per feature frame.
            frontend_lookahead_s: audio the feature front end needs after a frame's centre (for the latency).

        Returns:
            The geometry.

        Raises:
            FastConformerConfigError: the encoder cannot stream (not causal, not chunked_limited, unlimited left).
        """
        ctx = self._stream_context()
        return StreamingGeometry.from_context(ctx.left, ctx.right, self.cfg.subsampling_factor, hop_s,
                                              frontend_lookahead_s)

    def init_state(self, batch: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> EncoderStreamState:
        """A fresh streaming state for ``batch`` streams (zero caches = the offline zero padding).

        Args:
            batch: number of streams ``B``.
            device: where the state lives (default: the encoder's device).
            dtype: float dtype of the caches (default: the encoder's).

        Returns:
            The state; its attention cache is sized for the current attention context, so call
            :meth:`set_att_context_size` before this.

        Raises:
            FastConformerConfigError: the encoder cannot stream.
        """
        ctx = self._stream_context()
        p = next(self.parameters())
        dev = p.device if device is None else torch.device(device)
        dt = p.dtype if dtype is None else dtype
        cfg = self.cfg

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=dev, dtype=dt)

        def counts() -> torch.Tensor:
            return torch.zeros(batch, device=dev, dtype=torch.int64)

        return EncoderStreamState(
            att_cache=zeros(cfg.n_layers, batch, ctx.left, cfg.d_model),
            att_cache_len=counts(),
            conv_cache=zeros(cfg.n_layers, batch, cfg.d_model, cfg.conv_kernel - 1),
            sub_cache=tuple(zeros(batch, *shape) for shape in self.subsampling.stream_cache_shapes()),
            mel_buffer=zeros(batch, cfg.feat_in, 0),
            mel_buffer_len=counts(),
            mel_seen=counts(),
            frames_out=counts(),
            finished=torch.zeros(batch, device=dev, dtype=torch.bool),
        )

    def streaming_forward(self, x: torch.Tensor, x_lens: torch.Tensor, state: EncoderStreamState,
                          final: bool | torch.Tensor = False) -> tuple[torch.Tensor, torch.Tensor, EncoderStreamState]:
        """Encode the next feature frames of ``B`` streams; equal to :meth:`forward` on each whole stream.

        Any number of frames may come per call and per row (0 included). Frames that do not yet complete a chunk
        (:meth:`streaming_geometry`) wait in the state; only final encoder frames are returned. ``final`` flushes
        a row: its last, partial chunk is encoded and the row takes no more input. The concatenation of a row's
        ``y`` over all calls equals ``forward`` on the row's whole input (to float rounding), at the current
        (evaluation) attention context. The input ``state`` is not modified.

        Args:
            x: features ``(B, feat_in, T)``; row ``b`` brings its first ``x_lens[b]`` frames.
            x_lens: ``(B,)`` new frames per row, in ``[0, T]``.
            state: from :meth:`init_state` or the previous call (``B`` rows).
            final: ``True`` / ``False`` for every row, or a ``(B,)`` bool tensor: these are the rows' last frames.

        Returns:
            ``(y, y_lens, state)``: new encoder frames ``(B, T', d_model)`` left-aligned and zero beyond
            ``y_lens`` ``(B,)`` int64, and the next state.

        Raises:
            FastConformerConfigError: the encoder cannot stream.
            ValueError: bad shapes, a state from another context or batch size, or input for a flushed row.

        Example:
            >>> import torch
            >>> enc = FastConformerEncoder(FastConformerConfig.preset(
            ...     "tiny", causal_downsampling=True, conv_context="causal", conv_norm="layer_norm",
            ...     att_context_size=(8, 3), att_context_style="chunked_limited")).eval()
            >>> mel = torch.randn(1, 80, 100)
            >>> state = enc.init_state(1)
            >>> y1, n1, state = enc.streaming_forward(mel[:, :, :60], torch.tensor([60]), state)
            >>> y2, n2, state = enc.streaming_forward(mel[:, :, 60:], torch.tensor([40]), state, final=True)
            >>> y, n = enc(mel, torch.tensor([100]))
            >>> n1.item() + n2.item() == n.item(), torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-5)
            (True, True)
        """
        geo = self.streaming_geometry()
        left = geo.att_left
        cfg = self.cfg
        if x.dim() != 3 or x.size(1) != cfg.feat_in:
            raise ValueError(f"expected features (B, {cfg.feat_in}, T), got {tuple(x.shape)}")
        bsz, dev = x.size(0), x.device
        if state.batch_size != bsz:
            raise ValueError(f"the state holds {state.batch_size} streams but x has {bsz} rows")
        if state.att_cache.size(2) != left or state.att_cache.size(0) != cfg.n_layers:
            raise ValueError(f"the state's attention cache holds {state.att_cache.size(2)} frames but the encoder's "
                             f"left context is now {left}: make a new state after set_att_context_size")
        x_lens = torch.as_tensor(x_lens, device=dev).to(torch.int64)
        if x_lens.shape != (bsz,) or (bsz and (int(x_lens.min()) < 0 or int(x_lens.max()) > x.size(2))):
            raise ValueError(f"x_lens must be (B,) = ({bsz},) counts in [0, {x.size(2)}], got {x_lens.tolist()}")
        fin = torch.as_tensor(final, device=dev).to(torch.bool)
        fin = fin.expand(bsz).clone() if fin.dim() == 0 else fin
        if fin.shape != (bsz,):
            raise ValueError(f"final must be a bool or a ({bsz},) bool tensor, got shape {tuple(fin.shape)}")
        late = state.finished & (x_lens > 0)
        if bool(late.any()):
            raise ValueError(f"rows {late.nonzero().flatten().tolist()} were flushed (final=True) and take no more "
                             "frames: start a new state (init_state) for a new stream")

        buf, buf_len = append_frames(state.mel_buffer, state.mel_buffer_len, x, x_lens)
        mel_seen = state.mel_seen + x_lens
        att_cache, att_len, conv_cache = state.att_cache, state.att_cache_len, state.conv_cache
        sub_cache, frames_out, finished = state.sub_cache, state.frames_out, state.finished
        owed = self.output_lengths(mel_seen)
        pieces: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        while True:
            first = frames_out == 0
            need = torch.where(first, geo.first_chunk_mel_frames, geo.chunk_mel_frames)
            whole = ~finished & (buf_len >= need)
            flush = fin & ~finished & ~whole
            finished = finished | (flush & (owed <= frames_out))  # flushed rows that owe no frame are done now
            flush = flush & ~finished
            active = whole | flush
            if not bool(active.any()):
                break
            idx = active.nonzero().flatten()
            take = torch.where(whole, need, buf_len).index_select(0, idx)
            mel = buf.index_select(0, idx)[:, :, : int(take.max())].transpose(1, 2)
            h, q, new_sub = self.subsampling.stream_step(mel, take, tuple(c.index_select(0, idx) for c in sub_cache),
                                                         first.index_select(0, idx), flush.index_select(0, idx))
            h, pos_emb = self.pos_enc(h, cache_len=left)
            t = h.size(1)
            cache_len = att_len.index_select(0, idx)
            key_ok = torch.cat([torch.arange(left, device=dev)[None, :] >= (left - cache_len)[:, None],
                                torch.arange(t, device=dev)[None, :] < q[:, None]], dim=1)  # (n, left + t)
            dense = torch.zeros(key_ok.shape, dtype=h.dtype, device=dev).masked_fill_(~key_ok, float("-inf"))
            # One chunk per step: every query sees the whole chunk and the cached `left` frames, i.e. exactly its
            # chunked_limited context, so the mask is key validity only.
            att_mask = AttentionMask(self.att_context, q, t, dense=dense[:, None, None])
            pad_mask = torch.arange(t, device=dev)[None, :] >= q[:, None]
            layer_att, layer_conv = [], []
            for i, layer in enumerate(self.layers):
                memory = att_cache[i].index_select(0, idx)
                h, att_in, conv_next = layer.stream_step(h, pos_emb, att_mask, pad_mask, memory,
                                                         conv_cache[i].index_select(0, idx))
                layer_att.append(torch.cat([memory, att_in], dim=1)[:, memory.size(1) + t - left:])
                layer_conv.append(conv_next)
            pieces.append((idx, h.masked_fill(pad_mask[..., None], 0.0), q))
            att_cache = att_cache.index_copy(1, idx, torch.stack(layer_att))
            conv_cache = conv_cache.index_copy(1, idx, torch.stack(layer_conv))
            att_len = att_len.index_copy(0, idx, (cache_len + q).clamp(max=left))
            sub_cache = tuple(c.index_copy(0, idx, n.to(c.dtype)) for c, n in zip(sub_cache, new_sub, strict=True))
            frames_out = frames_out.index_add(0, idx, q)
            buf, buf_len = drop_frames(buf, buf_len, idx, take)
            finished = finished | flush

        y_lens = frames_out - state.frames_out
        y = x.new_zeros(bsz, int(y_lens.max()) if bsz else 0, cfg.d_model)
        offset = torch.zeros(bsz, dtype=torch.int64, device=dev)
        for idx, h, q in pieces:
            pos = offset.index_select(0, idx)[:, None] + torch.arange(h.size(1), device=dev)[None, :]
            keep = torch.arange(h.size(1), device=dev)[None, :] < q[:, None]
            y[idx[:, None].expand_as(pos)[keep], pos[keep]] = h[keep].to(y.dtype)
            offset = offset.index_add(0, idx, q)
        new_state = EncoderStreamState(att_cache=att_cache, att_cache_len=att_len, conv_cache=conv_cache,
                                       sub_cache=sub_cache, mel_buffer=buf, mel_buffer_len=buf_len,
                                       mel_seen=mel_seen, frames_out=frames_out, finished=finished)
        return y, y_lens, new_state


# ---------------------------------------------------------------------------------------------------------------
# NeMo checkpoints
# ---------------------------------------------------------------------------------------------------------------

# NeMo ConformerEncoder state-dict names -> ours. {L} is a layer index; pre_encode.conv indices follow NeMo's
# Sequential: 0 = first conv, then (depthwise, pointwise) at (2, 3), (5, 6), ... with ReLUs in between.
_LAYER_RENAMES = (
    ("norm_feed_forward1.", "ff1.norm."),
    ("feed_forward1.", "ff1."),
    ("norm_feed_forward2.", "ff2.norm."),
    ("feed_forward2.", "ff2."),
    ("norm_self_att.", "norm_att."),
    ("self_attn.", "att."),
    ("norm_conv.", "conv.norm."),
    ("conv.pointwise_conv1.", "conv.pointwise1."),
    ("conv.pointwise_conv2.", "conv.pointwise2."),
    ("conv.depthwise_conv.", "conv.depthwise."),
    ("conv.batch_norm.", "conv.conv_norm."),
    ("norm_out.", "norm_out."),
)


def nemo_state_dict_to_speechkit(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Rename a NeMo ``ConformerEncoder`` state dict (``rel_pos``, ``dw_striding``) to :class:`FastConformerEncoder`'s.

    Args:
        sd: NeMo tensors by name.
        prefix: only keys starting with it are converted, with it removed (``"encoder."`` for a whole ASR model's
            state dict); others are ignored.

    Returns:
        A state dict for ``FastConformerEncoder.load_state_dict`` (pointwise conv weights ``(out, in, 1)`` become
        linear weights ``(out, in)``).

    Raises:
        KeyError: a key under ``prefix`` that has no counterpart (named in the message).
    """
    out: dict[str, torch.Tensor] = {}
    for name, value in sd.items():
        if not name.startswith(prefix):
            continue
        key = name[len(prefix):]
        new = _rename(key)
        if new is None:
            if key == "pos_enc.pe":  # a derived buffer some NeMo versions saved
                continue
            raise KeyError(f"no FastConformerEncoder parameter for NeMo key {name!r}")
        if new.endswith(("pointwise1.weight", "pointwise2.weight")) and value.dim() == 3:
            value = value.squeeze(-1)
        out[new] = value
    return out


def _rename(key: str) -> str | None:
    m = re.fullmatch(r"pre_encode\.conv\.(\d+)\.(weight|bias)", key)
    if m:
        idx, leaf = int(m.group(1)), m.group(2)
        if idx == 0:
            return f"subsampling.conv_in.{leaf}"
        stage, pos = divmod(idx - 2, 3)
        if pos == 0:
            return f"subsampling.depthwise.{stage}.{leaf}"
        if pos == 1:
            return f"subsampling.pointwise.{stage}.{leaf}"
        return None
    m = re.fullmatch(r"pre_encode\.out\.(weight|bias)", key)
    if m:
        return f"subsampling.out.{m.group(1)}"
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
    if m:
        rest = m.group(2)
        for old, new in _LAYER_RENAMES:
            if rest.startswith(old):
                return f"layers.{m.group(1)}.{new}{rest[len(old):]}"
    return None

