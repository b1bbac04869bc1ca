"""Long audio: memory, speed and WER of ``transcribe`` with full attention against limited context.

Full self-attention over an utterance costs memory and time quadratic in its length: a full-context model that
transcribes a few minutes in a second or two runs out of memory on half an hour. ``TranscribeOptions`` switches
inputs of at least ``long_audio_s`` seconds to a limited ``long_audio_context`` (blockwise attention in linear
memory). This benchmark measures both ways on one long input per length:

- the input is the clean utterances (no added noise or reverberation) of one speaker (``--speaker``, by default the
  manifest's most frequent one among clean utterances) of ``--manifest`` (the synthetic test split by default), laid
  end to end with ``--gap`` seconds of a -60 dBFS noise floor between them and cycled until it is ``--minutes``
  long: like one long recording. The front end normalises each mel bin over the whole input, so mixing voices,
  channels or digital silence into one input would test something else (each costs this synthetic-speech model
  several WER points);
- each (length, mode) runs in its own process, so ``peak_rss_gb`` is that transcription's peak resident memory
  (the model and the audio included; ``rss_after_load_gb`` is the same process before transcribing);
- WER: every hypothesis word is assigned to the utterance whose span holds the middle of the word (its timestamp),
  then each utterance is scored against its reference and the counts are pooled (an alignment of a whole hour
  would take hours in Python). ``segmented`` is the WER of the same utterances transcribed one by one, the
  reference point for what context the model lost or gained;
- modes: ``full`` (``long_audio_s=None``, the model's own unlimited context), and ``limited`` (``--context``,
  default 128 128 encoder frames, about 10 s each side). ``full`` runs only up to ``--full-max-minutes``: beyond,
  it needs more memory than the machine has (30 minutes went past 24 GB here and was killed).

Prints a table and writes ``bench/results/long_audio.json``.

    python bench/long_audio.py [--model PATH] [--manifest data/synth_en/test_444.json] [--minutes 1 2 5 10 30 60]
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
    else:
        opts = TranscribeOptions(att_context_size=tuple(args.context))
    start = time.perf_counter()
    t = model.transcribe(audio, sample_rate=SR, options=opts)[0]
    seconds = time.perf_counter() - start
    words = [[w.word, (w.start + w.end) / 2] for w in t.words]
    print(json.dumps({"seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                      "rss_after_load_gb": rss_load, "words": words}))


def _utterances(manifest: Path, speaker: str | None) -> tuple[list[tuple[np.ndarray, str]], str]:
    """Audio and text of ``speaker``'s clean utterances (the most frequent clean speaker when ``None``)."""
    from collections import Counter

    from speechkit.audio.io import load_audio

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    # The synthetic corpus marks added noise with a "noise" field and reverberation with "reverb": true.
    clean = [r for r in rows if not r.get("noise") and not r.get("reverb")]
    speakers = Counter(r.get("speaker") for r in clean)
    if not speakers:
        raise SystemExit(f"{manifest}: no clean utterance")
    speaker = speaker if speaker is not None else speakers.most_common(1)[0][0]
    if speaker not in speakers:
        raise SystemExit(f"{manifest}: no clean utterance of speaker {speaker!r} (speakers: "
                         f"{', '.join(map(str, speakers))})")
    out = []
    for row in clean:
        if row.get("speaker") != speaker:
            continue
        path = Path(row["audio_filepath"])
        path = path if path.is_absolute() else manifest.parent / path
        out.append((load_audio(path, sample_rate=SR), row["text"]))
    return out, speaker


def _long_input(utts: list[tuple[np.ndarray, str]], seconds: float,
                gap: float) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Utterances end to end (cycled) until ``seconds``; returns the audio and each utterance's (start, end, text)."""
    pieces, spans, pos, i = [], [], 0, 0
    # A recording's noise floor (-60 dBFS), not digital zeros, between the utterances.
    silence = (1e-3 * np.random.default_rng(0).standard_normal(int(gap * SR))).astype(np.float32)
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
    p.add_argument("--speaker", default=None, help="the manifest's speaker to draw from (default: most frequent)")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 5, 10, 30, 60])
    p.add_argument("--full-max-minutes", type=float, default=10.0)
    p.add_argument("--context", type=int, nargs=2, default=[128, 128])
    p.add_argument("--gap", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/long_audio.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)

    from speechkit.asr import TranscribeOptions, load_model

    utts, speaker = _utterances(args.manifest, args.speaker)
    model = load_model(args.model)
    seg = model.transcribe([x for x, _ in utts], sample_rate=SR, options=TranscribeOptions(timestamps=False))
    segmented = word_error_rate([t for _, t in utts], [s.text for s in seg])
    del model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            audio, spans = _long_input(utts, minutes * 60, args.gap)
            wav = Path(tmp) / f"{minutes}.npy"
            np.save(wav, audio)
            for mode in ("full", "limited"):
                if mode == "full" and minutes > args.full_max_minutes:
                    continue
                cmd = [sys.executable, __file__, "--child", str(wav), "--mode", mode, "--threads", str(args.threads),
                       "--context", *map(str, args.context)] + (["--model", args.model] if args.model else [])
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
        "model": args.model or "bundled default", "manifest": str(args.manifest), "speaker": speaker,
        "utterances_of_speaker": len(utts), "gap_s": args.gap,
        "context": args.context, "threads": args.threads, "segmented_wer": segmented.rate,
        "segmented_reference_words": segmented.reference_length, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
