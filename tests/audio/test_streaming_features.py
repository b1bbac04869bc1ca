"""Streaming log-mel front end: piecewise features equal the offline features for any cut of the signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.audio.features import FeatureConfig, FeatureConfigError, log_mel_spectrogram
from speechkit.audio.streaming import StreamingFeatures


def _offline(wave: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    feats, n = log_mel_spectrogram(wave[None], torch.tensor([wave.numel()]), cfg, training=False)
    return feats[0, :, : int(n)]


def _stream(wave: torch.Tensor, cfg: FeatureConfig, step: int) -> torch.Tensor:
    sf = StreamingFeatures(cfg)
    parts = [sf.accept(wave[i: i + step].numpy()) for i in range(0, wave.numel(), step)]
    parts.append(sf.flush())
    return torch.cat(parts, dim=1)


def _wave(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.1 * torch.randn(n, generator=g)


@pytest.mark.parametrize("step", [1, 159, 160, 1000, 10_000])
def test_equals_offline_for_any_piece_size(step: int) -> None:
    cfg = FeatureConfig(normalize="none")
    wave = _wave(3217)  # not a multiple of the hop
    want = _offline(wave, cfg)
    got = _stream(wave, cfg, step)
    assert got.shape == want.shape == (80, 3217 // 160)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cfg", [
    FeatureConfig(normalize="none", preemph=None, n_fft=400, n_mels=40),
    FeatureConfig(normalize="none", window_size=0.02, window_stride=0.015, mag_power=1.0, n_mels=64),
    FeatureConfig(normalize="none", sample_rate=8000, n_fft=256, dither=1e-5),  # dither: never applied here
])
def test_equals_offline_for_other_settings(cfg: FeatureConfig) -> None:
    wave = _wave(2000, seed=1)
    want = _offline(wave, cfg)
    for step in (37, 333, 2000):
        torch.testing.assert_close(_stream(wave, cfg, step), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 159, 160, 161, 400])
def test_short_signals(n: int) -> None:
    cfg = FeatureConfig(normalize="none")
    wave = _wave(n)
    got = _stream(wave, cfg, 50)
    assert got.shape == (80, n // 160)
    if n >= 160:
        torch.testing.assert_close(got, _offline(wave, cfg), rtol=0, atol=1e-5)


def test_frames_come_out_as_soon_as_complete() -> None:
    # Frame t spans samples [160 t - 256, 160 t + 256): it is out once sample 160 t + 255 has arrived.
    sf = StreamingFeatures(FeatureConfig(normalize="none"))
    wave = _wave(2000).numpy()
    assert sf.accept(wave[:255]).shape[1] == 0
    assert sf.accept(wave[255:256]).shape[1] == 1  # frame 0
    assert sf.accept(wave[256:415]).shape[1] == 0
    assert sf.accept(wave[415:416]).shape[1] == 1  # frame 1
    assert sf.accept(wave[416:2000]).shape[1] == (2000 - 256) // 160 + 1 - 2
    assert sf.frames_emitted + sf.flush().shape[1] == 2000 // 160
    assert sf.samples_seen == 2000


def test_accepts_tensors_and_numpy_alike() -> None:
    cfg = FeatureConfig(normalize="none")
    wave = _wave(1000)
    a, b = StreamingFeatures(cfg), StreamingFeatures(cfg)
    got_a = torch.cat([a.accept(wave.numpy().astype(np.float64)), a.flush()], dim=1)
    got_b = torch.cat([b.accept(wave), b.flush()], dim=1)
    torch.testing.assert_close(got_a, got_b)


def test_reset_starts_a_new_signal() -> None:
    cfg = FeatureConfig(normalize="none")
    sf = StreamingFeatures(cfg)
    sf.accept(_wave(777, seed=5).numpy())
    sf.flush()
    with pytest.raises(ValueError, match="reset"):
        sf.accept(np.zeros(10, dtype=np.float32))
    sf.reset()
    wave = _wave(1500, seed=6)
    got = torch.cat([sf.accept(wave), sf.flush()], dim=1)
    torch.testing.assert_close(got, _offline(wave, cfg), rtol=0, atol=1e-5)


@pytest.mark.parametrize("normalize", ["per_feature", "all_features"])
def test_per_utterance_normalisation_is_refused(normalize: str) -> None:
    with pytest.raises(FeatureConfigError, match="normalize"):
        StreamingFeatures(FeatureConfig(normalize=normalize))


def test_bad_samples() -> None:
    sf = StreamingFeatures()
    with pytest.raises(ValueError, match="1-D float"):
        sf.accept(np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="1-D float"):
        sf.accept(np.zeros(10, dtype=np.int16))
