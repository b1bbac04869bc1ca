"""The FastConformer log-mel front end: padded waveforms -> normalised log-mel features.

Same settings and the same numbers as NeMo's ``AudioToMelSpectrogramPreprocessor`` in eval mode (a golden
fixture in ``tests/fixtures/mel_golden.npz`` checks agreement to 1e-4). Steps, per utterance of ``n`` samples:

1. valid frames = ``(n + 2 * (n_fft // 2) - n_fft) // hop``, i.e. ``n // hop`` for an even ``n_fft``
   (centred STFT; its extra last frame counts as padding);
2. dither ``dither * N(0, 1)`` -- training only, so evaluation is deterministic;
3. pre-emphasis ``y[t] = x[t] - preemph * x[t-1]`` (first sample kept), then zeros beyond the length so padding
   cannot leak into valid frames;
4. centred STFT (zero padded ends, symmetric Hann window of ``win_length`` samples), float32, autocast off;
   ``|X| ** mag_power``;
5. Slaney-normalised, Slaney-scale mel filterbank; ``log(x + log_guard)``;
6. ``per_feature`` normalisation: per utterance and mel bin, mean and unbiased std (+1e-5) over the valid frames
   only (``"all_features"``: one mean/std per utterance; ``"none"``: off, as streaming models need);
7. frames beyond the length set to 0, then optional right padding of time to a multiple of ``pad_to``.

Example:
    >>> import torch
    >>> from speechkit.audio.features import FeatureConfig, MelFrontend
    >>> frontend = MelFrontend(FeatureConfig()).eval()
    >>> feats, feat_lens = frontend(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> tuple(feats.shape), feat_lens.tolist()
    ((2, 80, 101), [100, 50])
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "NORMALIZE_TYPES",
    "FeatureConfig",
    "FeatureConfigError",
    "MelFrontend",
    "frame_lengths",
    "log_mel_spectrogram",
    "mel_filterbank",
]

NORMALIZE_TYPES = ("per_feature", "all_features", "none")

# Added to the standard deviation so silent or one-frame utterances do not divide by zero (NeMo's value).
_STD_EPS = 1e-5


class FeatureConfigError(ValueError):
    """A :class:`FeatureConfig` field has a value the front end cannot use; the message names the field."""


@dataclass
class FeatureConfig:
    """Settings of the log-mel front end (defaults: FastConformer, 80 mels, 25 ms / 10 ms at 16 kHz).

    Attributes:
        sample_rate: input rate in Hz.
        window_size: analysis window in seconds (``win_length = round(window_size * sample_rate)``).
        window_stride: hop in seconds (``hop_length = round(window_stride * sample_rate)``).
        n_fft: FFT size, >= ``win_length``.
        n_mels: number of mel bins.
        preemph: pre-emphasis coefficient; ``None`` turns it off.
        dither: standard deviation of the Gaussian noise added in training; 0 turns it off.
        log_guard: added before the log so silence stays finite.
        normalize: ``"per_feature"``, ``"all_features"`` or ``"none"``.
        pad_to: right-pad the time axis to a multiple of this many frames (0 = no padding).
        lowfreq: lowest mel filter edge in Hz.
        highfreq: highest mel filter edge in Hz (``None`` = ``sample_rate / 2``).
        mag_power: exponent applied to the STFT magnitude (2 = power spectrum).
    """

    sample_rate: int = 16000
    window_size: float = 0.025
    window_stride: float = 0.01
    n_fft: int = 512
    n_mels: int = 80
    preemph: float | None = 0.97
    dither: float = 1e-5
    log_guard: float = 2.0**-24
    normalize: str = "per_feature"
    pad_to: int = 0
    lowfreq: float = 0.0
    highfreq: float | None = None
    mag_power: float = 2.0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def hop_length(self) -> int:
        """Hop between frames in samples."""
        return round(self.window_stride * self.sample_rate)

    @property
    def win_length(self) -> int:
        """Analysis window length in samples."""
        return round(self.window_size * self.sample_rate)

    def validate(self) -> None:
        """Check every field.

        Raises:
            FeatureConfigError: the first bad field, by name, with its value and what was expected.
        """

        def bad(field: str, why: str) -> FeatureConfigError:
            return FeatureConfigError(f"FeatureConfig.{field}={getattr(self, field)!r}: {why}")

        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise bad("sample_rate", "must be a positive integer (Hz)")
        if not self.window_size > 0:
            raise bad("window_size", "must be > 0 seconds")
        if not self.window_stride > 0:
            raise bad("window_stride", "must be > 0 seconds")
        if self.win_length < 1:
            raise bad("window_size", f"gives a window of {self.win_length} samples at {self.sample_rate} Hz")
        if self.hop_length < 1:
            raise bad("window_stride", f"gives a hop of {self.hop_length} samples at {self.sample_rate} Hz")
        if not isinstance(self.n_fft, int) or self.n_fft < self.win_length:
            raise bad("n_fft", f"must be an integer >= the window length ({self.win_length} samples)")
        if not isinstance(self.n_mels, int) or self.n_mels < 1:
            raise bad("n_mels", "must be a positive integer")
        if self.preemph is not None and not 0.0 <= self.preemph < 1.0:
            raise bad("preemph", "must be in [0, 1) or None")
        if not self.dither >= 0:
            raise bad("dither", "must be >= 0")
        if not self.log_guard > 0:
            raise bad("log_guard", "must be > 0")
        if self.normalize not in NORMALIZE_TYPES:
            raise bad("normalize", f"must be one of {', '.join(NORMALIZE_TYPES)}")
        if not isinstance(self.pad_to, int) or self.pad_to < 0:
            raise bad("pad_to", "must be an integer >= 0")
        nyquist = self.sample_rate / 2
        if not 0.0 <= self.lowfreq < nyquist:
            raise bad("lowfreq", f"must be in [0, {nyquist:g}) Hz")
        if self.highfreq is not None and not self.lowfreq < self.highfreq <= nyquist:
            raise bad("highfreq", f"must be in ({self.lowfreq:g}, {nyquist:g}] Hz or None")
        if not self.mag_power > 0:
            raise bad("mag_power", "must be > 0")


# ---------------------------------------------------------------------------------------------------------------
# Filterbank and window
# ---------------------------------------------------------------------------------------------------------------

# Slaney's mel scale (Auditory Toolbox): linear below 1 kHz at 200/3 Hz per mel, logarithmic above,
# with 27 steps per factor 6.4.
_F_SP = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log = _BREAK_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _BREAK_MEL) - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, log, linear)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters on the Slaney scale with Slaney (constant-energy) normalisation.

    Computed in float64: ``n_mels + 2`` points equally spaced in mel between ``fmin`` and ``fmax`` give each
    filter's left edge, peak and right edge; each filter is scaled by ``2 / (right - left)`` (in Hz) so all
    filters have equal area.

    Args:
        sample_rate: rate in Hz.
        n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
        n_mels: number of filters.
        fmin: lowest edge in Hz.
        fmax: highest edge in Hz (``None`` = ``sample_rate / 2``).

    Returns:
        float64 filterbank of shape ``(n_mels, n_fft // 2 + 1)``.
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - left) / (centre - left)
    falling = (right - bin_hz[None, :]) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (right - left))


@functools.lru_cache(maxsize=16)
def _fixed_tensors(sample_rate: int, win_length: int, n_fft: int, n_mels: int, fmin: float,
                   fmax: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    # Symmetric (periodic=False) Hann window: that is what NeMo's preprocessor uses.
    window = torch.hann_window(win_length, periodic=False, dtype=torch.float32)
    fb = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).astype(np.float32))
    return window, fb


# ---------------------------------------------------------------------------------------------------------------
# The front end
# ---------------------------------------------------------------------------------------------------------------


def frame_lengths(x_lens: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Number of valid feature frames for each waveform length.

    Args:
        x_lens: waveform lengths in samples, shape ``(B,)``.
        cfg: front-end settings.

    Returns:
        int64 frame counts ``(x_lens + 2 * (n_fft // 2) - n_fft) // hop_length`` (= ``x_lens // hop`` for an
        even ``n_fft``), shape ``(B,)``, never negative.
    """
    pad = 2 * (cfg.n_fft // 2)
    return torch.clamp(torch.div(x_lens.long() + pad - cfg.n_fft, cfg.hop_length, rounding_mode="floor"), min=0)


def _normalize(x: torch.Tensor, feat_lens: torch.Tensor, valid: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean/variance normalisation over valid frames; ``x`` (B, F, T), ``valid`` (B, T) bool."""
    if kind == "none":
        return x
    m = valid[:, None, :].to(x.dtype)
    if kind == "per_feature":
        count = feat_lens.to(x.dtype)[:, None]  # (B, 1)
        mean = (x * m).sum(dim=2) / count.clamp(min=1)
        var = (((x - mean[..., None]) * m) ** 2).sum(dim=2) / (count - 1).clamp(min=1)
        # One valid frame has no spread: use std 0 (+eps) rather than NaN.
        std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var)) + _STD_EPS
        return (x - mean[..., None]) / std[..., None]
    # all_features: one mean and std per utterance over every valid (bin, frame) cell.
    count = (feat_lens.to(x.dtype) * x.shape[1])[:, None, None]
    mean = (x * m).sum(dim=(1, 2), keepdim=True) / count.clamp(min=1)
    var = (((x - mean) * m) ** 2).sum(dim=(1, 2), keepdim=True) / (count - 1).clamp(min=1)
    std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var)) + _STD_EPS
    return (x - mean) / std


def _log_mel(
    x: torch.Tensor,
    x_lens: torch.Tensor,
    cfg: FeatureConfig,
    window: torch.Tensor,
    fb: torch.Tensor,
    training: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim != 2:
        raise ValueError(f"waveforms must have shape (B, N), got {tuple(x.shape)}")
    if x_lens.ndim != 1 or x_lens.shape[0] != x.shape[0]:
        raise ValueError(f"x_lens must have shape ({x.shape[0]},), got {tuple(x_lens.shape)}")
    if x.shape[0] and int(x_lens.max()) > x.shape[1]:
        raise ValueError(f"x_lens has a length {int(x_lens.max())} > the padded width {x.shape[1]}")
    if x.shape[0] and int(x_lens.min()) < 0:
        raise ValueError("x_lens has a negative length")
    x_lens = x_lens.to(device=x.device, dtype=torch.long)
    feat_lens = frame_lengths(x_lens, cfg)
    if x.shape[0] == 0:  # some FFT backends reject an empty batch
        num = 1 + (x.shape[1] + 2 * (cfg.n_fft // 2) - cfg.n_fft) // cfg.hop_length
        if cfg.pad_to > 0:
            num = -(-num // cfg.pad_to) * cfg.pad_to
        return torch.zeros(0, cfg.n_mels, num, device=x.device), feat_lens
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        if training and cfg.dither > 0:
            draw_on = generator.device if generator is not None else x.device
            x = x + cfg.dither * torch.randn(x.shape, generator=generator, device=draw_on).to(x.device)
        if cfg.preemph is not None:
            x = torch.cat((x[:, :1], x[:, 1:] - cfg.preemph * x[:, :-1]), dim=1)
        in_len = torch.arange(x.shape[1], device=x.device)[None, :] < x_lens[:, None]
        x = x.masked_fill(~in_len, 0.0)
        spec = torch.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                          window=window.to(device=x.device, dtype=torch.float32), center=True,
                          pad_mode="constant", return_complex=True)
        # re^2 + im^2 directly for the usual power spectrum: no sqrt, so no NaN gradient at |X| = 0.
        if cfg.mag_power == 2.0:
            power = torch.view_as_real(spec).pow(2).sum(-1)  # (B, n_fft//2+1, T)
        else:
            power = spec.abs().pow(cfg.mag_power)
        mel = torch.matmul(fb.to(device=x.device, dtype=torch.float32), power)  # (B, n_mels, T)
        feats = torch.log(mel + cfg.log_guard)
        valid = torch.arange(feats.shape[2], device=x.device)[None, :] < feat_lens[:, None]
        feats = _normalize(feats, feat_lens, valid, cfg.normalize)
        feats = feats.masked_fill(~valid[:, None, :], 0.0)
        if cfg.pad_to > 0 and feats.shape[2] % cfg.pad_to:
            feats = torch.nn.functional.pad(feats, (0, cfg.pad_to - feats.shape[2] % cfg.pad_to), value=0.0)
    return feats, feat_lens


def log_mel_spectrogram(
    x: torch.Tensor,
    x_lens: torch.Tensor,
    cfg: FeatureConfig | None = None,
    training: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised log-mel features of a padded batch of waveforms.

    Args:
        x: waveforms, shape ``(B, N)``, any float dtype (computed in float32); samples beyond each length are
            ignored.
        x_lens: valid samples per waveform, shape ``(B,)``.
        cfg: front-end settings (``None`` = ``FeatureConfig()``).
        training: add dither (``cfg.dither * N(0, 1)``); off for deterministic evaluation.
        generator: torch random generator for the dither (any device).

    Returns:
        ``(feats, feat_lens)``: float32 features of shape ``(B, n_mels, T)`` with zeros beyond each length, and
        int64 valid frame counts of shape ``(B,)`` (see :func:`frame_lengths`). ``T = N // hop + 1`` for an even
        ``n_fft``, rounded up to a multiple of ``cfg.pad_to`` if set.

    Raises:
        FeatureConfigError: a bad field in ``cfg``.
        ValueError: ``x`` is not 2-D, or ``x_lens`` has the wrong shape or lengths outside ``[0, N]``.

    Example:
        >>> import torch
        >>> feats, lens = log_mel_spectrogram(torch.randn(1, 4000), torch.tensor([4000]))
        >>> tuple(feats.shape), lens.tolist()
        ((1, 80, 26), [25])
    """
    cfg = FeatureConfig() if cfg is None else cfg
    cfg.validate()
    window, fb = _fixed_tensors(cfg.sample_rate, cfg.win_length, cfg.n_fft, cfg.n_mels, float(cfg.lowfreq),
                                None if cfg.highfreq is None else float(cfg.highfreq))
    return _log_mel(x, x_lens, cfg, window, fb, training, generator)


class MelFrontend(torch.nn.Module):
    """The log-mel front end as a module: dither in training mode only; window and filterbank are buffers.

    Args:
        cfg: front-end settings (validated again here, as a config may have been edited after creation).
        generator: torch random generator for the dither (``None`` = global RNG).

    Raises:
        FeatureConfigError: a bad field in ``cfg``.

    Example:
        >>> import torch
        >>> frontend = MelFrontend().eval()
        >>> feats, lens = frontend(torch.randn(2, 8000), torch.tensor([8000, 4000]))
        >>> tuple(feats.shape), lens.tolist()
        ((2, 80, 51), [50, 25])
    """

    window: torch.Tensor
    filterbank: torch.Tensor

    def __init__(self, cfg: FeatureConfig | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = FeatureConfig() if cfg is None else cfg
        self.cfg.validate()
        self.generator = generator
        window, fb = _fixed_tensors(self.cfg.sample_rate, self.cfg.win_length, self.cfg.n_fft, self.cfg.n_mels,
                                    float(self.cfg.lowfreq),
                                    None if self.cfg.highfreq is None else float(self.cfg.highfreq))
        # Not persistent: they follow from cfg, so checkpoints need not carry them.
        self.register_buffer("window", window.clone(), persistent=False)
        self.register_buffer("filterbank", fb.clone(), persistent=False)

    @property
    def n_mels(self) -> int:
        """Number of feature bins (``F``)."""
        return self.cfg.n_mels

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute features.

        Args:
            x: padded waveforms, shape ``(B, N)``.
            x_lens: valid samples per waveform, shape ``(B,)``.

        Returns:
            ``(feats, feat_lens)``: float32 ``(B, n_mels, T)`` and int64 ``(B,)``; see
            :func:`log_mel_spectrogram`.
        """
        return _log_mel(x, x_lens, self.cfg, self.window, self.filterbank, self.training, self.generator)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"sample_rate={c.sample_rate}, win_length={c.win_length}, hop_length={c.hop_length}, "
                f"n_fft={c.n_fft}, n_mels={c.n_mels}, normalize={c.normalize!r}")
