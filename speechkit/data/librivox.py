"""``speechkit prepare librivox``: a NeMo manifest of the five LibriVox utterances Debian ships.

Debian's ``pocketsphinx-testdata`` package holds five read-speech utterances from the LibriVox recording of
*Sense and Sensibility* (chapter 1; about 25 s in all) with their transcripts, in
``/usr/share/pocketsphinx/test/data/librivox/``. They are the only real recorded English speech with transcripts
that a fresh Debian/Ubuntu machine can get from its package manager, which makes them speechkit's real-speech
smoke check (``make demo``, the peers' WER in RESULTS.md). Far too small to train on.

::

    apt-get install pocketsphinx-testdata
    speechkit prepare librivox --out-dir data/librivox

Output in ``--out-dir``: ``audio/<utterance-id>.wav`` (16 kHz mono 16-bit; copied when the source already is
that, converted otherwise), ``librivox.json`` (NeMo manifest: ``audio_filepath``, ``duration``, ``text``,
``lang``, ``speaker``, ``utt_id``, ``source_text``) and, unless ``--no-cuts``, ``librivox.cuts.jsonl.gz``.
``text`` is the transcript normalised with :func:`speechkit.text.normalize.normalize_english` (the same policy as
every other speechkit corpus); the transcript as the package writes it (``<s> ... </s>`` markers removed) is kept
in ``source_text``. Running the command again reuses the wavs already there.

The source folder is found at the path above, else from ``dpkg -L pocketsphinx-testdata``; ``--source-dir``
points elsewhere (a folder holding ``transcription`` and the wavs). When nothing is found the error names the
package to install.

Example:
    >>> from speechkit.data.librivox import librivox_manifest
    >>> manifest = librivox_manifest("data/librivox")  # doctest: +SKIP
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from speechkit.audio.io import AudioError, audio_info, load_audio, save_audio
from speechkit.data.manifests import ManifestEntry, write_manifest
from speechkit.text.normalize import normalize_english

__all__ = ["DEFAULT_SOURCE_DIR", "PACKAGE", "LibriVoxConfig", "LibriVoxError", "LibriVoxSummary", "find_librivox_dir",
           "librivox_manifest", "prepare_librivox", "read_transcription"]

PACKAGE = "pocketsphinx-testdata"
"""The Debian package that ships the utterances."""
DEFAULT_SOURCE_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
"""Where Debian installs them."""
MANIFEST_NAME = "librivox.json"
SAMPLE_RATE = 16000
# "<s> text </s> (utterance-id)": Sphinx's transcription format; the sentence markers are optional.
_LINE_RE = re.compile(r"^\s*(?:<s>\s+)?(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")


class LibriVoxError(FileNotFoundError):
    """The utterances or their transcript are missing or malformed; the message names the file or the package."""


@dataclass
class LibriVoxConfig:
    """Options of ``speechkit prepare librivox`` (every field is a flag)."""

    out_dir: str = field(default="data/librivox", metadata={"help": "where the wavs and librivox.json go"})
    source_dir: str | None = field(default=None, metadata={
        "help": f"folder holding 'transcription' and the wavs (unset: {DEFAULT_SOURCE_DIR}, else where "
                f"dpkg -L {PACKAGE} lists it)"})
    cuts: bool = field(default=True, metadata={"help": "also write Lhotse cuts (librivox.cuts.jsonl.gz)"})


@dataclass
class LibriVoxSummary:
    """What ``speechkit prepare librivox`` wrote; printed as one line per utterance and a total."""

    source_dir: str
    manifest: str
    rows: list[tuple[str, float, str]]
    copied: int = 0
    converted: int = 0
    reused: int = 0
    cuts: str = ""

    def __str__(self) -> str:
        lines = [f"{'utterance':<42} {'seconds':>7}  text", "-" * 72]
        lines += [f"{utt:<42} {secs:>7.2f}  {text}" for utt, secs, text in self.rows]
        total = sum(secs for _, secs, _ in self.rows)
        lines.append(f"total {len(self.rows)} utterances, {total:.1f} s from {self.source_dir} -> {self.manifest}"
                     + (f" and {Path(self.cuts).name}" if self.cuts else "")
                     + f" (wavs: {self.copied} copied, {self.converted} converted, {self.reused} reused)")
        return "\n".join(lines)


def _not_installed(looked: list[Path], why: str = "") -> LibriVoxError:
    where = ", ".join(str(p) for p in looked)
    return LibriVoxError(
        f"the LibriVox utterances of the Debian package {PACKAGE} were not found (looked in {where}{why}); "
        f"install them with: apt-get install {PACKAGE}")


def _dpkg_librivox_dir() -> Path | None:
    """The package's librivox folder according to dpkg, or ``None`` (no dpkg, or the package not installed)."""
    try:
        proc = subprocess.run(["dpkg", "-L", PACKAGE], capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        if line.endswith("/librivox/transcription"):
            return Path(line).parent
    return None


def find_librivox_dir(source_dir: str | Path | None = None) -> Path:
    """The folder holding the package's ``transcription`` file and wavs.

    Args:
        source_dir: look only here (also accepted: a folder with a ``librivox/`` sub-folder). ``None``: the
            Debian location, else what ``dpkg -L pocketsphinx-testdata`` lists.

    Returns:
        The folder.

    Raises:
        LibriVoxError: not found; the message names the package to install and where it looked.
    """
    if source_dir is not None:
        candidates = [Path(source_dir), Path(source_dir) / "librivox"]
    else:
        candidates = [DEFAULT_SOURCE_DIR]
    for d in candidates:
        if (d / "transcription").is_file():
            return d
    if source_dir is None:
        found = _dpkg_librivox_dir()
        if found is not None and (found / "transcription").is_file():
            return found
        raise _not_installed(candidates, f" and in 'dpkg -L {PACKAGE}'")
    raise _not_installed(candidates)


def read_transcription(path: str | Path) -> list[tuple[str, str]]:
    """Parse a Sphinx ``transcription`` file: lines ``<s> text </s> (utterance-id)``.

    Args:
        path: the file.

    Returns:
        ``(utterance_id, text)`` pairs in file order; ``text`` without the ``<s>``/``</s>`` markers.

    Raises:
        LibriVoxError: a line that does not match, an empty text or a repeated id (naming file and line), or
            no utterance at all.
    """
    path = Path(path)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE_RE.match(line)
        if m is None or not m.group("text"):
            raise LibriVoxError(f"{path}:{lineno}: expected '<s> text </s> (utterance-id)', got {line!r}")
        utt_id = m.group("id")
        if utt_id in seen:
            raise LibriVoxError(f"{path}:{lineno}: utterance id {utt_id!r} appears twice")
        seen.add(utt_id)
        pairs.append((utt_id, " ".join(m.group("text").split())))
    if not pairs:
        raise LibriVoxError(f"{path}: no utterances")
    return pairs


def _to_wav16k(src: Path, dst: Path) -> bool:
    """Make ``dst`` a 16 kHz mono 16-bit wav of ``src``; returns whether it had to be converted (not copied)."""
    try:
        info = audio_info(src)
    except AudioError as err:
        raise LibriVoxError(f"{src}: unreadable audio ({err})") from None
    import soundfile as sf

    subtype = sf.info(str(src)).subtype if src.suffix.lower() == ".wav" else ""
    if info.sample_rate == SAMPLE_RATE and info.num_channels == 1 and subtype == "PCM_16":
        shutil.copyfile(src, dst)
        return False
    save_audio(dst, load_audio(src, sample_rate=SAMPLE_RATE), SAMPLE_RATE)
    return True


def _prepare(out_dir: str | Path, source_dir: str | Path | None) -> LibriVoxSummary:
    src_dir = find_librivox_dir(source_dir)
    out = Path(out_dir).resolve()
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    summary = LibriVoxSummary(str(src_dir), str(out / MANIFEST_NAME), [])
    entries = []
    for utt_id, source_text in read_transcription(src_dir / "transcription"):
        src = next((p for p in (src_dir / f"{utt_id}{ext}" for ext in (".wav", ".flac")) if p.is_file()), None)
        if src is None:
            raise LibriVoxError(f"{src_dir / 'transcription'}: no audio file {src_dir / utt_id}.wav for "
                                f"utterance {utt_id!r}")
        dst = audio_dir / f"{utt_id}.wav"
        # A wav written by an earlier run after the source last changed is the same audio: keep it.
        if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime and dst.stat().st_size > 44:
            summary.reused += 1
        else:
            tmp = dst.with_name(dst.stem + ".tmp.wav")
            if _to_wav16k(src, tmp):
                summary.converted += 1
            else:
                summary.copied += 1
            tmp.replace(dst)
        duration = round(audio_info(dst).duration, 3)
        text = normalize_english(source_text)
        if not text:
            raise LibriVoxError(f"{src_dir / 'transcription'}: the transcript of {utt_id!r} is empty after "
                                f"normalising: {source_text!r}")
        entries.append(ManifestEntry(
            audio_filepath=str(dst), duration=duration, text=text, lang="en",
            extra={"speaker": "librivox:" + utt_id.rsplit("-", 1)[0], "utt_id": utt_id, "source_text": source_text},
        ))
        summary.rows.append((utt_id, duration, text))
    write_manifest(out / MANIFEST_NAME, entries)
    return summary


def librivox_manifest(out_dir: str | Path, source_dir: str | Path | None = None) -> Path:
    """Write the LibriVox utterances of ``pocketsphinx-testdata`` as 16 kHz wavs and a NeMo manifest.

    Args:
        out_dir: output folder (created); gets ``audio/*.wav`` and ``librivox.json``. Wavs already there are reused.
        source_dir: where the package's ``transcription`` and wavs are (``None``: found as described in the
            module docstring).

    Returns:
        The manifest's path (``<out_dir>/librivox.json``; audio paths in it are relative to ``out_dir``).

    Raises:
        LibriVoxError: the package is not installed (the message says ``apt-get install pocketsphinx-testdata``),
            or its transcript or audio is missing or malformed (naming the file and line).

    Example:
        >>> from speechkit.data.manifests import read_manifest
        >>> m = librivox_manifest("/tmp/librivox")  # doctest: +SKIP
        >>> [e.text for e in read_manifest(m)][1]  # doctest: +SKIP
        'he was not an ill disposed young man'
    """
    return Path(_prepare(out_dir, source_dir).manifest)


def prepare_librivox(cfg: LibriVoxConfig) -> LibriVoxSummary:
    """``speechkit prepare librivox``: :func:`librivox_manifest` plus, with ``cfg.cuts``, Lhotse cuts.

    Args:
        cfg: the options (see :class:`LibriVoxConfig`).

    Returns:
        A printable :class:`LibriVoxSummary`.

    Raises:
        LibriVoxError: as :func:`librivox_manifest`.
    """
    summary = _prepare(cfg.out_dir, cfg.source_dir)
    if cfg.cuts:
        from speechkit.data.manifests import manifest_to_cutset

        cuts = Path(summary.manifest).with_name("librivox.cuts.jsonl.gz")
        manifest_to_cutset(summary.manifest).to_file(cuts)
        summary.cuts = str(cuts)
    return summary
