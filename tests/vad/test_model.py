"""The VAD facade and CLI: export -> load without Lightning, frame probabilities, segments, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit import cli
from speechkit.assets import ModelNotFoundError
from speechkit.audio.io import save_audio
from speechkit.config import to_yaml
from speechkit.modules.export import ModelFileError, save_model_file
from speechkit.modules.marblenet import MarbleNet, MarbleNetConfig
from speechkit.vad import load_model
from speechkit.vad.postprocess import PostProcessingOptions, speech_segments


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = MarbleNet(MarbleNetConfig())
    return save_model_file(tmp_path_factory.mktemp("m") / "vad.safetensors", net, to_yaml(net.cfg), None, kind="vad",
                           dtype=torch.float32)


def test_load_and_frame_probs(model_file: Path) -> None:
    vad = load_model(model_file)
    assert vad.frame_shift == pytest.approx(0.02) and vad.sample_rate == 16000
    x = np.random.default_rng(0).standard_normal(16000 + 100).astype(np.float32) * 0.1
    probs = vad.frame_probs(x, 16000)
    assert probs.shape == (51,) and ((probs >= 0) & (probs <= 1)).all()
    # Same weights as the network: a direct forward pass on the audio zero-padded to whole frames agrees.
    net = MarbleNet(MarbleNetConfig())
    net.load_state_dict(vad.network.state_dict())
    padded = torch.from_numpy(np.pad(x, (0, 51 * 320 - x.shape[0])))[None]
    direct, _ = net.eval().speech_probs(padded, torch.tensor([51 * 320]))
    np.testing.assert_allclose(probs, direct[0, :51].numpy(), atol=1e-5)
    assert vad.frame_probs(x[::2], 8000).shape == (51,)  # resampled to 16 kHz first
    assert vad.frame_probs(np.zeros(0, np.float32), 16000).shape == (0,)
    with pytest.raises(ValueError, match="mono"):
        vad.frame_probs(np.zeros((2, 100)), 16000)


def test_segments_and_stream(model_file: Path) -> None:
    vad = load_model(model_file)
    x = np.random.default_rng(1).standard_normal(48000).astype(np.float32) * 0.1
    opts = PostProcessingOptions(onset=0.5, offset=0.5)
    offline = vad.segments(x, 16000, opts)
    assert offline == speech_segments(vad.frame_probs(x, 16000), opts)
    assert list(vad.stream_segments(iter([x]), 16000, opts)) == offline
    chunked = list(vad.stream_segments(iter(np.array_split(x, 9)), 16000, opts))
    assert all(s.end <= 3.0 for s in chunked)


def test_missing_bundled_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An installation without the bundled file (the registry still lists it).
    monkeypatch.setattr("speechkit.assets.ASSETS_DIR", tmp_path)
    with pytest.raises(ModelNotFoundError, match="not installed.*reinstall speechkit to restore the bundled VAD model"):
        load_model(None)
    with pytest.raises(ModelNotFoundError, match="unknown vad model name 'no-such-vad'"):
        load_model("no-such-vad")


def test_wrong_kind(tmp_path: Path) -> None:
    path = save_model_file(tmp_path / "m.safetensors", torch.nn.Linear(2, 2), "{}", None, kind="lid")
    with pytest.raises(ModelFileError, match="vad"):
        load_model(path)


def test_cli(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = save_audio(tmp_path / "a.wav", np.random.default_rng(2).standard_normal(32000).astype(np.float32) * 0.1)
    assert cli.main(["vad", "--model", str(model_file), "--json", "--onset", "0.5", "--offset", "0.5",
                     str(wav)]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["audio"] == str(wav) and out["duration"] == 2.0 and isinstance(out["segments"], list)
    assert cli.main(["vad", "--model", "no-such-vad", str(wav)]) != 0
    assert "unknown vad model name 'no-such-vad'" in capsys.readouterr().err


def test_facade_imports_no_lightning() -> None:
    import subprocess

    code = ("import sys, speechkit.vad.model; "
            "assert 'pytorch_lightning' not in sys.modules and 'lightning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
