"""The log-mel front end, streaming: waveform pieces in, feature frames out, equal to the offline features.

:class:`StreamingFeatures` carries the two things that cross a piece boundary: the last raw sample (for the
pre-emphasis ``y[t] = x[t] - preemph * x[t-1]``) and the pre-emphasised samples the next STFT frames still need
(a centred frame ``t`` spans samples ``[t * hop - n_fft // 2, t * hop - n_fft // 2 + n_fft)``, zeros before the
start). A frame is emitted once all its samples have arrived and it is a valid frame of the signal so far;
:meth:`StreamingFeatures.flush` emits the rest with the offline zero padding at the end. Concatenated, the output
equals :func:`speechkit.audio.features.log_mel_spectrogram` of the whole signal (valid frames, evaluation mode) for
any way of cutting the signal into pieces.

What cannot stream is refused: per-utterance normalisation (``normalize`` must be ``"none"``, NeMo's ``"NA"``).
Dither is never applied (inference; the offline front end applies it only in training).

Example:
    >>> import torch
    >>> from speechkit.audio.features import FeatureConfig, log_mel_spectrogram
    >>> cfg = FeatureConfig(normalize="none")
    >>> wave = torch.randn(8000)
    >>> sf = StreamingFeatures(cfg)
    >>> parts = [sf.accept(wave[i:i + 1234]) for i in range(0, 8000, 1234)] + [sf.flush()]
    >>> feats = torch.cat(parts, dim=1)
    >>> ref, n = log_mel_spectrogram(wave[None], torch.tensor([8000]), cfg)
    >>> feats.shape[1] == n.item(), torch.allclose(feats, ref[0, :, : n.item()], atol=1e-4)
    (True, True)
"""

from __future__ import annotations

import numpy as np
import torch

from speechkit.audio.features import FeatureConfig, FeatureConfigError, _fixed_tensors

__all__ = ["StreamingFeatures"]


class StreamingFeatures:
    """Log-mel features of one audio stream, computed piece by piece.

    Args:
        cfg: front-end settings (``None`` = ``FeatureConfig(normalize="none")``); ``normalize`` must be ``"none"``.

    Attributes:
        cfg: the settings.
        frames_emitted: feature frames returned so far.
        samples_seen: samples received so far.

    Raises:
        FeatureConfigError: a bad field, or ``normalize`` other than ``"none"`` (named in the message).
    """

    def __init__(self, cfg: FeatureConfig | None = None) -> None:
        cfg = FeatureConfig(normalize="none") if cfg is None else cfg
        cfg.validate()
        if cfg.normalize != "none":
            raise FeatureConfigError(f"FeatureConfig.normalize={cfg.normalize!r}: per-utterance normalisation needs "
                                     "the whole utterance and cannot stream; streaming models use 'none' (NeMo 'NA')")
        self.cfg = cfg
        self._window, self._fb = _fixed_tensors(cfg.sample_rate, cfg.win_length, cfg.n_fft, cfg.n_mels,
                                                float(cfg.lowfreq),
                                                None if cfg.highfreq is None else float(cfg.highfreq))
        self.reset()

    @property
    def lookahead_samples(self) -> int:
        """Samples a frame needs after its centre (``n_fft - n_fft // 2``): the front end's algorithmic delay."""
        return self.cfg.n_fft - self.cfg.n_fft // 2

    def reset(self) -> None:
        """Forget everything: the next :meth:`accept` starts a new signal."""
        left = self.cfg.n_fft // 2
        self._prev = torch.zeros(1)  # last raw sample; 0 before the start, so the first sample is kept as is
        self._buf = torch.zeros(left)  # pre-emphasised samples from the next frame's first one (the zero padding)
        self._buf_start = -left  # absolute index of _buf[0]
        self.samples_seen = 0
        self.frames_emitted = 0
        self._flushed = False

    def accept(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Take the next samples; return the feature frames they complete.

        Args:
            samples: ``(N,)`` float waveform at ``cfg.sample_rate`` (any ``N``, 0 included).

        Returns:
            ``(n_mels, T_new)`` float32 frames (``T_new`` may be 0).

        Raises:
            ValueError: ``samples`` is not 1-D float, or the stream was already flushed.
        """
        if self._flushed:
            raise ValueError("StreamingFeatures.accept after flush(): call reset() to start a new signal")
        x = torch.as_tensor(samples)
        if x.dim() != 1 or not x.is_floating_point():
            raise ValueError(f"samples must be a 1-D float array (N,), got shape {tuple(x.shape)} dtype {x.dtype}")
        x = x.detach().to(device="cpu", dtype=torch.float32)
        if x.numel():
            y = x
            if self.cfg.preemph is not None:
                # The same float32 operation as the offline front end, with the carried sample in front.
                xx = torch.cat([self._prev, x])
                y = xx[1:] - self.cfg.preemph * xx[:-1]
            self._prev = x[-1:].clone()
            self._buf = torch.cat([self._buf, y])
            self.samples_seen += x.numel()
        return self._emit(final=False)

    def flush(self) -> torch.Tensor:
        """End of signal: return the remaining frames (zeros after the last sample, as offline).

        Returns:
            ``(n_mels, T_last)`` float32 frames. Afterwards :meth:`accept` raises until :meth:`reset`.
        """
        if self._flushed:
            return torch.zeros(self.cfg.n_mels, 0)
        out = self._emit(final=True)
        self._flushed = True
        return out

    def _valid_frames(self, n: int) -> int:
        cfg = self.cfg
        return max(0, (n + 2 * (cfg.n_fft // 2) - cfg.n_fft) // cfg.hop_length)

    def _emit(self, final: bool) -> torch.Tensor:
        cfg = self.cfg
        n_fft, hop, left = cfg.n_fft, cfg.hop_length, cfg.n_fft // 2
        last = self._valid_frames(self.samples_seen)
        if not final:
            # Frame t is complete when its last sample, t * hop - left + n_fft - 1, has arrived.
            avail = self.samples_seen + left - n_fft
            last = min(last, avail // hop + 1 if avail >= 0 else 0)
        count = last - self.frames_emitted
        if count <= 0:
            return torch.zeros(cfg.n_mels, 0)
        end = (last - 1) * hop - left + n_fft - self._buf_start  # buffer samples the frames span
        seg = self._buf[:end]
        if seg.numel() < end:  # flush: the offline zero padding after the last sample
            seg = torch.nn.functional.pad(seg, (0, end - seg.numel()))
        spec = torch.stft(seg, n_fft=n_fft, hop_length=hop, win_length=cfg.win_length, window=self._window,
                          center=False, return_complex=True)  # (n_fft // 2 + 1, count)
        if cfg.mag_power == 2.0:
            power = torch.view_as_real(spec).pow(2).sum(-1)
        else:
            power = spec.abs().pow(cfg.mag_power)
        feats = torch.log(torch.matmul(self._fb, power) + cfg.log_guard)
        self.frames_emitted = last
        drop = last * hop - left - self._buf_start  # keep from the next frame's first sample on
        self._buf = self._buf[drop:].clone()
        self._buf_start += drop
        return feats
