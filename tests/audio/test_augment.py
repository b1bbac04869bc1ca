"""Augmentation: exact SNR, speed factors, noise colours, reverberation and SpecAugment's mask bounds."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from speechkit.audio.augment import (
    AugmentError,
    SpecAugment,
    colored_noise,
    make_rir,
    mix_noise,
    reverberate,
    spec_augment,
    speed_perturb,
)

SR = 16000


def _tone(freq: float, num: int, sr: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(num) / sr)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def _peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


# ------------------------------------------------------------------------------------------------------------
# speed_perturb
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1, 0.937])
def test_speed_perturb_length_and_pitch(factor: float) -> None:
    x = _tone(500.0, 16_001)
    y = speed_perturb(x, SR, factor)
    assert y.dtype == np.float32
    assert y.shape == (round(16_001 / factor),)
    # Resampling moves pitch with tempo: 500 Hz played 1.1x faster is 550 Hz.
    assert abs(_peak_hz(y) - 500.0 * factor) < 2.0
    # Loudness is kept (band-limited resampling of an in-band tone).
    assert abs(np.sqrt(np.mean(y[200:-200] ** 2)) - np.sqrt(np.mean(x**2))) < 0.01


def test_speed_perturb_errors() -> None:
    with pytest.raises(AugmentError, match="speed factor"):
        speed_perturb(_tone(100, 1000), SR, 0.0)
    with pytest.raises(AugmentError, match="empty"):
        speed_perturb(np.zeros(0, dtype=np.float32), SR, 1.1)
    with pytest.raises(AugmentError, match="shape"):
        speed_perturb(np.zeros((100, 2), dtype=np.float32), SR, 1.1)


# ------------------------------------------------------------------------------------------------------------
# mix_noise
# ------------------------------------------------------------------------------------------------------------


def _snr(speech: np.ndarray, mixed: np.ndarray) -> float:
    noise = mixed.astype(np.float64) - speech.astype(np.float64)
    return float(10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(noise**2)))


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0, 40.0])
@pytest.mark.parametrize("noise_len", [3_000, 16_000, 50_000])
def test_mix_noise_exact_snr(snr_db: float, noise_len: int) -> None:
    rng = np.random.default_rng(1)
    speech = _tone(300.0, 16_000) + 0.01 * rng.standard_normal(16_000).astype(np.float32)
    noise = colored_noise("pink", noise_len, rng) * 3.0
    mixed = mix_noise(speech, noise, snr_db, np.random.default_rng(2))
    assert mixed.shape == speech.shape and mixed.dtype == np.float32
    assert abs(_snr(speech, mixed) - snr_db) < 1e-3


def test_mix_noise_loops_and_crops_at_a_random_offset() -> None:
    speech = _tone(300.0, 10_000)
    noise = np.random.default_rng(0).standard_normal(3_000).astype(np.float32)
    added = mix_noise(speech, noise, 10.0, np.random.default_rng(5)).astype(np.float64) - speech
    # The added noise is one scaled, circularly shifted copy of `noise`, looped to 10 000 samples.
    offset = int(np.argmax([np.dot(added[:3000], np.roll(noise, -k)) for k in range(3000)]))
    segment = noise[(offset + np.arange(10_000)) % 3000].astype(np.float64)
    scale = np.dot(added, segment) / np.dot(segment, segment)
    expected = scale * segment
    np.testing.assert_allclose(added, expected, atol=1e-5)
    # Same seed, same result; another seed, another offset.
    a = mix_noise(speech, noise, 10.0, np.random.default_rng(5))
    b = mix_noise(speech, noise, 10.0, np.random.default_rng(5))
    c = mix_noise(speech, noise, 10.0, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_mix_noise_errors_name_the_problem() -> None:
    rng = np.random.default_rng(0)
    speech, noise = _tone(300, 1000), np.ones(500, dtype=np.float32)
    with pytest.raises(AugmentError, match="speech is empty"):
        mix_noise(np.zeros(0, dtype=np.float32), noise, 10.0, rng)
    with pytest.raises(AugmentError, match="noise is empty"):
        mix_noise(speech, np.zeros(0, dtype=np.float32), 10.0, rng)
    with pytest.raises(AugmentError, match="speech is silent"):
        mix_noise(np.zeros(1000, dtype=np.float32), noise, 10.0, rng)
    with pytest.raises(AugmentError, match="noise is silent"):
        mix_noise(speech, np.zeros(500, dtype=np.float32), 10.0, rng)
    with pytest.raises(AugmentError, match="noise segment"):
        gappy = np.zeros(100_000, dtype=np.float32)
        gappy[-1] = 1.0  # only the last sample is non-zero: a 1000-sample crop is almost surely silent
        mix_noise(speech, gappy, 10.0, np.random.default_rng(0))
    with pytest.raises(AugmentError, match="snr_db"):
        mix_noise(speech, noise, float("nan"), rng)
    assert issubclass(AugmentError, ValueError)


# ------------------------------------------------------------------------------------------------------------
# colored_noise
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "exponent"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0), ("blue", 1.0)])
@pytest.mark.parametrize("length", [2**16, 65537])  # 65537 is prime: shaped over a longer fast length, then cropped
def test_colored_noise_spectral_slope(kind: str, exponent: float, length: int) -> None:
    from scipy.signal import welch

    x = colored_noise(kind, length, np.random.default_rng(0))
    assert x.shape == (length,) and x.dtype == np.float32
    assert abs(float(x.astype(np.float64).mean())) < 1e-6
    assert abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 1.0) < 1e-5
    f, psd = welch(x, fs=SR, nperseg=4096)
    band = (f > 100) & (f < 6000)
    slope = np.polyfit(np.log(f[band]), np.log(psd[band]), 1)[0]
    assert abs(slope - exponent) < 0.15


def test_colored_noise_determinism_and_errors() -> None:
    a = colored_noise("pink", 1000, np.random.default_rng(3))
    b = colored_noise("pink", 1000, np.random.default_rng(3))
    c = colored_noise("pink", 1000, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(AugmentError, match="unknown noise kind 'violet'"):
        colored_noise("violet", 100, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(AugmentError, match="num_samples"):
        colored_noise("white", 0, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------------------
# make_rir / reverberate
# ------------------------------------------------------------------------------------------------------------


def test_make_rir_without_pyroomacoustics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)  # makes `import pyroomacoustics` fail
    with pytest.raises(ImportError, match=r"pip install 'speechkit\[reverb\]'"):
        make_rir(SR, np.random.default_rng(0))


def _decay_time(rir: np.ndarray, db: float = -20.0) -> float:
    """Seconds from the direct path until the backward-integrated energy falls by ``db``."""
    start = int(np.argmax(np.abs(rir)))
    energy = np.cumsum((rir[start:].astype(np.float64) ** 2)[::-1])[::-1]
    return float(np.argmax(10 * np.log10(energy / energy[0]) < db)) / SR


def test_make_rir_shape_determinism_and_rt60() -> None:
    pytest.importorskip("pyroomacoustics")
    a = make_rir(SR, np.random.default_rng(0))
    b = make_rir(SR, np.random.default_rng(0))
    c = make_rir(SR, np.random.default_rng(1))
    assert a.ndim == 1 and a.dtype == np.float32 and np.abs(a).max() == 1.0
    assert np.array_equal(a, b) and not np.array_equal(a[: len(c)], c[: len(a)])
    dry = make_rir(SR, np.random.default_rng(2), rt60=0.2, room_dims=(6.0, 5.0, 3.0))
    wet = make_rir(SR, np.random.default_rng(2), rt60=0.7, room_dims=(6.0, 5.0, 3.0))
    # T20 (time to -20 dB) is about a third of RT60.
    assert 0.2 / 3 * 0.5 < _decay_time(dry) < 0.2 / 3 * 1.6
    assert 0.7 / 3 * 0.5 < _decay_time(wet) < 0.7 / 3 * 1.6
    with pytest.raises(AugmentError, match="room_dims"):
        make_rir(SR, np.random.default_rng(0), room_dims=(0.5, 2.0, 2.0))
    with pytest.raises(AugmentError, match="rt60"):
        make_rir(SR, np.random.default_rng(0), rt60=-1.0)


def test_reverberate_keeps_length_rms_and_timing() -> None:
    pytest.importorskip("pyroomacoustics")
    rir = make_rir(SR, np.random.default_rng(0), rt60=0.5)
    rng = np.random.default_rng(1)
    speech = np.zeros(16_000, dtype=np.float32)
    speech[4000:12000] = _tone(400.0, 8000) * (1 + rng.standard_normal(8000).astype(np.float32) * 0.1)
    wet = reverberate(speech, rir)
    assert wet.shape == speech.shape and wet.dtype == np.float32
    assert abs(_rms(wet) - _rms(speech)) < 1e-4 * _rms(speech)
    assert np.corrcoef(wet, speech)[0, 1] < 0.98  # the signal changed...
    assert np.abs(wet[:4000]).max() < 1e-3  # ...but nothing arrives before the speech starts,
    assert np.abs(wet[12_000:13_000]).max() > 0.01  # and the reverberant tail rings on after it ends.
    # Aligned to the direct path: an impulse stays where it was.
    click = np.zeros(8000, dtype=np.float32)
    click[3000] = 1.0
    assert int(np.argmax(np.abs(reverberate(click, rir)))) == 3000


def test_reverberate_errors() -> None:
    with pytest.raises(AugmentError, match="rir is all zeros"):
        reverberate(_tone(100, 1000), np.zeros(10, dtype=np.float32))
    with pytest.raises(AugmentError, match="samples is empty"):
        reverberate(np.zeros(0, dtype=np.float32), np.ones(10, dtype=np.float32))


# ------------------------------------------------------------------------------------------------------------
# SpecAugment
# ------------------------------------------------------------------------------------------------------------


def _runs(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], flags, [False]]).astype(int)
    d = np.diff(padded)
    return (np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).tolist()


def test_eval_mode_is_identity() -> None:
    feats = torch.randn(2, 80, 100)
    aug = SpecAugment().eval()
    assert aug(feats, torch.tensor([100, 60])) is feats


def test_freq_masks_bounds() -> None:
    feats = torch.ones(64, 80, 50)
    lens = torch.full((64,), 50)
    out = spec_augment(feats, lens, freq_masks=2, freq_width=27, time_masks=0, mask_value=-1.0,
                       generator=torch.Generator().manual_seed(0))
    masked = out == -1.0
    # Frequency masks cover whole rows of the valid frames.
    assert torch.equal(masked.all(dim=2), masked.any(dim=2))
    rows = masked.all(dim=2).numpy()  # (B, F)
    widths = []
    for r in rows:
        runs = _runs(r)
        assert len(runs) <= 2 and sum(runs) <= 2 * 27
        widths.extend(runs)
    assert max(widths) > 20  # widths do range up towards the bound
    assert (out[~masked] == 1.0).all()


@pytest.mark.parametrize(("time_width", "length", "bound"), [(0.05, 1000, 50), (0.05, 200, 10), (0.05, 10, 1),
                                                             (7, 300, 7)])
def test_time_masks_adaptive_and_fixed_width(time_width: float, length: int, bound: int) -> None:
    batch = 200
    feats = torch.ones(batch, 4, 1000)
    lens = torch.full((batch,), length)
    out = spec_augment(feats, lens, freq_masks=0, time_masks=1, time_width=time_width, mask_value=0.0,
                       generator=torch.Generator().manual_seed(1))
    cols = (out == 0).all(dim=1).numpy()  # (B, T): a time mask zeroes every bin
    widths = [sum(_runs(c)) for c in cols]
    assert max(widths) == bound  # reaches, never exceeds, the bound: floor(fraction * valid length)
    assert not cols[:, length:].any()


def test_masks_never_touch_padding_and_count_is_bounded() -> None:
    lens = torch.tensor([300, 120, 37, 0])
    feats = torch.ones(4, 80, 300)
    for i, n in enumerate(lens):
        feats[i, :, n:] = 7.0  # padding sentinel
    aug = SpecAugment(freq_masks=2, freq_width=27, time_masks=10, time_width=0.05, mask_value=0.0,
                      generator=torch.Generator().manual_seed(2)).train()
    out = aug(feats, lens)
    for i, n in enumerate(lens.tolist()):
        assert (out[i, :, n:] == 7.0).all()
        time_cols = (out[i, :, :n] == 0).all(dim=0).numpy()
        assert len(_runs(time_cols)) <= 10
        assert time_cols.sum() <= 10 * max(1, int(0.05 * n))
    assert (out[0] == 0).any()


def test_spec_augment_determinism_and_no_op() -> None:
    feats, lens = torch.randn(3, 80, 200), torch.tensor([200, 150, 90])
    a = spec_augment(feats, lens, generator=torch.Generator().manual_seed(5))
    b = spec_augment(feats, lens, generator=torch.Generator().manual_seed(5))
    c = spec_augment(feats, lens, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, feats)  # input not modified in place, output masked
    assert torch.equal(spec_augment(feats, lens, freq_masks=0, time_masks=0), feats)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"freq_masks": -1}, "freq_masks"),
        ({"time_width": 1.5}, "time_width"),
        ({"time_width": -3}, "time_width"),
        ({"freq_width": True}, "freq_width"),
        ({"time_width": "5%"}, "time_width"),
    ],
)
def test_spec_augment_bad_args(kwargs: dict, match: str) -> None:
    with pytest.raises(AugmentError, match=match):
        SpecAugment(**kwargs)


@pytest.mark.cuda
def test_spec_augment_cuda_with_cpu_generator() -> None:
    feats, lens = torch.randn(2, 80, 100), torch.tensor([100, 50])
    cpu = spec_augment(feats, lens, generator=torch.Generator().manual_seed(0))
    gpu = spec_augment(feats.cuda(), lens.cuda(), generator=torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)


# -- frequency warping (VTLP) -----------------------------------------------------------------------------------


def _tone_peak_bin(freq: float, alpha: float | None = None) -> int:
    from speechkit.audio.augment import FrequencyWarp
    from speechkit.audio.features import FeatureConfig, MelFrontend

    front = MelFrontend(FeatureConfig(dither=0.0, normalize="none")).eval()
    feats, _ = front(torch.from_numpy(_tone(freq, SR))[None], torch.tensor([SR]))
    if alpha is not None:
        feats = FrequencyWarp(SR, 80).warp(feats, torch.tensor([alpha], dtype=torch.float64))
    return int(feats[0, :, 50].argmax())


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_frequency_warp_moves_a_tone_to_f_over_alpha(alpha: float) -> None:
    # Warping the features of a 1 kHz tone must look like the features of a tone at 1 kHz / alpha.
    assert _tone_peak_bin(1000.0, alpha) == _tone_peak_bin(1000.0 / alpha)
    assert _tone_peak_bin(1000.0, alpha) != _tone_peak_bin(1000.0)


def test_frequency_warp_identity_eval_mode_and_determinism() -> None:
    from speechkit.audio.augment import FrequencyWarp, vtlp_source_hz

    feats = torch.randn(3, 80, 20)
    lens = torch.tensor([20, 12, 5])
    warp = FrequencyWarp(SR, 80, max_warp=0.1)
    assert torch.allclose(warp.warp(feats, torch.ones(3, dtype=torch.float64)), feats, atol=1e-5)
    assert warp.eval()(feats, lens) is feats
    a = FrequencyWarp(SR, 80, max_warp=0.1, generator=torch.Generator().manual_seed(3)).train()(feats, lens)
    b = FrequencyWarp(SR, 80, max_warp=0.1, generator=torch.Generator().manual_seed(3)).train()(feats, lens)
    assert torch.equal(a, b) and not torch.allclose(a, feats)
    # The band edges stay put and the map is monotonic.
    hz = torch.linspace(0, 8000, 101)
    out = vtlp_source_hz(hz, torch.tensor([0.85, 1.15]), 8000.0)
    assert torch.allclose(out[:, [0, -1]], torch.tensor([[0.0, 8000.0], [0.0, 8000.0]], dtype=torch.float64))
    assert bool((out.diff(dim=1) > 0).all())
    with pytest.raises(AugmentError, match="max_warp"):
        FrequencyWarp(SR, 80, max_warp=0.5)
