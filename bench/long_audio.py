"""Long audio: memory, speed and WER of ``transcribe`` with full attention, limited context, and VAD cutting.

Full self-attention over an utterance costs memory and time quadratic in its length: a full-context model that
transcribes a few minutes in a second or two runs out of memory on half an hour. ``TranscribeOptions`` switches
inputs of at least ``long_audio_s`` seconds to a limited ``long_audio_context`` (blockwise attention in linear
memory), and ``TranscribeOptions(vad=True)`` cuts an input at the speech a VAD finds instead. This benchmark
measures the three ways on one long input per length.

Inputs (``--input``):

- ``single``: the clean utterances (no added noise or reverberation) of one speaker (``--speaker``, by default the
  manifest's most frequent one among clean utterances) of ``--manifest`` (the synthetic test split by default),
  laid end to end with ``--gap`` seconds of a -60 dBFS noise floor between them and cycled until the input is
  ``--minutes`` long: like one long recording;
- ``mixed``: every utterance of the manifest in its order (voices, noise and reverberation change from one to the
  next), with ``--gap`` seconds of digital silence between them: like a concatenation of unrelated clips. The
  front end normalises each mel bin over the whole input, which is what cutting at the pauses avoids.

Each (length, mode) runs in its own process, so ``peak_rss_gb`` is that transcription's peak resident memory
(the model and the audio included; ``rss_after_load_gb`` is the same process before transcribing). Every hypothesis
word is assigned to the utterance whose span holds the middle of the word (its timestamp), then each utterance is
scored against its reference and the counts are pooled (an alignment of a whole hour would take hours in Python).
``segmented`` is the WER of the same utterances transcribed one by one: what the model does on each sentence alone.

Modes: ``full`` (``long_audio_s=None``, the model's own unlimited context), ``limited`` (``--context``, default
128 128 encoder frames, about 10 s each side) and ``vad`` (the bundled VAD cuts the input, pieces of at most
``max_segment_s``; the VAD's time is included). ``full`` runs only up to ``--full-max-minutes``: beyond, it needs
more memory than the machine has (30 minutes went past 24 GB here and was killed).

Prints a table and writes ``bench/results/long_audio_<input>.json``.

    python bench/long_audio.py [--input single|mixed] [--model PATH] [--manifest data/synth_en/test_444.json]
        [--minutes 1 2 5 10 30 60]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechkit.metrics.wer import ErrorRate, word_error_rate  # noqa: E402

SR = 16000


def _child(args: argparse.Namespace) -> None:
    """Transcribe one .npy waveform and print a JSON line (runs in its own process for a clean peak RSS)."""
    import torch

    from speechkit.asr import TranscribeOptions, load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    audio = np.load(args.child)
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    if args.mode == "full":
        opts = TranscribeOptions(long_audio_s=None)
    elif args.mode == "vad":
        opts = TranscribeOptions(vad=True, vad_pad_s=args.vad_pad_s)
    else:
        opts = TranscribeOptions(att_context_size=tuple(args.context))
    start = time.perf_counter()
    t = model.transcribe(audio, sample_rate=SR, options=opts)[0]
    seconds = time.perf_counter() - start
    words = [[w.word, (w.start + w.end) / 2] for w in t.words]
    print(json.dumps({"seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                      "rss_after_load_gb": rss_load, "words": words}))


def _utterances(manifest: Path, kind: str, speaker: str | None) -> tuple[list[tuple[np.ndarray, str]], str]:
    """Audio and text of the input's utterances, and who speaks them.

    ``single``: ``speaker``'s clean utterances (the most frequent clean speaker when ``None``); ``mixed``: all.
    """
    from collections import Counter

    from speechkit.audio.io import load_audio
    from speechkit.data.manifests import read_manifest

    rows = list(read_manifest(manifest))
    if kind == "single":
        # The synthetic corpus marks added noise with a "noise" field and reverberation with "reverb": true.
        clean = [r for r in rows if not r.extra.get("noise") and not r.extra.get("reverb")]
        speakers = Counter(r.extra.get("speaker") for r in clean)
        if not speakers:
            raise SystemExit(f"{manifest}: no clean utterance")
        speaker = speaker if speaker is not None else speakers.most_common(1)[0][0]
        if speaker not in speakers:
            raise SystemExit(f"{manifest}: no clean utterance of speaker {speaker!r} (speakers: "
                             f"{', '.join(map(str, speakers))})")
        rows = [r for r in clean if r.extra.get("speaker") == speaker]
    else:
        speaker = "all speakers, in manifest order"
    out = [(load_audio(r.audio_path(), sample_rate=SR), str(r.text)) for r in rows]
    return out, speaker


def _long_input(utts: list[tuple[np.ndarray, str]], seconds: float, gap: float,
                floor: bool) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Utterances end to end (cycled) until ``seconds``; returns the audio and each utterance's (start, end, text).

    The gaps hold a recording's noise floor (-60 dBFS) with ``floor``, else digital silence.
    """
    pieces, spans, pos, i = [], [], 0, 0
    silence = (1e-3 * np.random.default_rng(0).standard_normal(int(gap * SR))).astype(np.float32) if floor \
        else np.zeros(int(gap * SR), np.float32)
    while pos < seconds * SR:
        x, text = utts[i % len(utts)]
        spans.append((pos / SR, (pos + x.shape[0]) / SR, text))
        pieces += [x, silence]
        pos += x.shape[0] + silence.shape[0]
        i += 1
    return np.concatenate(pieces), spans


