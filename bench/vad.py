"""speechkit's bundled VAD against silero-vad and webrtcvad: frame AUROC, F1, detection error rate, RTF.

Conditions (every system sees the same 16-bit wav files; all scoring is on 20 ms frames):

- **held-out mixtures** (``synth``): speech utterances of a ``speechkit prepare synth`` test split (default
  ``data/synth_en/test.json``) placed between silences by :func:`speechkit.data.vad_mixtures.make_mixture` with the
  settings of ``speechkit prepare vad`` (gains, 30 % reverberation, 10 % speech-free files), with the background of
  the *held-out* test kinds (brown, blue, chords, hum; none of them used to train the bundled model: it was trained on
  white, pink and tones), one kind per mixture in turn, at a fixed SNR: ``clean`` (no background), 10 dB, 0 dB.
  Mixture ``i`` uses the same random seed in every condition, so only the background differs between conditions.
  Frame labels come from the mixer: a frame is speech when more than half its samples are inside a speech clip
  (clips are the utterances with leading/trailing silence trimmed, 40 dB below their loudest 10 ms).
- **LibriVox** (``librivox``): the 5 real read-speech utterances of pocketsphinx-testdata (``speechkit prepare
  librivox``), each mixture holding all 5 in a random order with random gains (+-6 dB) between silences of 0.5-3 s,
  with pink or brown noise (half the mixtures each) at 10 dB and 0 dB, or none (``clean``). Pink is one of the
  bundled model's training noises, brown is not. Frame labels of real speech: the utterance's *extent*, from the
  first to the last run of at least 3 loud 10 ms frames of the clean recording, where loud means above
  ``max(noise floor + 10 dB, peak - 35 dB)`` (noise floor = 10th percentile of its 10 ms frame energies); pauses
  between words inside an utterance count as speech, the recording's own room noise before and after as non-speech.
  The SNR is relative to the power of these labelled speech samples (as in the mixer).

Systems:

- ``speechkit``: the bundled model (``speechkit.vad.load_model()``); scores = frame probabilities; decisions after
  its own post-processing (the dev-tuned settings in the model file: onset 0.7, offset 0.6, no pads, min on/off
  0.2 s), and also raw ``p > 0.5``.
- ``silero``: silero-vad 6.2.3's ONNX model (512-sample windows, 32 ms; each 20 ms frame takes the window holding its
  centre sample); decisions ``p > 0.5`` (its default threshold), and also with its default segment settings of
  ``get_speech_timestamps`` (threshold 0.5, release 0.35, min speech 0.25 s, min silence 0.1 s, pad 0.03 s) applied
  with speechkit's post-processor (an approximation of silero's own segmenter).
- ``webrtcvad`` modes 0-3: decisions on 20 ms frames (no scores, so no AUROC).

Metrics per condition, pooled over all its frames: frame AUROC (scores only), precision / recall / F1 of speech
frames, detection error rate DetER = (false alarm + miss) / speech frames, and RTF = CPU seconds / audio seconds
over all files (model calls only, one thread each: torch for speechkit, onnxruntime for silero; webrtcvad is
single-threaded C; the fastest of ``--repeat`` passes). CPU time of the process (``time.process_time``), not wall
time, because the benchmark machine may be shared: a busy neighbour slows the wall clock, not the CPU seconds used. silero's RTF is given for its per-window streaming loop and
for its "sequence" ONNX export (same probabilities, many windows per call: its fastest torch-free path); the
target compares with the faster. Nothing is tuned on these conditions.

    bash bench/peers/install_vad.sh                  # .peers/vad: silero-vad (ONNX, no torch) + webrtcvad
    speechkit prepare librivox --out-dir data/librivox
    .venv/bin/python bench/vad.py                    # ~1 minute on 2 idle cores; writes bench/results/vad.json
    .venv/bin/python bench/vad.py --speech /tmp/synth_eval/test.json --mixtures 40

Prints a table and writes ``bench/results/vad.json`` (settings, the exact command, per-condition metrics, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".peers" / "vad" / "bin" / "python"
PEER_SCRIPT = ROOT / "bench" / "peers" / "vad_peers.py"
SR = 16000
HOP = 320  # 20 ms
HELDOUT = ("brown", "blue", "chords", "hum")
LIBRIVOX_NOISES = ("pink", "brown")
SNRS: tuple[float | None, ...] = (None, 10.0, 0.0)  # None: clean


@dataclass
class Item:
    """One benchmark file: where it is, its 20 ms frame labels ``(T,)``, its condition."""

    path: Path
    labels: np.ndarray
    dataset: str  # "synth" | "librivox"
    snr: float | None
    noise: str


@dataclass
class Scores:
    """What one system gives for every item: scores ``(T_i,)`` or None, decisions ``(T_i,)`` per variant."""

    scores: list[np.ndarray] | None
    decisions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # variant (or "scores") -> compute seconds


def condition_name(snr: float | None) -> str:
    return "clean" if snr is None else f"{snr:g} dB"


# ----------------------------------------------------------------------------------------------------------
# Audio


def build_synth(speech_manifest: Path, out: Path, mixtures: int, seed: int) -> list[Item]:
    """Held-out-noise mixtures of the manifest's utterances at every SNR of :data:`SNRS` (same speech per index)."""
    from speechkit.audio.io import load_audio, save_audio
    from speechkit.data.manifests import read_manifest
    from speechkit.data.vad_mixtures import VadMixtureConfig, make_mixture, trim_silence

    entries = read_manifest(speech_manifest, require_text=False)
    clips = [c for c in (trim_silence(load_audio(e.audio_path(), SR), SR) for e in entries) if c.shape[0]]
    if not clips:
        raise SystemExit(f"{speech_manifest}: no non-silent utterances")
    items = []
    for snr in SNRS:
        cfg = VadMixtureConfig(speech=[str(speech_manifest)], snr_db=[snr or 0.0, snr or 0.0], seed=seed)
        for i in range(mixtures):
            kind = "none" if snr is None else HELDOUT[i % len(HELDOUT)]
            samples, labels, _ = make_mixture(clips, kind, cfg, np.random.default_rng([seed, i]))
            path = save_audio(out / "synth" / condition_name(snr).replace(" ", "") / f"{i:04d}-{kind}.wav", samples,
                              SR)
            items.append(Item(path, labels, "synth", snr, kind))
    return items


