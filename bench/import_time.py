"""Start-up cost: how long ``import speechkit`` and ``speechkit --help`` take, against NeMo's ASR import.

Each measurement runs in a fresh interpreter (median of ``--repeat`` runs after one warm-up so that the file
cache is warm for every contender). Prints a table and writes ``bench/results/import_time.json``.

    python bench/import_time.py [--repeat 5]

The NeMo row appears when ``make peers`` has built ``.peers/nemo``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numba", "lhotse", "lightning", "pytorch_lightning", "librosa", "torch")


def _time_python(python: str, code: str, repeat: int) -> tuple[float, list[str]]:
    probe = (
        "import sys, time, json\n"
        f"t = time.perf_counter()\n{code}\n"
        "dt = time.perf_counter() - t\n"
        f"print(json.dumps([dt, sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    subprocess.run([python, "-c", probe], check=True, capture_output=True, cwd=ROOT)  # warm-up
    times, heavy = [], []
    for _ in range(repeat):
        out = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT)
        dt, heavy = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(dt)
    return statistics.median(times), heavy


def _time_command(argv: list[str], repeat: int) -> float:
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "import_time.json"))
    args = parser.parse_args()

    rows = []
    t, heavy = _time_python(sys.executable, "import speechkit", args.repeat)
    rows.append({"what": "import speechkit", "seconds": t, "heavy_modules": heavy})
    t, heavy = _time_python(sys.executable, "import speechkit.cli", args.repeat)
    rows.append({"what": "import speechkit.cli", "seconds": t, "heavy_modules": heavy})
    t = _time_command([sys.executable, "-m", "speechkit", "--help"], args.repeat)
    rows.append({"what": "speechkit --help (process)", "seconds": t, "heavy_modules": []})
    t, heavy = _time_python(sys.executable, "import torch", args.repeat)
    rows.append({"what": "import torch (floor for any model code)", "seconds": t, "heavy_modules": heavy})
    nemo_py = ROOT / ".peers" / "nemo" / "bin" / "python"
    if nemo_py.exists():
        t, heavy = _time_python(str(nemo_py), "import nemo.collections.asr", max(1, args.repeat // 2))
        rows.append({"what": "peer: import nemo.collections.asr", "seconds": t, "heavy_modules": heavy})
    else:
        print("(NeMo peer not installed: run `make peers` to add its row)", file=sys.stderr)

    width = max(len(r["what"]) for r in rows)
    print(f"{'what'.ljust(width)}  {'seconds':>8}  heavy modules loaded")
    for r in rows:
        print(f"{r['what'].ljust(width)}  {r['seconds']:>8.3f}  {','.join(r['heavy_modules']) or '-'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": platform.platform(), "python": platform.python_version(), "repeat": args.repeat,
        "rows": rows,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
