"""The log-mel front end: agreement with NeMo (golden fixture), an independent numpy reference, and invariants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.audio.features import (
    FeatureConfig,
    FeatureConfigError,
    MelFrontend,
    frame_lengths,
    log_mel_spectrogram,
    mel_filterbank,
)

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "mel_golden.npz"


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded batch of noisy tones with garbage (not zeros) in the padding, so leaks would show."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), generator=gen) * 5.0  # padding garbage
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        x[i, :n] = 0.3 * torch.sin(2 * torch.pi * (200 + 150 * i) * t) + 0.05 * torch.randn(n, generator=gen)
    return x, torch.tensor(lengths)


def _valid(feats: torch.Tensor, lens: torch.Tensor, i: int) -> np.ndarray:
    return feats[i, :, : int(lens[i])].numpy()


# ------------------------------------------------------------------------------------------------------------
# NeMo golden fixture
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


def _golden_batch(golden: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = golden["audio_lens"]
    x = torch.zeros(len(lens), int(lens.max()))
    start = 0
    for i, n in enumerate(lens):
        x[i, :n] = torch.from_numpy(golden["audio_pcm16"][start : start + n].astype(np.float32) / 32768.0)
        start += n
    return x, torch.from_numpy(lens)


def test_golden_fixture_provenance(golden: dict[str, np.ndarray]) -> None:
    assert str(golden["nemo_version"]) == "3.0.0"
    assert str(golden["torch_version"]).startswith("2.11.0")
    settings = json.loads(str(golden["settings"]))
    cfg = FeatureConfig()
    assert settings["window_size"] == cfg.window_size and settings["window_stride"] == cfg.window_stride
    assert settings["n_fft"] == cfg.n_fft and settings["features"] == cfg.n_mels
    assert settings["preemph"] == cfg.preemph and settings["log_zero_guard_value"] == cfg.log_guard
    assert settings["dither"] == 0.0 and settings["pad_to"] == 0 and settings["mode"] == "eval"
    assert len(golden["audio_lens"]) == 3 and len(set(golden["audio_lens"].tolist())) == 3  # ragged batch


@pytest.mark.parametrize(("key", "normalize"), [("feats", "per_feature"), ("feats_raw", "none")])
def test_matches_nemo_golden(golden: dict[str, np.ndarray], key: str, normalize: str) -> None:
    x, x_lens = _golden_batch(golden)
    # Dither must not matter in eval mode: keep the default (1e-5) on.
    feats, feat_lens = MelFrontend(FeatureConfig(normalize=normalize)).eval()(x, x_lens)
    assert feat_lens.tolist() == golden["feat_lens"].tolist()
    ours = np.concatenate([_valid(feats, feat_lens, i) for i in range(len(feat_lens))], axis=1)
    assert ours.shape == golden[key].shape
    assert np.abs(ours - golden[key]).max() <= 1e-4


# ------------------------------------------------------------------------------------------------------------
# Independent reference (numpy framing + rfft, torchaudio's filterbank)
# ------------------------------------------------------------------------------------------------------------


def _numpy_log_mel(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Plain log-mel (no normalisation) of one utterance, written without torch.stft."""
    import torchaudio.functional as AF

    x = x.astype(np.float64)
    y = np.concatenate([x[:1], x[1:] - cfg.preemph * x[:-1]])
    half = cfg.n_fft // 2
    padded = np.pad(y, (half, half))
    num = 1 + (padded.shape[0] - cfg.n_fft) // cfg.hop_length
    n = np.arange(cfg.win_length)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (cfg.win_length - 1))  # symmetric
    window = np.zeros(cfg.n_fft)
    lo = (cfg.n_fft - cfg.win_length) // 2
    window[lo : lo + cfg.win_length] = hann
    frames = np.stack([padded[i * cfg.hop_length : i * cfg.hop_length + cfg.n_fft] for i in range(num)])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (T, n_fft//2+1)
    fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, 0.0, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate,
                            norm="slaney", mel_scale="slaney").double().numpy()  # (n_freq, n_mels)
    return np.log(power @ fb + cfg.log_guard).T  # (n_mels, T)


def test_matches_independent_reference() -> None:
    cfg = FeatureConfig(normalize="none")
    x, lens = _batch([7_331])
    feats, feat_lens = log_mel_spectrogram(x, lens, cfg)
    ref = _numpy_log_mel(x[0].numpy(), cfg)[:, : int(feat_lens[0])]
    assert np.abs(_valid(feats, feat_lens, 0) - ref).max() < 2e-4


