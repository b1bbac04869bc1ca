"""speechkit.asr.load_model(...).transcribe(...): equal to the network called directly, order, batching, timestamps,
errors, the model registry, and the import boundary (no Lightning, no lhotse)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.asr import ModelNotFoundError, TranscribeOptions, Transcript, load_model
from speechkit.assets import REGISTRY_FILE, default_model, list_models, resolve_model_file
from speechkit.audio.io import AudioError, load_audio, resample
from speechkit.modules.asr import TransducerASR
from speechkit.modules.export import ModelFileError


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model.path)


@pytest.fixture(scope="module")
def network(tiny_model):
    net, tok, _ = TransducerASR.from_model_file(tiny_model.path)
    return net, tok


def _direct(net: TransducerASR, samples: np.ndarray) -> list[int]:
    """Token ids of one waveform (at the model's rate) decoded by the network itself."""
    x = torch.from_numpy(samples)[None]
    return net.decode(x, torch.tensor([x.shape[1]]))[0].tokens


def test_files_give_what_the_network_gives(model, network, tiny_audio):
    net, tok = network
    out = model.transcribe(tiny_audio)
    assert [t.source for t in out] == [str(f) for f in tiny_audio]
    for t, f in zip(out, tiny_audio, strict=True):
        samples = load_audio(f, sample_rate=16000)
        ids = _direct(net, samples)
        assert t.token_ids == ids
        assert t.text == tok.decode(ids)
        assert t.tokens == [tok.id_to_piece(i) for i in ids]
        assert t.audio_seconds == pytest.approx(len(samples) / 16000)
    assert any(t.token_ids for t in out), "the test model should emit tokens"


def test_arrays_are_resampled_to_the_model_rate(model, network, tiny_audio):
    net, _ = network
    arrays = [load_audio(f, sample_rate=8000) for f in tiny_audio]
    out = model.transcribe(arrays, sample_rate=8000)
    for t, a in zip(out, arrays, strict=True):
        assert t.source is None
        assert t.token_ids == _direct(net, resample(a, 8000, 16000))
        assert t.audio_seconds == pytest.approx(len(a) / 8000, abs=1e-3)
    # A torch tensor is an array too.
    t = model.transcribe(torch.from_numpy(arrays[0]), sample_rate=8000)
    assert t[0].token_ids == out[0].token_ids


def test_batching_keeps_input_order_and_equals_one_by_one(model, tiny_audio):
    arrays = [load_audio(f, sample_rate=16000) for f in tiny_audio]
    # Lengths in no sorted order, files and arrays mixed, one input repeated.
    inputs = [arrays[1], str(tiny_audio[0]), arrays[3][:9000], tiny_audio[2], arrays[1][:3000], arrays[0]]
    single = [model.transcribe(x, sample_rate=16000)[0] for x in inputs]
    for batch_size in (1, 2, 4, 16):
        batched = model.transcribe(inputs, sample_rate=16000, batch_size=batch_size)
        assert len(batched) == len(inputs)
        assert batched == single
    assert [t.source for t in single] == [None, str(tiny_audio[0]), None, str(tiny_audio[2]), None, None]


def _check_timestamps(t: Transcript) -> None:
    assert len(t.timestamps) == len(t.tokens) == len(t.token_ids)
    assert [s.piece for s in t.timestamps] == t.tokens
    starts = [s.start for s in t.timestamps]
    assert starts == sorted(starts)
    for s in t.timestamps:
        assert 0.0 <= s.start <= s.end <= t.audio_seconds + 1e-9
    assert [w.word for w in t.words] == t.text.split()
    for w in t.words:
        assert 0.0 <= w.start <= w.end <= t.audio_seconds + 1e-9
        assert w.start == t.timestamps[w.first_token].start and w.end == t.timestamps[w.last_token].end
    ws = [w.start for w in t.words]
    assert ws == sorted(ws)


@pytest.mark.parametrize("kind", ["tdt", "rnnt"])
def test_timestamps_lie_in_the_audio_and_do_not_decrease(kind, tiny_model, tiny_rnnt_model, tiny_audio):
    m = load_model(tiny_model.path if kind == "tdt" else tiny_rnnt_model.path)
    out = m.transcribe(tiny_audio)
    assert sum(len(t.words) for t in out) > len(out), "the test model should emit several words"
    for t in out:
        _check_timestamps(t)
    # Timestamps off: same text and tokens, no spans.
    plain = m.transcribe(tiny_audio, options=TranscribeOptions(timestamps=False))
    assert [p.token_ids for p in plain] == [t.token_ids for t in out]
    assert all(p.timestamps == [] and p.words == [] for p in plain)


def test_options_and_threads(model, tiny_audio):
    before = torch.get_num_threads()
    out = model.transcribe(tiny_audio[0], options=TranscribeOptions(num_threads=1, max_symbols=1))
    assert torch.get_num_threads() == before
    frames = [s.start for s in out[0].timestamps]
    assert len(frames) == len(set(frames)), "max_symbols=1: at most one token per frame"
    with pytest.raises(ValueError, match="max_symbols"):
        TranscribeOptions(max_symbols=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.transcribe(tiny_audio[0], batch_size=0)


def _record_contexts(model, monkeypatch) -> list[tuple[int, int, int]]:
    """Spy on the encoder: one ``(left, right, batch)`` per forward call."""
    enc = model.network.encoder
    calls: list[tuple[int, int, int]] = []
    forward = enc.forward

    def spy(x, x_lens):
        calls.append((enc.att_context.left, enc.att_context.right, x.shape[0]))
        return forward(x, x_lens)

    monkeypatch.setattr(enc, "forward", spy)
    return calls


def test_long_inputs_use_limited_attention_context(model, tiny_audio, monkeypatch):
    arrays = [load_audio(f, sample_rate=16000) for f in tiny_audio]
    secs = sorted(a.shape[0] / 16000 for a in arrays)
    limit = (secs[0] + secs[-1]) / 2  # some inputs above, some below
    n_long = sum(s >= limit for s in secs)
    assert 0 < n_long < len(arrays)
    opts = TranscribeOptions(long_audio_s=limit, long_audio_context=(2, 3))
    single = [model.transcribe(a, sample_rate=16000, options=opts)[0] for a in arrays]
    calls = _record_contexts(model, monkeypatch)
    batched = model.transcribe(arrays, sample_rate=16000, batch_size=16, options=opts)
    # Long and short inputs never share a batch, so batching changes nothing.
    assert batched == single
    assert sorted(calls) == sorted([(-1, -1, len(arrays) - n_long), (2, 3, n_long)])
    assert (model.network.encoder.att_context.left, model.network.encoder.att_context.right) == (-1, -1)
    # The long inputs are exactly what a forced (2, 3) context gives, the short ones what the model's own gives.
    forced = model.transcribe(arrays, sample_rate=16000, options=TranscribeOptions(att_context_size=(2, 3)))
    own = model.transcribe(arrays, sample_rate=16000, options=TranscribeOptions(long_audio_s=None))
    for a, b, f, o in zip(arrays, batched, forced, own, strict=True):
        assert b == (f if a.shape[0] / 16000 >= limit else o)
    calls.clear()
    model.transcribe(arrays, sample_rate=16000, options=TranscribeOptions(att_context_size=(2, 3)))
    model.transcribe(arrays, sample_rate=16000, options=TranscribeOptions(long_audio_s=None))
    assert calls == [(2, 3, len(arrays)), (-1, -1, len(arrays))]


def test_limited_context_models_keep_their_context_on_long_inputs(model, tiny_audio, monkeypatch):
    enc = model.network.encoder
    saved = enc.att_context
    enc.set_att_context_size(4, 1)  # as a model trained with limited context
    try:
        calls = _record_contexts(model, monkeypatch)
        model.transcribe(tiny_audio, options=TranscribeOptions(long_audio_s=0.01))
        assert calls == [(4, 1, len(tiny_audio))]
    finally:
        enc.att_context = saved


@pytest.mark.parametrize("kwargs, match", [
    ({"att_context_size": (1,)}, "att_context_size"),
    ({"att_context_size": (1, "a")}, "att_context_size"),
    ({"att_context_size": (-2, 4)}, "att_context_size"),
    ({"long_audio_context": (-1, 128)}, "long_audio_context"),
    ({"long_audio_s": 0}, "long_audio_s"),
    ({"long_audio_s": "60"}, "long_audio_s"),
])
def test_attention_context_option_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TranscribeOptions(**kwargs)


def _floor(seconds: float, seed: int) -> np.ndarray:
    return (1e-3 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def test_vad_cuts_at_pauses_and_joins_the_pieces(model, tiny_audio):
    a, b = (load_audio(f, sample_rate=16000) for f in tiny_audio[:2])
    x = np.concatenate([_floor(1.0, 0), a, _floor(1.5, 1), b, _floor(1.0, 2)])
    tight = TranscribeOptions(vad=True, vad_pad_s=0.0)
    t = model.transcribe(x, sample_rate=16000, options=tight)[0]
    # The VAD finds the two utterances (nothing else), inside them (the files have some silence of their own).
    assert len(t.segments) == 2
    (s0, e0), (s1, e1) = t.segments
    end_a, start_b = 1.0 + len(a) / 16000, 2.5 + len(a) / 16000
    assert 0.7 < s0 < e0 < end_a + 0.3 and start_b - 0.3 < s1 < e1 < start_b + len(b) / 16000 + 0.3
    # The result is the pieces' transcripts joined, with times in the input's frame.
    parts = model.transcribe([x[round(s * 16000): round(e * 16000)] for s, e in t.segments], sample_rate=16000)
    assert t.token_ids == parts[0].token_ids + parts[1].token_ids
    assert t.text == " ".join(p.text for p in parts if p.text)
    assert t.audio_seconds == pytest.approx(len(x) / 16000)
    n0 = len(parts[0].tokens)
    shifted = [v + t.segments[k][0] for k in (0, 1) for s in parts[k].timestamps for v in (s.start, s.end)]
    assert [v for s in t.timestamps for v in (s.start, s.end)] == pytest.approx(shifted)
    assert [(w.word, w.first_token, w.last_token) for w in t.words] == (
        [(w.word, w.first_token, w.last_token) for w in parts[0].words]
        + [(w.word, w.first_token + n0, w.last_token + n0) for w in parts[1].words])
    assert all("".join(t.tokens[w.first_token: w.last_token + 1]).lstrip("\u2581") == w.word for w in t.words)
    _check_timestamps(t)
    assert t.to_dict()["segments"] == [[round(s, 3), round(e, 3)] for s, e in t.segments]
    assert "segments" not in model.transcribe(x, sample_rate=16000)[0].to_dict()
    # Several inputs: each is cut on its own; batching the pieces changes nothing; silence gives an empty result.
    quiet = _floor(2.0, 3)
    many = model.transcribe([quiet, x, a], sample_rate=16000, batch_size=1, options=tight)
    assert many[1] == t and many[0].text == "" and many[0].segments == [] and many[0].audio_seconds == 2.0
    assert model.transcribe([quiet, x, a], sample_rate=16000, batch_size=8, options=tight) == many
    # The default keeps 0.1 s on each side of every segment (short blips padded that much can join them).
    padded = model.transcribe(x, sample_rate=16000, options=TranscribeOptions(vad=True))[0].segments
    for s, e in t.segments:
        assert any(ps <= s - 0.1 + 1e-6 and pe >= e + 0.1 - 1e-6 for ps, pe in padded)
    assert sum(pe - ps for ps, pe in padded) >= sum(e - s for s, e in t.segments) + 0.4 - 1e-6
    # A low max_segment_s cuts the utterances further; no piece is longer.
    short = model.transcribe(x, sample_rate=16000, options=TranscribeOptions(vad=True, max_segment_s=1.0))[0]
    assert len(short.segments) > 2 and all(e - s <= 1.0 + 1e-6 for s, e in short.segments)
    with pytest.raises(ValueError, match="max_segment_s"):
        TranscribeOptions(vad=True, max_segment_s=0.5)
    with pytest.raises(ValueError, match="vad_pad_s"):
        TranscribeOptions(vad=True, vad_pad_s=-0.1)


def test_very_short_audio_is_not_an_error(model):
    t = model.transcribe(np.zeros(100, np.float32), sample_rate=16000)[0]
    assert t.audio_seconds == pytest.approx(100 / 16000)
    _check_timestamps(t)


def test_input_errors_name_the_input(model, tiny_audio, tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        model.transcribe([tiny_audio[0], missing])
    with pytest.raises(ValueError, match="input 1 is an array: pass sample_rate"):
        model.transcribe([tiny_audio[0], np.zeros(1600, np.float32)])
    with pytest.raises(ValueError, match=r"input 0: empty audio"):
        model.transcribe(np.zeros(0, np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        model.transcribe(np.zeros((1600, 2), np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="float samples"):
        model.transcribe(np.zeros(1600, np.int16), sample_rate=16000)
    with pytest.raises(ValueError, match="NaN"):
        model.transcribe(np.full(1600, np.nan, np.float32), sample_rate=16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav"):
        model.transcribe(empty)
    with pytest.raises(TypeError):
        model.transcribe(42)  # type: ignore[arg-type]


def test_model_lookup_errors(tiny_model, tmp_path):
    known = default_model("asr").name
    with pytest.raises(ModelNotFoundError, match=rf"unknown asr model name 'no-such-model'.*{known}"):
        load_model("no-such-model")
    with pytest.raises(ModelNotFoundError, match="model file not found"):
        load_model(tmp_path / "missing.safetensors")
    not_a_model = tmp_path / "x.safetensors"
    not_a_model.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a speechkit model file"):
        load_model(not_a_model)
    # A folder stands for the model.safetensors a recipe exports into it.
    assert load_model(tiny_model.path.parent).source == str(tiny_model.path)


def test_registry():
    data = json.loads(REGISTRY_FILE.read_text())
    assert [m["name"] for m in data["models"]] == [m.name for m in list_models()]
    d = default_model("asr")
    assert d.kind == "asr" and d.default and d.file.endswith(".safetensors")
    if not d.available:
        # Until the lead bundles a trained model, asking for the default says what is missing and what to do.
        with pytest.raises(ModelNotFoundError, match=r"models\.json.*not installed.*recipes/asr"):
            resolve_model_file(None)
        with pytest.raises(ModelNotFoundError, match="not installed"):
            load_model()
    else:
        assert resolve_model_file(None) == d.path


def _loaded_after(code: str) -> list[str]:
    heavy = ["lightning", "pytorch_lightning", "lightning_fabric", "lhotse"]
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_inference_imports_no_lightning_or_lhotse(tiny_model, tiny_audio):
    assert _loaded_after("import speechkit.asr, speechkit.inference") == []
    # ... nor does loading a model and transcribing with it.
    code = (f"import speechkit.asr\nm = speechkit.asr.load_model({str(tiny_model.path)!r})\n"
            f"m.transcribe({str(tiny_audio[0])!r})")
    assert _loaded_after(code) == []


def test_inference_package_and_cli_commands_import_no_torch():
    probe = ("import sys, speechkit.inference, speechkit.inference.commands, speechkit.assets\n"
             "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_empty_list_gives_empty_list(model):
    assert model.transcribe([]) == []


@pytest.mark.cuda
def test_transcribe_on_cuda(tiny_model, tiny_audio):
    m = load_model(tiny_model.path, device="cuda")
    assert m.device.type == "cuda"
    out = m.transcribe(tiny_audio, batch_size=2)
    assert [t.source for t in out] == [str(f) for f in tiny_audio]
    for t in out:
        _check_timestamps(t)
