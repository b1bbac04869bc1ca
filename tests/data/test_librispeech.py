"""``prepare librispeech`` on a fake corpus in LibriSpeech's layout (tiny flac files made here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.cli import main
from speechkit.data.librispeech import (
    LibriSpeechConfig,
    LibriSpeechError,
    _read_headers,
    prepare_librispeech,
)
from speechkit.data.manifests import load_cutset, read_manifest

SR = 16000


def make_chapter(root: Path, part: str, speaker: str, chapter: str, utts: dict[str, tuple[str, float]]) -> Path:
    """Write flacs and a transcript; utts maps utterance number -> (TEXT, seconds)."""
    d = root / part / speaker / chapter
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for num, (text, seconds) in utts.items():
        utt_id = f"{speaker}-{chapter}-{num}"
        sf.write(str(d / f"{utt_id}.flac"), np.full(int(seconds * SR), 0.05, dtype=np.float32), SR)
        lines.append(f"{utt_id} {text}")
    (d / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "LibriSpeech"
    make_chapter(root, "dev-clean", "84", "121123", {"0000": ("GO DO YOU HEAR", 0.5), "0001": ("BUT IN LESS", 0.25)})
    make_chapter(root, "dev-clean", "174", "50561", {"0000": ("FORGOTTEN TOO", 0.75)})
    make_chapter(root, "test-clean", "1089", "134686", {"0000": ("HE HOPED", 0.5)})
    make_chapter(root, "test-clean", "121", "121726", {"0000": ("ALSO A POPULAR", 0.25)})
    (root / "README.TXT").write_text("not a part")
    return root


def test_prepare_writes_manifests_and_cuts(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = prepare_librispeech(LibriSpeechConfig(str(corpus), out_dir=str(out)))
    assert [p.part for p in summary.parts] == ["dev-clean", "test-clean"]
    dev, test = summary.parts
    assert (dev.utterances, dev.speakers, dev.problems) == (3, 2, {})
    assert dev.seconds == pytest.approx(1.5)
    assert (test.utterances, test.speakers) == (2, 2)

    entries = list(read_manifest(out / "dev-clean.json", check_audio=True))
    # Numeric order: speaker 84 before 174.
    assert [e.text for e in entries] == ["go do you hear", "but in less", "forgotten too"]
    assert entries[0].extra == {"speaker": "84", "chapter": "121123"}
    assert entries[0].duration == pytest.approx(0.5)
    assert entries[0].audio_path() == corpus / "dev-clean" / "84" / "121123" / "84-121123-0000.flac"

    cuts = list(load_cutset(out / "dev-clean.cuts.jsonl.gz"))
    assert [c.id for c in cuts] == ["84-121123-0000", "84-121123-0001", "174-50561-0000"]
    assert cuts[0].supervisions[0].text == "go do you hear" and cuts[0].supervisions[0].speaker == "84"
    assert cuts[0].custom == {"chapter": "121123"}
    assert cuts[1].load_audio().shape == (1, SR // 4)

    text = str(summary)
    assert "dev-clean" in text and "test-clean" in text and "total 5 utterances" in text


def test_parts_option_and_casing(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = prepare_librispeech(LibriSpeechConfig(str(corpus.parent), out_dir=str(out), parts=["test-clean"],
                                                    lowercase=False))
    assert [p.part for p in summary.parts] == ["test-clean"]
    assert not (out / "dev-clean.json").exists()
    assert [e.text for e in read_manifest(out / "test-clean.json")] == ["ALSO A POPULAR", "HE HOPED"]
    with pytest.raises(LibriSpeechError, match=r"part\(s\) not found: train-clean-100 \(found: dev-clean, test-clean\)"):
        prepare_librispeech(LibriSpeechConfig(str(corpus), out_dir=str(out), parts=["train-clean-100"]))


def test_unpaired_files_are_counted_and_reported(corpus: Path, tmp_path: Path) -> None:
    chapter = corpus / "dev-clean" / "84" / "121123"
    (chapter / "84-121123-0001.flac").unlink()  # transcript line without audio
    sf.write(str(chapter / "84-121123-0009.flac"), np.zeros(SR // 10, dtype=np.float32), SR)  # audio, no line
    (chapter / "84-121123-0010.flac").write_bytes(b"not a flac")  # unreadable, with a transcript line
    with open(chapter / "84-121123.trans.txt", "a") as f:
        f.write("84-121123-0010 BROKEN FILE\n84-121123-0011\n")  # and a line without text
    summary = prepare_librispeech(LibriSpeechConfig(str(corpus), out_dir=str(tmp_path / "out"), parts=["dev-clean"]))
    (dev,) = summary.parts
    assert dev.utterances == 2
    assert dev.problems == {"transcript without audio": 1, "audio without transcript": 1,
                            "bad transcript line": 1, "unreadable audio": 1}
    text = str(summary)
    assert "84-121123.trans.txt:2: no audio file" in text
    assert "84-121123-0009.flac: no line for '84-121123-0009'" in text
    assert "84-121123.trans.txt:4: no transcript" in text
    assert "84-121123-0010.flac" in text
    assert [e.text for e in read_manifest(tmp_path / "out" / "dev-clean.json")] == ["go do you hear", "forgotten too"]


def test_missing_and_empty_corpus_are_errors(tmp_path: Path) -> None:
    with pytest.raises(LibriSpeechError, match=r"corpus folder not found: .*nowhere"):
        prepare_librispeech(LibriSpeechConfig(str(tmp_path / "nowhere")))
    empty = tmp_path / "empty"
    (empty / "stuff").mkdir(parents=True)
    with pytest.raises(LibriSpeechError, match=r"no LibriSpeech part folders found \(expected e\.g\. train-clean-100.*"
                                               r"the folder holds: stuff"):
        prepare_librispeech(LibriSpeechConfig(str(empty)))


def test_cli(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli_out"
    assert main(["prepare", "librispeech", str(corpus), "--out-dir", str(out), "--parts", "dev-clean"]) == 0
    printed = capsys.readouterr().out
    assert "dev-clean" in printed and "total 3 utterances" in printed
    lines = [json.loads(x) for x in (out / "dev-clean.json").read_text().splitlines()]
    assert len(lines) == 3 and set(lines[0]) == {"audio_filepath", "duration", "text", "speaker", "chapter"}
    assert main(["prepare", "librispeech", str(tmp_path / "missing"), "--out-dir", str(out)]) == 2
    assert "corpus folder not found" in capsys.readouterr().err


def test_header_pool_gives_same_results(corpus: Path) -> None:
    files = sorted(corpus.rglob("*.flac")) * 700  # past the pool threshold
    serial = list(_read_headers(files, num_jobs=1))
    pooled = list(_read_headers(files, num_jobs=2))
    assert pooled == serial and all(not isinstance(h, str) for h in serial)
