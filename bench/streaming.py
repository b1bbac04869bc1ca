"""Streaming recognition cost: per-chunk compute against chunk duration, latency, RTFx, concurrent real-time streams.

For every look-ahead the model was trained with (``att_context_size`` options), on CPU:

- **per-chunk compute**: one stream, one torch thread; median and 95th percentile of the wall time of one
  ``Recognizer.decode`` call (front end + encoder chunk with caches + greedy decoding of the chunk), as a share of
  the chunk's duration (the issue's target: at most 10 % on one core);
- **algorithmic latency**: chunk + look-ahead + the front end's window look-ahead (``Recognizer.geometry``);
  **first-result latency** = algorithmic latency + one chunk's compute (a word is visible once the chunk holding
  it is decoded); **final-result latency**: compute after ``input_finished`` (the flush of the last partial chunk);
- **RTFx** of one stream (audio seconds per compute second);
- **concurrent streams**: N streams decoded together in one batch per chunk with ``--threads`` threads (2 = the
  machine); the largest N whose batched chunk compute stays within the chunk duration is served in real time;
- **WER** (with ``--wer-manifest``): word error rate at that look-ahead on a manifest's utterances. They are decoded
  with :meth:`Recognizer.transcribe`, which gives the streamed tokens exactly (tests/inference/test_streaming.py),
  in a fraction of the time.

The model is ``--model NAME|PATH``; by default the bundled streaming model (``Recognizer.from_pretrained()``).
``--random-weights`` measures the network of ``recipes/asr/fastconformer_transducer/conf/tdt_streaming.yaml`` with
random weights and a tokenizer trained on ``manifests/tiny`` instead: compute does not depend on the weights except
through the number of tokens the decoder emits, which random weights do not make realistic (the row ``tokens`` says
how many were emitted). The streamed audio is ``--manifest``'s utterances (default: the bundled test clips)
concatenated and repeated to ``--seconds``. Prints a table and writes ``bench/results/streaming.json``.

    python bench/streaming.py [--model NAME|PATH | --random-weights] [--seconds 20] [--threads 2] [--max-streams 64]
        [--wer-manifest data/synth_en/test_444.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "recipes" / "asr" / "fastconformer_transducer" / "conf" / "tdt_streaming.yaml"


def _random_model(vocab_size: int = 512):
    """The tdt_streaming.yaml network with random weights + a tokenizer trained on manifests/tiny."""
    import tempfile

    from omegaconf import OmegaConf

    from speechkit.inference.offline import ASRModel
    from speechkit.modules.asr import ASRModelConfig, TransducerASR
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    tok_dir = Path(tempfile.mkdtemp(prefix="speechkit-bench-tok-"))
    # manifests/tiny has too little text for 512 pieces: the tokenizer gets what the text allows (the joint's
    # size follows it), so the default model is a little smaller than the real one; --model gives the real one.
    tok = None
    for v in (vocab_size, 256, 128, 64):
        try:
            tok = train_tokenizer_from_manifests([ROOT / "manifests" / "tiny" / "train.json"], tok_dir,
                                                 TokenizerTrainConfig(vocab_size=v))
            break
        except (RuntimeError, ValueError):
            continue
    assert tok is not None
    model_yaml = OmegaConf.load(CONF).model
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ASRModelConfig), model_yaml,
                                              {"vocab_size": tok.vocab_size}))
    torch.manual_seed(0)
    net = TransducerASR.from_config(cfg).eval()
    return ASRModel(net, tok, cfg, source=f"random weights, {CONF.name}")


CLIPS = ROOT / "speechkit" / "assets" / "clips" / "clips.json"


def _utterances(manifest: Path, sample_rate: int = 16000, limit: int | None = None):
    """``(text, samples)`` of the first ``limit`` entries of a manifest (all when None), loaded at ``sample_rate``."""
    from speechkit.audio.io import load_audio
    from speechkit.data.manifests import read_manifest, resolve_audio_path

    for e in list(read_manifest(manifest))[:limit]:
        yield e.text, load_audio(resolve_audio_path(manifest, e.audio_filepath), sample_rate)


def _signal(seconds: float, manifest: Path = CLIPS) -> np.ndarray:
    """Test audio: a manifest's utterances concatenated (repeated) to ``seconds``."""
    x = np.concatenate([samples for _, samples in _utterances(manifest)])
    reps = int(np.ceil(seconds * 16000 / len(x)))
    return np.tile(x, reps)[: int(seconds * 16000)].astype(np.float32)


def _run_streams(rec, x: np.ndarray, n: int, piece: int) -> tuple[list[float], float, int]:
    """Feed ``n`` copies of ``x`` in pieces of ``piece`` samples, decoding all ready streams together.

    Returns the wall time of every batched ``decode`` call, the flush time after ``input_finished``, and the tokens
    emitted by stream 0.
    """
    streams = [rec.create_stream() for _ in range(n)]
    times = []
    for i in range(0, len(x), piece):
        for s in streams:
            s.accept_waveform(16000, x[i: i + piece])
        ready = [s for s in streams if rec.is_ready(s)]
        while ready:
            t0 = time.perf_counter()
            rec.decode(ready)
            times.append(time.perf_counter() - t0)
            ready = [s for s in streams if rec.is_ready(s)]
    t0 = time.perf_counter()
    for s in streams:
        s.input_finished()
    while any(rec.is_ready(s) for s in streams):
        rec.decode([s for s in streams if rec.is_ready(s)])
    flush = time.perf_counter() - t0
    tokens = sum(len(seg.token_ids) for seg in streams[0].segments)
    return times, flush, tokens


