"""Reading, writing and resampling audio.

Everything in speechkit works on mono float32 waveforms at 16 kHz unless told otherwise. ``load_audio``
reads a file with soundfile (wav, flac, ogg/opus, mp3 with libsndfile >= 1.1) and falls back to ffmpeg or
sox for anything soundfile cannot open, down-mixes to mono and resamples to the requested rate.

Example:
    >>> from speechkit.audio.io import load_audio
    >>> samples = load_audio("manifests/tiny/audio/tiny-000.wav")  # doctest: +SKIP
    >>> samples.dtype, samples.ndim  # doctest: +SKIP
    (dtype('float32'), 1)
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio file is missing, unreadable, empty or not what its manifest says it is."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (no samples are decoded)."""

    sample_rate: int
    num_samples: int
    num_channels: int

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.num_samples / self.sample_rate


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")


def audio_info(path: str | Path) -> AudioInfo:
    """Read an audio file's header: sample rate, number of samples and channels.

    Args:
        path: audio file.

    Returns:
        The file's :class:`AudioInfo`.

    Raises:
        AudioError: the file is missing or no reader understands it.
    """
    path = Path(path)
    _check_exists(path)
    import soundfile as sf

    try:
        info = sf.info(str(path))
        if info.frames > 0 or info.duration == 0:
            return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))
    except (RuntimeError, sf.LibsndfileError):
        pass
    # Formats libsndfile cannot parse (m4a, some mp3): decode once through the fallback decoders.
    samples, sr = _decode_fallback(path, None)
    return AudioInfo(sr, samples.shape[0], samples.shape[1] if samples.ndim == 2 else 1)


def _decode_fallback(path: Path, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """Decode with ffmpeg or sox to float32 (N, C); returns samples and their rate."""
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):
        rate = sample_rate
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
             "stream=sample_rate,channels", "-of", "csv=p=0", str(path)],
            capture_output=True, text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip():
            fields = probe.stdout.strip().splitlines()[0].split(",")
            file_rate, channels = int(fields[0]), int(fields[1])
            rate = rate or file_rate
            out = subprocess.run(
                ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "f32le", "-acodec", "pcm_f32le",
                 "-ar", str(rate), "-ac", str(channels), "-"],
                capture_output=True,
            )
            if out.returncode == 0:
                data = np.frombuffer(out.stdout, dtype=np.float32).reshape(-1, channels)
                return data.copy(), rate
    if shutil.which("sox"):
        out = subprocess.run(["soxi", "-r", str(path)], capture_output=True, text=True)
        chans = subprocess.run(["soxi", "-c", str(path)], capture_output=True, text=True)
        if out.returncode == 0 and chans.returncode == 0:
            rate = sample_rate or int(float(out.stdout.strip()))
            channels = int(chans.stdout.strip())
            dec = subprocess.run(
                ["sox", str(path), "-t", "raw", "-e", "floating-point", "-b", "32", "-r", str(rate), "-"],
                capture_output=True,
            )
            if dec.returncode == 0:
                return np.frombuffer(dec.stdout, dtype=np.float32).reshape(-1, channels).copy(), rate
    raise AudioError(f"cannot decode audio file {path}: soundfile failed and neither ffmpeg nor sox could read it")


def resample(samples: np.ndarray, orig_sample_rate: int, new_sample_rate: int) -> np.ndarray:
    """Band-limited resampling of a mono or (N, C) float waveform.

    Args:
        samples: waveform, shape ``(N,)`` or ``(N, C)``.
        orig_sample_rate: rate of ``samples`` in Hz.
        new_sample_rate: wanted rate in Hz.

    Returns:
        float32 waveform at ``new_sample_rate``, same number of dimensions.
    """
    if orig_sample_rate == new_sample_rate:
        return samples.astype(np.float32, copy=False)
    import torch

    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    with torch.no_grad():
        y = _resampler(int(orig_sample_rate), int(new_sample_rate))(x.T if x.ndim == 2 else x)
    y = y.T if x.ndim == 2 else y
    return y.numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=32)
def _resampler(orig_sample_rate: int, new_sample_rate: int) -> Callable[[Any], Any]:
    """torchaudio's sinc resampler with its kernel computed once per rate pair (speed perturbation resamples every
    training utterance with one of a few factors; building the kernel was a fifth of each call)."""
    import torch
    import torchaudio.transforms as AT

    # The kernel computed in float32, as torchaudio.functional.resample does for float32 audio (the transform's
    # default is float64): the same samples as before the cache, and as StreamingResampler's.
    return AT.Resample(orig_sample_rate, new_sample_rate, dtype=torch.float32)


def load_audio(
    path: str | Path,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
    expected_sample_rate: int | None = None,
    mono: bool = True,
) -> np.ndarray:
    """Load an audio file as float32 in [-1, 1], down-mixed to mono and resampled.

    Args:
        path: audio file (any format soundfile, ffmpeg or sox can read).
        sample_rate: rate of the returned samples.
        offset: seconds to skip from the start of the file.
        duration: seconds to read (``None`` = to the end).
        expected_sample_rate: if given, the file's own rate must equal it (a manifest that declares a rate
            the file does not have is an error, not something to paper over by resampling).
        mono: average the channels; with ``False`` the result is ``(N, C)``.

    Returns:
        Waveform of shape ``(N,)`` (or ``(N, C)`` with ``mono=False``).

    Raises:
        AudioError: missing, unreadable or empty file, a negative ``offset`` or ``duration``, or a sample rate
            that differs from ``expected_sample_rate``.
    """
    path = Path(path)
    _check_exists(path)
    # A negative offset used to fall through to the fallback decoder and silently return the file's tail.
    if offset < 0 or (duration is not None and duration < 0):
        raise AudioError(f"{path}: offset and duration must be >= 0 seconds (offset={offset}, duration={duration})")
    import soundfile as sf

    data: np.ndarray | None = None
    try:
        with sf.SoundFile(str(path)) as f:
            file_rate = int(f.samplerate)
            start = int(round(offset * file_rate))
            frames = -1 if duration is None else int(round(duration * file_rate))
            if start:
                f.seek(min(start, f.frames))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError):
        data = None
    if data is None:
        data, file_rate = _decode_fallback(path, None)
        start = int(round(offset * file_rate))
        stop = None if duration is None else start + int(round(duration * file_rate))
        data = data[start:stop]
    if expected_sample_rate is not None and file_rate != expected_sample_rate:
        raise AudioError(
            f"{path}: file sample rate is {file_rate} Hz but {expected_sample_rate} Hz was declared"
        )
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples (offset={offset}, duration={duration})")
    if mono:
        data = data.mean(axis=1)
    return resample(data, file_rate, sample_rate)


def save_audio(path: str | Path, samples: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Path:
    """Write a waveform as 16-bit PCM (format from the suffix: .wav, .flac, .ogg).

    Args:
        path: output file; parent folders are created.
        samples: float waveform in [-1, 1], shape ``(N,)`` or ``(N, C)``; clipped to that range.
        sample_rate: rate of ``samples``.

    Returns:
        The path written.
    """
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16" if path.suffix.lower() in (".wav", ".flac") else None
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype=subtype)
    return path
