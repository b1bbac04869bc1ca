"""Recognizer / Stream end to end on a tiny random-weight streaming model: streamed tokens == offline tokens of the
same model for any chunking, several streams decoded together, 8 kHz and 16 kHz input, the streaming resampler,
the CTC decoder, the look-ahead choice, endpointing (decoder silence and VAD), errors, and the import boundary."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.assets import ModelNotFoundError, list_models
from speechkit.audio.io import load_audio, resample
from speechkit.inference.streaming import (
    NotAStreamingModelError,
    Recognizer,
    StreamingOptions,
    StreamingResampler,
    StreamResult,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "manifests" / "tiny"


@dataclass
class StreamingModel:
    path: Path
    model_type: str


def make_streaming_model(out: Path, model_type: str = "tdt", seed: int = 0) -> StreamingModel:
    """A tiny cache-aware FastConformer transducer (chunks of 2 frames, two look-aheads, CTC head) as a model file.

    Random weights; the joint's output layer is scaled up so that the argmax varies from frame to frame.
    """
    from speechkit.audio.features import FeatureConfig
    from speechkit.config import to_yaml
    from speechkit.modules.asr import ASRModelConfig, TransducerASR
    from speechkit.modules.export import save_model_file
    from speechkit.modules.fastconformer import FastConformerConfig
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    tok = train_tokenizer_from_manifests([TINY / "train.json"], out / "tok", TokenizerTrainConfig(vocab_size=40))
    torch.manual_seed(seed)
    encoder = FastConformerConfig.preset(
        "tiny", causal_downsampling=True, conv_context="causal", conv_norm="layer_norm", subsampling_channels=32,
        att_context_style="chunked_limited", att_context_size=[(4, 1), (4, 0)])
    cfg = ASRModelConfig(features=FeatureConfig(normalize="none", dither=0.0), encoder=encoder, model_type=model_type,
                         vocab_size=tok.vocab_size, pred_hidden=32, joint_hidden=32, ctc_weight=0.3)
    net = TransducerASR.from_config(cfg).eval()
    with torch.no_grad():
        net.joint.out.weight.mul_(4.0)
        net.ctc.proj.weight.mul_(4.0)
    path = save_model_file(out / "model.safetensors", net, to_yaml(cfg), tok, dtype=torch.float32)
    return StreamingModel(path, model_type)


@pytest.fixture(scope="module")
def streaming_model(tmp_path_factory: pytest.TempPathFactory) -> StreamingModel:
    return make_streaming_model(tmp_path_factory.mktemp("streaming_tdt"))


@pytest.fixture(scope="module")
def recognizer(streaming_model) -> Recognizer:
    return Recognizer.from_pretrained(streaming_model.path, StreamingOptions(endpointing=False))


@pytest.fixture(scope="module")
def audio() -> list[np.ndarray]:
    """Two of the 16 kHz test utterances of manifests/tiny (2-4 s each)."""
    files = sorted((TINY / "audio" / "test").glob("*.wav"))[:2]
    return [load_audio(f, sample_rate=16000) for f in files]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stream_all(rec: Recognizer, samples: np.ndarray, rate: int, chunk: int | list[int]) -> StreamResult:
    """Feed ``samples`` in chunks (a size, or a list of sizes cycled), decoding whenever ready; the final result."""
    s = rec.create_stream()
    sizes = [chunk] if isinstance(chunk, int) else chunk
    i = k = 0
    while i < samples.shape[0]:
        n = sizes[k % len(sizes)]
        s.accept_waveform(rate, samples[i: i + n])
        i, k = i + n, k + 1
        while rec.is_ready(s):
            rec.decode([s])
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    assert s.is_done and not rec.is_ready(s)
    return s.result


def assert_same_result(streamed: StreamResult, offline: StreamResult) -> None:
    assert streamed.token_ids == offline.token_ids
    assert streamed.text == offline.text
    assert streamed.committed == offline.text
    assert [t.piece for t in streamed.timestamps] == [t.piece for t in offline.timestamps]
    assert np.allclose([t.start for t in streamed.timestamps], [t.start for t in offline.timestamps])
    assert np.allclose([t.end for t in streamed.timestamps], [t.end for t in offline.timestamps])
    assert streamed.is_final and streamed.segment == 0


def test_streaming_equals_offline_for_any_chunk_size(recognizer, audio):
    x = audio[0]
    offline = recognizer.transcribe(x, 16000)
    assert len(set(offline.token_ids)) >= 3, "the test model should emit varied tokens"
    # 77 ms + 1 sample (divides neither the 10 ms hop nor the 160 ms chunk), a random mix, all at once.
    rng = random.Random(0)
    for chunk in (1233, [rng.randint(1, 3000) for _ in range(20)], x.shape[0]):
        assert_same_result(stream_all(recognizer, x, 16000, chunk), offline)


def test_partial_results_grow_into_the_final_one(recognizer, audio):
    x = audio[1]
    offline = recognizer.transcribe(x, 16000)
    s = recognizer.create_stream()
    partials = []
    for i in range(0, x.shape[0], 3200):
        s.accept_waveform(16000, x[i: i + 3200])
        while recognizer.is_ready(s):
            recognizer.decode([s])
        r = s.result
        assert not r.is_final and r.committed == ""
        assert r.end <= i / 16000 + 0.2 + 1e-9  # decoded no further than the audio so far
        partials.append(r.token_ids)
    s.input_finished()
    while recognizer.is_ready(s):
        recognizer.decode([s])
    for p in partials:  # each partial is a prefix of the final tokens
        assert offline.token_ids[: len(p)] == p
    assert len(partials[-1]) > 0 and s.result.token_ids == offline.token_ids
    assert s.segments == [s.result]


@pytest.mark.parametrize("num_streams", [2, 3])
def test_streams_decoded_together(recognizer, audio, num_streams):
    """Streams of different audio, chunk sizes and start times share every decode() call."""
    signals = [audio[0], audio[1], audio[0][5000:]][:num_streams]
    chunks = [1600, 2345, 999][:num_streams]
    starts = [0, 3, 7][:num_streams]  # rounds before a stream joins
    offline = [recognizer.transcribe(x, 16000) for x in signals]
    streams = [recognizer.create_stream() for _ in signals]
    pos = [0] * num_streams
    step = 0
    while not all(s.is_done for s in streams):
        for b, s in enumerate(streams):
            if step < starts[b] or s.is_done:
                continue
            if pos[b] < signals[b].shape[0]:
                s.accept_waveform(16000, signals[b][pos[b]: pos[b] + chunks[b]])
                pos[b] += chunks[b]
            elif not s._input_finished:
                s.input_finished()
        recognizer.decode(streams)  # the ready ones, batched
        step += 1
    for s, ref in zip(streams, offline, strict=True):
        assert_same_result(s.result, ref)


def test_8khz_and_16khz_input(recognizer, audio):
    x8 = resample(audio[0], 16000, 8000)
    offline = recognizer.transcribe(x8, 8000)
    for chunk in (800, 777):
        assert_same_result(stream_all(recognizer, x8, 8000, chunk), offline)
    assert recognizer.transcribe(audio[0], 16000).token_ids != [] and offline.token_ids != []


@pytest.mark.parametrize("orig,new", [(8000, 16000), (44100, 16000), (16000, 8000), (22050, 16000)])
def test_resampler_carries_context(orig, new):
    x = np.random.default_rng(0).standard_normal(3001).astype(np.float32) * 0.3
    ref = resample(x, orig, new)
    rng = random.Random(1)
    for sizes in ([37], [1000], [rng.randint(0, 700) for _ in range(30)]):
        r = StreamingResampler(orig, new)
        out, i, k = [], 0, 0
        while i < x.shape[0]:
            out.append(r.accept(x[i: i + sizes[k % len(sizes)]]))
            i, k = i + sizes[k % len(sizes)], k + 1
        out.append(r.flush())
        y = np.concatenate(out)
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)


def test_ctc_decoder(streaming_model, audio):
    rec = Recognizer.from_pretrained(streaming_model.path, StreamingOptions(decoder="ctc", endpointing=False))
    offline = rec.transcribe(audio[1], 16000)
    assert offline.token_ids
    assert_same_result(stream_all(rec, audio[1], 16000, 1700), offline)


def test_lookahead_choice(streaming_model, audio):
    rec = Recognizer.from_pretrained(streaming_model.path, StreamingOptions(att_context_size=(4, 0),
                                                                            endpointing=False))
    assert rec.geometry.att_right == 0 and rec.geometry.chunk_frames == 1
    assert_same_result(stream_all(rec, audio[0], 16000, 1500), rec.transcribe(audio[0], 16000))
    with pytest.raises(NotAStreamingModelError, match=r"att_context_size=\(4, 2\).*trained with"):
        Recognizer.from_pretrained(streaming_model.path, StreamingOptions(att_context_size=(4, 2)))


# -- endpointing -------------------------------------------------------------------------------------------------


def two_utterances(audio: list[np.ndarray], gap_s: float = 3.0) -> tuple[np.ndarray, float, float]:
    """speech, ``gap_s`` of digital silence, speech; returns the signal and where the gap starts and ends (s)."""
    a, b = audio[0], audio[1]
    gap = np.zeros(int(gap_s * 16000), dtype=np.float32)
    return np.concatenate([a, gap, b]), a.shape[0] / 16000, (a.shape[0] + gap.shape[0]) / 16000


def make_speech_detector(rec: Recognizer, x: np.ndarray, label: int = 5) -> None:
    """Rewire the joint so that it emits ``label`` on frames far from the encoder's output for silence, else blank.

    Deterministic by construction: the prediction network no longer matters (its projection is zeroed), and the
    joint's hidden units measure ``|u_k . (f - f_silence)|`` along random directions ``u_k``.
    """
    net = rec.network
    with torch.inference_mode():
        silence = torch.zeros(1, 64000)
        enc, _ = net.encode(silence, torch.tensor([64000]))
        # Deep in a long silence (every frame there sees only silence); not the last frame, which sees padding.
        f_sil = enc[0, -10].clone()
        speech, n = net.encode(torch.from_numpy(x)[None], torch.tensor([x.shape[0]]))
    joint = net.joint
    d, hidden = f_sil.shape[0], joint.enc.weight.shape[0]
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(hidden // 2, d, generator=gen)
    with torch.no_grad():
        joint.enc.weight.copy_(torch.cat([u, -u]))
        joint.enc.bias.copy_(-(torch.cat([u, -u]) @ f_sil))
        joint.pred.weight.zero_()
        joint.pred.bias.zero_()
        dist = torch.relu(speech[0, : int(n[0])] @ torch.cat([u, -u]).T + joint.enc.bias).sum(-1)
        threshold = 0.2 * float(dist.median())
        joint.out.weight.zero_()
        joint.out.bias.zero_()
        joint.out.bias[: joint.layout.vocab_size] = -10.0  # other tokens never win (not even ties with the blank)
        joint.out.weight[label] = 1.0
        joint.out.bias[label] = -threshold
        layout = joint.layout
        if layout.kind == "tdt":
            joint.out.bias[layout.duration_slice.start + layout.durations.index(1)] = 1.0  # every decision: 1 frame


def test_endpointing_splits_two_utterances(streaming_model, audio):
    x, gap_start, gap_end = two_utterances(audio)
    opts = StreamingOptions(endpointing=True, trailing_silence=0.8, max_symbols=1)
    rec = Recognizer.from_pretrained(streaming_model.path, opts)
    make_speech_detector(rec, x)
    offline = rec.transcribe(x, 16000)
    stamps = [t.start for t in offline.timestamps]
    # The construction works: tokens in both utterances, none deep in the gap, no long pause inside speech.
    assert any(s < gap_start for s in stamps) and any(s >= gap_end for s in stamps)
    assert not any(gap_start + 2.0 < s < gap_end for s in stamps)
    pauses = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if not (a < gap_start + 2.0 < b)]
    assert max(pauses) < 0.5

    s = rec.create_stream()
    finals_seen_at = []
    for i in range(0, x.shape[0], 1600):
        s.accept_waveform(16000, x[i: i + 1600])
        while rec.is_ready(s):
            rec.decode([s])
        if len(s.segments) > len(finals_seen_at):
            finals_seen_at.append(i / 16000)
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    first, second = s.segments
    assert (first.segment, first.is_final, second.segment, second.is_final) == (0, True, 1, True)
    # The first segment ends inside the gap, at least trailing_silence after its last token; it was final before
    # the second utterance started.
    assert first.timestamps[-1].end + 0.8 <= first.end < gap_end
    assert finals_seen_at[0] < gap_end
    assert second.start == first.end and all(t.start >= gap_end - 0.2 for t in second.timestamps)
    # Nothing lost: the segments hold the offline tokens (the prediction network does not matter here).
    assert first.token_ids + second.token_ids == offline.token_ids
    assert s.result is second and second.committed == f"{first.text} {second.text}"


def test_max_utterance_forces_an_endpoint(recognizer, streaming_model, audio):
    rec = Recognizer.from_pretrained(streaming_model.path, StreamingOptions(max_utterance=1.0, trailing_silence=5.0))
    s = rec.create_stream()
    s.accept_waveform(16000, audio[0])
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    assert len(s.segments) >= 2
    assert all(r.end - r.start <= 1.0 + rec.geometry.chunk_s + 1e-6 for r in s.segments[:-1])


def test_vad_endpointing(streaming_model, audio):
    if not any(m.available and m.default for m in list_models("vad")):
        pytest.skip("no bundled VAD model in this installation")
    x, gap_start, gap_end = two_utterances(audio)
    opts = StreamingOptions(endpointing=True, trailing_silence=0.8, use_vad=True)
    rec = Recognizer.from_pretrained(streaming_model.path, opts)
    s = rec.create_stream()
    for i in range(0, x.shape[0], 8000):
        s.accept_waveform(16000, x[i: i + 8000])
        while rec.is_ready(s):
            rec.decode([s])
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    # The random ASR model emits tokens everywhere; only the VAD can find the pause. The segment ends once
    # trailing_silence has passed after the VAD's last speech frame (the file has some silence of its own before the
    # gap), to within a chunk and the VAD's context effects.
    from speechkit.vad import load_model as load_vad

    probs = load_vad().frame_probs(x, 16000)
    speech = np.nonzero(probs >= 0.5)[0] * 0.02
    speech_end = float(speech[speech < gap_end].max()) + 0.02
    first, second = s.segments
    assert speech_end + 0.8 - 0.1 <= first.end <= speech_end + 0.8 + 0.25
    assert first.end < gap_end <= second.end and second.start == first.end


def test_use_vad_without_a_model_is_a_clear_error(streaming_model, tmp_path):
    with pytest.raises(ModelNotFoundError, match="use_vad=True needs a VAD model"):
        Recognizer.from_pretrained(streaming_model.path,
                                   StreamingOptions(use_vad=True, vad_model=str(tmp_path / "none.safetensors")))


# -- errors and boundaries ---------------------------------------------------------------------------------------


def test_offline_model_is_refused(tiny_model):
    with pytest.raises(NotAStreamingModelError, match="att_context_style='regular'.*causal_downsampling"):
        Recognizer.from_pretrained(tiny_model.path)


def test_from_pretrained_without_a_bundled_streaming_model(nothing_bundled):
    """Were no streaming model bundled, the error would say so and how to train one."""
    with pytest.raises(ModelNotFoundError, match="no streaming ASR model is bundled.*tdt_streaming.yaml"):
        Recognizer.from_pretrained()


def test_the_bundled_streaming_model_streams_the_bundled_clips():
    """Recognizer.from_pretrained() loads the bundled English streaming model; streamed in 100 ms pieces, each clip
    gives the tokens of its offline transcription, and the words are mostly those spoken."""
    import json

    from speechkit.metrics.wer import ErrorRate, word_error_rate

    (entry,) = [m for m in list_models("asr-streaming") if m.default]
    assert entry.available, f"{entry.path} is missing"
    rec = Recognizer.from_pretrained(options=StreamingOptions(endpointing=False))
    assert rec.model.source == str(entry.path)
    assert rec.geometry.chunk_s == pytest.approx(0.40) and rec.geometry.algorithmic_latency_s < 0.5
    clips = ROOT / "speechkit" / "assets" / "clips"
    total = ErrorRate()
    for line in (clips / "clips.json").read_text().splitlines():
        clip = json.loads(line)
        x = load_audio(clips / clip["audio_filepath"], 16000)
        streamed = stream_all(rec, x, 16000, 1600)
        assert_same_result(streamed, rec.transcribe(x, 16000))
        total = total + word_error_rate(clip["text"], streamed.text)
    assert total.rate < 0.6, str(total)


def test_bad_input(recognizer, streaming_model, audio):
    s = recognizer.create_stream()
    with pytest.raises(ValueError, match="dtype int16"):
        s.accept_waveform(16000, (audio[0][:100] * 32767).astype(np.int16))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        s.accept_waveform(16000, np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="positive integer"):
        s.accept_waveform(0, audio[0][:100])
    s.accept_waveform(16000, audio[0][:100])
    with pytest.raises(ValueError, match="at 16000 Hz; got a chunk at 8000 Hz"):
        s.accept_waveform(8000, audio[0][:100])
    s.input_finished()
    with pytest.raises(ValueError, match="after input_finished"):
        s.accept_waveform(16000, audio[0][:100])
    other = Recognizer.from_pretrained(streaming_model.path, StreamingOptions(endpointing=False))
    with pytest.raises(ValueError, match="not created by this recognizer"):
        other.decode([s])
    with pytest.raises(ValueError, match="same stream more than once"):
        recognizer.decode([s, s])
    with pytest.raises(ValueError, match="trailing_silence"):
        StreamingOptions(trailing_silence=0)


def test_is_ready(recognizer, audio):
    s = recognizer.create_stream()
    g = recognizer.geometry
    s.accept_waveform(16000, audio[0][: 160 * (g.first_chunk_mel_frames - 1)])
    assert not recognizer.is_ready(s)
    recognizer.decode([s])  # nothing ready: nothing happens
    assert s.decoded_seconds == 0.0
    s.accept_waveform(16000, audio[0][160 * (g.first_chunk_mel_frames - 1): 160 * (g.first_chunk_mel_frames + 1)])
    assert recognizer.is_ready(s)
    recognizer.decode([s])
    assert not recognizer.is_ready(s) and s.decoded_seconds == pytest.approx(g.chunk_frames * 0.08)
    s.input_finished()
    assert recognizer.is_ready(s)
    recognizer.decode([s])
    assert s.is_done and not recognizer.is_ready(s) and s.result.is_final


def test_empty_stream_gives_an_empty_final_result(recognizer):
    s = recognizer.create_stream()
    s.input_finished()
    while recognizer.is_ready(s):
        recognizer.decode([s])
    r = s.result
    assert r.is_final and r.text == "" and r.token_ids == [] and len(s.segments) == 1


@pytest.mark.slow  # a fresh interpreter importing torch: seconds on a busy machine
def test_inference_does_not_import_lightning():
    code = ("import sys, speechkit.inference.streaming, speechkit.inference.stream_cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'lhotse')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
