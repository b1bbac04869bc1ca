"""Corpus builder speed: how long ``speechkit prepare synth`` takes to build an English corpus, and what it holds.

Builds a fresh corpus in a temporary folder (nothing reused), prints a table and writes
``bench/results/synth.json``. Audio seconds per wall-clock second is the corpus builder's throughput.

    python bench/synth.py [--hours 1] [--num-jobs 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from speechkit.data.synth import SPLITS, SynthConfig, prepare_synth

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--num-jobs", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "synth.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="speechkit-bench-synth-") as tmp:
        t = time.perf_counter()
        summary = prepare_synth(SynthConfig(out_dir=tmp, hours=args.hours, num_jobs=args.num_jobs))
        wall = time.perf_counter() - t
    print(summary)
    rows = []
    for name in SPLITS:
        s = summary.splits[name]
        rows.append({"split": name, "utterances": s.utterances, "hours": s.seconds / 3600, "voices": len(s.speakers),
                     "voice_groups": len(s.groups), "engines": sorted(s.engines)})
    audio = sum(s.seconds for s in summary.splits.values())
    voices = set().union(*(s.speakers for s in summary.splits.values()))
    engines = set().union(*(s.engines for s in summary.splits.values()))
    print()
    print(f"{'hours built':<28} {audio / 3600:.3f}")
    print(f"{'wall time (s)':<28} {wall:.1f}")
    print(f"{'audio s per wall s':<28} {audio / wall:.1f}")
    print(f"{'distinct voices / engines':<28} {len(voices)} / {len(engines)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": platform.platform(), "cpus": os.cpu_count(), "hours_requested": args.hours,
        "wall_seconds": wall, "audio_seconds": audio, "audio_per_wall_second": audio / wall,
        "voices": len(voices), "engines": sorted(engines), "splits": rows,
        "failed": dict(summary.failed),
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
