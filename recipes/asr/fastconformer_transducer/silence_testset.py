"""A copy of a test manifest with silence before and after every utterance: does a model cope with pauses?

Synthetic speech starts and ends with its first and last phone; recordings have pauses around speech. This writes
``<manifest stem>_pad_<kind>.json`` next to the manifest, its audio under ``audio/test_pad_<kind>/``, where every
utterance has ``--seconds`` of silence on each side: digital zeros (``--kind zero``) or a -60 dBFS white noise floor
(``--kind floor``, seeded, so the files are the same on every run). Then score it with ``speechkit eval-asr``.

    python recipes/asr/fastconformer_transducer/silence_testset.py data/synth_en/test_444.json --kind zero
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf


def write_padded(manifest: Path, kind: str, seconds: float) -> Path:
    """Write the padded copy of ``manifest``; returns the new manifest's path."""
    out_dir = manifest.parent / "audio" / f"test_pad_{kind}"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = manifest.parent / f"{manifest.stem}_pad_{kind}.json"
    rng = np.random.default_rng(0)
    with out.open("w") as f:
        for n, line in enumerate(manifest.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio = Path(row["audio_filepath"])
            except (json.JSONDecodeError, KeyError) as err:
                raise SystemExit(f"{manifest}:{n}: not a manifest line with audio_filepath ({err})") from None
            x, sr = sf.read(audio if audio.is_absolute() else manifest.parent / audio, dtype="float32")
            if x.ndim != 1:
                raise SystemExit(f"{manifest}:{n}: {audio} is not mono")
            pad = int(seconds * sr)
            before, after = ((np.zeros(pad, np.float32), np.zeros(pad, np.float32)) if kind == "zero" else
                             ((1e-3 * rng.standard_normal(pad)).astype(np.float32),
                              (1e-3 * rng.standard_normal(pad)).astype(np.float32)))
            name = out_dir / audio.name
            sf.write(name, np.concatenate([before, x, after]), sr)
            row["audio_filepath"] = str(name.relative_to(manifest.parent))
            row["duration"] = round(float(row["duration"]) + 2 * pad / sr, 3)
            f.write(json.dumps(row) + "\n")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifest", type=Path)
    p.add_argument("--kind", choices=("zero", "floor"), default="zero")
    p.add_argument("--seconds", type=float, default=1.0, help="silence on each side")
    args = p.parse_args()
    print(write_padded(args.manifest, args.kind, args.seconds))


if __name__ == "__main__":
    main()
