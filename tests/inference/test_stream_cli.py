"""`speechkit stream`: from a wav file (16 kHz and 8 kHz, JSON and text lines) and from raw s16le PCM on stdin;
the final text equals the same model's offline decoding; simulated real time; errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit import cli
from speechkit.audio.io import load_audio
from speechkit.inference import stream_cli
from speechkit.inference.stream_cli import StreamCommand, run_stream
from speechkit.inference.streaming import Recognizer, StreamingOptions

TINY = Path(__file__).resolve().parents[2] / "manifests" / "tiny"


def make_streaming_model(out: Path) -> Path:
    """A tiny random-weight cache-aware FastConformer TDT model file (chunks of 2 encoder frames)."""
    from speechkit.audio.features import FeatureConfig
    from speechkit.config import to_yaml
    from speechkit.modules.asr import ASRModelConfig, TransducerASR
    from speechkit.modules.export import save_model_file
    from speechkit.modules.fastconformer import FastConformerConfig
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    tok = train_tokenizer_from_manifests([TINY / "train.json"], out / "tok", TokenizerTrainConfig(vocab_size=40))
    torch.manual_seed(0)
    encoder = FastConformerConfig.preset(
        "tiny", causal_downsampling=True, conv_context="causal", conv_norm="layer_norm", subsampling_channels=32,
        att_context_style="chunked_limited", att_context_size=(4, 1))
    cfg = ASRModelConfig(features=FeatureConfig(normalize="none", dither=0.0), encoder=encoder, model_type="tdt",
                         vocab_size=tok.vocab_size, pred_hidden=32, joint_hidden=32)
    net = TransducerASR.from_config(cfg).eval()
    with torch.no_grad():
        net.joint.out.weight.mul_(4.0)
    return save_model_file(out / "model.safetensors", net, to_yaml(cfg), tok, dtype=torch.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_streaming_model(tmp_path_factory.mktemp("stream_cli"))


@pytest.fixture(scope="module")
def recognizer(model_path) -> Recognizer:
    return Recognizer.from_pretrained(model_path, StreamingOptions(endpointing=False))


@pytest.fixture(scope="module")
def wav16() -> Path:
    return sorted((TINY / "audio" / "test").glob("*.wav"))[1]


def test_file_json_lines(model_path, recognizer, wav16, capsys):
    assert cli.main(["stream", "--model", str(model_path), "--json", "--no-endpointing", "--chunk-ms", "120",
                     str(wav16)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    offline = recognizer.transcribe(load_audio(wav16, sample_rate=16000), 16000)
    assert offline.token_ids, "the test model should emit tokens"
    finals = [x for x in lines if x["type"] == "final"]
    partials = [x for x in lines if x["type"] == "partial"]
    assert len(finals) == 1 and lines[-1] is finals[0]
    final = finals[0]
    assert set(final) == {"type", "segment", "text", "start", "end", "tokens"}
    assert final["text"] == offline.text and final["segment"] == 0
    assert [t["token"] for t in final["tokens"]] == offline.tokens
    assert final["start"] == 0.0 and final["end"] == pytest.approx(offline.end, abs=1e-3)
    # Partials: printed only when the text changed, each a prefix of the final token sequence, time moving on.
    assert partials
    texts = [p["text"] for p in partials]
    assert all(a != b for a, b in zip(texts, texts[1:], strict=False))
    for p in partials:
        pieces = [t["token"] for t in p["tokens"]]
        assert offline.tokens[: len(pieces)] == pieces
    assert [p["end"] for p in partials] == sorted(p["end"] for p in partials)
    assert "1 segment(s)" in captured.err


def test_8khz_file_is_resampled_in_the_stream(model_path, recognizer, wav16, tmp_path, capsys):
    x8 = load_audio(wav16, sample_rate=8000)
    wav8 = tmp_path / "a8k.wav"
    sf.write(wav8, x8, 8000, subtype="FLOAT")  # float: the file holds exactly x8
    assert cli.main(["stream", "--model", str(model_path), "--no-endpointing", str(wav8)]) == 0
    out = capsys.readouterr().out.splitlines()
    offline = recognizer.transcribe(x8, 8000)
    assert out[-1].endswith(f"final: {offline.text}") and out[-1].startswith("[0.00-")
    assert all(" partial: " in line for line in out[:-1])


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_stdin_pcm(model_path, recognizer, wav16, rate, monkeypatch, capsys):
    x = load_audio(wav16, sample_rate=rate)
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    monkeypatch.setattr(sys, "stdin", _Stdin(pcm.tobytes() + b"\x07"))  # plus one stray byte
    assert cli.main(["stream", "-", "--model", str(model_path), "--sample-rate", str(rate), "--no-endpointing",
                     "--json"]) == 0
    captured = capsys.readouterr()
    final = json.loads(captured.out.splitlines()[-1])
    assert final["type"] == "final"
    assert final["text"] == recognizer.transcribe(pcm.astype(np.float32) / 32768, rate).text
    assert "1 trailing byte(s) of stdin dropped" in captured.err


def test_realtime_paces_the_file(model_path, wav16, monkeypatch):
    import time

    sleeps: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(stream_cli.time, "sleep", sleep)
    seconds = sf.info(str(wav16)).duration
    summary = run_stream(StreamCommand(str(wav16), model=str(model_path), realtime=True, chunk_ms=200),
                         stdout=io.StringIO())
    assert summary.audio_seconds == pytest.approx(seconds, abs=1e-3)
    # No chunk is fed before the wall clock reaches its end, so the run lasts at least the audio's duration.
    assert sleeps and max(sleeps) <= 0.2 + 1e-6
    assert summary.wall_seconds >= seconds - 1e-3
    sleeps.clear()
    run_stream(StreamCommand(str(wav16), model=str(model_path), realtime=False), stdout=io.StringIO())
    assert sleeps == []


def test_errors(model_path, wav16, tmp_path, capsys):
    assert cli.main(["stream", "--model", str(model_path), str(tmp_path / "missing.wav")]) == 2
    assert "audio file not found" in capsys.readouterr().err
    assert cli.main(["stream", "--model", str(model_path), "--chunk-ms", "0", str(wav16)]) == 2
    assert "--chunk-ms must be > 0" in capsys.readouterr().err
    assert cli.main(["stream", str(wav16), "--model", str(model_path), "--att-context-size", "4", "2"]) == 2
    assert "trained with" in capsys.readouterr().err


def test_without_model_streams_with_the_bundled_model(capsys):
    """No --model: the bundled streaming model; its final line is the offline transcription of the same model."""
    clip = Path(__file__).resolve().parents[2] / "speechkit" / "assets" / "clips" / "synth_2_espeak-ng_en-029.flac"
    assert cli.main(["stream", "--json", "--no-endpointing", str(clip)]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    offline = Recognizer.from_pretrained(options=StreamingOptions(endpointing=False)).transcribe(
        load_audio(clip, sample_rate=16000), 16000)
    assert final["type"] == "final" and final["text"] == offline.text
    assert "genus of fungi" in final["text"]