def _wer(rec, manifest: Path, limit: int | None) -> tuple[float, int]:
    """Pooled WER of ``rec`` (its look-ahead) on the first ``limit`` utterances of ``manifest``, and their count."""
    from speechkit.metrics.wer import ErrorRate, word_error_rate

    total = ErrorRate()
    for text, x in _utterances(manifest, rec.sample_rate, limit):
        total = total + word_error_rate(rec.tokenizer.normalize(text), rec.transcribe(x, rec.sample_rate).text)
    return total.rate, total.utterances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="streaming model: registry name or file (default: the bundled one)")
    parser.add_argument("--random-weights", action="store_true",
                        help="measure tdt_streaming.yaml's network with random weights instead of a trained model")
    parser.add_argument("--manifest", type=Path, default=CLIPS, help="the speech streamed (repeated to --seconds)")
    parser.add_argument("--wer-manifest", type=Path, help="also report WER per look-ahead on this manifest")
    parser.add_argument("--wer-limit", type=int, help="only the first N utterances of --wer-manifest")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the concurrent-streams test")
    parser.add_argument("--max-streams", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "streaming.json"))
    args = parser.parse_args()

    from speechkit.inference.streaming import Recognizer, StreamingOptions

    if args.random_weights:
        model = _random_model()
    else:
        model = Recognizer.from_pretrained(args.model).model
    contexts = [tuple(c) for c in model.network.encoder.cfg.att_context_options]
    x = _signal(args.seconds, args.manifest)
    rows = []
    for ctx in contexts:
        rec = Recognizer(model, StreamingOptions(att_context_size=ctx, endpointing=False))
        g = rec.geometry
        piece = max(1, int(round(g.chunk_s * 16000)))  # audio arrives a chunk at a time
        torch.set_num_threads(1)
        _run_streams(rec, x[: 16000 * 2], 1, piece)  # warm-up
        times, flush, tokens = _run_streams(rec, x, 1, piece)
        steady = times[1:] if len(times) > 2 else times  # the first chunk is shorter (fewer frames)
        med, p95 = statistics.median(steady), float(np.percentile(steady, 95))
        row = {
            "att_context_size": list(ctx), "chunk_s": g.chunk_s, "lookahead_s": g.lookahead_s,
            "algorithmic_latency_s": g.algorithmic_latency_s,
            "chunk_compute_ms_median": 1000 * med, "chunk_compute_ms_p95": 1000 * p95,
            "compute_share_of_chunk": med / g.chunk_s, "compute_share_p95": p95 / g.chunk_s,
            "first_result_latency_s": g.algorithmic_latency_s + med, "final_result_latency_s": flush,
            "rtfx_1_thread": len(x) / 16000 / (sum(times) + flush), "tokens": tokens,
        }
        # Concurrent streams with all threads: double N while a batched chunk still fits in the chunk's duration.
        torch.set_num_threads(args.threads)
        served, per_n = 0, {}
        n = 1
        while n <= args.max_streams:
            t_n, _, _ = _run_streams(rec, x[: int(16000 * max(4 * g.chunk_s, 4.0))], n, piece)
            steady_n = statistics.median(t_n[1:] if len(t_n) > 2 else t_n)
            per_n[n] = 1000 * steady_n
            if steady_n > g.chunk_s:
                break
            served = n
            n *= 2
        row["realtime_streams"] = served
        row["realtime_streams_capped"] = served * 2 > args.max_streams  # every tried N was served: a lower bound
        row["batched_chunk_ms_by_streams"] = per_n
        if args.wer_manifest:
            torch.set_num_threads(args.threads)
            row["wer"], row["wer_utterances"] = _wer(rec, args.wer_manifest, args.wer_limit)
        rows.append(row)

    print(f"model: {model.source}")
    print(f"{'context':>10} {'chunk s':>8} {'latency s':>10} {'chunk ms':>9} {'p95 ms':>8} {'share':>7} "
          f"{'RTFx':>7} {'final s':>8} {'streams':>8} {'WER':>7}")
    for r in rows:
        wer = f"{100 * r['wer']:.1f}%" if "wer" in r else "-"
        print(f"{str(r['att_context_size']):>10} {r['chunk_s']:>8.2f} {r['algorithmic_latency_s']:>10.2f} "
              f"{r['chunk_compute_ms_median']:>9.1f} {r['chunk_compute_ms_p95']:>8.1f} "
              f"{100 * r['compute_share_of_chunk']:>6.1f}% {r['rtfx_1_thread']:>7.1f} "
              f"{r['final_result_latency_s']:>8.3f} {('>=' if r['realtime_streams_capped'] else '') + str(r['realtime_streams']):>8} "
              f"{wer:>7}")
    print(f"chunk ms / share: one stream, 1 thread; streams: served in real time with {args.threads} threads "
          f"(tried up to {args.max_streams})")
    result = {
        "what": "streaming Recognizer cost per chunk, latency, RTFx and concurrent real-time streams (CPU)",
        "model": model.source, "weights": "random" if args.random_weights else "trained",
        "audio": str(args.manifest.relative_to(ROOT) if args.manifest.is_relative_to(ROOT) else args.manifest),
        "wer_manifest": str(args.wer_manifest) if args.wer_manifest else None,
        "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "audio_seconds_per_stream": args.seconds, "threads_concurrent": args.threads, "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
