"""``speechkit prepare librispeech``: NeMo manifests and Lhotse cuts for a folder in LibriSpeech's layout.

Layout read (as unpacked from openslr.org/12)::

    <corpus_dir>/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   lines "<utt-id> TRANSCRIPT"
    <corpus_dir>/<part>/<speaker>/<chapter>/<utt-id>.flac

``corpus_dir`` may also be the folder that holds ``LibriSpeech/``. Every part folder found is prepared
(``train-clean-100``, ``dev-clean``, ``test-other`` ...) unless ``--parts`` names some.

Output in ``--out-dir``, per part: ``<part>.json`` (NeMo manifest: ``audio_filepath``, ``duration`` from the flac
header, ``text``, ``speaker``, ``chapter``) and ``<part>.cuts.jsonl.gz`` (Lhotse cuts, ids = utterance ids).

Text casing: LibriSpeech transcripts are upper-case without punctuation; they are written lower-case (what
NeMo's LibriSpeech recipes and most tokenizers trained on it use). ``--no-lowercase`` keeps them as they are.
``speaker`` and ``chapter`` are strings (as in the file names), so they round-trip through Lhotse supervisions.

Nothing is dropped silently: a transcript line whose flac is missing, a flac without a transcript line, a
malformed transcript line and an unreadable flac are each counted per part and shown (with the first examples)
in the printed summary.

Example:
    >>> from speechkit.data.librispeech import LibriSpeechConfig, prepare_librispeech
    >>> print(prepare_librispeech(LibriSpeechConfig("/data/LibriSpeech", parts=["dev-clean"])))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from speechkit.audio.io import AudioError, AudioInfo, audio_info
from speechkit.data.manifests import ManifestEntry, entry_to_cut, write_manifest

__all__ = ["LIBRISPEECH_PARTS", "LibriSpeechConfig", "LibriSpeechError", "LibriSpeechSummary", "PartSummary",
           "prepare_librispeech"]

logger = logging.getLogger(__name__)

#: The parts LibriSpeech ships, in the order they are printed.
LIBRISPEECH_PARTS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                     "test-clean", "test-other")
# Header reads are ~0.1 ms each; below this many files a process pool costs more than it saves.
_POOL_MIN_FILES = 2000
_MAX_EXAMPLES = 5


class LibriSpeechError(ValueError):
    """The corpus folder is missing or does not look like LibriSpeech; the message says what was expected."""


@dataclass
class LibriSpeechConfig:
    """Options of ``speechkit prepare librispeech`` (every field is a flag; ``corpus_dir`` is positional)."""

    corpus_dir: str = field(metadata={"help": "folder holding the LibriSpeech parts (or the folder holding LibriSpeech/)"})
    out_dir: str = field(default="data/librispeech", metadata={"help": "where the manifests and cuts go"})
    parts: list[str] = field(default_factory=list, metadata={
        "help": "parts to prepare, e.g. dev-clean test-clean (empty: every part folder found)"})
    num_jobs: int = field(default=0, metadata={"help": "processes reading flac headers (0 = all cores)"})
    lowercase: bool = field(default=True, metadata={"help": "write transcripts lower-case (NeMo's convention)"})


@dataclass
class PartSummary:
    """What was found and written for one part.

    Attributes:
        part: the part's folder name.
        utterances: entries written.
        seconds: their total duration.
        speakers: distinct speakers among them.
        problems: counts per kind (``"transcript without audio"``, ``"audio without transcript"``,
            ``"bad transcript line"``, ``"unreadable audio"``); those utterances are not written.
        examples: the first few problems, each naming the file (and line).
        manifest: the NeMo manifest written.
        cuts: the Lhotse cuts file written.
    """

    part: str
    utterances: int = 0
    seconds: float = 0.0
    speakers: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    manifest: str = ""
    cuts: str = ""

    def problem(self, kind: str, message: str) -> None:
        """Count one left-out file or line."""
        self.problems[kind] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(message)


@dataclass
class LibriSpeechSummary:
    """What ``speechkit prepare librispeech`` wrote; printed as a table (part, utterances, hours, speakers)."""

    corpus_dir: str
    out_dir: str
    parts: list[PartSummary]
    seconds_taken: float = 0.0

    def __str__(self) -> str:
        head = f"{'part':<16} {'utts':>7} {'hours':>8} {'speakers':>8}  left out"
        rows = [head, "-" * len(head)]
        for p in self.parts:
            left = ", ".join(f"{n} {k}" for k, n in p.problems.most_common()) or "-"
            rows.append(f"{p.part:<16} {p.utterances:>7} {p.seconds / 3600:>8.3f} {p.speakers:>8}  {left}")
        total = sum(p.seconds for p in self.parts)
        rows.append(f"total {sum(p.utterances for p in self.parts)} utterances, {total / 3600:.3f} h from "
                    f"{self.corpus_dir} -> {self.out_dir}/<part>.json and <part>.cuts.jsonl.gz "
                    f"({self.seconds_taken:.1f} s)")
        for p in self.parts:
            if p.problems:
                rows.append(f"{p.part}: first left-out items:")
                rows += [f"  {m}" for m in p.examples]
        return "\n".join(rows)


@dataclass
class _Utterance:
    utt_id: str
    speaker: str
    chapter: str
    text: str
    audio: Path


def _find_corpus_root(corpus: Path) -> Path:
    if not corpus.is_dir():
        what = "is a file, not a folder" if corpus.exists() else "not found"
        raise LibriSpeechError(f"LibriSpeech corpus folder {what}: {corpus}")
    if not _part_folders(corpus) and (corpus / "LibriSpeech").is_dir():
        return corpus / "LibriSpeech"
    return corpus


def _part_folders(root: Path) -> list[Path]:
    """Sub-folders holding at least one ``<speaker>/<chapter>/*.trans.txt``; known parts first."""
    found = [d for d in root.iterdir() if d.is_dir() and next(d.glob("*/*/*.trans.txt"), None) is not None]
    order = {name: i for i, name in enumerate(LIBRISPEECH_PARTS)}
    return sorted(found, key=lambda d: (order.get(d.name, len(order)), d.name))


def _id_key(utt_id: str) -> tuple:
    # Numeric order of speaker/chapter/utterance numbers ("19-198-0001" before "103-1240-0000").
    return tuple(int(x) if x.isdigit() else x for x in utt_id.split("-"))


def _scan_part(part: Path, summary: PartSummary, lowercase: bool) -> list[_Utterance]:
    """Pair transcript lines with flac files; unpaired ones are counted in ``summary``."""
    audio = {p.with_suffix(""): p for p in part.rglob("*.flac")}
    utts: list[_Utterance] = []
    for trans in sorted(part.glob("*/*/*.trans.txt")):
        chapter_dir = trans.parent
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue  # a trailing empty line carries no utterance
                utt_id, _, text = line.strip().partition(" ")
                text = " ".join(text.split())
                where = f"{trans}:{lineno}"
                if not text:
                    summary.problem("bad transcript line", f"{where}: no transcript after the id {utt_id!r}")
                    continue
                flac = audio.pop(chapter_dir / utt_id, None)
                if flac is None:
                    summary.problem("transcript without audio", f"{where}: no audio file {chapter_dir / utt_id}.flac")
                    continue
                utts.append(_Utterance(utt_id, speaker, chapter, text.lower() if lowercase else text, flac))
    for stem in sorted(audio):
        summary.problem("audio without transcript", f"{audio[stem]}: no line for {stem.name!r} in any "
                                                    f"{stem.parent}/*.trans.txt")
    utts.sort(key=lambda u: _id_key(u.utt_id))
    return utts


def _header(path: Path) -> AudioInfo | str:
    """Header of one file, or the error text (workers must not raise: one bad file would end the map)."""
    try:
        return audio_info(path)
    except AudioError as err:
        return str(err)


def _read_headers(paths: list[Path], num_jobs: int) -> Iterator[AudioInfo | str]:
    jobs = num_jobs or os.cpu_count() or 1
    if jobs <= 1 or len(paths) < _POOL_MIN_FILES:
        yield from map(_header, paths)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_header, paths, chunksize=256)


def _prepare_part(part: Path, out: Path, cfg: LibriSpeechConfig) -> PartSummary:
    from lhotse import CutSet

    summary = PartSummary(part.name)
    utts = _scan_part(part, summary, cfg.lowercase)
    manifest = out / f"{part.name}.json"
    cuts_path = out / f"{part.name}.cuts.jsonl.gz"
    speakers: set[str] = set()

    def entries() -> Iterator[ManifestEntry]:
        with CutSet.open_writer(cuts_path) as cuts:
            for utt, info in zip(utts, _read_headers([u.audio for u in utts], cfg.num_jobs), strict=False):
                if isinstance(info, str):
                    summary.problem("unreadable audio", info)
                    continue
                entry = ManifestEntry(audio_filepath=str(utt.audio), duration=info.duration, text=utt.text,
                                      extra={"speaker": utt.speaker, "chapter": utt.chapter})
                cuts.write(entry_to_cut(entry, utt.audio, info, recording_id=utt.utt_id))
                summary.utterances += 1
                summary.seconds += info.duration
                speakers.add(utt.speaker)
                yield entry

    write_manifest(manifest, entries())
    summary.speakers = len(speakers)
    summary.manifest, summary.cuts = str(manifest), str(cuts_path)
    if summary.problems:
        logger.warning("%s: left out %s", part, ", ".join(f"{n} {k}" for k, n in summary.problems.most_common()))
    return summary


def prepare_librispeech(cfg: LibriSpeechConfig) -> LibriSpeechSummary:
    """Write ``<out_dir>/<part>.json`` and ``<out_dir>/<part>.cuts.jsonl.gz`` for each LibriSpeech part.

    Args:
        cfg: the options (see :class:`LibriSpeechConfig`).

    Returns:
        A :class:`LibriSpeechSummary` (printable table; per part the utterances, hours, speakers and what was
        left out and why).

    Raises:
        LibriSpeechError: ``corpus_dir`` does not exist, holds no part folders (the message lists the expected
            layout and what the folder holds), or a requested part is not there.
    """
    t0 = time.perf_counter()
    root = _find_corpus_root(Path(cfg.corpus_dir))
    found = _part_folders(root)
    if not found:
        listing = sorted(p.name for p in root.iterdir())[:20]
        raise LibriSpeechError(
            f"{root}: no LibriSpeech part folders found (expected e.g. {', '.join(LIBRISPEECH_PARTS)}, each laid "
            f"out as <part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt + <utt-id>.flac); "
            f"the folder holds: {', '.join(listing) or 'nothing'}")
    by_name = {p.name: p for p in found}
    if cfg.parts:
        unknown = [p for p in cfg.parts if p not in by_name]
        if unknown:
            raise LibriSpeechError(f"{root}: part(s) not found: {', '.join(unknown)} "
                                   f"(found: {', '.join(by_name)})")
        chosen = [by_name[p] for p in dict.fromkeys(cfg.parts)]
    else:
        chosen = found
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [_prepare_part(p, out, cfg) for p in chosen]
    return LibriSpeechSummary(str(root), str(out), parts, time.perf_counter() - t0)