def speech_extent(x: np.ndarray) -> tuple[int, int]:
    """Sample span ``[start, end)`` of a clean real utterance ``(N,)``; the rule is in the module docstring."""
    hop = SR // 100
    n = x.shape[0] // hop
    rms = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1) + 1e-20)
    db = 20 * np.log10(rms)
    threshold = max(float(np.percentile(db, 10)) + 10.0, float(db.max()) - 35.0)
    loud = db > threshold
    # Runs of >= 3 loud frames: a single click does not start or end speech.
    runs = np.convolve(loud.astype(int), np.ones(3, dtype=int), mode="valid") == 3
    idx = np.nonzero(runs)[0]
    if idx.size == 0:
        raise ValueError("no speech found in a LibriVox utterance (all frames below the energy threshold)")
    return int(idx[0] * hop), int((idx[-1] + 3) * hop)


def build_librivox(manifest: Path, out: Path, mixtures: int, seed: int) -> tuple[list[Item], list[dict]]:
    """Real utterances between silences, clean and with pink / brown noise at 10 and 0 dB; also the label spans."""
    from speechkit.audio.io import load_audio, save_audio
    from speechkit.data.manifests import read_manifest
    from speechkit.data.vad_mixtures import make_background

    utts = []
    spans = []
    for e in read_manifest(manifest, require_text=False):
        x = load_audio(e.audio_path(), SR).astype(np.float64)
        s, t = speech_extent(x)
        utts.append((x, s, t))
        spans.append({"audio": str(e.audio_path()), "duration": round(x.shape[0] / SR, 3),
                      "speech_start": round(s / SR, 3), "speech_end": round(t / SR, 3)})
    items = []
    for i in range(mixtures):
        rng = np.random.default_rng([seed, 1000 + i])
        parts: list[np.ndarray] = []
        speech_mask: list[np.ndarray] = []
        for k in rng.permutation(len(utts)):
            gap = np.zeros(int(rng.uniform(0.5, 3.0) * SR))
            x, s, t = utts[k]
            parts += [gap, x * 10 ** (rng.uniform(-6, 6) / 20)]
            mask = np.zeros(x.shape[0], dtype=bool)
            mask[s:t] = True
            speech_mask += [np.zeros(gap.shape[0], dtype=bool), mask]
        tail = int(rng.uniform(0.5, 3.0) * SR)
        n = sum(p.shape[0] for p in parts) + tail
        n = -(-n // HOP) * HOP  # whole 20 ms frames
        clean = np.zeros(n)
        is_speech = np.zeros(n, dtype=bool)
        pos = 0
        for p, m in zip(parts, speech_mask, strict=True):
            clean[pos : pos + p.shape[0]] = p
            is_speech[pos : pos + p.shape[0]] = m
            pos += p.shape[0]
        labels = (is_speech.reshape(-1, HOP).sum(1) * 2 > HOP).astype(np.uint8)
        p_speech = float(np.mean(clean[is_speech] ** 2))
        noise_rng = np.random.default_rng([seed, 2000 + i])
        floor = 10 ** (-65 / 20) * noise_rng.standard_normal(n)  # as the mixer: no digital silence
        for snr in SNRS:
            kind = "none" if snr is None else LIBRIVOX_NOISES[i % len(LIBRIVOX_NOISES)]
            y = clean + floor
            if snr is not None:
                y = y + make_background(kind, n, SR, noise_rng).astype(np.float64) * np.sqrt(p_speech / 10 ** (snr / 10))
            peak = float(np.abs(y).max())
            if peak > 0.95:
                y = y * 0.95 / peak
            path = save_audio(out / "librivox" / condition_name(snr).replace(" ", "") / f"{i:04d}-{kind}.wav",
                              y.astype(np.float32), SR)
            items.append(Item(path, labels, "librivox", snr, kind))
    return items, spans


# ----------------------------------------------------------------------------------------------------------
# Systems

SILERO_SEGMENTS = dict(onset=0.5, offset=0.35, pad_onset=0.03, pad_offset=0.03, min_duration_on=0.25,
                       min_duration_off=0.1)


def run_speechkit(items: list[Item], audio: list[np.ndarray], repeat: int) -> tuple[Scores, dict]:
    import torch

    from speechkit.vad import load_model
    from speechkit.vad.postprocess import segments_to_frames, speech_segments

    torch.set_num_threads(1)
    vad = load_model()
    vad.frame_probs(audio[0][: SR], SR)  # warm-up: first-call allocations are not the model's speed
    seconds = float("inf")
    for _ in range(max(1, repeat)):  # the fastest pass counts: the machine may be shared
        t0 = time.process_time()
        probs = [vad.frame_probs(x, SR) for x in audio]
        seconds = min(seconds, time.process_time() - t0)
    probs = [p[: it.labels.shape[0]] for p, it in zip(probs, items, strict=True)]
    post = [segments_to_frames(speech_segments(p, vad.postprocess), p.shape[0], vad.frame_shift) for p in probs]
    raw = [(p > 0.5).astype(np.uint8) for p in probs]
    info = {"model": str(vad.source), "postprocess": asdict(vad.postprocess), "torch_threads": 1,
            "torch": torch.__version__}
    return Scores(probs, {"postprocessed": post, "p>0.5": raw}, {"scores": seconds}), info


def run_peers(items: list[Item], python: Path, threads: int, repeat: int) -> tuple[Scores, dict[str, Scores], dict]:
    """silero (scores + decisions) and webrtcvad per mode, from one run of the peer script in its venv."""
    from speechkit.vad.postprocess import PostProcessingOptions, segments_to_frames, speech_segments

    if not python.is_file():
        raise SystemExit(f"{python} not found: install the VAD peers first (bash bench/peers/install_vad.sh or "
                         "make peers-vad), or pass --no-peers to run speechkit alone")
    with tempfile.TemporaryDirectory(prefix="speechkit-vad-peers-") as tmp:
        listing, out = Path(tmp) / "wavs.txt", Path(tmp) / "peers.json"
        listing.write_text("\n".join(str(it.path) for it in items) + "\n", encoding="utf-8")
        cmd = [str(python), str(PEER_SCRIPT), "--list", str(listing), "--out", str(out), "--threads", str(threads),
               "--repeat", str(repeat)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
        print(proc.stderr.strip(), flush=True)
        data = json.loads(out.read_text(encoding="utf-8"))
    n = [it.labels.shape[0] for it in items]
    for name, got in [("silero", data["silero"]["frame_probs"])] + [
            (f"webrtcvad mode {m}", v["frame_decisions"]) for m, v in data["webrtcvad"]["modes"].items()]:
        bad = [str(it.path) for it, g in zip(items, got, strict=True) if len(g) < it.labels.shape[0]]
        if bad:
            raise SystemExit(f"{name}: fewer frames than labels for {len(bad)} files, e.g. {bad[0]}")
    probs = [np.asarray(p[:k], dtype=np.float64) for p, k in zip(data["silero"]["frame_probs"], n, strict=True)]
    seg_opts = PostProcessingOptions(**SILERO_SEGMENTS)
    silero = Scores(probs, {
        "p>0.5": [(p > 0.5).astype(np.uint8) for p in probs],
        "default segments": [segments_to_frames(speech_segments(p, seg_opts), p.shape[0], 0.02) for p in probs],
    }, {"scores": data["silero"]["seconds"], "scores (sequence export)": data["silero"]["sequence_seconds"]})
    webrtc = {}
    for mode, v in data["webrtcvad"]["modes"].items():
        dec = [np.asarray(d[:k], dtype=np.uint8) for d, k in zip(v["frame_decisions"], n, strict=True)]
        webrtc[mode] = Scores(None, {"decisions": dec}, {"decisions": v["seconds"]})
    info = {"silero_vad": data["silero"]["version"], "silero_model": data["silero"]["model"],
            "silero_threads": data["silero"]["threads"], "webrtcvad_wheels": data["webrtcvad"]["version"],
            "silero_sequence_max_abs_diff": data["silero"]["sequence_max_abs_diff"]}
    return silero, webrtc, info


# ----------------------------------------------------------------------------------------------------------
# Scoring


def score_condition(idx: list[int], items: list[Item], system: Scores, variant: str) -> dict:
    from speechkit.metrics.detection import DetectionCounts, detection_counts, frame_auroc

    labels = [items[i].labels for i in idx]
    counts = DetectionCounts()
    for i, y in zip(idx, labels, strict=True):
        counts = counts + detection_counts(y, system.decisions[variant][i])
    row = {"f1": counts.f1, "precision": counts.precision, "recall": counts.recall,
           "der": counts.detection_error_rate, "false_alarm": counts.false_alarm_rate, "miss": counts.miss_rate,
           "frames": int(sum(y.shape[0] for y in labels)), "speech_frames": counts.tp + counts.fn}
    if system.scores is not None:
        flat_y = np.concatenate(labels)
        row["auroc"] = frame_auroc(np.concatenate([system.scores[i] for i in idx]), flat_y)
    return row


def check_targets(rows: list[dict], rtf: dict[str, dict[str, float]]) -> list[dict]:
    """The issue's bar: F1 above every webrtcvad mode at every SNR, AUROC >= silero's at 0 dB (held-out mixtures and
    LibriVox), RTF below silero's. speechkit's decisions are its bundled post-processing."""
    def get(dataset: str, cond: str, system: str, decision: str | None = None) -> list[dict]:
        return [r for r in rows if r["dataset"] == dataset and r["condition"] == cond and r["system"] == system
                and (decision is None or r["decision"] == decision)]

    out = []
    for dataset in ("synth", "librivox"):
        for cond in ("clean", "10 dB", "0 dB"):
            sk = get(dataset, cond, "speechkit", "postprocessed")
            web = [r for m in range(4) for r in get(dataset, cond, f"webrtcvad mode {m}")]
            if sk and web:
                best = max(web, key=lambda r: r["f1"])
                out.append({"target": f"{dataset} {cond}: F1 > every webrtcvad mode", "met": sk[0]["f1"] > best["f1"],
                            "detail": f"speechkit {sk[0]['f1']:.4f}, best webrtcvad ({best['system']}) "
                                      f"{best['f1']:.4f}"})
        sk, si = get(dataset, "0 dB", "speechkit", "postprocessed"), get(dataset, "0 dB", "silero", "p>0.5")
        if sk and si:
            out.append({"target": f"{dataset} 0 dB: AUROC >= silero", "met": sk[0]["auroc"] >= si[0]["auroc"],
                        "detail": f"speechkit {sk[0]['auroc']:.4f}, silero {si[0]['auroc']:.4f}"})
    if "silero" in rtf:
        # Against silero's faster path (its sequence export), not only the per-window loop.
        a, b = rtf["speechkit"]["scores"], min(rtf["silero"].values())
        out.append({"target": "RTF < silero", "met": a < b, "detail": f"speechkit {a:.5f}, silero (fastest path) "
                                                                     f"{b:.5f}; speedup x{b / a:.2f}"})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", default="data/synth_en/test.json",
                        help="speech manifest for the held-out mixtures (a test split of `speechkit prepare synth`)")
    parser.add_argument("--librivox", default="data/librivox/librivox.json",
                        help="manifest of `speechkit prepare librivox` ('' to leave LibriVox out)")
    parser.add_argument("--mixtures", type=int, default=100, help="held-out mixtures per SNR condition")
    parser.add_argument("--librivox-mixtures", type=int, default=20, help="LibriVox mixtures per SNR condition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="timed passes per system for the RTF (fastest counts)")
    parser.add_argument("--work-dir", default="", help="where the wavs go (default: a temporary folder)")
    parser.add_argument("--peer-python", default=str(PEER_PYTHON), help="python of the VAD peers' venv")
    parser.add_argument("--no-peers", action="store_true", help="speechkit only (development; not a result)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "vad.json"))
    args = parser.parse_args(argv)

    from speechkit.audio.io import load_audio

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="speechkit-bench-vad-") as tmp:
        work = Path(args.work_dir or tmp)
        speech = Path(args.speech)
        if not speech.is_file():
            raise SystemExit(f"{speech}: not found; build it with `speechkit prepare synth --out-dir data/synth_en` "
                             "or pass --speech TEST_MANIFEST")
        items = build_synth(speech, work, args.mixtures, args.seed)
        spans: list[dict] = []
        if args.librivox:
            if not Path(args.librivox).is_file():
                raise SystemExit(f"{args.librivox}: not found; run `speechkit prepare librivox --out-dir "
                                 "data/librivox` (Debian package pocketsphinx-testdata) or pass --librivox ''")
            lv_items, spans = build_librivox(Path(args.librivox), work, args.librivox_mixtures, args.seed)
            items += lv_items
        t_built = time.perf_counter()
        print(f"built {len(items)} files in {t_built - t_start:.0f} s", flush=True)
        # Every system reads the same 16-bit files.
        audio = [load_audio(it.path, SR) for it in items]
        audio_seconds = float(sum(a.shape[0] for a in audio) / SR)
        systems: dict[str, Scores] = {}
        systems["speechkit"], sk_info = run_speechkit(items, audio, args.repeat)
        peer_info: dict = {}
        if not args.no_peers:
            silero, webrtc, peer_info = run_peers(items, Path(args.peer_python), threads=1, repeat=args.repeat)
            systems["silero"] = silero
            for mode, s in webrtc.items():
                systems[f"webrtcvad mode {mode}"] = s

    rows = []
    conditions = [(d, snr) for d in ("synth", "librivox") for snr in SNRS
                  if any(it.dataset == d and it.snr == snr for it in items)]
    for dataset, snr in conditions:
        idx = [i for i, it in enumerate(items) if it.dataset == dataset and it.snr == snr]
        cond_seconds = float(sum(audio[i].shape[0] for i in idx) / SR)
        for name, system in systems.items():
            for variant in system.decisions:
                row = {"dataset": dataset, "condition": condition_name(snr), "system": name, "decision": variant,
                       "seconds_of_audio": round(cond_seconds, 1)}
                row.update(score_condition(idx, items, system, variant))
                rows.append(row)
                noises = sorted({items[i].noise for i in idx})
                if len(noises) > 1:
                    row["by_noise"] = {k: score_condition([i for i in idx if items[i].noise == k], items, system,
                                                          variant) for k in noises}
    rtf = {name: {k: v / audio_seconds for k, v in s.seconds.items()} for name, s in systems.items()}

    header = f"{'data':<9} {'cond':<6} {'system':<17} {'decision':<16} {'AUROC':>7} {'F1':>7} {'DetER':>7} " \
             f"{'FA':>6} {'miss':>6}"
    lines = [header, "-" * len(header)]
    for r in rows:
        auroc = f"{r['auroc']:.4f}" if "auroc" in r else "-"
        lines.append(f"{r['dataset']:<9} {r['condition']:<6} {r['system']:<17} {r['decision']:<16} {auroc:>7} "
                     f"{r['f1']:>7.4f} {100 * r['der']:>6.1f}% {100 * r['false_alarm']:>5.1f}% "
                     f"{100 * r['miss']:>5.1f}%")
    lines.append("")
    lines.append(f"RTF (CPU seconds / audio seconds, one thread, fastest of {args.repeat} passes over {audio_seconds:.0f} s of "
                 "audio):")
    lines += [f"  {name:<17} {what:<26} {v:.5f}" for name, r in rtf.items() for what, v in r.items()]
    targets = check_targets(rows, rtf) if not args.no_peers else []
    lines.append("")
    lines += [f"target {'met ' if t['met'] else 'MISSED'}: {t['target']}: {t['detail']}" for t in targets]
    table = "\n".join(lines)
    print(table)

    command = "python bench/vad.py" + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(
        sys.argv[1:] if argv is None else argv))
    result = {
        "what": "frame VAD benchmark: speechkit bundled MarbleNet vs silero-vad and webrtcvad (20 ms frames)",
        "command": command,
        "settings": {"speech": args.speech, "librivox": args.librivox, "mixtures": args.mixtures,
                     "librivox_mixtures": args.librivox_mixtures, "seed": args.seed, "heldout_noises": HELDOUT,
                     "librivox_noises": LIBRIVOX_NOISES, "frame_shift": 0.02,
                     "silero_default_segments": SILERO_SEGMENTS},
        "labels": {
            "synth": "mixer labels: a 20 ms frame is speech when > half its samples lie in a speech clip (clips "
                     "trimmed 40 dB below their loudest 10 ms frame)",
            "librivox": "utterance extent: first to last run of >= 3 loud 10 ms frames of the clean recording, loud = "
                        "above max(10th-percentile frame energy + 10 dB, peak - 35 dB); inner pauses count as speech; "
                        "a 20 ms frame is speech when > half its samples lie in the extent",
            "librivox_spans": spans,
        },
        "audio_seconds": round(audio_seconds, 1),
        "rtf": rtf,
        "targets": targets,
        "rows": rows,
        "speechkit": sk_info,
        "peers": peer_info,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "table": table,
    }
    if not args.no_peers:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print("--no-peers: not written (a result includes the peers)")
    return result


if __name__ == "__main__":
    main()
