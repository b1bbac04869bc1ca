"""Transducer loss speed and memory: speechkit's RNN-T / TDT / multi-blank backends against torchaudio's rnnt_loss.

Every case (one loss, one backend, one shape) runs in its own fresh interpreter, so memory peaks do not mix:

- time: forward + backward of the public API (``speechkit.losses.rnnt_loss(...).backward()`` etc.), the median of
  ``--repeat`` calls after one warm-up call (which compiles the Numba kernels or loads them from Numba's cache);
- memory: on CPU the peak resident set size during the timed calls minus the resident size just before them (the
  inputs are built and the warm-up is done by then; ``/proc/self/clear_refs`` resets the peak), on CUDA
  ``torch.cuda.max_memory_allocated`` minus the allocation before the timed calls. Reported in MB and in units of
  the joint (``B*T*(U+1)*K*4`` bytes): the floor for a loss that returns a dense gradient is 1 joint.

Backends: ``numba`` / ``numba_cuda`` / ``torch`` go through the public API (validation, the autograd Function,
``backward``); ``numba:kernel`` / ``numba_cuda:kernel`` call the backend contract (``rnnt_cost_grad`` ...) directly,
which is the kernels' own time and memory (one call returns costs and gradients).

Shapes: ``small`` B4/T100/U30/V128 and ``large`` B8/T200/U60/V1024 (CPU, and CUDA when present), ``gpu``
B32/T400/U120/V1024 (CUDA only). TDT uses durations [0, 1, 2, 3, 4], multi-blank big blanks [2, 4, 8]. The pure
PyTorch reference (``backend="torch"``) runs at the small shape only: it is slow by design. A first row measures
the Numba CPU kernels' cold compile time (an empty Numba cache directory).

    python bench/losses.py [--repeat 7] [--shapes small,large,gpu] [--out bench/results/losses.json]

Prints a table with ratios to torchaudio (same device, same shape, same run) and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {  # name -> (B, T, U, V)
    "small": (4, 100, 30, 128),
    "large": (8, 200, 60, 1024),
    "gpu": (32, 400, 120, 1024),
}
TDT_DURATIONS = (0, 1, 2, 3, 4)
BIG_BLANKS = (2, 4, 8)


# ----------------------------------------------------------------------------------------------------------------
# one case, inside its own interpreter


def _proc_status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _run_case(spec: dict) -> dict:
    import torch

    B, T, U, V = spec["shape"]
    loss, backend, device = spec["loss"], spec["backend"], torch.device(spec["device"])
    torch.manual_seed(0)
    extra = {"rnnt": 0, "tdt": len(TDT_DURATIONS), "multiblank": len(BIG_BLANKS)}[loss]
    K = V + 1 + extra
    logits = torch.randn(B, T, U + 1, K, device=device)
    targets = torch.randint(0, V, (B, U), dtype=torch.int32, device=device)
    # ragged lengths, as in a real batch; the longest sample fills the tensor (torchaudio requires it)
    logit_lengths = torch.linspace(T * 0.7, T, B).round().int().to(device)
    target_lengths = torch.linspace(U * 0.7, U, B).round().int().to(device)

    if backend == "torchaudio":
        import torchaudio.functional as taf

        def step(x):
            return taf.rnnt_loss(x, targets, logit_lengths, target_lengths, blank=V, reduction="mean")
    elif backend.endswith(":kernel"):
        # The backend contract alone (costs + gradients in one call), without the API's validation, autograd
        # Function and backward scaling: what the kernels themselves cost.
        import importlib

        from speechkit.losses.backends import BACKENDS

        mod = importlib.import_module(BACKENDS[backend.split(":")[0]].module)
        if loss == "rnnt":
            def kernel(x):
                return mod.rnnt_cost_grad(x, targets, logit_lengths, target_lengths, V, 0.0, -1.0, True)
        elif loss == "tdt":
            def kernel(x):
                return mod.tdt_cost_grad(x, targets, logit_lengths, target_lengths, V, TDT_DURATIONS, 0.05, 0.0,
                                         -1.0, True)
        else:
            def kernel(x):
                return mod.multiblank_cost_grad(x, targets, logit_lengths, target_lengths, V + len(BIG_BLANKS),
                                                BIG_BLANKS, 0.05, 0.0, -1.0, True)

        class _Done:  # step(x).backward() without autograd: the gradients are already computed
            def __init__(self, out):
                self.out = out

            def backward(self):
                del self.out

        def step(x):
            return _Done(kernel(x.detach()))
    else:
        import speechkit.losses as sl

        if loss == "rnnt":
            def step(x):
                return sl.rnnt_loss(x, targets, logit_lengths, target_lengths, backend=backend)
        elif loss == "tdt":
            def step(x):
                return sl.tdt_loss(x, targets, logit_lengths, target_lengths, durations=TDT_DURATIONS, sigma=0.05,
                                   backend=backend)
        else:
            def step(x):
                return sl.multiblank_rnnt_loss(x, targets, logit_lengths, target_lengths,
                                               big_blank_durations=BIG_BLANKS, sigma=0.05, backend=backend)

    x = logits.requires_grad_(True)
    cuda = device.type == "cuda"

    def once() -> float:
        x.grad = None
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(x).backward()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    first = once()  # compile / cache load / cuDNN-style warm-up
    x.grad = None
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _proc_status()["VmRSS"]
        exact = _reset_peak_rss()
    times = [once() for _ in range(spec["repeat"])]
    x.grad = None
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _proc_status()["VmHWM"] - base if exact else -1
    joint = B * T * (U + 1) * K * 4
    return {
        **{k: spec[k] for k in ("loss", "backend", "device", "shape_name")},
        "shape": [B, T, U, V], "K": K, "threads": torch.get_num_threads(),
        "median_s": statistics.median(times), "min_s": min(times), "times_s": times, "first_call_s": first,
        "peak_above_inputs_bytes": peak, "joint_bytes": joint,
        "peak_above_inputs_joints": peak / joint if peak >= 0 else None,
    }


def _cold_compile() -> dict:
    """First call of the Numba CPU kernels with an empty cache: what a fresh machine pays once."""
    import torch

    t0 = time.perf_counter()
    from speechkit.losses import numba_cpu as nc
    t_import = time.perf_counter() - t0
    logits = torch.randn(1, 3, 2, 7)
    args = (torch.tensor([[0]]), torch.tensor([3]), torch.tensor([1]))
    t0 = time.perf_counter()
    nc.rnnt_cost_grad(logits[..., :4], *args, 3, 0.0, -1.0, True)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    nc.tdt_cost_grad(logits, *args, 3, (0, 1, 2), 0.0, 0.0, -1.0, True)
    nc.multiblank_cost_grad(logits, *args, 6, (2, 3), 0.0, 0.0, -1.0, True)
    t_more = time.perf_counter() - t0
    return {"import_s": t_import, "first_call_s": t_first, "tdt_and_multiblank_after_s": t_more}


# ----------------------------------------------------------------------------------------------------------------
# driver


def _subprocess(arg: str, payload: dict, env: dict | None = None) -> dict | None:
    argv = [sys.executable, str(Path(__file__).resolve()), arg, json.dumps(payload)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        print(f"  FAILED {payload}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}",
              file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cases(shapes: list[str], cuda: bool, repeat: int) -> list[dict]:
    cases = []
    devices = ["cpu"] + (["cuda"] if cuda else [])
    for device in devices:
        for shape_name in shapes:
            if shape_name == "gpu" and device != "cuda":
                continue
            ours = "numba_cuda" if device == "cuda" else "numba"
            rows = [("rnnt", "torchaudio")] + [(loss, ours) for loss in ("rnnt", "tdt", "multiblank")]
            rows += [(loss, ours + ":kernel") for loss in ("rnnt", "tdt", "multiblank")]
            if shape_name == "small":
                rows += [(loss, "torch") for loss in ("rnnt", "tdt", "multiblank")]
            for loss, backend in rows:
                cases.append({"loss": loss, "backend": backend, "device": device, "shape_name": shape_name,
                              "shape": SHAPES[shape_name], "repeat": repeat if backend != "torch" else 1})
    return cases


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(_run_case(json.loads(sys.argv[2]))))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--cold-compile":
        print(json.dumps(_cold_compile()))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--shapes", default="small,large,gpu", help="comma list of: " + ", ".join(SHAPES))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "losses.json"))
    parser.add_argument("--no-compile", action="store_true", help="skip the cold-compile measurement")
    args = parser.parse_args()

    import numba
    import torch
    import torchaudio

    cuda = torch.cuda.is_available()
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}; choose from {list(SHAPES)}")

    compile_row = None
    if not args.no_compile:
        with tempfile.TemporaryDirectory() as cache:
            compile_row = _subprocess("--cold-compile", {}, env={**os.environ, "NUMBA_CACHE_DIR": cache})
        if compile_row:
            print(f"numba CPU cold compile: first call {compile_row['first_call_s']:.1f} s "
                  f"(+{compile_row['tdt_and_multiblank_after_s']:.1f} s for TDT and multi-blank), "
                  f"import {compile_row['import_s']:.2f} s")

    load_before = os.getloadavg()
    rows = []
    for case in _cases(shapes, cuda, args.repeat):
        r = _subprocess("--case", case)
        if r is not None:
            rows.append(r)
            print(f"  {r['device']:4} {r['shape_name']:5} {r['loss']:10} {r['backend']:17} {r['median_s'] * 1e3:9.1f} ms",
                  file=sys.stderr)

    base = {(r["device"], r["shape_name"]): r["median_s"] for r in rows if r["backend"] == "torchaudio"}
    ours = {(r["device"], r["shape_name"], r["backend"]): r["median_s"] for r in rows if r["loss"] == "rnnt"}
    for r in rows:
        key = (r["device"], r["shape_name"])
        r["vs_torchaudio"] = r["median_s"] / base[key] if key in base else None
        own = ours.get((*key, r["backend"])) if r["backend"] != "torchaudio" else None
        r["vs_our_rnnt"] = r["median_s"] / own if own else None

    head = (f"{'device':6} {'shape':22} {'loss':10} {'backend':17} {'fwd+bwd ms':>11} {'x torchaudio':>12} "
            f"{'x our rnnt':>10} {'peak MB':>9} {'joints':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        B, T, U, V = r["shape"]
        shape = f"B{B}/T{T}/U{U}/V{V}"
        ratio = f"{r['vs_torchaudio']:.3f}" if r["vs_torchaudio"] is not None else "-"
        ratio2 = f"{r['vs_our_rnnt']:.2f}" if r["vs_our_rnnt"] is not None else "-"
        mb = r["peak_above_inputs_bytes"] / 2**20
        joints = f"{r['peak_above_inputs_joints']:.2f}" if r["peak_above_inputs_joints"] is not None else "-"
        print(f"{r['device']:6} {shape:22} {r['loss']:10} {r['backend']:17} {r['median_s'] * 1e3:11.1f} "
              f"{ratio:>12} {ratio2:>10} {mb:9.1f} {joints:>6}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "python": platform.python_version(), "torch": torch.__version__, "torchaudio": torchaudio.__version__,
        "numba": numba.__version__, "repeat": args.repeat,
        # other work on the machine skews absolute times (ratios within one run are more stable)
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "numba_cpu_cold_compile": compile_row, "rows": rows,
    }, indent=2))
    print(f"load average (1 min) {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after, on "
          f"{os.cpu_count()} CPUs")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
