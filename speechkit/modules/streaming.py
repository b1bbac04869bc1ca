"""Typed streaming state and chunk geometry of the cache-aware FastConformer encoder.

:meth:`speechkit.modules.fastconformer.FastConformerEncoder.streaming_forward` threads an :class:`EncoderStreamState`
from call to call; :meth:`~speechkit.modules.fastconformer.FastConformerEncoder.streaming_geometry` describes the
chunks it works in (:class:`StreamingGeometry`).

How the state makes streaming equal offline (``chunked_limited`` attention, causal convolutions, causal
subsampling):

- the encoder works in chunks of ``c = right + 1`` encoder frames, the chunks of the attention mask. Encoder frame
  ``j`` depends on log-mel frames ``<= f * j`` (``f`` = subsampling factor), so the first chunk needs
  ``f * (c - 1) + 1`` mel frames and every later one ``f * c`` more. Mel frames that do not yet make a chunk wait
  in ``mel_buffer``;
- each stride-2 stage of the causal subsampling keeps the one input frame its next output still needs
  (``sub_cache``); before the first chunk the stage pads with two zero frames instead, as offline;
- each conformer layer keeps the last ``left`` inputs of its attention (``att_cache``, right-aligned, the newest
  last; ``att_cache_len`` of them valid) and the last ``kernel - 1`` inputs of its causal depthwise convolution
  (``conv_cache``, zeros at the start = the offline causal padding). A chunk attends to its own frames and the
  ``left // c`` chunks before it, which is exactly the attention cache.

Rows of a state are independent streams: :meth:`EncoderStreamState.stack` and :meth:`EncoderStreamState.unstack`
batch and split them.

Example:
    >>> import torch
    >>> from speechkit.modules.fastconformer import FastConformerConfig, FastConformerEncoder
    >>> enc = FastConformerEncoder(FastConformerConfig.preset(
    ...     "tiny", causal_downsampling=True, conv_context="causal", conv_norm="layer_norm",
    ...     att_context_size=(8, 3), att_context_style="chunked_limited")).eval()
    >>> enc.streaming_geometry().first_chunk_mel_frames, enc.streaming_geometry().chunk_mel_frames
    (25, 32)
    >>> state = enc.init_state(2)
    >>> tuple(state.att_cache.shape), len(state.unstack())
    ((2, 2, 8, 64), 2)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

__all__ = ["EncoderStreamState", "StreamingGeometry", "append_frames", "drop_frames"]


@dataclass(frozen=True)
class StreamingGeometry:
    """The chunking of a cache-aware streaming encoder at one attention context.

    Attributes:
        att_left: attention left context in encoder frames (the attention cache size).
        att_right: attention right context (look-ahead) in encoder frames.
        chunk_frames: encoder frames per chunk, ``att_right + 1``.
        subsampling_factor: feature frames per encoder frame.
        first_chunk_mel_frames: feature frames that complete the first chunk, ``f * (c - 1) + 1``.
        chunk_mel_frames: feature frames per later chunk, ``f * c``.
        hop_s: seconds per feature frame.
        lookahead_s: how far the first frame of a chunk looks ahead, ``att_right * f * hop_s``.
        chunk_s: audio per chunk, ``chunk_mel_frames * hop_s``.
        algorithmic_latency_s: worst-case delay from a sample to the encoder frame that covers it, not counting
            compute: a sample at the start of a chunk waits for the whole chunk (``chunk_s``) plus the feature
            window's look-ahead (``frontend_lookahead_s``).
    """

    att_left: int
    att_right: int
    chunk_frames: int
    subsampling_factor: int
    first_chunk_mel_frames: int
    chunk_mel_frames: int
    hop_s: float
    lookahead_s: float
    chunk_s: float
    algorithmic_latency_s: float

    @classmethod
    def from_context(cls, left: int, right: int, subsampling_factor: int, hop_s: float = 0.01,
                     frontend_lookahead_s: float = 0.0) -> StreamingGeometry:
        """Geometry for attention context ``(left, right)`` and subsampling factor ``f``.

        Args:
            left: attention left context (encoder frames), >= 0.
            right: attention right context, >= 0.
            subsampling_factor: ``f``.
            hop_s: feature hop in seconds.
            frontend_lookahead_s: audio the feature front end needs after a frame's centre
                (``(n_fft - n_fft // 2) / sample_rate`` for a centred STFT).

        Returns:
            The geometry.

        Example:
            >>> g = StreamingGeometry.from_context(70, 13, 8)
            >>> g.first_chunk_mel_frames, g.chunk_mel_frames, round(g.lookahead_s, 2)
            (105, 112, 1.04)
        """
        c = right + 1
        f = subsampling_factor
        chunk_s = f * c * hop_s
        return cls(att_left=left, att_right=right, chunk_frames=c, subsampling_factor=f,
                   first_chunk_mel_frames=f * (c - 1) + 1, chunk_mel_frames=f * c, hop_s=hop_s,
                   lookahead_s=right * f * hop_s, chunk_s=chunk_s,
                   algorithmic_latency_s=chunk_s + frontend_lookahead_s)


@dataclass
class EncoderStreamState:
    """Everything a cache-aware FastConformer carries between :meth:`streaming_forward` calls, for ``B`` streams.

    Create with :meth:`FastConformerEncoder.init_state`; treat as opaque except for batching (:meth:`stack`,
    :meth:`unstack`, :meth:`select`) and device moves (:meth:`to`).

    Attributes:
        att_cache: ``(n_layers, B, left, d_model)`` the latest attention inputs (after the layer norm) of each layer,
            right-aligned: the newest frame last.
        att_cache_len: ``(B,)`` int64: how many of the ``left`` cached frames are valid (the rest is padding).
        conv_cache: ``(n_layers, B, d_model, kernel - 1)`` the latest depthwise-convolution inputs of each layer.
        sub_cache: per stride-2 subsampling stage, ``(B, C_i, 1, F_i)``: the one input frame of that stage its next
            output still needs (stage 1: a log-mel frame, ``C_1 = 1``, ``F_1 = feat_in``).
        mel_buffer: ``(B, feat_in, P)`` feature frames received but not yet encoded, left-aligned.
        mel_buffer_len: ``(B,)`` int64 valid frames of ``mel_buffer``.
        mel_seen: ``(B,)`` int64 feature frames received so far.
        frames_out: ``(B,)`` int64 encoder frames returned so far.
        finished: ``(B,)`` bool: the stream was flushed (``final``); it takes no more input.
    """

    att_cache: torch.Tensor
    att_cache_len: torch.Tensor
    conv_cache: torch.Tensor
    sub_cache: tuple[torch.Tensor, ...]
    mel_buffer: torch.Tensor
    mel_buffer_len: torch.Tensor
    mel_seen: torch.Tensor
    frames_out: torch.Tensor
    finished: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of streams ``B``."""
        return int(self.att_cache_len.shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.att_cache_len.device

    def to(self, device: torch.device | str) -> EncoderStreamState:
        """A copy on ``device``."""
        return EncoderStreamState(
            **{f.name: (tuple(t.to(device) for t in v) if isinstance(v, tuple) else v.to(device))
               for f in dataclasses.fields(self) for v in [getattr(self, f.name)]})

    def select(self, index: torch.Tensor | list[int]) -> EncoderStreamState:
        """The streams ``index`` (a list of row numbers or an int64 tensor), in that order."""
        idx = torch.as_tensor(index, dtype=torch.int64, device=self.device)
        return EncoderStreamState(
            att_cache=self.att_cache.index_select(1, idx),
            att_cache_len=self.att_cache_len.index_select(0, idx),
            conv_cache=self.conv_cache.index_select(1, idx),
            sub_cache=tuple(t.index_select(0, idx) for t in self.sub_cache),
            mel_buffer=self.mel_buffer.index_select(0, idx),
            mel_buffer_len=self.mel_buffer_len.index_select(0, idx),
            mel_seen=self.mel_seen.index_select(0, idx),
            frames_out=self.frames_out.index_select(0, idx),
            finished=self.finished.index_select(0, idx),
        )

    def unstack(self) -> list[EncoderStreamState]:
        """Split into ``B`` one-stream states (each ``mel_buffer`` trimmed to its valid frames).

        Returns:
            ``B`` states of batch size 1, in row order.
        """
        out = []
        for b in range(self.batch_size):
            s = self.select([b])
            n = int(s.mel_buffer_len[0])
            s.mel_buffer = s.mel_buffer[:, :, :n].contiguous()
            out.append(s)
        return out

    @classmethod
    def stack(cls, states: list[EncoderStreamState]) -> EncoderStreamState:
        """Batch states of the same encoder (and attention context) into one, rows in list order.

        Args:
            states: one or more states (any batch sizes).

        Returns:
            A state with ``sum(s.batch_size)`` rows; ``mel_buffer`` is zero-padded to the longest.

        Raises:
            ValueError: ``states`` is empty or the states have different cache shapes (other encoders or
                attention contexts).
        """
        if not states:
            raise ValueError("EncoderStreamState.stack: no states given")
        first = states[0]
        for s in states[1:]:
            if (s.att_cache.shape[0] != first.att_cache.shape[0] or s.att_cache.shape[2:] != first.att_cache.shape[2:]
                    or s.conv_cache.shape[2:] != first.conv_cache.shape[2:]
                    or len(s.sub_cache) != len(first.sub_cache)
                    or any(a.shape[1:] != b.shape[1:] for a, b in zip(s.sub_cache, first.sub_cache, strict=True))
                    or s.mel_buffer.shape[1] != first.mel_buffer.shape[1]):
                raise ValueError("EncoderStreamState.stack: the states have different cache shapes (they come from "
                                 "different encoders or attention contexts)")
        width = max(s.mel_buffer.shape[2] for s in states)
        bufs = [torch.nn.functional.pad(s.mel_buffer, (0, width - s.mel_buffer.shape[2])) for s in states]
        return cls(
            att_cache=torch.cat([s.att_cache for s in states], 1),
            att_cache_len=torch.cat([s.att_cache_len for s in states], 0),
            conv_cache=torch.cat([s.conv_cache for s in states], 1),
            sub_cache=tuple(torch.cat([s.sub_cache[i] for s in states], 0) for i in range(len(first.sub_cache))),
            mel_buffer=torch.cat(bufs, 0),
            mel_buffer_len=torch.cat([s.mel_buffer_len for s in states], 0),
            mel_seen=torch.cat([s.mel_seen for s in states], 0),
            frames_out=torch.cat([s.frames_out for s in states], 0),
            finished=torch.cat([s.finished for s in states], 0),
        )


def append_frames(buf: torch.Tensor, buf_len: torch.Tensor, x: torch.Tensor,
                  x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Append new frames to a left-aligned ragged buffer, row by row.

    Args:
        buf: ``(B, F, P)`` buffered frames, row ``b`` valid up to ``buf_len[b]``.
        buf_len: ``(B,)`` int64.
        x: ``(B, F, T)`` new frames, row ``b`` valid up to ``x_lens[b]``.
        x_lens: ``(B,)`` int64.

    Returns:
        ``(out, out_len)``: ``(B, F, W)`` holding ``buf[b, :, :buf_len[b]]`` then ``x[b, :, :x_lens[b]]``, zero
        after, ``W = max(out_len)``; and ``out_len = buf_len + x_lens`` ``(B,)``.
    """
    bsz, feat, p = buf.shape
    total = buf_len + x_lens
    width = int(total.max()) if bsz else 0
    if width == 0:
        return buf.new_zeros(bsz, feat, 0), total
    pool = torch.cat([buf, x.to(buf.dtype)], dim=2)
    pos = torch.arange(width, device=buf.device)[None, :]
    src = torch.where(pos < buf_len[:, None], pos, p + pos - buf_len[:, None]).clamp(0, pool.size(2) - 1)
    out = pool.gather(2, src[:, None, :].expand(bsz, feat, width))
    return out.masked_fill((pos >= total[:, None])[:, None, :], 0.0), total


def drop_frames(buf: torch.Tensor, buf_len: torch.Tensor, idx: torch.Tensor,
                take: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove the oldest frames of some rows of a left-aligned ragged buffer.

    Args:
        buf: ``(B, F, P)``; buf_len: ``(B,)`` int64 valid frames per row.
        idx: ``(n,)`` int64 rows to shorten.
        take: ``(n,)`` int64 frames to remove from the front of each of those rows (<= their length).

    Returns:
        ``(out, out_len)``: ``(B, F, W)`` left-aligned and zero after ``out_len`` ``(B,)``, ``W = max(out_len)``.
    """
    bsz, feat, p = buf.shape
    shift = torch.zeros_like(buf_len).index_copy(0, idx, take)
    new_len = buf_len - shift
    width = int(new_len.max()) if bsz else 0
    if width == 0:
        return buf.new_zeros(bsz, feat, 0), new_len
    pos = torch.arange(width, device=buf.device)[None, :]
    src = (pos + shift[:, None]).clamp(max=p - 1)
    out = buf.gather(2, src[:, None, :].expand(bsz, feat, width))
    return out.masked_fill((pos >= new_len[:, None])[:, None, :], 0.0), new_len

