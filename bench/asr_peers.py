"""Whisper peers on a NeMo manifest: WER with speechkit's own scorer and speed (RTFx) on CPU.

For each model (Whisper tiny.en and base, faster-whisper int8 on CPU, greedy) this runs
``bench/peers/whisper_transcribe.py`` in the peer's virtual environment (``.peers/whisper``, made by
``bash bench/peers/install_whisper.sh``; it never enters speechkit's), then normalises reference and
hypothesis with :func:`speechkit.text.normalize.normalize_english` and scores them with
:func:`speechkit.metrics.wer.word_error_rate` (corpus-level: total edits over total reference words).
Prints a table and writes ``bench/results/asr_peers_<name>.json`` (``<name>``: ``--name``, else the manifest's
folder and file name, e.g. ``tiny_test`` for ``manifests/tiny/test.json``).

With ``--group-by FIELD`` (default ``engine``, present in synthetic corpora) the WER is also broken down by that
manifest field (e.g. ``--group-by speaker``); a manifest without the field gets no breakdown.

RTFx = seconds of audio / seconds of compute (model load and audio file decoding excluded; see the transcribe
script). Whisper pads every input to 30 s, so short utterances cost nearly as much as 30 s ones: RTFx on a
corpus of 2-5 s clips is far below what the same model reaches on long audio.

    .venv/bin/python bench/asr_peers.py manifests/tiny/test.json
    .venv/bin/python bench/asr_peers.py /tmp/synth_eval/test.json --name synth_1h_test
    .venv/bin/python bench/asr_peers.py /tmp/librivox/librivox.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from speechkit.data.manifests import read_manifest
from speechkit.metrics.wer import ErrorRate, word_error_rate
from speechkit.text.normalize import normalize_english

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".peers" / "whisper" / "bin" / "python"
TRANSCRIBE = ROOT / "bench" / "peers" / "whisper_transcribe.py"
MODELS = ("tiny.en", "base")


def default_name(manifest: Path) -> str:
    """``<folder>_<stem>`` of a manifest path, or just the stem when the folder has the same name."""
    folder, stem = manifest.resolve().parent.name, manifest.stem
    return stem if folder in ("", stem) else f"{folder}_{stem}"


def run_peer(manifest: Path, model: str, python: Path, threads: int) -> dict:
    """Transcribe ``manifest`` with one Whisper model in the peer environment; its output JSON as a dict."""
    with tempfile.TemporaryDirectory(prefix="speechkit-asr-peer-") as tmp:
        out = Path(tmp) / "hyp.json"
        cmd = [str(python), str(TRANSCRIBE), str(manifest), "--model", model, "--out", str(out),
               "--threads", str(threads)]
        # The peer's own environment only: speechkit's venv must not leak into it (PYTHONPATH would).
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{model}: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
        print(proc.stdout.strip(), flush=True)
        return json.loads(out.read_text(encoding="utf-8"))


def score(references: dict[int, str], groups: dict[int, str], peer: dict) -> tuple[ErrorRate, dict, list[dict]]:
    """Corpus WER of the peer's hypotheses against ``references`` (manifest line -> text; both sides normalised),
    the WER per group (manifest line -> group name; lines without a group are left out of it), and
    per-utterance rows."""
    utts = peer["utterances"]
    lines = sorted(u["line"] for u in utts)
    if lines != sorted(references):
        raise SystemExit(f"{peer['model']}: hypotheses for manifest lines {lines[:10]}..., references for "
                         f"{sorted(references)[:10]}...: not the same utterances")
    total = ErrorRate()
    by_group: dict[str, ErrorRate] = {}
    rows = []
    for utt in utts:
        r, h = normalize_english(references[utt["line"]]), normalize_english(utt["hypothesis"])
        er = word_error_rate(r, h)
        total += er
        if utt["line"] in groups:
            g = groups[utt["line"]]
            by_group[g] = by_group.get(g, ErrorRate()) + er
        rows.append({"line": utt["line"], "audio_filepath": utt["audio_filepath"], "reference": r, "hypothesis": h,
                     "raw_hypothesis": utt["hypothesis"], "errors": er.errors, "words": er.reference_length})
    return total, dict(sorted(by_group.items())), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="NeMo JSON-lines manifest with reference texts")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="peer models (default: tiny.en base)")
    parser.add_argument("--name", default=None, help="results name (default: <folder>_<stem> of the manifest)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the peer")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON, help="python of the Whisper peer venv")
    parser.add_argument("--group-by", default="engine", help="manifest field to break the WER down by ('' = none)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    if not args.peer_python.is_file():
        raise SystemExit(f"Whisper peer not installed ({args.peer_python} missing): run "
                         f"bash bench/peers/install_whisper.sh (or make peers)")
    # The references, read and checked by speechkit's reader (an unreadable line is an error naming it).
    entries = list(read_manifest(args.manifest))
    references = {e.line: e.text or "" for e in entries}
    groups = {e.line: str(e.extra[args.group_by]) for e in entries if args.group_by and args.group_by in e.extra}
    name = args.name or default_name(args.manifest)

    results = []
    for model in args.models:
        t = time.perf_counter()
        peer = run_peer(args.manifest, model, args.peer_python, args.threads)
        wall = time.perf_counter() - t
        wer, by_group, rows = score(references, groups, peer)
        results.append({
            "model": f"whisper-{model}", "wer": wer.rate, "substitutions": wer.substitutions,
            "deletions": wer.deletions, "insertions": wer.insertions, "reference_words": wer.reference_length,
            "utterances": wer.utterances, "audio_seconds": peer["audio_seconds"],
            "compute_seconds": peer["compute_seconds"], "rtfx": peer["rtfx"], "load_seconds": peer["load_seconds"],
            "wall_seconds": wall, "group_by": args.group_by or None,
            "wer_by_group": {g: {"wer": e.rate, "reference_words": e.reference_length, "utterances": e.utterances}
                             for g, e in by_group.items()},
            "settings": peer["settings"], "versions": peer["versions"], "per_utterance": rows,
        })

    head = f"{'model':<18} {'utts':>5} {'audio s':>8} {'WER %':>7} {'S/D/I':>11} {'compute s':>10} {'RTFx':>6}"
    print(f"{args.manifest} ({name}); normalize_english on both sides; greedy, int8, {args.threads} threads")
    print(head)
    print("-" * len(head))
    for r in results:
        sdi = f"{r['substitutions']}/{r['deletions']}/{r['insertions']}"
        print(f"{r['model']:<18} {r['utterances']:>5} {r['audio_seconds']:>8.1f} {100 * r['wer']:>7.2f} {sdi:>11} "
              f"{r['compute_seconds']:>10.2f} {r['rtfx']:>6.1f}")
        for g, e in r["wer_by_group"].items():
            print(f"  {args.group_by}={g:<28} {e['utterances']:>5} {'':>8} {100 * e['wer']:>7.2f}")

    out = args.out_dir / f"asr_peers_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "manifest": str(args.manifest), "name": name, "normalizer": "normalize_english",
        "machine": platform.platform(), "cpus": os.cpu_count(), "results": results,
    }, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