def test_filterbank_matches_torchaudio_slaney() -> None:
    import torchaudio.functional as AF

    for sr, n_fft, n_mels, fmin, fmax in [(16000, 512, 80, 0.0, None), (8000, 256, 40, 20.0, 3800.0)]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
        ref = AF.melscale_fbanks(n_fft // 2 + 1, fmin, fmax or sr / 2, n_mels, sr, norm="slaney",
                                 mel_scale="slaney").T.double().numpy()
        assert ours.shape == (n_mels, n_fft // 2 + 1)
        assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max() * 10


# ------------------------------------------------------------------------------------------------------------
# Invariants
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["per_feature", "none", "all_features"])
def test_batched_equals_per_utterance(normalize: str) -> None:
    cfg = FeatureConfig(normalize=normalize)
    lengths = [16_000, 9_123, 4_001, 161]
    x, lens = _batch(lengths)
    feats, feat_lens = log_mel_spectrogram(x, lens, cfg)
    for i, n in enumerate(lengths):
        one, one_len = log_mel_spectrogram(x[i : i + 1, :n], lens[i : i + 1], cfg)
        assert int(one_len[0]) == int(feat_lens[i])
        np.testing.assert_allclose(_valid(feats, feat_lens, i), _valid(one, one_len, 0), atol=1e-5, rtol=0)
        assert torch.all(feats[i, :, int(feat_lens[i]) :] == 0)


