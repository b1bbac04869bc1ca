"""NeMo manifests: line checks, skip reports, path resolution, lazy CutSets and round trips."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.manifests import (
    ManifestEntry,
    ManifestError,
    ManifestReport,
    cutset_to_manifest,
    load_cutset,
    manifest_to_cutset,
    read_manifest,
    resolve_audio_path,
    write_manifest,
)

SR = 16000


def make_wav(path: Path, seconds: float, sr: int = SR, channels: int = 1, value: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * sr)
    data = np.full((n, channels) if channels > 1 else n, value, dtype=np.float32)
    sf.write(str(path), data, sr, subtype="PCM_16")
    return path


def write_lines(path: Path, lines: list) -> Path:
    """Write dicts as JSON and strings verbatim, one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A manifest with two whole files, one segment of a long file and a speaker/custom field."""
    make_wav(tmp_path / "audio" / "a.wav", 1.0)
    make_wav(tmp_path / "audio" / "b.wav", 1.5)
    make_wav(tmp_path / "long" / "talk.wav", 4.0)
    return write_lines(tmp_path / "train.json", [
        {"audio_filepath": "audio/a.wav", "duration": 1.0, "text": "hello world", "speaker": "spk1"},
        {"audio_filepath": "audio/b.wav", "duration": 1.5, "text": "good bye", "lang": "en", "label": "x"},
        {"audio_filepath": "long/talk.wav", "offset": 1.25, "duration": 2.0, "text": "a segment"},
    ])


# ---------------------------------------------------------------------------------------------- reading


def test_read_fields_and_extra(corpus: Path) -> None:
    entries = list(read_manifest(corpus))
    assert [e.audio_filepath for e in entries] == ["audio/a.wav", "audio/b.wav", "long/talk.wav"]
    assert [e.line for e in entries] == [1, 2, 3]
    assert entries[0].extra == {"speaker": "spk1"} and entries[0].lang is None
    assert entries[1].lang == "en" and entries[1].extra == {"label": "x"}
    assert entries[2].offset == 1.25 and entries[2].duration == 2.0
    assert entries[0].to_json() == {"audio_filepath": "audio/a.wav", "duration": 1.0, "text": "hello world",
                                    "speaker": "spk1"}
    assert entries[2].to_json()["offset"] == 1.25


def test_read_is_lazy(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.json", [
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "ok"}, "{broken",
    ])
    it = read_manifest(path)
    assert next(it).text == "ok"  # the broken line 2 is not looked at yet
    with pytest.raises(ManifestError, match=r"m\.json:2: "):
        next(it)


def test_custom_text_and_lang_fields(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.json", [
        {"audio_filepath": "a.wav", "duration": 1.0, "answer": "hola", "target_lang": "es", "text": "ignored"},
    ])
    (e,) = read_manifest(path, text_field="answer", lang_field="target_lang")
    assert e.text == "hola" and e.lang == "es" and e.extra == {"text": "ignored"}
    assert e.to_json(text_field="answer", lang_field="target_lang")["answer"] == "hola"
    with pytest.raises(ValueError, match=r"m\.json:1: extra key 'text' collides"):
        e.to_json()  # the extra "text" would be overwritten by the transcript


BAD_LINES = [
    ("{not json", "bad JSON", "not valid JSON"),
    ("", "blank line", "blank line"),
    ("[1, 2]", "not an object", "JSON object"),
    ({"duration": 1.0, "text": "x"}, "no audio_filepath", "'audio_filepath' is missing"),
    ({"audio_filepath": "", "duration": 1.0, "text": "x"}, "no audio_filepath", "audio_filepath"),
    ({"audio_filepath": "a.wav", "text": "x"}, "bad duration", "'duration' is missing"),
    ({"audio_filepath": "a.wav", "duration": -1, "text": "x"}, "bad duration", "positive"),
    ({"audio_filepath": "a.wav", "duration": "1.0", "text": "x"}, "bad duration", "positive"),
    ({"audio_filepath": "a.wav", "duration": 0, "text": "x"}, "bad duration", "positive"),
    ({"audio_filepath": "a.wav", "duration": 1.0}, "no text", "'text' is missing"),
    ({"audio_filepath": "a.wav", "duration": 1.0, "text": "  "}, "no text", "'text' is empty"),
    ({"audio_filepath": "a.wav", "duration": 1.0, "text": 5}, "bad field", "'text' must be a string"),
    ({"audio_filepath": "a.wav", "duration": 1.0, "text": "x", "offset": -0.5}, "bad offset", "'offset'"),
    ({"audio_filepath": "a.wav", "duration": 1.0, "text": "x", "sampling_rate": "16k"}, "bad field",
     "sampling_rate"),
]


@pytest.mark.parametrize("bad,reason,words", BAD_LINES, ids=[r for _, r, _ in BAD_LINES])
def test_each_bad_line_names_file_and_line(tmp_path: Path, bad, reason: str, words: str) -> None:
    good = {"audio_filepath": "a.wav", "duration": 1.0, "text": "fine"}
    path = write_lines(tmp_path / "train.json", [good, good, bad, good])
    with pytest.raises(ManifestError) as exc:
        list(read_manifest(path))
    assert str(exc.value).startswith(f"{path}:3: ")
    assert words in str(exc.value)
    assert exc.value.line == 3 and exc.value.reason == reason
    assert isinstance(exc.value, ValueError)

    report = ManifestReport()
    kept = list(read_manifest(path, skip_bad=True, report=report))
    assert [e.line for e in kept] == [1, 2, 4]
    assert (report.read, report.skipped, report.kept) == (4, 1, 3)
    assert report.reasons == {reason: 1}


def test_non_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(b'{"audio_filepath": "a.wav", "duration": 1.0, "text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(ManifestError, match=r"m\.json:2: line is not UTF-8"):
        list(read_manifest(path))


def test_require_text_false_allows_missing_text(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.json", [{"audio_filepath": "a.wav", "duration": 1.0, "label": "speech"}])
    (e,) = read_manifest(path, require_text=False)
    assert e.text is None and e.extra == {"label": "speech"}


def test_missing_manifest_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ManifestError, match=r"nope\.json: manifest file not found"):
        list(read_manifest(missing))
    with pytest.raises(ManifestError, match=r"nope\.json"):
        manifest_to_cutset(missing)


def test_skipme_is_counted_even_without_skip_bad(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.json", [
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "keep"},
        {"audio_filepath": "b.wav", "duration": 1.0, "text": "drop", "_skipme": "too noisy"},
    ])
    report = ManifestReport()
    assert [e.text for e in read_manifest(path, report=report)] == ["keep"]
    assert report.reasons == {"_skipme": 1} and "too noisy" in report.examples[0]


def test_report_text_and_one_warning_per_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = {"audio_filepath": "a.wav", "duration": 1.0, "text": "x"}
    lines = [good] * 6 + ["{bad", "", "{bad", good]
    path = write_lines(tmp_path / "train.json", lines)
    report = ManifestReport()
    with caplog.at_level(logging.WARNING, logger="speechkit.data.manifests"):
        kept = list(read_manifest(path, skip_bad=True, report=report))
    assert len(kept) == 7
    text = str(report)
    assert text.startswith("3 of 10 lines skipped: 2 bad JSON, 1 blank line (first: ")
    assert f"{path}:7:" in text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 of 10 lines skipped" in warnings[0].getMessage()
    assert str(ManifestReport(read=4)) == "4 lines read, none skipped"


def test_report_accumulates_over_files(tmp_path: Path) -> None:
    good = {"audio_filepath": "a.wav", "duration": 1.0, "text": "x"}
    p1 = write_lines(tmp_path / "a.json", [good, "{bad"])
    p2 = write_lines(tmp_path / "b.json", [good, {"audio_filepath": "a.wav", "duration": 1.0}])
    report = ManifestReport()
    for p in (p1, p2):
        list(read_manifest(p, skip_bad=True, report=report))
    assert (report.read, report.skipped) == (4, 2)
    assert report.reasons == {"bad JSON": 1, "no text": 1}


# ------------------------------------------------------------------------------------------ audio checks


AUDIO_BAD = [
    ({"audio_filepath": "missing.wav", "duration": 1.0}, "missing audio", "audio file not found"),
    ({"audio_filepath": "junk.wav", "duration": 1.0}, "unreadable audio", "cannot read the header"),
    ({"audio_filepath": "one.wav", "duration": 1.5}, "duration mismatch", "lasts 1.000 s"),
    ({"audio_filepath": "one.wav", "duration": 0.5}, "duration mismatch", "'duration' is 0.5 s"),
    ({"audio_filepath": "one.wav", "duration": 0.8, "offset": 0.5}, "segment past end", "runs past the end"),
    ({"audio_filepath": "one.wav", "duration": 0.1, "offset": 1.0}, "segment past end", "runs past the end"),
    ({"audio_filepath": "one.wav", "duration": 1.0, "sampling_rate": 8000}, "rate mismatch", "16000 Hz"),
]


@pytest.mark.parametrize("bad,reason,words", AUDIO_BAD, ids=[f"{r}-{i}" for i, (_, r, _) in enumerate(AUDIO_BAD)])
def test_audio_checks_name_file_and_line(tmp_path: Path, bad: dict, reason: str, words: str) -> None:
    make_wav(tmp_path / "one.wav", 1.0)
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    good = {"audio_filepath": "one.wav", "duration": 1.0}
    path = write_lines(tmp_path / "m.json", [good, bad])
    assert len(list(read_manifest(path, require_text=False))) == 2  # without check_audio: no I/O, no error
    with pytest.raises(ManifestError) as exc:
        list(read_manifest(path, require_text=False, check_audio=True))
    assert str(exc.value).startswith(f"{path}:2: ") and words in str(exc.value)
    assert exc.value.reason == reason
    report = ManifestReport()
    assert len(list(read_manifest(path, require_text=False, check_audio=True, skip_bad=True, report=report))) == 1
    assert report.reasons == {reason: 1}


def test_audio_checks_accept_tolerance_and_segments(tmp_path: Path) -> None:
    make_wav(tmp_path / "one.wav", 1.0)
    path = write_lines(tmp_path / "m.json", [
        {"audio_filepath": "one.wav", "duration": 1.05},  # within 0.1 s
        {"audio_filepath": "one.wav", "duration": 0.5, "offset": 0.5, "sampling_rate": SR},
        {"audio_filepath": str(tmp_path / "one.wav"), "duration": 0.95},  # absolute path
    ])
    assert len(list(read_manifest(path, require_text=False, check_audio=True))) == 3


def test_relative_paths_resolve_against_manifest_not_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "corpus"
    make_wav(data / "wavs" / "x.wav", 1.0)
    write_lines(data / "m.json", [{"audio_filepath": "wavs/x.wav", "duration": 1.0, "text": "t"}])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rel_manifest = Path("..") / "corpus" / "m.json"
    (e,) = read_manifest(rel_manifest, check_audio=True)
    assert e.audio_path() == (data / "wavs" / "x.wav")
    assert resolve_audio_path(rel_manifest, "wavs/x.wav") == data / "wavs" / "x.wav"
    assert resolve_audio_path(rel_manifest, "/abs/y.wav") == Path("/abs/y.wav")
    (cut,) = manifest_to_cutset(rel_manifest)
    assert cut.load_audio().shape == (1, SR)


# ------------------------------------------------------------------------------------------------ writing


def test_write_manifest_rewrites_paths_for_new_location(corpus: Path, tmp_path: Path) -> None:
    entries = list(read_manifest(corpus))
    inside = tmp_path / "sub" / "copy.json"  # audio not under sub/: absolute paths
    assert write_manifest(inside, entries) == 3
    lines = [json.loads(x) for x in inside.read_text().splitlines()]
    assert lines[0]["audio_filepath"] == str(tmp_path / "audio" / "a.wav")
    assert [x.audio_path() for x in read_manifest(inside)] == [x.audio_path() for x in entries]
    same = tmp_path / "again.json"  # same folder: relative again, identical lines
    write_manifest(same, read_manifest(inside))
    assert same.read_text() == "".join(json.dumps(e.to_json()) + "\n" for e in entries)
    # Dicts: relative paths are relative to the current directory.
    write_manifest(tmp_path / "d.json", [{"audio_filepath": str(tmp_path / "audio" / "a.wav"), "duration": 1.0}])
    assert json.loads((tmp_path / "d.json").read_text())["audio_filepath"] == "audio/a.wav"
    with pytest.raises(ValueError, match="no 'audio_filepath'"):
        write_manifest(tmp_path / "e.json", [{"duration": 1.0}])
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "e.json.tmp").exists()


# --------------------------------------------------------------------------------------------- CutSets
# Named functions, not lambdas: lhotse warns that lambdas break DataLoader workers.


def _longer_than_1_2(cut) -> bool:
    return cut.duration > 1.2


def _shorter_than_1_9(cut) -> bool:
    return cut.duration < 1.9


def _same(cut):
    return cut


def _tag_id(cut):
    return cut.with_id(cut.id + "_x")



def test_cutset_contents(corpus: Path) -> None:
    cuts = list(manifest_to_cutset(corpus))
    assert [c.id for c in cuts] == ["audio_a", "audio_b", "long_talk-000125-000200"]
    a, b, seg = cuts
    assert a.recording.id == "audio_a" and a.sampling_rate == SR and a.duration == 1.0
    assert a.supervisions[0].text == "hello world" and a.supervisions[0].speaker == "spk1"
    assert a.custom is None  # speaker went to the supervision
    assert b.supervisions[0].language == "en" and b.custom == {"label": "x"}
    assert seg.start == 1.25 and seg.duration == 2.0 and seg.recording.duration == 4.0
    assert len(seg.supervisions) == 1 and seg.supervisions[0].start == 0 and seg.supervisions[0].duration == 2.0
    audio = seg.load_audio()
    assert audio.shape == (1, 2 * SR) and np.allclose(audio, 0.1, atol=1e-3)
    assert a.recording.sources[0].source == str(corpus.parent / "audio" / "a.wav")


def test_cutset_is_lazy_and_reiterable(tmp_path: Path, corpus: Path) -> None:
    lines = corpus.read_text().splitlines()
    broken = tmp_path / "broken.json"
    broken.write_text("\n".join(lines[:2] + ["{oops"]) + "\n")
    cuts = manifest_to_cutset(broken)  # constructing reads nothing
    assert cuts.is_lazy
    it = iter(cuts)
    assert next(it).id == "audio_a" and next(it).id == "audio_b"
    with pytest.raises(ManifestError, match=r"broken\.json:3: "):
        next(it)
    assert [c.id for c in cuts.subset(first=2)] == ["audio_a", "audio_b"]  # a second pass works
    assert [c.id for c in cuts.subset(first=2)] == ["audio_a", "audio_b"]


def test_cutset_construction_reads_no_lines(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import speechkit.data.manifests as mod

    calls = []
    real = mod._parse_line
    monkeypatch.setattr(mod, "_parse_line", lambda *a, **k: calls.append(1) or real(*a, **k))
    cuts = manifest_to_cutset(corpus).filter(_longer_than_1_2).map(_same)
    assert calls == []
    assert [c.id for c in cuts] == ["audio_b", "long_talk-000125-000200"]
    assert len(calls) == 3


def test_cutset_lhotse_ops_and_to_file(corpus: Path, tmp_path: Path) -> None:
    from lhotse import CutSet

    cuts = manifest_to_cutset(corpus)
    out = tmp_path / "short.cuts.jsonl.gz"
    cuts.filter(_shorter_than_1_9).map(_tag_id).to_file(out)
    back = CutSet.from_file(out)
    assert [c.id for c in back] == ["audio_a_x", "audio_b_x"]
    assert back[0].supervisions[0].text == "hello world"
    assert [c.id for c in load_cutset(out)] == ["audio_a_x", "audio_b_x"]
    assert [c.id for c in load_cutset(corpus)] == ["audio_a", "audio_b", "long_talk-000125-000200"]
    with pytest.raises(ValueError, match="unknown manifest type"):
        (tmp_path / "x.txt").write_text("")
        load_cutset(tmp_path / "x.txt")


def test_cutset_skip_bad_counts_and_audio_checks(tmp_path: Path, corpus: Path) -> None:
    lines = corpus.read_text().splitlines()
    extra = [json.dumps({"audio_filepath": "audio/gone.wav", "duration": 1.0, "text": "x"}),
             json.dumps({"audio_filepath": "audio/a.wav", "duration": 3.0, "text": "x"}),
             lines[0]]  # duplicate of line 1
    path = tmp_path / "m.json"
    path.write_text("\n".join(lines + extra) + "\n")
    with pytest.raises(ManifestError, match=r"m\.json:4: audio file not found"):
        list(manifest_to_cutset(path))
    report = ManifestReport()
    cuts = list(manifest_to_cutset(path, skip_bad=True, report=report))
    assert len(cuts) == 3 and len({c.id for c in cuts}) == 3
    assert report.reasons == {"missing audio": 1, "duration mismatch": 1, "duplicate cut": 1}
    # Without audio checks line 5 (whole file a.wav again, other duration) is the first duplicate.
    with pytest.raises(ManifestError, match=r"m\.json:5: duplicate entry: cut id 'audio_a'"):
        list(manifest_to_cutset(tmp_path / "m.json", metadata_only=True))


def test_metadata_only_does_no_audio_io(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.json", [
        {"audio_filepath": "absent/a.wav", "duration": 2.0, "text": "one"},
        {"audio_filepath": "absent/b.flac", "duration": 1.5, "offset": 3.0, "sampling_rate": 8000, "text": "two"},
    ])
    a, b = manifest_to_cutset(path, metadata_only=True)
    assert a.sampling_rate == 16000 and a.duration == 2.0 and a.recording.num_samples == 32000
    assert b.sampling_rate == 8000 and b.start == 3.0 and b.duration == 1.5
    assert b.recording.duration >= 4.5 and b.id == "absent_b-000300-000150"
    with pytest.raises(ManifestError, match=r"m\.json:1: audio file not found"):
        list(manifest_to_cutset(path))


def test_recording_ids_unique_across_manifest_folders(tmp_path: Path) -> None:
    p1 = write_lines(tmp_path / "one" / "m.json", [{"audio_filepath": "a.wav", "duration": 1.0, "text": "x"}])
    p2 = write_lines(tmp_path / "two" / "m.json", [{"audio_filepath": "a.wav", "duration": 1.0, "text": "y"}])
    ids = [c.id for c in manifest_to_cutset([p1, p2], metadata_only=True)]
    assert ids == ["one_a", "two_a"]


def test_multichannel_file_gives_multicut(tmp_path: Path) -> None:
    make_wav(tmp_path / "st.wav", 0.5, channels=2)
    path = write_lines(tmp_path / "m.json", [{"audio_filepath": "st.wav", "duration": 0.5, "text": "x"}])
    (cut,) = manifest_to_cutset(path)
    assert cut.num_channels == 2 and cut.load_audio().shape == (2, SR // 2)


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("metadata_only", [False, True])
def test_round_trip_manifest_cuts_manifest(corpus: Path, tmp_path: Path, metadata_only: bool) -> None:
    back = corpus.parent / "back.json"  # same folder, so relative paths come back relative
    n = cutset_to_manifest(manifest_to_cutset(corpus, metadata_only=metadata_only), back)
    assert n == 3
    assert [e.to_json() for e in read_manifest(back)] == [e.to_json() for e in read_manifest(corpus)]
    # Another folder: absolute paths that still point at the same files.
    other = tmp_path / "elsewhere" / "back.json"
    cutset_to_manifest(manifest_to_cutset(corpus), other)
    assert [e.audio_path() for e in read_manifest(other)] == [e.audio_path() for e in read_manifest(corpus)]
    assert [e.offset for e in read_manifest(other)] == [0.0, 0.0, 1.25]


def test_round_trip_through_lhotse_file(corpus: Path) -> None:
    cuts_file = corpus.parent / "train.cuts.jsonl.gz"
    manifest_to_cutset(corpus).to_file(cuts_file)
    back = corpus.parent / "back.json"
    cutset_to_manifest(load_cutset(cuts_file), back)
    assert [json.loads(x) for x in back.read_text().splitlines()] == [
        json.loads(x) for x in corpus.read_text().splitlines()]


def test_entry_made_in_code_round_trips(tmp_path: Path) -> None:
    make_wav(tmp_path / "w.wav", 0.5)
    e = ManifestEntry(audio_filepath=str(tmp_path / "w.wav"), duration=0.5, text="hi", lang="en",
                      extra={"speaker": "s"})
    write_manifest(tmp_path / "m.json", [e])
    (r,) = read_manifest(tmp_path / "m.json", check_audio=True)
    assert (r.audio_filepath, r.text, r.lang, r.extra) == ("w.wav", "hi", "en", {"speaker": "s"})


def test_import_loads_no_lhotse_or_torch() -> None:
    code = ("import sys, speechkit.data.manifests; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lhotse', 'torch', 'torchaudio')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], env={**os.environ})
    assert proc.returncode == 0, proc.stdout + proc.stderr
