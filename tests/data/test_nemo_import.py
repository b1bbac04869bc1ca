"""``prepare nemo``: validation of every line, clean manifest that resolves from its new folder, cuts, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.cli import main
from speechkit.data.manifests import ManifestError, load_cutset, read_manifest
from speechkit.data.nemo_import import NemoImportConfig, import_nemo_manifest

SR = 16000


def wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.full(int(seconds * SR), 0.1, dtype=np.float32), SR)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    """A manifest with 3 good lines and 4 bad ones (bad JSON, missing audio, wrong duration, no text)."""
    src = tmp_path / "src"
    wav(src / "audio" / "a.wav", 1.0)
    wav(src / "audio" / "b.wav", 2.0)
    lines = [
        {"audio_filepath": "audio/a.wav", "duration": 1.0, "text": "first", "speaker": "s1"},
        "{oops",
        {"audio_filepath": "audio/b.wav", "duration": 1.0, "offset": 0.5, "text": "second", "lang": "en"},
        {"audio_filepath": "audio/gone.wav", "duration": 1.0, "text": "missing"},
        {"audio_filepath": "audio/b.wav", "duration": 3.0, "text": "too long"},
        {"audio_filepath": "audio/b.wav", "duration": 2.0, "text": ""},
        {"audio_filepath": str(src / "audio" / "b.wav"), "duration": 2.0, "text": "third"},
    ]
    path = src / "train.json"
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


def test_without_skip_bad_first_bad_line_is_an_error(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match=r"train\.json:2: not valid JSON"):
        import_nemo_manifest(NemoImportConfig(manifest=[str(source)], out_dir=str(out)))
    assert not (out / "train.json").exists() and not list(out.glob("*.gz"))  # nothing half-written


def test_skip_bad_counts_per_reason_and_writes_clean_outputs(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_nemo_manifest(NemoImportConfig(manifest=[str(source)], out_dir=str(out), skip_bad=True))
    (o,) = summary.outputs
    assert (o.report.read, o.report.kept, o.report.skipped) == (7, 3, 4)
    assert o.report.reasons == {"bad JSON": 1, "missing audio": 1, "duration mismatch": 1, "no text": 1}
    assert o.seconds == pytest.approx(4.0)
    text = str(summary)
    assert "train.json" in text and "4 of 7 lines skipped" in text and "1 missing audio" in text

    clean = list(read_manifest(out / "train.json", check_audio=True))  # resolves from the new folder
    assert [e.text for e in clean] == ["first", "second", "third"]
    assert clean[0].audio_path() == source.parent / "audio" / "a.wav"
    assert clean[0].extra == {"speaker": "s1"} and clean[1].offset == 0.5 and clean[1].lang == "en"
    cuts = list(load_cutset(out / "train.cuts.jsonl.gz"))
    assert [c.id for c in cuts] == ["audio_a", "audio_b-000050-000100", "audio_b"]
    assert cuts[1].load_audio().shape == (1, SR)


def test_name_merges_inputs_and_stems_must_differ(source: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "train.json"
    wav(other.parent / "c.wav", 0.5)
    other.write_text(json.dumps({"audio_filepath": "c.wav", "duration": 0.5, "text": "other"}) + "\n")
    with pytest.raises(ValueError, match="two inputs are both named 'train'"):
        import_nemo_manifest(NemoImportConfig(manifest=[str(source), str(other)], out_dir=str(tmp_path / "o")))
    summary = import_nemo_manifest(NemoImportConfig(manifest=[str(source), str(other)], out_dir=str(tmp_path / "o"),
                                                    skip_bad=True, name="all"))
    assert summary.outputs[0].report.kept == 4
    assert [e.text for e in read_manifest(tmp_path / "o" / "all.json")][-1] == "other"


def test_refuses_to_overwrite_its_input(source: Path) -> None:
    with pytest.raises(ValueError, match="would overwrite this input"):
        import_nemo_manifest(NemoImportConfig(manifest=[str(source)], out_dir=str(source.parent), skip_bad=True))
    assert "{oops" in source.read_text()


def test_no_check_audio_checks_lines_only(source: Path, tmp_path: Path) -> None:
    summary = import_nemo_manifest(NemoImportConfig(manifest=[str(source)], out_dir=str(tmp_path / "o"),
                                                    skip_bad=True, check_audio=False))
    # Without headers, "too long" (line 5) passes; line 7 then repeats its whole-file cut of b.wav.
    assert summary.outputs[0].report.reasons == {"bad JSON": 1, "no text": 1, "duplicate cut": 1}
    assert [e.line for e in read_manifest(source, skip_bad=True)] == [1, 3, 4, 5, 7]
    assert [e.text for e in read_manifest(tmp_path / "o" / "train.json")] == ["first", "second", "missing", "too long"]


def test_custom_text_field_is_kept(tmp_path: Path) -> None:
    wav(tmp_path / "x.wav", 0.5)
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"audio_filepath": "x.wav", "duration": 0.5, "answer": "hola", "target_lang": "es"})
                   + "\n")
    import_nemo_manifest(NemoImportConfig(manifest=[str(src)], out_dir=str(tmp_path / "o"), text_field="answer",
                                          lang_field="target_lang"))
    line = json.loads((tmp_path / "o" / "in.json").read_text())
    assert line["answer"] == "hola" and line["target_lang"] == "es"
    (cut,) = load_cutset(tmp_path / "o" / "in.cuts.jsonl.gz")
    assert cut.supervisions[0].text == "hola" and cut.supervisions[0].language == "es"


def test_cli(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cli_out"
    monkeypatch.chdir(tmp_path)  # cwd is neither the source's nor the output's folder
    assert main(["prepare", "nemo", str(source), "--out-dir", str(out), "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "4 of 7 lines skipped" in printed
    assert len(list(read_manifest(out / "train.json", check_audio=True))) == 3
    assert main(["prepare", "nemo", str(source), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ManifestError" in err and "train.json:2:" in err
    assert main(["prepare", "nemo", str(tmp_path / "nope.json"), "--out-dir", str(out)]) == 2
    assert "nope.json: manifest file not found" in capsys.readouterr().err
