"""A copy of a test manifest with silence before and after every utterance: does a model cope with pauses?

Synthetic speech starts and ends with its first and last phone; recordings have pauses around speech. This writes
``<manifest stem>_pad_<kind>.json`` next to the manifest, its audio under ``audio/test_pad_<kind>/``, where every
utterance has ``--seconds`` of silence on each side: digital zeros (``--kind zero``) or a -60 dBFS white noise floor
(``--kind floor``, seeded, so the files are the same on every run). Then score it with ``speechkit eval-asr``.

    python recipes/asr/fastconformer_transducer/silence_testset.py data/synth_en/test_444.json --kind zero
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf


def write_padded(manifest: Path, kind: str, seconds: float) -> Path:
    """Write the padded copy of ``manifest``; returns the new manifest's path."""
    from speechkit.data.manifests import ManifestError, read_manifest, write_manifest

    out_dir = manifest.parent / "audio" / f"test_pad_{kind}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    padded = []
    try:
        for entry in read_manifest(manifest):
            x, sr = sf.read(entry.audio_path(), dtype="float32")
            if x.ndim != 1:
                raise SystemExit(f"{manifest}:{entry.line}: {entry.audio_filepath} is not mono")
            pad = int(seconds * sr)
            before, after = ((np.zeros(pad, np.float32), np.zeros(pad, np.float32)) if kind == "zero" else
                             ((1e-3 * rng.standard_normal(pad)).astype(np.float32),
                              (1e-3 * rng.standard_normal(pad)).astype(np.float32)))
            name = out_dir / entry.audio_path().name
            sf.write(name, np.concatenate([before, x, after]), sr)
            # An absolute path and no source manifest: write_manifest makes it relative to the new manifest.
            padded.append(replace(entry, audio_filepath=str(name.resolve()), manifest=None,
                                  duration=round(entry.duration + 2 * pad / sr, 3)))
    except ManifestError as err:
        raise SystemExit(str(err)) from None
    out = manifest.parent / f"{manifest.stem}_pad_{kind}.json"
    write_manifest(out, padded)
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