def _score(words: list[list], spans: list[tuple[float, float, str]]) -> ErrorRate:
    """Pooled WER, each hypothesis word assigned to the span (with half the gaps on each side) holding its middle."""
    bounds = [(a + b) / 2 for (_, b, _), (a, _, _) in zip(spans[:-1], spans[1:], strict=True)]
    hyps: list[list[str]] = [[] for _ in spans]
    for word, mid in words:
        hyps[int(np.searchsorted(bounds, mid))].append(word)
    return word_error_rate([s[2] for s in spans], [" ".join(h) for h in hyps])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model file or name (default: the bundled English model)")
    p.add_argument("--manifest", type=Path, default=ROOT / "data/synth_en/test_444.json")
    p.add_argument("--input", choices=("single", "mixed"), default="single")
    p.add_argument("--speaker", default=None, help="the manifest's speaker to draw from (default: most frequent)")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 5, 10, 30, 60])
    p.add_argument("--full-max-minutes", type=float, default=10.0)
    p.add_argument("--context", type=int, nargs=2, default=[128, 128])
    p.add_argument("--gap", type=float, default=0.3)
    p.add_argument("--vad-pad-s", type=float, default=0.1, help="TranscribeOptions.vad_pad_s of the vad mode")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="default: bench/results/long_audio_<input>.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)
    args.out = args.out or ROOT / f"bench/results/long_audio_{args.input}.json"

    from speechkit.asr import TranscribeOptions, load_model

    utts, speaker = _utterances(args.manifest, args.input, args.speaker)
    model = load_model(args.model)
    seg = model.transcribe([x for x, _ in utts], sample_rate=SR, options=TranscribeOptions(timestamps=False))
    segmented = word_error_rate([t for _, t in utts], [s.text for s in seg])
    del model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            audio, spans = _long_input(utts, minutes * 60, args.gap, floor=args.input == "single")
            wav = Path(tmp) / f"{minutes}.npy"
            np.save(wav, audio)
            for mode in ("full", "limited", "vad"):
                if mode == "full" and minutes > args.full_max_minutes:
                    continue
                cmd = [sys.executable, __file__, "--child", str(wav), "--mode", mode, "--threads", str(args.threads),
                       "--context", *map(str, args.context), "--vad-pad-s", str(args.vad_pad_s)] + (["--model", args.model] if args.model else [])
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                wer = _score(res.pop("words"), spans)
                audio_s = audio.shape[0] / SR
                rows.append({"minutes": minutes, "mode": mode, "audio_seconds": audio_s, "utterances": len(spans),
                             "seconds": res["seconds"], "rtfx": audio_s / res["seconds"],
                             "peak_rss_gb": res["peak_rss_gb"], "rss_after_load_gb": res["rss_after_load_gb"],
                             "wer": wer.rate, "errors": wer.errors, "reference_words": wer.reference_length})
                r = rows[-1]
                print(f"{minutes:6g} min  {mode:8s} {r['seconds']:8.1f} s  RTFx {r['rtfx']:7.1f}  "
                      f"peak {r['peak_rss_gb']:5.2f} GB  WER {100 * r['wer']:5.1f} %", flush=True)
    print(f"segmented (each utterance alone, {len(utts)} utterances of {speaker}): WER {100 * segmented.rate:.1f} %")
    result = {
        "machine": platform.platform(), "cpus": __import__("os").cpu_count(), "python": platform.python_version(),
        "model": args.model or "bundled default", "input": args.input, "manifest": str(args.manifest), "speaker": speaker,
        "utterances_of_speaker": len(utts), "gap_s": args.gap,
        "context": args.context, "vad_pad_s": args.vad_pad_s, "threads": args.threads, "segmented_wer": segmented.rate,
        "segmented_reference_words": segmented.reference_length, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
