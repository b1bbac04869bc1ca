"""Run the VAD peers (silero-vad on onnxruntime, webrtcvad modes 0-3) over wav files; per-20-ms-frame output as JSON.

Runs in the peers' own environment, ``.peers/vad`` (``bash bench/peers/install_vad.sh``): numpy, onnxruntime,
webrtcvad and the silero-vad package for its model file only (no torch). It imports nothing from speechkit;
``bench/vad.py`` calls it by subprocess and scores its output.

silero-vad (``silero_vad/data/silero_vad.onnx``) is a stateful network over 512-sample windows (32 ms at 16 kHz).
Its inputs are ``input`` ``(1, 64 + 512)`` float32 (the last 64 samples of the previous window, zeros before the
first, then the window), ``state`` ``(2, 1, 128)`` float32 (zeros at the start of a file) and ``sr`` (int64 scalar
16000); its outputs are the speech probability ``(1, 1)`` and the next state. The last partial window is zero-padded.
Each 20 ms frame gets the probability of the window holding the frame's centre sample.

webrtcvad takes 16-bit PCM in frames of 10, 20 or 30 ms and answers speech / not speech; 20 ms frames are used
directly (the last partial frame zero-padded), once per aggressiveness mode 0-3, with a fresh detector per file
(it adapts to the noise as it goes; state never carries over from one file to the next, as for silero).

silero-vad also ships a "sequence" export of the same network (``silero_vad_16k_sequence.onnx``: inputs ``input``
``(windows, 64 + 512)``, ``h`` and ``c`` ``(1, 1, 128)``; outputs ``speech_probs`` ``(windows,)``, ``hn``, ``cn``)
that runs up to 512 windows per call, the package's fastest torch-free path. Its probabilities are computed too and
must equal the streaming loop's (the largest difference is reported); only its time is used.

Timing is CPU seconds of this process (``time.process_time``) for the model calls only (not reading files), on
``--threads`` onnxruntime threads; each system makes ``--repeat`` passes over all files and the fastest counts.

    .peers/vad/bin/python bench/peers/vad_peers.py a.wav b.wav --out peers.json
    .peers/vad/bin/python bench/peers/vad_peers.py --list wavs.txt --out peers.json --threads 1
    .peers/vad/bin/python bench/peers/vad_peers.py --self-test

Output: ``{"sample_rate": 16000, "frame_shift": 0.02, "files": [paths], "silero": {"version", "model", "seconds",
"sequence_seconds", "sequence_max_abs_diff", "frame_probs": [[...] per file]}, "webrtcvad": {"version", "modes": {"0": {"seconds", "frame_decisions": [[0/1 ...]
per file]}, ...}}}``; each file has ``ceil(samples / 320)`` frames.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
SILERO_WINDOW = 512
SILERO_CONTEXT = 64


def read_wav(path: str) -> np.ndarray:
    """16 kHz mono 16-bit PCM wav -> int16 ``(N,)``; anything else is an error naming the file."""
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != SAMPLE_RATE:
            raise SystemExit(f"{path}: need 16 kHz mono 16-bit PCM, got {w.getframerate()} Hz, "
                             f"{w.getnchannels()} channel(s), {8 * w.getsampwidth()}-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def num_frames(n: int) -> int:
    return -(-n // FRAME)


class Silero:
    """silero-vad's ONNX model with its window/state loop (see the module docstring)."""

    def __init__(self, threads: int) -> None:
        import onnxruntime as ort

        spec = importlib.util.find_spec("silero_vad")
        if spec is None or spec.origin is None:
            raise SystemExit("silero_vad is not installed here: run bash bench/peers/install_vad.sh")
        self.model_path = Path(spec.origin).parent / "data" / "silero_vad.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.model_path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.sequence = ort.InferenceSession(str(self.model_path.with_name("silero_vad_16k_sequence.onnx")),
                                             sess_options=opts, providers=["CPUExecutionProvider"])
        self.sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def window_probs_sequence(self, x: np.ndarray, block: int = 512) -> np.ndarray:
        """The same probabilities ``(ceil(N / 512),)`` from the sequence export, ``block`` windows per call."""
        n_win = -(-x.shape[0] // SILERO_WINDOW)
        padded = np.zeros(SILERO_CONTEXT + n_win * SILERO_WINDOW, dtype=np.float32)
        padded[SILERO_CONTEXT : SILERO_CONTEXT + x.shape[0]] = x
        # Row i: the 64 samples before window i, then window i (overlapping views, copied per block).
        rows = np.lib.stride_tricks.sliding_window_view(padded, SILERO_CONTEXT + SILERO_WINDOW)[::SILERO_WINDOW]
        h = np.zeros((1, 1, 128), dtype=np.float32)
        c = np.zeros((1, 1, 128), dtype=np.float32)
        out = []
        for first in range(0, n_win, block):
            probs, h, c = self.sequence.run(["speech_probs", "hn", "cn"], {
                "input": np.ascontiguousarray(rows[first : first + block]), "h": h, "c": c})
            out.append(probs.reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def window_probs(self, x: np.ndarray) -> np.ndarray:
        """float32 waveform ``(N,)`` -> speech probability per 512-sample window ``(ceil(N / 512),)``."""
        n_win = -(-x.shape[0] // SILERO_WINDOW)
        padded = np.zeros(SILERO_CONTEXT + n_win * SILERO_WINDOW, dtype=np.float32)
        padded[SILERO_CONTEXT : SILERO_CONTEXT + x.shape[0]] = x
        state = np.zeros((2, 1, 128), dtype=np.float32)
        out = np.empty(n_win, dtype=np.float32)
        for i in range(n_win):
            # Window i with the 64 samples before it (zeros before the file starts).
            chunk = padded[i * SILERO_WINDOW : (i + 1) * SILERO_WINDOW + SILERO_CONTEXT][None]
            prob, state = self.session.run(None, {"input": chunk, "state": state, "sr": self.sr})
            out[i] = prob[0, 0]
        return out

    @staticmethod
    def to_frames(windows: np.ndarray, num_samples: int) -> np.ndarray:
        """Window probabilities -> per 20 ms frame ``(ceil(N / 320),)``: the window holding the frame's centre."""
        centres = np.arange(num_frames(num_samples)) * FRAME + FRAME // 2
        return windows[np.minimum(centres // SILERO_WINDOW, windows.shape[0] - 1)]


def webrtc_decisions(vad: object, pcm: np.ndarray) -> list[int]:
    """webrtcvad decisions per 20 ms frame ``(ceil(N / 320),)`` of int16 audio."""
    n = num_frames(pcm.shape[0])
    padded = np.zeros(n * FRAME, dtype="<i2")
    padded[: pcm.shape[0]] = pcm
    raw = padded.tobytes()
    step = 2 * FRAME
    return [int(vad.is_speech(raw[i * step : (i + 1) * step], SAMPLE_RATE)) for i in range(n)]  # type: ignore[attr-defined]


def _fastest(fn: object, repeat: int) -> tuple[object, float]:
    """``fn()``'s result and the smallest CPU time (of this process) of ``repeat`` calls: CPU time, not wall time,
    because the machine may be shared."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.process_time()
        result = fn()  # type: ignore[operator]
        best = min(best, time.process_time() - t0)
    return result, best


def run(paths: list[str], threads: int, repeat: int = 1) -> dict:
    import webrtcvad

    audio = [read_wav(p) for p in paths]
    floats = [pcm.astype(np.float32) / 32768.0 for pcm in audio]
    silero = Silero(threads)
    windows, silero_seconds = _fastest(lambda: [silero.window_probs(x) for x in floats], repeat)
    sequence, sequence_seconds = _fastest(lambda: [silero.window_probs_sequence(x) for x in floats], repeat)
    pairs = zip(windows, sequence, strict=True)  # type: ignore[call-overload]
    diff = max((float(np.abs(a - b).max()) for a, b in pairs if a.size), default=0.0)
    probs = [silero.to_frames(w, x.shape[0]) for w, x in zip(windows, floats, strict=True)]  # type: ignore[call-overload]
    modes = {}
    for mode in range(4):
        # A fresh detector per file: webrtcvad adapts its noise model as it goes, and one file's noise must not
        # carry over into the next (silero's state is reset per file too).
        decisions, seconds = _fastest(lambda m=mode: [webrtc_decisions(webrtcvad.Vad(m), pcm) for pcm in audio],
                                      repeat)
        modes[str(mode)] = {"seconds": seconds, "frame_decisions": decisions}
    return {
        "sample_rate": SAMPLE_RATE, "frame_shift": FRAME / SAMPLE_RATE, "files": paths,
        "audio_seconds": sum(a.shape[0] for a in audio) / SAMPLE_RATE, "repeat": repeat,
        "silero": {"version": importlib.metadata.version("silero-vad"), "model": silero.model_path.name,
                   "threads": threads, "seconds": silero_seconds, "sequence_seconds": sequence_seconds,
                   "sequence_max_abs_diff": diff,
                   "frame_probs": [[round(float(v), 5) for v in p] for p in probs]},
        "webrtcvad": {"version": importlib.metadata.version("webrtcvad-wheels"), "modes": modes},
    }


def self_test() -> None:
    """Both peers load and run: digital silence is not speech; output lengths are whole frames."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "silence.wav")
        with wave.open(path, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(SAMPLE_RATE)
            w.writeframes(np.zeros(SAMPLE_RATE + 100, dtype="<i2").tobytes())
        out = run([path], threads=1)
    probs = out["silero"]["frame_probs"][0]
    assert len(probs) == 51, len(probs)
    assert out["silero"]["sequence_max_abs_diff"] < 1e-4, "silero's sequence model disagrees with the streaming loop"
    assert max(probs) < 0.5, f"silero calls silence speech: max prob {max(probs)}"
    for mode, m in out["webrtcvad"]["modes"].items():
        assert len(m["frame_decisions"][0]) == 51 and not any(m["frame_decisions"][0]), f"webrtcvad mode {mode}"
    print(f"silero-vad {out['silero']['version']} ({out['silero']['model']}) and webrtcvad "
          f"{out['webrtcvad']['version']} run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wavs", nargs="*", help="16 kHz mono 16-bit wav files")
    parser.add_argument("--list", help="a text file with one wav path per line (added to the positional ones)")
    parser.add_argument("--out", help="output JSON file")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads for silero")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes per system (the fastest counts)")
    parser.add_argument("--self-test", action="store_true", help="check that both peers run, then exit")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    paths = list(args.wavs)
    if args.list:
        paths += [line.strip() for line in Path(args.list).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not paths or not args.out:
        parser.error("give wav files (or --list) and --out")
    out = run(paths, args.threads, args.repeat)
    Path(args.out).write_text(json.dumps(out), encoding="utf-8")
    print(f"vad peers: {len(paths)} files, {out['audio_seconds']:.1f} s of audio; silero {out['silero']['seconds']:.2f} s"
          f" (sequence export {out['silero']['sequence_seconds']:.2f} s, max |diff| "
          f"{out['silero']['sequence_max_abs_diff']:.1e}), webrtcvad " + ", ".join(f"mode {k} {v['seconds']:.2f} s" for k, v in out["webrtcvad"]["modes"].items()),
          file=sys.stderr)


if __name__ == "__main__":
    main()
