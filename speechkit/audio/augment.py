"""Data augmentation: waveform perturbations (numpy) and SpecAugment (torch).

Waveform operations take and return mono float32 numpy arrays and draw randomness only from the
``np.random.Generator`` they are given, so a corpus built with a seed is reproducible:

- :func:`speed_perturb` -- Kaldi/Lhotse-style speed change by resampling (tempo and pitch move together);
- :func:`mix_noise` -- add noise at an exact signal-to-noise ratio;
- :func:`colored_noise` -- white, pink, brown or blue noise of unit RMS;
- :func:`make_rir` + :func:`reverberate` -- simulated room impulse responses (pyroomacoustics, optional)
  and convolution aligned to the direct path.

:class:`SpecAugment` masks frequency bands and time spans of log-mel features in training mode only
(FastConformer settings by default: 2 frequency masks of up to 27 bins, 10 time masks of up to 5 % of each
utterance).

Example:
    >>> import numpy as np
    >>> from speechkit.audio.augment import colored_noise, mix_noise
    >>> rng = np.random.default_rng(0)
    >>> speech = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    >>> noisy = mix_noise(speech, colored_noise("pink", 8000, rng), snr_db=10.0, rng=rng)
    >>> noisy.shape
    (16000,)
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from speechkit.audio.features import _BREAK_HZ, _BREAK_MEL, _F_SP, _LOG_STEP, _hz_to_mel, _mel_to_hz

__all__ = [
    "AugmentError",
    "FrequencyWarp",
    "NoiseKind",
    "SpecAugment",
    "colored_noise",
    "make_rir",
    "mix_noise",
    "reverberate",
    "spec_augment",
    "speed_perturb",
    "vtlp_source_hz",
]

NoiseKind = Literal["white", "pink", "brown", "blue"]

# Power-spectrum slope of each noise colour: PSD ~ f ** exponent.
_NOISE_EXPONENTS: dict[str, float] = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0}


class AugmentError(ValueError):
    """An augmentation got input it cannot work with (empty or silent audio, a bad factor or SNR)."""


def _as_mono(samples: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise AugmentError(f"{name} must be a mono waveform of shape (N,), got shape {arr.shape}")
    if arr.size == 0:
        raise AugmentError(f"{name} is empty (0 samples)")
    if not np.all(np.isfinite(arr)):
        raise AugmentError(f"{name} contains NaN or infinite samples")
    return arr


# ---------------------------------------------------------------------------------------------------------------
# Waveform perturbations
# ---------------------------------------------------------------------------------------------------------------


def speed_perturb(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play a waveform ``factor`` times faster by resampling (pitch moves too, as in Kaldi/Lhotse).

    The samples are treated as if recorded at ``sample_rate * factor`` and resampled to ``sample_rate``, which
    is exactly what Lhotse's ``perturb_speed`` does; the result is trimmed or zero-padded by at most a couple of
    samples so its length is ``round(N / factor)``.

    Args:
        samples: mono waveform, shape ``(N,)``.
        sample_rate: rate of ``samples`` in Hz (also the rate of the result).
        factor: speed factor, e.g. 0.9 (slower, longer) or 1.1 (faster, shorter); must be > 0.

    Returns:
        float32 waveform of shape ``(round(N / factor),)``.

    Raises:
        AugmentError: ``factor`` or ``sample_rate`` is not positive, or ``samples`` is empty or not 1-D.
    """
    x = _as_mono(samples, "samples").astype(np.float32, copy=False)
    if not (factor > 0 and math.isfinite(factor)):
        raise AugmentError(f"speed factor must be a positive number, got {factor}")
    if sample_rate <= 0:
        raise AugmentError(f"sample_rate must be positive, got {sample_rate}")
    target = round(x.shape[0] / factor)
    if factor == 1.0:
        return x.copy()
    from speechkit.audio.io import resample

    y = resample(x, round(sample_rate * factor), sample_rate)
    if y.shape[0] >= target:
        return np.ascontiguousarray(y[:target])
    return np.pad(y, (0, target - y.shape[0]))


