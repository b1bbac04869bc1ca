"""Audio I/O: round trips, down-mixing, resampling, slicing, the ffmpeg fallback and the error messages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.audio.io import AudioError, AudioInfo, audio_info, load_audio, save_audio

SR = 16000


def _tone(freq: float, num: int, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(num) / sr)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    x = _tone(440.0, 12_345) + np.random.default_rng(0).uniform(-0.1, 0.1, 12_345).astype(np.float32)
    path = save_audio(tmp_path / "sub" / f"a{suffix}", x, SR)
    assert path.is_file()
    y = load_audio(path)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() <= 1.0 / 32768 + 1e-7  # only 16-bit quantisation
    assert audio_info(path) == AudioInfo(SR, 12_345, 1)


def test_save_clips_out_of_range(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], dtype=np.float32), SR)
    y = load_audio(path)
    assert y[0] == pytest.approx(32767 / 32768) and y[1] == -1.0 and y[2] == pytest.approx(0.5, abs=1e-4)


def test_stereo_downmix(tmp_path: Path) -> None:
    left = _tone(300.0, 8000)
    stereo = np.stack([left, -0.5 * left], axis=1)
    sf.write(tmp_path / "st.wav", stereo, SR, subtype="FLOAT")
    mono = load_audio(tmp_path / "st.wav")
    assert mono.shape == (8000,)
    np.testing.assert_allclose(mono, 0.25 * left, atol=1e-6)
    both = load_audio(tmp_path / "st.wav", mono=False)
    assert both.shape == (8000, 2)
    np.testing.assert_allclose(both, stereo, atol=1e-6)
    assert audio_info(tmp_path / "st.wav").num_channels == 2


def test_resample_22050_to_16000(tmp_path: Path) -> None:
    n = 22_050 * 2 + 7
    sf.write(tmp_path / "hi.wav", _tone(1000.0, n, sr=22_050), 22_050, subtype="FLOAT")
    y = load_audio(tmp_path / "hi.wav", sample_rate=SR)
    assert abs(len(y) - n * SR / 22_050) <= 1
    assert abs(_peak_hz(y, SR) - 1000.0) < 1.0
    # Amplitude survives (the tone is far below both Nyquist frequencies).
    assert abs(np.abs(y[1000:-1000]).max() - 0.5) < 0.01
    # Stereo resampling keeps channels apart.
    sf.write(tmp_path / "hi2.wav", np.stack([_tone(1000.0, n, 22_050), np.zeros(n, np.float32)], 1), 22_050)
    two = load_audio(tmp_path / "hi2.wav", sample_rate=SR, mono=False)
    assert two.shape[1] == 2 and abs(two.shape[0] - n * SR / 22_050) <= 1 and np.abs(two[:, 1]).max() < 1e-6


def test_resample_is_torchaudio_sinc_resampling_with_a_cached_kernel() -> None:
    import torch
    import torchaudio.functional as AF

    from speechkit.audio.io import _resampler, resample

    x = np.random.default_rng(0).standard_normal(48_011).astype(np.float32)
    for orig, new in ((16_000, 14_400), (16_000, 17_600), (22_050, 16_000)):
        expected = AF.resample(torch.from_numpy(x), orig, new).numpy()
        np.testing.assert_array_equal(resample(x, orig, new), expected)
        short = AF.resample(torch.from_numpy(x[:1000]), orig, new).numpy()  # another length, the same kernel
        np.testing.assert_array_equal(resample(x[:1000], orig, new), short)
    assert _resampler(16_000, 14_400) is _resampler(16_000, 14_400)


def test_offset_and_duration(tmp_path: Path) -> None:
    ramp = (np.arange(SR, dtype=np.float32) / SR) - 0.5
    sf.write(tmp_path / "ramp.wav", ramp, SR, subtype="FLOAT")
    y = load_audio(tmp_path / "ramp.wav", offset=0.5, duration=0.25)
    np.testing.assert_array_equal(y, ramp[8000:12000])
    tail = load_audio(tmp_path / "ramp.wav", offset=0.75)
    np.testing.assert_array_equal(tail, ramp[12000:])
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(tmp_path / "ramp.wav", offset=2.0)


def test_expected_sample_rate_mismatch_names_the_file(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "eight.wav", _tone(200.0, 800, sr=8000), 8000)
    assert load_audio(path, expected_sample_rate=8000).shape == (1600,)  # resampled to 16 kHz
    with pytest.raises(AudioError, match=r"eight\.wav.*8000 Hz.*16000 Hz"):
        load_audio(path, expected_sample_rate=16000)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"not found: .*nope\.wav"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="not found"):
        audio_info(tmp_path / "nope.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioError, match=r"empty\.wav: no audio samples"):
        load_audio(tmp_path / "empty.wav")
    assert audio_info(tmp_path / "empty.wav").num_samples == 0
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(AudioError, match=r"zero\.wav"):
        load_audio(tmp_path / "zero.wav")
    (tmp_path / "junk.flac").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"cannot decode audio file .*junk\.flac"):
        load_audio(tmp_path / "junk.flac")
    assert issubclass(AudioError, ValueError)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_ffmpeg_fallback_m4a(tmp_path: Path) -> None:
    src = save_audio(tmp_path / "src.wav", _tone(700.0, 2 * 22_050, sr=22_050), 22_050)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(src), "-c:a", "aac", "-b:a", "96k", str(m4a)],
                   check=True)
    with pytest.raises(sf.LibsndfileError):  # the point: soundfile cannot read it
        sf.info(str(m4a))
    info = audio_info(m4a)
    assert info.sample_rate == 22_050 and info.num_channels == 1
    assert abs(info.duration - 2.0) < 0.1  # AAC frames pad the end
    y = load_audio(m4a, sample_rate=SR)
    assert y.dtype == np.float32 and abs(len(y) / SR - 2.0) < 0.1
    assert abs(_peak_hz(y, SR) - 700.0) < 2.0
    part = load_audio(m4a, sample_rate=SR, offset=0.5, duration=0.5)
    assert len(part) == SR // 2
    with pytest.raises(AudioError, match=r"clip\.m4a.*22050 Hz"):
        load_audio(m4a, expected_sample_rate=SR)


def test_negative_offset_or_duration_is_an_error(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "r.wav", _tone(200.0, SR), SR)
    with pytest.raises(AudioError, match=r"r\.wav: offset and duration must be >= 0"):
        load_audio(path, offset=-0.5)
    with pytest.raises(AudioError, match="offset and duration"):
        load_audio(path, duration=-0.25)
