"""The bundled VAD: loads with no arguments, is a small float16 file, carries its tuned post-processing, finds speech."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit import cli
from speechkit.assets import default_model
from speechkit.audio.io import load_audio, save_audio
from speechkit.config import to_yaml
from speechkit.data.manifests import read_manifest
from speechkit.data.vad_mixtures import trim_silence
from speechkit.modules.export import ModelFileError, read_model_file, save_model_file
from speechkit.modules.marblenet import MarbleNet, MarbleNetConfig
from speechkit.vad import PostProcessingOptions, load_model

ROOT = Path(__file__).resolve().parents[2]
TINY_TEST = ROOT / "manifests" / "tiny" / "test.json"
SR = 16000


@pytest.fixture(scope="module")
def utterance_between_silences() -> tuple[np.ndarray, float, float]:
    """A synthetic utterance (manifests/tiny, flite) with 1.5 s of near-silence before and 2 s after.

    Returns:
        ``(samples (N,), speech start, speech end)`` in seconds (the utterance trimmed 40 dB below its peak).
    """
    entry = next(e for e in read_manifest(TINY_TEST, require_text=False) if e.duration >= 2.5)
    speech = trim_silence(load_audio(entry.audio_path(), SR), SR)
    rng = np.random.default_rng(0)
    before, after = int(1.5 * SR), 2 * SR
    x = np.zeros(before + speech.shape[0] + after, dtype=np.float32)
    x[before : before + speech.shape[0]] = speech / np.abs(speech).max() * 0.5
    x += (1e-3 * rng.standard_normal(x.shape[0])).astype(np.float32)  # a recording floor, not digital zeros
    return x, before / SR, (before + speech.shape[0]) / SR


def test_registry_default_and_file() -> None:
    entry = default_model("vad")
    assert entry.name == "marblenet-vad-synth" and entry.available
    assert entry.path.stat().st_size < 1_000_000
    mf = read_model_file(entry.path, expected_kind="vad")
    floats = [t for t in mf.state_dict.values() if t.is_floating_point()]
    assert mf.dtype == "float16" and floats and all(t.dtype == torch.float16 for t in floats)
    # The ASR default is untouched by the VAD entry.
    assert default_model("asr").name == "en-tdt-synth"


def test_loads_with_no_arguments_and_carries_tuned_postprocessing() -> None:
    vad = load_model()
    assert Path(vad.source) == default_model("vad").path
    assert vad.network.num_parameters() < 100_000 and not vad.network.training
    assert all(p.dtype == torch.float32 for p in vad.network.parameters())  # upcast for CPU inference
    pp = vad.postprocess
    assert (pp.onset, pp.offset, pp.pad_onset, pp.pad_offset) == (0.7, 0.6, 0.0, 0.0)
    assert (pp.min_duration_on, pp.min_duration_off, pp.frame_shift) == (0.2, 0.2, 0.02)


def test_finds_the_speech_between_silences(utterance_between_silences: tuple[np.ndarray, float, float]) -> None:
    x, start, end = utterance_between_silences
    vad = load_model()
    probs = vad.frame_probs(x, SR)
    frames = (np.arange(probs.shape[0]) + 0.5) * vad.frame_shift
    inside = (frames > start + 0.1) & (frames < end - 0.1)
    outside = (frames < start - 0.3) | (frames > end + 0.3)
    assert probs[inside].mean() > 0.8 and probs[outside].mean() < 0.1
    segs = vad.segments(x, SR)
    assert segs, "no speech found"
    # One region, close to the utterance's edges (the segments may split at an inner pause, not wander off).
    assert abs(segs[0].start - start) < 0.25 and abs(segs[-1].end - end) < 0.3
    covered = sum(min(s.end, end) - max(s.start, start) for s in segs if s.end > start and s.start < end)
    assert covered > 0.85 * (end - start)
    # The same audio at 8 kHz is resampled and gives the same region.
    segs8 = vad.segments(x[::2], SR // 2)
    assert segs8 and abs(segs8[0].start - segs[0].start) < 0.1


def test_cli_without_model_uses_bundled_settings(utterance_between_silences: tuple[np.ndarray, float, float],
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, start, end = utterance_between_silences
    wav = save_audio(tmp_path / "utt.wav", x, SR)
    assert cli.main(["vad", "--json", str(wav)]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    vad = load_model()
    samples = load_audio(wav, SR)
    expected = [{"start": round(s.start, 3), "end": round(s.end, 3)} for s in vad.segments(samples, SR)]
    assert out["segments"] == expected and expected
    # NeMo's defaults (0.2 s pads) would start speech earlier: the CLI really used the model's settings.
    nemo = vad.segments(samples, SR, PostProcessingOptions())
    assert nemo[0].start < expected[0]["start"] - 0.1
    # A flag overrides one setting and keeps the others.
    assert cli.main(["vad", "--json", "--pad-onset", "0.2", str(wav)]) == 0
    padded = json.loads(capsys.readouterr().out.strip())["segments"]
    assert padded[0]["start"] == pytest.approx(max(0.0, expected[0]["start"] - 0.2), abs=1e-3)
    assert padded[-1]["end"] == expected[-1]["end"]
    # Plain text output: path, start, end per segment.
    assert cli.main(["vad", str(wav)]) == 0
    first = capsys.readouterr().out.splitlines()[0].split("\t")
    assert first[0] == str(wav) and float(first[1]) == pytest.approx(expected[0]["start"], abs=0.01)


def _file_with_postprocess(path: Path, section: object) -> Path:
    torch.manual_seed(0)
    net = MarbleNet(MarbleNetConfig())
    yaml = to_yaml(net.cfg) + "postprocess: " + json.dumps(section) + "\n"
    return save_model_file(path, net, yaml, None, kind="vad", dtype=torch.float32)


def test_postprocess_section_of_any_model_file(tmp_path: Path) -> None:
    path = _file_with_postprocess(tmp_path / "a.safetensors", {"onset": 0.9, "offset": 0.1, "pad_onset": 0.5})
    pp = load_model(path).postprocess
    assert (pp.onset, pp.offset, pp.pad_onset) == (0.9, 0.1, 0.5)
    assert pp.min_duration_on == PostProcessingOptions().min_duration_on  # unset fields: NeMo's defaults
    with pytest.raises(ModelFileError, match="unknown postprocess key.*treshold"):
        load_model(_file_with_postprocess(tmp_path / "b.safetensors", {"treshold": 0.5}))
    with pytest.raises(ModelFileError, match="pad_onset"):
        load_model(_file_with_postprocess(tmp_path / "c.safetensors", {"pad_onset": -1.0}))


def test_bundle_script_writes_fp16_with_tuned_thresholds(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("vad_bundle", ROOT / "recipes" / "vad" / "marblenet" / "bundle.py")
    assert spec is not None and spec.loader is not None
    bundle_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle_mod)
    exp = tmp_path / "exp"
    torch.manual_seed(0)
    net = MarbleNet(MarbleNetConfig())
    save_model_file(exp / "model.safetensors", net, to_yaml(net.cfg), None, kind="vad", dtype=torch.float32)
    (exp / "metrics.json").write_text(json.dumps({"onset": 0.8, "offset": 0.4, "pad": 0.04}))
    (exp / "config.yaml").write_text("postprocess:\n  min_duration_on: 0.3\n  min_duration_off: 0.1\n")
    out = bundle_mod.bundle(exp, tmp_path / "bundled.safetensors")
    assert read_model_file(out).dtype == "float16"
    assert out.stat().st_size < 0.6 * (exp / "model.safetensors").stat().st_size
    vad = load_model(out)
    pp = vad.postprocess
    assert (pp.onset, pp.offset, pp.pad_onset, pp.pad_offset, pp.min_duration_on, pp.min_duration_off) == (
        0.8, 0.4, 0.04, 0.04, 0.3, 0.1)
    x = np.random.default_rng(3).standard_normal(SR).astype(np.float32) * 0.1
    np.testing.assert_allclose(vad.frame_probs(x, SR), load_model(exp / "model.safetensors").frame_probs(x, SR),
                               atol=2e-2)
    (exp / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="onset"):
        bundle_mod.bundle(exp, tmp_path / "again.safetensors")