def mix_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add noise to speech at an exact signal-to-noise ratio.

    The noise is looped (if shorter) and cropped to ``N`` samples starting at a random offset, then scaled so
    that ``10 * log10(mean(speech**2) / mean(scaled_noise**2)) == snr_db``. The speech itself is not changed:
    ``result - speech`` is the scaled noise.

    Args:
        speech: mono waveform, shape ``(N,)``.
        noise: mono noise waveform, shape ``(M,)``; any length >= 1.
        snr_db: wanted signal-to-noise ratio in dB (may be negative).
        rng: source of the random offset into ``noise``.

    Returns:
        float32 waveform ``speech + scaled noise``, shape ``(N,)``.

    Raises:
        AugmentError: empty, non-1-D or non-finite inputs, silent (all-zero) speech, a silent noise segment, or
            a non-finite ``snr_db``.
    """
    s = _as_mono(speech, "speech").astype(np.float64)
    n = _as_mono(noise, "noise").astype(np.float64)
    if not math.isfinite(snr_db):
        raise AugmentError(f"snr_db must be finite, got {snr_db}")
    p_speech = float(np.mean(s**2))
    if p_speech == 0.0:
        raise AugmentError("speech is silent (all zeros): the signal-to-noise ratio is undefined")
    if not np.any(n):
        raise AugmentError("noise is silent (all zeros): it cannot be scaled to any signal-to-noise ratio")
    offset = int(rng.integers(n.shape[0]))
    segment = n[(offset + np.arange(s.shape[0])) % n.shape[0]]
    p_noise = float(np.mean(segment**2))
    if p_noise == 0.0:
        raise AugmentError(
            f"the noise segment at offset {offset} ({s.shape[0]} samples) is silent (all zeros); "
            "trim silence from the noise recording"
        )
    scale = math.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (s + scale * segment).astype(np.float32)


def colored_noise(kind: NoiseKind, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a power spectrum shaped like ``f ** exponent``, scaled to unit RMS.

    Exponents: white 0, pink -1, brown (red) -2, blue +1. White Gaussian noise is shaped in the frequency
    domain (over the next length with only the prime factors 2, 3 and 5, then cropped); the DC bin is zeroed and
    the crop's mean removed, so pink and brown noise do not drift.

    Args:
        kind: ``"white"``, ``"pink"``, ``"brown"`` or ``"blue"``.
        num_samples: length of the result, >= 1.
        rng: source of the noise.

    Returns:
        float32 noise of shape ``(num_samples,)`` with RMS 1.

    Raises:
        AugmentError: unknown ``kind`` or ``num_samples < 1``.
    """
    if kind not in _NOISE_EXPONENTS:
        raise AugmentError(f"unknown noise kind {kind!r}; known kinds: {', '.join(_NOISE_EXPONENTS)}")
    if int(num_samples) < 1:
        raise AugmentError(f"num_samples must be >= 1, got {num_samples}")
    num_samples = int(num_samples)
    white = rng.standard_normal(num_samples)
    exponent = _NOISE_EXPONENTS[kind]
    if exponent == 0.0 or num_samples < 2:
        out = white - white.mean() if num_samples > 1 else white
    else:
        # Shape a slightly longer stretch whose length has only the factors 2, 3 and 5, then keep the first
        # num_samples: an FFT of a length with a large prime factor is 20-40x slower (25 ms against 1 ms for 5 s of
        # 16 kHz audio), and this runs for every noisy training utterance. The crop is a stretch of the same
        # stationary noise.
        from scipy.fft import next_fast_len

        length = next_fast_len(num_samples, real=True)
        white = np.concatenate([white, rng.standard_normal(length - num_samples)])
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(length)
        gain = np.zeros_like(freqs)
        # Amplitude goes with the square root of the power slope.
        gain[1:] = freqs[1:] ** (exponent / 2.0)
        out = np.fft.irfft(spectrum * gain, n=length)[:num_samples]
        out -= out.mean()
    rms = float(np.sqrt(np.mean(out**2)))
    if rms == 0.0:  # only a single zero draw can get here
        out = np.ones(num_samples)
        rms = 1.0
    return (out / rms).astype(np.float32)


