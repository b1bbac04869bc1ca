"""FastConformer encoder speed: speechkit against NeMo's ConformerEncoder, same config, same weights, same input.

Times the Small model (d_model 176, 4 heads, 16 layers, 12.6M parameters) in eval mode, without gradients, in
float32 with ``--threads`` intra-op threads, on 4 x 10 s of audio:

- "preproc + encoder": waveforms -> log-mel features -> encoder frames;
- "encoder": features -> encoder frames.

NeMo runs in a worker process of the peer environment (``.peers/nemo``, see ``bench/peers/install_nemo.sh``) that
stays up for the whole run, so its import is not timed. The two contenders' runs are interleaved round by round
(alternating who goes first) so both see the same machine load; each figure is the median (and minimum) over
``--rounds x --runs`` timed runs after warm-up. Both encoders hold NeMo's randomly initialised weights (mapped
with ``nemo_state_dict_to_speechkit``), and the run also reports how far apart their outputs are.

    python bench/encoder.py [--rounds 7] [--runs 3] [--threads 2]

Prints a table and writes ``bench/results/encoder.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEMO_PY = ROOT / ".peers" / "nemo" / "bin" / "python"
BATCH, SECONDS, SAMPLE_RATE = 4, 10.0, 16000
SMALL = dict(feat_in=80, n_layers=16, d_model=176, n_heads=4, ff_expansion=4, conv_kernel=9,
             subsampling_factor=8, subsampling_channels=256)


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


# ---------------------------------------------------------------------------------------------------------------
# NeMo worker (runs under the peer's python; imports neither speechkit nor anything from this repository)


def nemo_worker(workdir: Path, threads: int) -> None:
    import numpy as np
    import torch
    from nemo.collections.asr.modules import AudioToMelSpectrogramPreprocessor, ConformerEncoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc = ConformerEncoder(
        feat_in=SMALL["feat_in"], n_layers=SMALL["n_layers"], d_model=SMALL["d_model"], n_heads=SMALL["n_heads"],
        ff_expansion_factor=SMALL["ff_expansion"], conv_kernel_size=SMALL["conv_kernel"], subsampling="dw_striding",
        subsampling_factor=SMALL["subsampling_factor"], subsampling_conv_channels=SMALL["subsampling_channels"],
        self_attention_model="rel_pos", xscaling=True, untie_biases=True, conv_norm_type="batch_norm",
    ).eval()
    pre = AudioToMelSpectrogramPreprocessor(
        sample_rate=SAMPLE_RATE, window_size=0.025, window_stride=0.01, window="hann", n_fft=512, features=80,
        normalize="per_feature", dither=0.0, pad_to=0,
    ).eval()
    wav = torch.from_numpy(np.load(workdir / "audio.npy"))
    lens = torch.full((wav.size(0),), wav.size(1), dtype=torch.int64)
    with torch.inference_mode():
        feats, feat_lens = pre(input_signal=wav, length=lens)

    def full() -> None:
        f, fl = pre(input_signal=wav, length=lens)
        enc(audio_signal=f, length=fl)

    def encoder() -> None:
        enc(audio_signal=feats, length=feat_lens)

    def reply(obj: dict) -> None:
        print("RESULT " + json.dumps(obj), flush=True)

    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "dump":
            with torch.inference_mode():
                y, y_lens = enc(audio_signal=feats, length=feat_lens)
            torch.save({"state_dict": {k: v.clone() for k, v in enc.state_dict().items()},
                        "feats": feats.clone(), "feat_lens": feat_lens.clone(),
                        "y": torch.from_numpy(y.numpy().copy()), "y_lens": torch.from_numpy(y_lens.numpy().copy())},
                       workdir / "nemo.pt")
            import nemo

            reply({"nemo": nemo.__version__, "torch": torch.__version__,
                   "params": sum(p.numel() for p in enc.parameters())})
        elif cmd[0] == "time":
            with torch.inference_mode():
                reply({"seconds": _timed(full if cmd[1] == "full" else encoder, int(cmd[2]))})
        elif cmd[0] == "quit":
            return


class NemoWorker:
    """The peer process, driven line by line over stdin/stdout."""

    def __init__(self, workdir: Path, threads: int) -> None:
        self.proc = subprocess.Popen(
            [str(NEMO_PY), str(Path(__file__).resolve()), "--nemo-worker", str(workdir), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tempfile.gettempdir(),
        )

    def ask(self, command: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise RuntimeError(f"NeMo worker exited (code {self.proc.wait()}) while running {command!r}")

    def close(self) -> None:
        try:
            self.ask("quit")
        except Exception:
            pass
        self.proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "encoder.json"))
    parser.add_argument("--nemo-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nemo_worker:
        nemo_worker(Path(args.nemo_worker), args.threads)
        return

    import numpy as np
    import torch

    from speechkit.audio.features import FeatureConfig, MelFrontend
    from speechkit.modules.fastconformer import FastConformerConfig, FastConformerEncoder, nemo_state_dict_to_speechkit

    if not NEMO_PY.exists():
        sys.exit("the NeMo peer is missing: run `bash bench/peers/install_nemo.sh` (or `make peers`) first")
    torch.set_num_threads(args.threads)
    n = int(SECONDS * SAMPLE_RATE)
    audio = (0.1 * np.random.default_rng(0).standard_normal((BATCH, n))).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="speechkit-bench-encoder-") as tmp:
        workdir = Path(tmp)
        np.save(workdir / "audio.npy", audio)
        worker = NemoWorker(workdir, args.threads)
        try:
            info = worker.ask("dump")
            ref = torch.load(workdir / "nemo.pt", weights_only=True)
            enc = FastConformerEncoder(FastConformerConfig(**SMALL)).eval()
            enc.load_state_dict(nemo_state_dict_to_speechkit(ref["state_dict"]))
            pre = MelFrontend(FeatureConfig(dither=0.0)).eval()
            wav = torch.from_numpy(audio)
            lens = torch.full((BATCH,), n, dtype=torch.int64)
            with torch.inference_mode():
                feats, feat_lens = pre(wav, lens)
                y, y_lens = enc(ref["feats"], ref["feat_lens"])  # NeMo's own features: encoder parity only
            assert torch.equal(y_lens, ref["y_lens"])
            ref_y = ref["y"].transpose(1, 2)  # NeMo returns (B, d, T')
            max_diff = max(float((y[i, :k] - ref_y[i, :k]).abs().max()) for i, k in enumerate(y_lens.tolist()))

            def full() -> None:
                f, fl = pre(wav, lens)
                enc(f, fl)

            def encoder() -> None:
                enc(feats, feat_lens)

            times: dict[tuple[str, str], list[float]] = {}
            with torch.inference_mode():
                for what in ("full", "enc"):  # warm-up
                    _timed(full if what == "full" else encoder, 3)
                    worker.ask(f"time {what} 3")
                for r in range(args.rounds):
                    order = ("speechkit", "nemo") if r % 2 == 0 else ("nemo", "speechkit")
                    for what in ("full", "enc"):
                        for who in order:
                            if who == "speechkit":
                                ts = _timed(full if what == "full" else encoder, args.runs)
                            else:
                                ts = worker.ask(f"time {what} {args.runs}")["seconds"]
                            times.setdefault((who, what), []).extend(ts)
        finally:
            worker.close()

    label = {"full": "preproc + encoder", "enc": "encoder"}
    rows = []
    for what in ("full", "enc"):
        sk, ne = times[("speechkit", what)], times[("nemo", what)]
        rows.append({
            "what": label[what], "speechkit_median_s": statistics.median(sk), "speechkit_min_s": min(sk),
            "nemo_median_s": statistics.median(ne), "nemo_min_s": min(ne),
            "speedup_median": statistics.median(ne) / statistics.median(sk), "speedup_min": min(ne) / min(sk),
            "speechkit_all_s": sk, "nemo_all_s": ne,
        })
    print(f"FastConformer Small ({sum(p.numel() for p in enc.parameters()) / 1e6:.1f}M params), {BATCH} x "
          f"{SECONDS:g} s, fp32, {args.threads} threads, eval, no grad; {args.rounds} rounds x {args.runs} runs")
    print(f"{'':<20} {'speechkit (s)':>14} {'NeMo ' + info['nemo'] + ' (s)':>16} {'NeMo / speechkit':>17}")
    for row in rows:
        print(f"{row['what']:<20} {row['speechkit_median_s']:>14.3f} {row['nemo_median_s']:>16.3f} "
              f"{row['speedup_median']:>16.2f}x   (min: {row['speechkit_min_s']:.3f} vs {row['nemo_min_s']:.3f}, "
              f"{row['speedup_min']:.2f}x)")
    print(f"encoder outputs on NeMo's features, valid frames: max |speechkit - NeMo| = {max_diff:.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "nemo": info["nemo"], "nemo_torch": info["torch"], "threads": args.threads,
        "config": SMALL, "params": sum(p.numel() for p in enc.parameters()), "nemo_params": info["params"],
        "batch": BATCH, "seconds_per_utterance": SECONDS, "rounds": args.rounds, "runs_per_round": args.runs,
        "max_abs_diff_vs_nemo": max_diff, "rows": rows,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
