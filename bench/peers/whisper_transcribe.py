"""Transcribe every utterance of a NeMo manifest with a Whisper peer (faster-whisper on CTranslate2, CPU).

Runs in the peer's own environment and imports nothing from speechkit (the peer and the project never share a
virtual environment)::

    bash bench/peers/install_whisper.sh
    .peers/whisper/bin/python bench/peers/whisper_transcribe.py manifests/tiny/test.json --model tiny.en \
        --out /tmp/tiny_en.json

``--model`` is a folder name under ``<this python's prefix>/models`` (``tiny.en``, ``base``: what
install_whisper.sh assembles) or a path to any CTranslate2 Whisper folder.

Decoding: language English, beam size 1 at temperature 0 only (greedy, deterministic: no sampling fallback),
no VAD filter, no timestamps (Whisper's short-form evaluation setting), no conditioning across utterances
(each is transcribed on its own). ``compute_seconds`` is the time spent in ``transcribe`` (log-mel front end,
encoder, decoder) summed over the utterances; loading the model, one warm-up call on a second of silence, and
decoding the audio files are not counted (``load_seconds`` and ``audio_read_seconds`` report them).

Output JSON::

    {"model": "tiny.en", "manifest": ..., "compute_seconds": 1.9, "audio_seconds": 43.2, "load_seconds": 0.4,
     "settings": {...}, "versions": {...},
     "utterances": [{"line": 1, "audio_filepath": "audio/a.wav", "offset": 0.0, "duration": 3.3,
                     "text": "<the manifest's text>", "hypothesis": "...", "compute_seconds": 0.12}, ...]}

Manifest lines are NeMo JSON lines; ``audio_filepath`` is resolved against the manifest's folder when relative,
and ``offset``/``duration`` select a segment of the file. A line that cannot be read stops the run with an error
naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

SAMPLE_RATE = 16000


def read_manifest(path: Path, text_field: str) -> list[dict]:
    """The manifest's lines as dicts, each with its absolute ``_audio`` path and 1-based ``_line`` number."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as err:
                raise SystemExit(f"{where}: not a JSON object ({err})") from None
            if not isinstance(line, dict) or not isinstance(line.get("audio_filepath"), str):
                raise SystemExit(f"{where}: a line needs an 'audio_filepath' string")
            if line.get("_skipme"):
                continue
            audio = Path(os.path.expanduser(line["audio_filepath"]))
            line["_audio"] = audio if audio.is_absolute() else path.parent / audio
            line["_line"] = lineno
            line.setdefault(text_field, None)
            rows.append(line)
    if not rows:
        raise SystemExit(f"{path}: no utterances")
    return rows


def load_segment(row: dict):
    """Float32 16 kHz mono samples of one manifest line (its offset/duration segment, else the whole file)."""
    from faster_whisper import decode_audio

    audio = row["_audio"]
    if not audio.is_file():
        raise SystemExit(f"line {row['_line']}: audio file not found: {audio}")
    samples = decode_audio(str(audio), sampling_rate=SAMPLE_RATE)
    start = int(round(float(row.get("offset") or 0.0) * SAMPLE_RATE))
    stop = start + int(round(float(row["duration"]) * SAMPLE_RATE)) if row.get("offset") else None
    return samples[start:stop]


def resolve_model(name: str, models_dir: Path) -> Path:
    """A model folder: ``name`` as a path when it is one, else ``models_dir/name``."""
    path = Path(name)
    if not (path / "model.bin").is_file():
        path = models_dir / name
    if not (path / "model.bin").is_file():
        known = sorted(p.name for p in models_dir.iterdir()) if models_dir.is_dir() else []
        raise SystemExit(f"no Whisper model {name!r}: neither {name}/model.bin nor {path}/model.bin exists "
                         f"(models in {models_dir}: {', '.join(known) or 'none'}; run bash bench/peers/install_whisper.sh)")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="NeMo JSON-lines manifest")
    parser.add_argument("--model", default="tiny.en", help="tiny.en, base, or a CTranslate2 Whisper folder")
    parser.add_argument("--models-dir", type=Path, default=Path(sys.prefix) / "models",
                        help="where install_whisper.sh put the models (default: <venv>/models)")
    parser.add_argument("--out", type=Path, required=True, help="output JSON")
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 CPU threads")
    parser.add_argument("--compute-type", default="int8", help="CTranslate2 compute type (int8, float32 ...)")
    parser.add_argument("--beam-size", type=int, default=1, help="1 = greedy")
    parser.add_argument("--language", default="en")
    parser.add_argument("--text-field", default="text", help="manifest key holding the reference transcript")
    args = parser.parse_args()

    import ctranslate2
    import faster_whisper
    import numpy as np
    from faster_whisper import WhisperModel

    rows = read_manifest(args.manifest, args.text_field)
    model_dir = resolve_model(args.model, args.models_dir)

    t = time.perf_counter()
    model = WhisperModel(str(model_dir), device="cpu", compute_type=args.compute_type, cpu_threads=args.threads)
    options = dict(language=args.language, beam_size=args.beam_size, temperature=0.0, vad_filter=False,
                   without_timestamps=True, condition_on_previous_text=False)
    # One call on silence so that lazy initialisation is not charged to the first utterance.
    list(model.transcribe(np.zeros(SAMPLE_RATE, np.float32), **options)[0])
    load_seconds = time.perf_counter() - t

    t = time.perf_counter()
    audio = [load_segment(row) for row in rows]
    audio_read_seconds = time.perf_counter() - t

    results = []
    compute = 0.0
    for row, samples in zip(rows, audio, strict=True):
        t = time.perf_counter()
        segments, _ = model.transcribe(samples, **options)
        text = " ".join(s.text.strip() for s in segments).strip()  # segments is lazy: decoding happens here
        seconds = time.perf_counter() - t
        compute += seconds
        results.append({
            "line": row["_line"], "audio_filepath": row["audio_filepath"], "offset": float(row.get("offset") or 0.0),
            "duration": len(samples) / SAMPLE_RATE, "text": row[args.text_field], "hypothesis": text,
            "compute_seconds": round(seconds, 4),
        })
    audio_seconds = sum(len(a) for a in audio) / SAMPLE_RATE

    out = {
        "model": args.model, "model_dir": str(model_dir), "manifest": str(args.manifest),
        "utterances_count": len(results), "audio_seconds": audio_seconds, "compute_seconds": compute,
        "rtfx": audio_seconds / compute if compute else None, "load_seconds": load_seconds,
        "audio_read_seconds": audio_read_seconds,
        "settings": {**options, "device": "cpu", "compute_type": args.compute_type, "cpu_threads": args.threads},
        "versions": {"faster_whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__,
                     "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "utterances": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.model}: {len(results)} utterances, {audio_seconds:.1f} s of audio in {compute:.2f} s "
          f"(RTFx {out['rtfx']:.1f}; load {load_seconds:.2f} s) -> {args.out}")


if __name__ == "__main__":
    main()