def test_lengths_formula() -> None:
    lengths = [159, 160, 161, 319, 320, 16_000, 16_159]
    x, lens = _batch(lengths)
    feats, feat_lens = log_mel_spectrogram(x, lens)
    assert feat_lens.dtype == torch.int64
    assert feat_lens.tolist() == [n // 160 for n in lengths]
    assert feats.shape == (len(lengths), 80, max(lengths) // 160 + 1)
    # Odd n_fft: (n + 2 * (n_fft // 2) - n_fft) // hop = (n - 1) // hop.
    odd = FeatureConfig(n_fft=401)
    assert frame_lengths(torch.tensor([160, 161, 320]), odd).tolist() == [0, 1, 1]


def test_per_feature_normalisation_over_valid_frames() -> None:
    x, lens = _batch([12_000, 5_000])
    feats, feat_lens = log_mel_spectrogram(x, lens)
    for i in range(2):
        f = _valid(feats, feat_lens, i).astype(np.float64)
        np.testing.assert_allclose(f.mean(axis=1), 0.0, atol=1e-4)
        np.testing.assert_allclose(f.std(axis=1, ddof=1), 1.0, atol=1e-3)


def test_normalize_none_is_plain_log_mel() -> None:
    x, lens = _batch([8_000])
    raw, raw_lens = log_mel_spectrogram(x, lens, FeatureConfig(normalize="none"))
    norm, _ = log_mel_spectrogram(x, lens, FeatureConfig(normalize="per_feature"))
    r = _valid(raw, raw_lens, 0).astype(np.float64)
    # Un-normalised values are log powers (mostly negative for a 0.3-amplitude tone), not z-scores...
    assert r.mean() < -3.0
    # ...and per_feature normalising them by hand gives the normalised output.
    by_hand = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, ddof=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(_valid(norm, raw_lens, 0), by_hand, atol=1e-4)


def test_silence_hits_the_log_guard_and_short_utterances_stay_finite() -> None:
    x = torch.zeros(3, 4_000)
    x[1, :160] = 0.1  # exactly one valid frame: std undefined -> must not be NaN
    lens = torch.tensor([4_000, 160, 0])
    raw, raw_lens = log_mel_spectrogram(x, lens, FeatureConfig(normalize="none"))
    assert raw_lens.tolist() == [25, 1, 0]
    np.testing.assert_allclose(_valid(raw, raw_lens, 0), np.log(2.0**-24), rtol=1e-6)
    norm, _ = log_mel_spectrogram(x, lens)
    assert torch.isfinite(norm).all()
    assert torch.all(norm[2] == 0)
    empty, empty_lens = log_mel_spectrogram(torch.zeros(0, 4_000), torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0, 80, 26) and empty_lens.shape == (0,)


def test_dither_only_in_training() -> None:
    x, lens = _batch([6_000, 3_000])
    frontend = MelFrontend(FeatureConfig(dither=1e-2))
    frontend.eval()
    a, _ = frontend(x, lens)
    b, _ = frontend(x, lens)
    assert torch.equal(a, b)
    no_dither, _ = log_mel_spectrogram(x, lens, FeatureConfig(dither=0.0))
    assert torch.equal(a, no_dither)
    frontend.train()
    c, c_lens = frontend(x, lens)
    assert (c - a).abs().max() > 1e-3
    assert torch.all(c[1, :, int(c_lens[1]) :] == 0)  # dither does not leak into padding frames
    # Training with a seeded generator is reproducible.
    s1, _ = log_mel_spectrogram(x, lens, FeatureConfig(dither=1e-2), training=True,
                                generator=torch.Generator().manual_seed(3))
    s2, _ = log_mel_spectrogram(x, lens, FeatureConfig(dither=1e-2), training=True,
                                generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)


def test_pad_to() -> None:
    x, lens = _batch([16_000, 7_000])  # 101 STFT frames
    feats, feat_lens = log_mel_spectrogram(x, lens, FeatureConfig(pad_to=16))
    plain, plain_lens = log_mel_spectrogram(x, lens)
    assert plain.shape[2] == 101 and feats.shape[2] == 112
    assert torch.equal(feat_lens, plain_lens)
    assert torch.equal(feats[:, :, :101], plain)
    assert torch.all(feats[:, :, 101:] == 0)
    exact, _ = log_mel_spectrogram(x, lens, FeatureConfig(pad_to=101))
    assert exact.shape[2] == 101


def test_module_dtypes_autocast_and_buffers() -> None:
    x, lens = _batch([5_000, 4_000])
    frontend = MelFrontend().eval()
    f32, l32 = frontend(x, lens)
    f64, l64 = frontend(x.double(), lens)
    assert f32.dtype == f64.dtype == torch.float32
    assert torch.equal(l32, l64)
    assert (f32 - f64).abs().max() < 1e-4
    fn, _ = log_mel_spectrogram(x, lens)
    assert torch.equal(f32, fn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fa, _ = frontend(x, lens)
    assert fa.dtype == torch.float32 and torch.equal(fa, f32)
    # Window and filterbank are buffers (follow .to(device)) but derived, so not saved in checkpoints.
    assert {n for n, _ in frontend.named_buffers()} == {"window", "filterbank"}
    assert frontend.filterbank.shape == (80, 257) and frontend.window.shape == (400,)
    assert frontend.state_dict() == {}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"normalize": "per_utterance"}, "normalize"),
        ({"n_fft": 256}, "n_fft"),
        ({"highfreq": 9000.0}, "highfreq"),
        ({"window_stride": 0.0}, "window_stride"),
        ({"preemph": 1.5}, "preemph"),
        ({"pad_to": -1}, "pad_to"),
        ({"n_mels": 0}, "n_mels"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(FeatureConfigError, match=rf"FeatureConfig\.{field}=") as err:
        FeatureConfig(**kwargs)
    assert isinstance(err.value, ValueError)
    # A config edited after creation is caught when used.
    cfg = FeatureConfig()
    setattr(cfg, next(iter(kwargs)), next(iter(kwargs.values())))
    with pytest.raises(FeatureConfigError, match=field):
        MelFrontend(cfg)


def test_bad_input_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        log_mel_spectrogram(torch.zeros(1000), torch.tensor([1000]))
    with pytest.raises(ValueError, match="x_lens"):
        log_mel_spectrogram(torch.zeros(2, 1000), torch.tensor([1000]))
    with pytest.raises(ValueError, match="padded width"):
        log_mel_spectrogram(torch.zeros(1, 1000), torch.tensor([1001]))


def test_import_is_light() -> None:
    code = "import sys, speechkit.audio.features; print(any(m in sys.modules for m in ('librosa', 'lhotse', 'numba')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.cuda
def test_cuda_matches_cpu() -> None:
    x, lens = _batch([9_000, 4_500])
    frontend = MelFrontend().eval()
    cpu, cpu_lens = frontend(x, lens)
    gpu, gpu_lens = frontend.to("cuda")(x.cuda(), lens.cuda())
    assert gpu.device.type == "cuda" and frontend.filterbank.device.type == "cuda"
    assert torch.equal(gpu_lens.cpu(), cpu_lens)
    assert (gpu.cpu() - cpu).abs().max() < 1e-3
    # A CPU generator still drives dither on CUDA input.
    frontend.train()
    frontend.generator = torch.Generator().manual_seed(0)
    a, _ = frontend(x.cuda(), lens.cuda())
    frontend.generator = torch.Generator().manual_seed(0)
    b, _ = frontend(x.cuda(), lens.cuda())
    assert torch.equal(a, b)


def test_gradients_are_finite_through_silence() -> None:
    x, lens = _batch([3_200, 1_600])
    x = x.clone()
    x[:, :800] = 0.0  # exact zeros: |X| = 0 bins, where a sqrt-based magnitude would give NaN gradients
    x.requires_grad_(True)
    feats, _ = log_mel_spectrogram(x, lens)
    feats.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad[1, 1_600:].abs().max() == 0  # padding receives no gradient
