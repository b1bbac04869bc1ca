"""``librivox_manifest``: the five LibriVox utterances of Debian's pocketsphinx-testdata as a NeMo manifest.

The tests marked ``needs_package`` read the real package (``make setup`` installs it); the others use a fake
source folder in the same format, made here, so that parsing, conversion and errors are tested everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.librivox import (
    DEFAULT_SOURCE_DIR,
    PACKAGE,
    LibriVoxConfig,
    LibriVoxError,
    find_librivox_dir,
    librivox_manifest,
    prepare_librivox,
    read_transcription,
)
from speechkit.data.manifests import load_cutset, read_manifest
from speechkit.text.normalize import normalize_english

needs_package = pytest.mark.skipif(
    not (DEFAULT_SOURCE_DIR / "transcription").is_file(),
    reason=f"Debian package {PACKAGE} not installed (apt-get install {PACKAGE})",
)


@needs_package
def test_real_package_gives_five_utterances(tmp_path: Path) -> None:
    manifest = librivox_manifest(tmp_path / "lv")
    assert manifest == (tmp_path / "lv" / "librivox.json").resolve()
    entries = list(read_manifest(manifest, check_audio=True))  # durations are checked against the wavs too
    assert len(entries) == 5
    for e in entries:
        src = DEFAULT_SOURCE_DIR / f"{e.extra['utt_id']}.wav"
        info = sf.info(str(e.audio_path()))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert e.duration == pytest.approx(sf.info(str(src)).duration, abs=1e-3)
        assert 2.5 < e.duration < 8.0
        assert e.text and e.text == normalize_english(e.extra["source_text"])
        assert "<s>" not in e.extra["source_text"] and e.lang == "en"
        assert not Path(e.audio_filepath).is_absolute()  # the folder can be moved as a whole
    assert sum(e.duration for e in entries) == pytest.approx(24.73, abs=0.05)
    assert entries[1].text == "he was not an ill disposed young man"


@needs_package
def test_default_search_finds_the_package() -> None:
    assert find_librivox_dir() == DEFAULT_SOURCE_DIR


def test_missing_package_names_it(tmp_path: Path) -> None:
    with pytest.raises(LibriVoxError, match=rf"{PACKAGE}.*apt-get install {PACKAGE}") as err:
        librivox_manifest(tmp_path / "out", source_dir=tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)
    assert isinstance(err.value, FileNotFoundError)  # the CLI prints it as a plain error
    assert not (tmp_path / "out" / "librivox.json").exists()


def _fake_source(root: Path, rate: int = 16000, channels: int = 1, seconds: tuple[float, ...] = (1.0, 0.5)) -> Path:
    """A folder in the package's format: ``transcription`` + one wav per line."""
    root.mkdir(parents=True)
    lines = []
    for i, secs in enumerate(seconds):
        utt = f"book_01_reader_64kb-{i:04d}"
        t = np.arange(int(secs * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
        sf.write(str(root / f"{utt}.wav"), np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate,
                 subtype="PCM_16")
        lines.append(f"<s> Mr. Smith paid $5 on the {i + 1}st </s> ({utt})")
    (root / "transcription").write_text("\n".join(lines) + "\n")
    return root


def test_fake_source_copied_and_normalised(tmp_path: Path) -> None:
    src = _fake_source(tmp_path / "src")
    summary = prepare_librivox(LibriVoxConfig(out_dir=str(tmp_path / "out"), source_dir=str(src)))
    assert (summary.copied, summary.converted, summary.reused) == (2, 0, 0)
    entries = list(read_manifest(summary.manifest, check_audio=True))
    assert [e.duration for e in entries] == [1.0, 0.5]
    assert entries[0].text == "mister smith paid five dollars on the first"
    assert entries[0].extra["source_text"] == "Mr. Smith paid $5 on the 1st"
    cuts = list(load_cutset(summary.cuts))
    assert len(cuts) == 2 and cuts[0].supervisions[0].text == entries[0].text
    assert "2 utterances" in str(summary)
    again = prepare_librivox(LibriVoxConfig(out_dir=str(tmp_path / "out"), source_dir=str(src), cuts=False))
    assert (again.copied, again.converted, again.reused) == (0, 0, 2)


def test_other_rates_are_converted(tmp_path: Path) -> None:
    src = _fake_source(tmp_path / "src", rate=22050, channels=2, seconds=(0.8,))
    manifest = librivox_manifest(tmp_path / "out", source_dir=src)
    (entry,) = read_manifest(manifest, check_audio=True)
    info = sf.info(str(entry.audio_path()))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert entry.duration == pytest.approx(0.8, abs=1e-3)


def test_missing_wav_and_bad_line_are_errors(tmp_path: Path) -> None:
    src = _fake_source(tmp_path / "src")
    next(src.glob("*-0001.wav")).unlink()
    with pytest.raises(LibriVoxError, match=r"transcription: no audio file .*-0001\.wav"):
        librivox_manifest(tmp_path / "out", source_dir=src)
    (src / "transcription").write_text("<s> no id here </s>\n")
    with pytest.raises(LibriVoxError, match=r"transcription:1: expected"):
        read_transcription(src / "transcription")


def test_transcription_format() -> None:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix="transcription", delete=False) as f:
        f.write("<s> hello   world </s> (a-1)\n\nplain text without markers (a-2)\n")
    try:
        assert read_transcription(f.name) == [("a-1", "hello world"), ("a-2", "plain text without markers")]
    finally:
        Path(f.name).unlink()


def test_default_search_falls_back_to_dpkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import speechkit.data.librivox as lv

    monkeypatch.setattr(lv, "DEFAULT_SOURCE_DIR", tmp_path / "not-here")
    monkeypatch.setattr(lv, "_dpkg_librivox_dir", lambda: None)
    with pytest.raises(LibriVoxError, match=rf"dpkg -L {PACKAGE}.*apt-get install {PACKAGE}"):
        lv.find_librivox_dir()
    src = _fake_source(tmp_path / "elsewhere" / "librivox")
    monkeypatch.setattr(lv, "_dpkg_librivox_dir", lambda: src)
    assert lv.find_librivox_dir() == src
