"""MarbleNet: parameter counts equal NeMo's (checked with nemo 3.0.0), 20 ms frames, batch == single."""

from __future__ import annotations

import pytest
import torch

from speechkit.audio.features import FeatureConfig
from speechkit.config import to_yaml
from speechkit.modules.marblenet import MarbleNet, MarbleNetConfig, marblenet_blocks


def segment_config() -> MarbleNetConfig:
    return MarbleNetConfig(mode="segment", features=FeatureConfig(n_mels=64, normalize="none"),
                           blocks=marblenet_blocks(stride=1))


def test_frame_vad_parameter_count_matches_nemo() -> None:
    model = MarbleNet(MarbleNetConfig())
    # NeMo 3.0.0 ConvASREncoder built from the marblenet_3x2x64_20ms block table with 80 input channels: 91,120.
    assert sum(p.numel() for p in model.encoder.parameters()) == 91_120
    assert model.num_parameters() == 91_120 + 128 * 2 + 2


def test_segment_parameter_count_matches_nemo() -> None:
    model = MarbleNet(segment_config())
    # NeMo 3.0.0 ConvASREncoder from marblenet_3x2x64 with 64 input channels: 88,896.
    assert sum(p.numel() for p in model.encoder.parameters()) == 88_896


def test_frame_mode_shapes() -> None:
    cfg = MarbleNetConfig()
    assert cfg.frame_shift == pytest.approx(0.02)
    model = MarbleNet(cfg).eval()
    logits, lens = model(torch.randn(2, 32000), torch.tensor([32000, 16000]))
    assert logits.shape[0] == 2 and logits.shape[-1] == 2
    assert lens.tolist() == [100, 50]
    probs, _ = model.speech_probs(torch.randn(1, 3200), torch.tensor([3200]))
    assert probs.shape == (1, 10) or probs.shape[1] >= 10
    assert ((probs >= 0) & (probs <= 1)).all()


def test_segment_mode_shapes() -> None:
    model = MarbleNet(segment_config()).eval()
    logits, _ = model(torch.randn(3, 10080), torch.tensor([10080, 10080, 5000]))
    assert logits.shape == (3, 2)
    probs, _ = model.speech_probs(torch.randn(1, 10080), torch.tensor([10080]))
    assert probs.shape == (1, 1)


def test_batch_equals_single() -> None:
    torch.manual_seed(0)
    model = MarbleNet(MarbleNetConfig()).eval()
    a, b = torch.randn(16000), torch.randn(9600)
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :9600] = a, b
    probs, lens = model.speech_probs(batch, torch.tensor([16000, 9600]))
    pa, _ = model.speech_probs(a[None], torch.tensor([16000]))
    pb, lb = model.speech_probs(b[None], torch.tensor([9600]))
    assert lens.tolist() == [50, 30] and lb.item() == 30
    torch.testing.assert_close(probs[0, :50], pa[0, :50], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(probs[1, :30], pb[0, :30], atol=1e-4, rtol=1e-4)


def test_config_round_trips_through_yaml() -> None:
    from omegaconf import OmegaConf

    cfg = MarbleNetConfig(dropout=0.1)
    loaded = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(MarbleNetConfig), OmegaConf.create(to_yaml(cfg))))
    assert loaded == cfg


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        MarbleNet(MarbleNetConfig(mode="clip"))
