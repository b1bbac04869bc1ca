"""recipes/asr/fastconformer_transducer/silence_testset.py: a manifest copy with silence around every utterance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.models.recipe import load_recipe_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "recipes" / "asr" / "fastconformer_transducer" / "silence_testset.py"
TINY = ROOT / "manifests" / "tiny"


@pytest.mark.parametrize("kind", ["zero", "floor"])
def test_padded_copy(tmp_path: Path, kind: str) -> None:
    shutil.copytree(TINY / "audio" / "test", tmp_path / "audio" / "test")
    shutil.copy(TINY / "test.json", tmp_path / "test.json")
    out = load_recipe_script(SCRIPT, "silence_testset").write_padded(tmp_path / "test.json", kind, 0.5)
    assert out == tmp_path / f"test_pad_{kind}.json"
    rows = [json.loads(x) for x in (tmp_path / "test.json").read_text().splitlines()]
    padded = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(padded) == len(rows)
    for r, p in zip(rows, padded, strict=True):
        x, sr = sf.read(tmp_path / r["audio_filepath"], dtype="float32")
        y, sr2 = sf.read(tmp_path / p["audio_filepath"], dtype="float32")
        pad = sr // 2
        assert sr2 == sr and p["text"] == r["text"] and p["duration"] == pytest.approx(r["duration"] + 1.0, abs=1e-3)
        # The utterance in the middle (to 16-bit precision), silence of the right kind on both sides.
        assert np.allclose(y[pad:-pad], x, atol=1e-4)
        for side in (y[:pad], y[-pad:]):
            rms = float(np.sqrt(np.mean(side ** 2)))
            assert (rms == 0.0) if kind == "zero" else (5e-4 < rms < 2e-3)
    bad = tmp_path / "bad.json"
    bad.write_text('{"duration": 1.0}\n')
    with pytest.raises(SystemExit, match="bad.json:1"):
        load_recipe_script(SCRIPT, "silence_testset").write_padded(bad, kind, 0.5)