def make_rir(
    sample_rate: int,
    rng: np.random.Generator,
    rt60: float | None = None,
    room_dims: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Simulate a room impulse response with pyroomacoustics' image-source ``ShoeBox``.

    What is not given is drawn from ``rng`` in a realistic range: RT60 uniform in [0.2, 0.8] s, room
    3-10 x 3-8 x 2.4-4 m; source and microphone are placed at random at least 0.5 m from every wall and
    at least 1 m apart.

    Args:
        sample_rate: rate of the impulse response in Hz.
        rng: source of the random room, positions and RT60.
        rt60: reverberation time in seconds (time to decay by 60 dB).
        room_dims: room size ``(length, width, height)`` in metres.

    Returns:
        float32 impulse response of shape ``(K,)``, peak-normalised to 1 and causally high-passed at 20 Hz
        (removes the DC the image sources add up to); it starts with a short delay (propagation + filter
        latency), which :func:`reverberate` removes.

    Raises:
        ImportError: pyroomacoustics is not installed.
        AugmentError: a bad ``rt60`` or ``room_dims``, or an RT60 this room cannot produce.
    """
    try:
        import pyroomacoustics as pra
    except ImportError as err:
        raise ImportError("reverberation needs pyroomacoustics: pip install 'speechkit[reverb]'") from err
    if sample_rate <= 0:
        raise AugmentError(f"sample_rate must be positive, got {sample_rate}")
    if rt60 is not None and not (0.0 < rt60 <= 5.0):
        raise AugmentError(f"rt60 must be in (0, 5] seconds, got {rt60}")
    if room_dims is not None:
        if len(room_dims) != 3 or min(room_dims) <= 1.0:
            raise AugmentError(f"room_dims must be three sizes > 1 m (length, width, height), got {room_dims}")
        dims = np.asarray(room_dims, dtype=float)
    else:
        dims = np.array([rng.uniform(3.0, 10.0), rng.uniform(3.0, 8.0), rng.uniform(2.4, 4.0)])
    t60 = float(rt60) if rt60 is not None else float(rng.uniform(0.2, 0.8))
    try:
        absorption, max_order = pra.inverse_sabine(t60, dims)
    except ValueError as err:
        raise AugmentError(
            f"cannot reach rt60={t60:.2f} s in a room of {dims.round(2).tolist()} m: {err}"
        ) from err
    # Small rooms with long RT60 ask for 100+ image orders (seconds per RIR). Capping at 60 keeps every
    # RIR under ~0.1 s to simulate and moves the measured early decay (T20) by at most ~6 %.
    max_order = min(int(max_order), 60)
    room = pra.ShoeBox(dims.tolist(), fs=int(sample_rate), materials=pra.Material(absorption),
                       max_order=max_order)
    margin = np.minimum(0.5, dims / 4.0)
    for _ in range(100):
        src = rng.uniform(margin, dims - margin)
        mic = rng.uniform(margin, dims - margin)
        if np.linalg.norm(src - mic) >= 1.0:
            break
    room.add_source(src.tolist())
    room.add_microphone(mic.tolist())
    # pyroomacoustics removes the RIR's DC with a zero-phase (forward-backward) high-pass, which rings
    # *before* the direct path: reverberated speech would start early. Use a causal high-pass instead.
    hpf_was = pra.constants.get("rir_hpf_enable")
    pra.constants.set("rir_hpf_enable", False)
    try:
        room.compute_rir()
    finally:
        pra.constants.set("rir_hpf_enable", hpf_was)
    from scipy.signal import butter, sosfilt

    sos = butter(2, min(20.0, sample_rate / 4) / (sample_rate / 2), btype="highpass", output="sos")
    rir = sosfilt(sos, np.asarray(room.rir[0][0], dtype=np.float64))
    peak = float(np.max(np.abs(rir)))
    return (rir / peak).astype(np.float32)


def reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve a waveform with a room impulse response without shifting or re-levelling it.

    The output is aligned to the direct path (the RIR's largest tap), cut to the input length, and scaled to
    the input's RMS, so only the reverberation changes, not the timing or the loudness.

    Args:
        samples: mono waveform, shape ``(N,)``.
        rir: impulse response, shape ``(K,)``.

    Returns:
        float32 reverberant waveform of shape ``(N,)`` with the same RMS as ``samples``.

    Raises:
        AugmentError: empty, non-1-D or non-finite inputs, or an all-zero RIR.
    """
    x = _as_mono(samples, "samples").astype(np.float64)
    h = _as_mono(rir, "rir").astype(np.float64)
    if not np.any(h):
        raise AugmentError("rir is all zeros")
    from scipy.signal import fftconvolve

    direct = int(np.argmax(np.abs(h)))
    y = fftconvolve(x, h)[direct : direct + x.shape[0]]
    rms_in = float(np.sqrt(np.mean(x**2)))
    rms_out = float(np.sqrt(np.mean(y**2)))
    if rms_out > 0.0:
        y = y * (rms_in / rms_out)
    return y.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# SpecAugment
# ---------------------------------------------------------------------------------------------------------------


def _check_specaug_args(freq_masks: int, freq_width: int, time_masks: int, time_width: int | float) -> None:  # noqa: PYI041
    for name, value in (("freq_masks", freq_masks), ("freq_width", freq_width), ("time_masks", time_masks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AugmentError(f"SpecAugment {name} must be an int >= 0, got {value!r}")
    if isinstance(time_width, bool) or not isinstance(time_width, (int, float)):
        raise AugmentError(f"SpecAugment time_width must be an int (frames) or a float (fraction), got {time_width!r}")
    if isinstance(time_width, float) and not (0.0 <= time_width <= 1.0):
        raise AugmentError(f"SpecAugment time_width as a fraction must be in [0, 1], got {time_width}")
    if isinstance(time_width, int) and time_width < 0:
        raise AugmentError(f"SpecAugment time_width in frames must be >= 0, got {time_width}")


def _random_spans(
    num: int, max_width: torch.Tensor, extent: torch.Tensor, size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Union of ``num`` random spans per row; a span has width uniform in [0, max_width] and lies in [0, extent).

    Returns a bool mask of shape ``(B, size)``.
    """
    batch = max_width.shape[0]
    device = max_width.device
    if num == 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    max_width = torch.minimum(max_width, extent)
    # Draw where the generator lives, so a CPU generator also drives masks of CUDA features.
    draw_on = generator.device if generator is not None else device
    u_width = torch.rand(batch, num, generator=generator, device=draw_on, dtype=torch.float64).to(device)
    u_start = torch.rand(batch, num, generator=generator, device=draw_on, dtype=torch.float64).to(device)
    width = torch.floor(u_width * (max_width[:, None] + 1)).long()
    width = torch.minimum(width, max_width[:, None])
    start = torch.floor(u_start * (extent[:, None] - width + 1)).long()
    start = torch.minimum(start, extent[:, None] - width)
    pos = torch.arange(size, device=device)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, num, size)
    return inside.any(dim=1)


def spec_augment(
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    freq_masks: int = 2,
    freq_width: int = 27,
    time_masks: int = 10,
    time_width: int | float = 0.05,  # noqa: PYI041 (an int means frames, a float a fraction)
    mask_value: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask random frequency bands and time spans (SpecAugment, Park et al. 2019); always applies.

    Each utterance gets ``freq_masks`` bands of width uniform in ``[0, freq_width]`` bins and ``time_masks``
    spans of width uniform in ``[0, W]`` frames, where ``W = time_width`` for an int, or
    ``max(1, int(time_width * length))`` for a float (adaptive to each utterance's valid length). Time masks
    lie entirely inside the valid frames: padding beyond ``feat_lens`` is never touched.

    Args:
        feats: features, shape ``(B, F, T)``.
        feat_lens: valid frames per utterance, shape ``(B,)``.
        freq_masks: number of frequency masks per utterance.
        freq_width: largest frequency mask width in bins.
        time_masks: number of time masks per utterance.
        time_width: largest time mask width: frames (int) or fraction of the valid length (float).
        mask_value: value written into masked cells.
        generator: torch random generator (any device) for reproducible masks.

    Returns:
        Masked copy of ``feats``, shape ``(B, F, T)``.

    Raises:
        AugmentError: negative counts or widths, a fraction outside [0, 1], or ``feats`` not 3-D.
    """
    _check_specaug_args(freq_masks, freq_width, time_masks, time_width)
    if feats.ndim != 3:
        raise AugmentError(f"feats must have shape (B, F, T), got {tuple(feats.shape)}")
    batch, num_freq, num_time = feats.shape
    lens = feat_lens.to(device=feats.device, dtype=torch.long).clamp(min=0, max=num_time)
    if lens.shape != (batch,):
        raise AugmentError(f"feat_lens must have shape ({batch},), got {tuple(feat_lens.shape)}")
    f_extent = torch.full((batch,), num_freq, dtype=torch.long, device=feats.device)
    f_mask = _random_spans(freq_masks, torch.full_like(f_extent, freq_width), f_extent, num_freq, generator)
    if isinstance(time_width, float):
        t_max = torch.clamp(torch.floor(lens.double() * time_width).long(), min=1)
    else:
        t_max = torch.full_like(lens, time_width)
    t_mask = _random_spans(time_masks, t_max, lens, num_time, generator)
    mask = f_mask[:, :, None] | t_mask[:, None, :]
    # Frequency bands must not leak into padding either.
    valid = torch.arange(num_time, device=feats.device)[None, :] < lens[:, None]
    mask = mask & valid[:, None, :]
    return feats.masked_fill(mask, mask_value)


class SpecAugment(torch.nn.Module):
    """SpecAugment as a module: masks in training mode, identity in eval mode.

    Args:
        freq_masks: number of frequency masks per utterance.
        freq_width: largest frequency mask width in bins.
        time_masks: number of time masks per utterance.
        time_width: largest time mask width: frames (int) or fraction of each utterance's valid length
            (float, e.g. 0.05 = 5 %).
        mask_value: value written into masked cells.
        generator: torch random generator for reproducible masks (``None`` = global RNG).

    Raises:
        AugmentError: negative counts or widths, or a fraction outside [0, 1].

    Example:
        >>> import torch
        >>> aug = SpecAugment(generator=torch.Generator().manual_seed(0)).train()
        >>> aug(torch.randn(2, 80, 300), torch.tensor([300, 200])).shape
        torch.Size([2, 80, 300])
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 10,
        time_width: int | float = 0.05,  # noqa: PYI041 (an int means frames, a float a fraction)
        mask_value: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_specaug_args(freq_masks, freq_width, time_masks, time_width)
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width
        self.mask_value = mask_value
        self.generator = generator

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> torch.Tensor:
        """Mask ``feats`` (training mode) or return it unchanged (eval mode).

        Args:
            feats: features, shape ``(B, F, T)``.
            feat_lens: valid frames per utterance, shape ``(B,)``.

        Returns:
            Features of shape ``(B, F, T)``.
        """
        if not self.training:
            return feats
        return spec_augment(feats, feat_lens, self.freq_masks, self.freq_width, self.time_masks,
                            self.time_width, self.mask_value, self.generator)

    def extra_repr(self) -> str:
        return (f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, time_masks={self.time_masks}, "
                f"time_width={self.time_width}, mask_value={self.mask_value}")


def _hz_to_mel_torch(hz: torch.Tensor) -> torch.Tensor:
    # speechkit.audio.features' Slaney scale on a tensor (the warp runs on the features' device).
    log = _BREAK_MEL + torch.log(torch.clamp(hz, min=_BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return torch.where(hz >= _BREAK_HZ, log, hz / _F_SP)


def vtlp_source_hz(freq_hz: torch.Tensor, alpha: torch.Tensor, nyquist: float,
                   boundary_hz: float = 4800.0) -> torch.Tensor:
    """Vocal tract length perturbation's piecewise-linear frequency map (Jaitly & Hinton, 2013).

    Frequencies below ``boundary_hz * min(alpha, 1) / alpha`` are scaled by ``alpha``; above it a second line
    joins that point to the Nyquist frequency, so the band edges stay where they are.

    Args:
        freq_hz: frequencies in Hz, shape ``(F,)``.
        alpha: warp factor per utterance, shape ``(B,)`` (1 = identity).
        nyquist: half the sample rate in Hz.
        boundary_hz: where the linear part ends for ``alpha = 1``.

    Returns:
        Warped frequencies, shape ``(B, F)``, within ``[0, nyquist]``.
    """
    f = freq_hz[None, :].to(torch.float64)
    a = alpha[:, None].to(torch.float64)
    knee = boundary_hz * torch.clamp(a, max=1.0) / a
    upper = nyquist - (nyquist - boundary_hz * torch.clamp(a, max=1.0)) / (nyquist - knee) * (nyquist - f)
    return torch.where(f <= knee, f * a, upper).clamp(0.0, nyquist)


class FrequencyWarp(torch.nn.Module):
    """VTLP-style frequency warping of log-mel features, in training mode only (identity in eval mode).

    Each utterance draws a warp factor ``alpha`` uniform in ``[1 - max_warp, 1 + max_warp]``. Output mel bin
    ``k`` (centre frequency ``c_k``) takes the value the input has at frequency ``vtlp_source_hz(c_k, alpha)``,
    linearly interpolated between neighbouring bins on the mel axis, so energy at ``f`` (below the knee) moves
    to ``f / alpha``: ``alpha > 1`` lowers the formants, as a longer vocal tract does. The formants move as they
    do between speakers with different vocal tract lengths, which a corpus of a few base voices needs to generalise
    to new ones; unlike speed perturbation, the tempo does not change.

    Args:
        sample_rate: audio rate in Hz.
        n_mels: mel bins ``F`` of the features.
        fmin: lowest mel filter edge in Hz.
        fmax: highest mel filter edge in Hz (``None`` = ``sample_rate / 2``).
        max_warp: largest ``|alpha - 1|``, in ``[0, 0.5)``.
        boundary_hz: end of the linear part of the warp (see :func:`vtlp_source_hz`).
        generator: torch random generator (CPU) for reproducible factors.

    Raises:
        AugmentError: ``max_warp`` outside ``[0, 0.5)`` or ``n_mels < 2``.

    Example:
        >>> import torch
        >>> warp = FrequencyWarp(16000, 80, max_warp=0.1, generator=torch.Generator().manual_seed(0)).train()
        >>> warp(torch.randn(2, 80, 50), torch.tensor([50, 30])).shape
        torch.Size([2, 80, 50])
    """

    def __init__(self, sample_rate: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                 max_warp: float = 0.1, boundary_hz: float = 4800.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not (0.0 <= max_warp < 0.5):
            raise AugmentError(f"FrequencyWarp max_warp must be in [0, 0.5), got {max_warp}")
        if n_mels < 2:
            raise AugmentError(f"FrequencyWarp needs at least 2 mel bins, got {n_mels}")
        self.nyquist = sample_rate / 2.0
        fmax = self.nyquist if fmax is None else float(fmax)
        self.max_warp = float(max_warp)
        self.boundary_hz = float(boundary_hz)
        self.generator = generator
        # The filters' centres: points 1..n_mels of the n_mels + 2 equally spaced mel points of mel_filterbank.
        mel_lo, mel_hi = float(_hz_to_mel(float(fmin))), float(_hz_to_mel(fmax))
        self.mel_lo, self.mel_step = mel_lo, (mel_hi - mel_lo) / (n_mels + 1)
        centres_hz = torch.from_numpy(_mel_to_hz(np.linspace(mel_lo, mel_hi, n_mels + 2)[1:-1]))
        # Not persistent: derived from the feature settings, and old model files have no such entry.
        self.register_buffer("centres_hz", centres_hz, persistent=False)

    def warp(self, feats: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Warp every utterance by its factor (always applies).

        Args:
            feats: features, shape ``(B, F, T)``.
            alpha: warp factors, shape ``(B,)``.

        Returns:
            Warped features, shape ``(B, F, T)``; padding frames that were constant stay constant.
        """
        if feats.ndim != 3 or feats.shape[1] != self.centres_hz.numel():
            raise AugmentError(f"feats must have shape (B, {self.centres_hz.numel()}, T), got {tuple(feats.shape)}")
        n_mels = feats.shape[1]
        src_hz = vtlp_source_hz(self.centres_hz, alpha.to(self.centres_hz.device), self.nyquist, self.boundary_hz)
        pos = (_hz_to_mel_torch(src_hz) - self.mel_lo) / self.mel_step - 1.0  # fractional bin index, (B, F)
        pos = pos.clamp(0.0, n_mels - 1.0)
        lo = pos.floor().long().clamp(max=n_mels - 2)
        w = (pos - lo).to(feats.dtype)[:, :, None]
        idx = lo[:, :, None].expand(-1, -1, feats.shape[2]).to(feats.device)
        below = torch.gather(feats, 1, idx)
        above = torch.gather(feats, 1, idx + 1)
        return below + w.to(feats.device) * (above - below)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> torch.Tensor:
        """Warp ``feats`` with random factors (training mode) or return it unchanged (eval mode).

        Args:
            feats: features, shape ``(B, F, T)``.
            feat_lens: valid frames per utterance, shape ``(B,)`` (unused: warping acts on frequency only).

        Returns:
            Features of shape ``(B, F, T)``.
        """
        if not self.training or self.max_warp == 0.0:
            return feats
        u = torch.rand(feats.shape[0], generator=self.generator, dtype=torch.float64)
        alpha = 1.0 + self.max_warp * (2.0 * u - 1.0)
        return self.warp(feats, alpha)

    def extra_repr(self) -> str:
        return f"max_warp={self.max_warp}, boundary_hz={self.boundary_hz}"
