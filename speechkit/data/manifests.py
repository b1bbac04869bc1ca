"""NeMo JSON-lines manifests: reading with checks, writing, and lazy conversion to and from Lhotse cuts.

A NeMo manifest holds one JSON object per line, one utterance per line::

    {"audio_filepath": "audio/utt1.wav", "duration": 2.31, "text": "hello world"}
    {"audio_filepath": "/data/long.wav", "offset": 12.5, "duration": 4.0, "text": "a segment", "lang": "en"}

Required keys are ``audio_filepath``, ``duration`` and (for ASR) ``text``; ``offset``, ``lang`` and
``sampling_rate`` are understood; every other key (``speaker``, ``label`` ...) is kept as is. A relative
``audio_filepath`` is resolved against the manifest's own folder, never against the current directory.
A blank line is an error (NeMo's format forbids them), like any other bad line: it can be skipped and
counted with ``skip_bad=True``. An entry with a truthy ``_skipme`` key (NeMo's marker) is always skipped and
counted under its own reason. See ``manifests/README.md`` for the full format.

This module imports no lhotse or torch at import time: :func:`read_manifest` and :func:`write_manifest`
are plain Python; the CutSet functions import lhotse when called.

Example:
    >>> from speechkit.data.manifests import ManifestReport, read_manifest, manifest_to_cutset
    >>> report = ManifestReport()
    >>> hours = sum(e.duration for e in read_manifest("train.json", skip_bad=True, report=report)) / 3600  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    2 of 10 lines skipped: 1 bad JSON, 1 missing audio (first: train.json:7: ...)
    >>> cuts = manifest_to_cutset("train.json")  # lazy: nothing is read yet  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from lhotse import CutSet
    from lhotse.cut import Cut

    from speechkit.audio.io import AudioInfo

__all__ = [
    "DURATION_TOLERANCE",
    "ManifestEntry",
    "ManifestError",
    "ManifestReport",
    "NemoManifestCuts",
    "cutset_to_manifest",
    "entry_to_cut",
    "iter_manifest_cuts",
    "load_cutset",
    "manifest_to_cutset",
    "read_manifest",
    "resolve_audio_path",
    "write_manifest",
]

logger = logging.getLogger(__name__)

#: Seconds a declared duration (or offset + duration) may differ from the audio file's header.
DURATION_TOLERANCE = 0.1
#: Rate assumed for a recording made up from metadata when the line declares none.
DEFAULT_SAMPLING_RATE = 16000
# Keys the reader interprets; everything else goes to ``ManifestEntry.extra``.
_KNOWN = ("audio_filepath", "duration", "offset", "sampling_rate")
_MAX_EXAMPLES = 5


class ManifestError(ValueError):
    """A manifest file or one of its lines is unusable; ``str()`` reads ``"<file>:<line>: <what>"``.

    Attributes:
        path: the manifest file.
        line: 1-based line number (0 when the problem is the file itself).
        reason: short category used to count skipped lines (e.g. ``"bad JSON"``, ``"missing audio"``).
        detail: the explanation without the location.
    """

    def __init__(self, path: str | Path, line: int, reason: str, detail: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        self.detail = detail
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {detail}")


@dataclass
class ManifestEntry:
    """One line of a NeMo manifest.

    Attributes:
        audio_filepath: the path exactly as written in the file (resolve it with :func:`resolve_audio_path`
            or :meth:`audio_path`).
        duration: seconds.
        text: the transcript (``None`` when absent and not required).
        offset: seconds into the audio file where the utterance starts.
        lang: language code, or ``None``.
        sampling_rate: rate declared by the line (lets readers skip the header), or ``None``.
        extra: every other key of the line (``speaker``, ``label`` ...), values untouched.
        line: 1-based line number in its manifest (0 for entries made in code).
        manifest: absolute path of the manifest the entry was read from (``None`` for entries made in code); relative
            audio paths are relative to its folder.
    """

    audio_filepath: str
    duration: float
    text: str | None = None
    offset: float = 0.0
    lang: str | None = None
    sampling_rate: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = 0
    manifest: str | None = None

    def audio_path(self) -> Path:
        """The audio file's path, resolved against the folder of the manifest the entry came from.

        Returns:
            Absolute path when the entry knows its manifest or the path is absolute; otherwise the path as
            written (relative to the current directory).
        """
        if self.manifest is None:
            return Path(self.audio_filepath)
        return resolve_audio_path(self.manifest, self.audio_filepath)

    def to_json(self, text_field: str = "text", lang_field: str = "lang") -> dict[str, Any]:
        """The entry as a NeMo manifest line (a dict ready for ``json.dumps``).

        Args:
            text_field: key the transcript is written under.
            lang_field: key the language is written under.

        Returns:
            ``audio_filepath``, ``duration``, ``offset`` (only when non-zero), the text and language (when
            set), ``sampling_rate`` (when set) and the extra keys.

        Raises:
            ValueError: an extra key has the name of a field written here (e.g. an extra ``text`` when
                writing the transcript under ``text``): it would be lost otherwise.
        """
        out: dict[str, Any] = {"audio_filepath": self.audio_filepath, "duration": self.duration}
        if self.offset:
            out["offset"] = self.offset
        if self.text is not None:
            out[text_field] = self.text
        if self.lang is not None:
            out[lang_field] = self.lang
        if self.sampling_rate is not None:
            out["sampling_rate"] = self.sampling_rate
        _add_extra(out, self.extra, f"{self.manifest}:{self.line}" if self.manifest else "entry")
        return out


def _add_extra(line: dict[str, Any], extra: dict[str, Any], where: str) -> None:
    """Add extra keys to a line; a key that would replace a written field is an error, never a silent loss."""
    for key, value in extra.items():
        if key in line:
            raise ValueError(f"{where}: extra key {key!r} collides with the {key!r} field being written "
                             f"(read and write with the same text_field/lang_field, or rename the key)")
        line[key] = value


@dataclass
class ManifestReport:
    """Counts of what reading one or more manifests kept and skipped (pass one in to collect them).

    Attributes:
        read: lines examined (kept + skipped).
        skipped: lines skipped (bad lines with ``skip_bad=True``, and ``_skipme`` entries).
        reasons: skipped lines per reason (``"bad JSON"``, ``"missing audio"`` ...).
        examples: the first few error messages, each naming file and line.
    """

    read: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        """Lines that became entries."""
        return self.read - self.skipped

    def add_skip(self, err: ManifestError) -> None:
        """Count one skipped line."""
        self.skipped += 1
        self.reasons[err.reason] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(str(err))

    def __str__(self) -> str:
        if not self.skipped:
            return f"{self.read} lines read, none skipped"
        why = ", ".join(f"{n} {reason}" for reason, n in self.reasons.most_common())
        first = f" (first: {self.examples[0]})" if self.examples else ""
        return f"{self.skipped} of {self.read} lines skipped: {why}{first}"


def resolve_audio_path(manifest_path: str | Path, audio_filepath: str | Path) -> Path:
    """Where a manifest's ``audio_filepath`` points: absolute paths are kept, relative ones are joined to
    the manifest's folder (as NeMo does), independent of the current directory.

    Args:
        manifest_path: the manifest file.
        audio_filepath: the value written in the manifest.

    Returns:
        An absolute path (not checked for existence; symlinks are not resolved).
    """
    audio = Path(os.path.expanduser(str(audio_filepath)))
    if audio.is_absolute():
        return audio
    return Path(os.path.abspath(Path(manifest_path).parent / audio))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _AudioHeaders:
    """Small cache of header reads: segmented manifests point at the same long file many times."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.cache: dict[Path, AudioInfo] = {}

    def __call__(self, path: Path) -> AudioInfo:
        info = self.cache.get(path)
        if info is None:
            from speechkit.audio.io import audio_info

            info = audio_info(path)
            if len(self.cache) >= self.size:
                self.cache.pop(next(iter(self.cache)))
            self.cache[path] = info
        return info


def _parse_line(
    path: Path, lineno: int, raw: bytes, require_text: bool, text_field: str, lang_field: str
) -> ManifestEntry | None:
    """Parse and check one line's fields (no I/O); ``None`` for a ``_skipme`` entry is never returned:
    that case raises with reason ``_skipme`` so it is counted."""

    def bad(reason: str, detail: str) -> ManifestError:
        return ManifestError(path, lineno, reason, detail)

    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise bad("bad JSON", f"line is not UTF-8 ({err.reason} at byte {err.start})") from None
    if not line.strip():
        raise bad("blank line", "blank line (NeMo manifests hold one JSON object per line, no blank lines)")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise bad("bad JSON", f"not valid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(obj, dict):
        raise bad("not an object", f"expected a JSON object, got {type(obj).__name__}")
    if obj.get("_skipme"):
        why = obj["_skipme"]
        raise bad("_skipme", f"entry marked _skipme ({why})" if isinstance(why, str) else "entry marked _skipme")

    audio = obj.get("audio_filepath")
    if not isinstance(audio, str) or not audio.strip():
        what = "missing" if audio is None else f"not a non-empty string ({audio!r})"
        raise bad("no audio_filepath", f"'audio_filepath' is {what}")
    if "duration" not in obj:
        raise bad("bad duration", "'duration' is missing")
    duration = obj["duration"]
    if not _is_number(duration) or duration <= 0:
        raise bad("bad duration", f"'duration' must be a positive number of seconds, got {duration!r}")
    offset = obj.get("offset")
    if offset is None:
        offset = 0.0
    elif not _is_number(offset) or offset < 0:
        raise bad("bad offset", f"'offset' must be a number >= 0, got {offset!r}")
    text = obj.get(text_field)
    if text is not None and not isinstance(text, str):
        raise bad("bad field", f"'{text_field}' must be a string, got {type(text).__name__} ({text!r})")
    if require_text and (text is None or not text.strip()):
        raise bad("no text", f"'{text_field}' is " + ("missing" if text is None else "empty"))
    lang = obj.get(lang_field)
    if lang is not None and not isinstance(lang, str):
        raise bad("bad field", f"'{lang_field}' must be a string, got {lang!r}")
    rate = obj.get("sampling_rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0):
        raise bad("bad field", f"'sampling_rate' must be a positive integer, got {rate!r}")
    skip = set(_KNOWN) | {text_field, lang_field, "_skipme"}
    extra = {k: v for k, v in obj.items() if k not in skip}
    return ManifestEntry(
        audio_filepath=audio, duration=float(duration), text=text, offset=float(offset), lang=lang,
        sampling_rate=rate, extra=extra, line=lineno, manifest=os.path.abspath(path),
    )


def _check_audio(entry: ManifestEntry, audio: Path, headers: _AudioHeaders, where: Path) -> AudioInfo:
    """Check the entry against its audio file's header (errors name ``where``); returns the header."""
    from speechkit.audio.io import AudioError

    def bad(reason: str, detail: str) -> ManifestError:
        return ManifestError(where, entry.line, reason, detail)

    if not audio.is_file():
        raise bad("missing audio", f"audio file not found: {audio} (audio_filepath {entry.audio_filepath!r})")
    try:
        info = headers(audio)
    except AudioError as err:
        raise bad("unreadable audio", f"cannot read the header of {audio}: {err}") from None
    if info.num_samples <= 0:
        raise bad("unreadable audio", f"{audio} holds no samples")
    if entry.sampling_rate is not None and entry.sampling_rate != info.sample_rate:
        raise bad("rate mismatch", f"'sampling_rate' is {entry.sampling_rate} but {audio} is {info.sample_rate} Hz")
    if not entry.offset:
        if abs(entry.duration - info.duration) > DURATION_TOLERANCE:
            raise bad("duration mismatch", f"'duration' is {entry.duration:g} s but {audio} lasts {info.duration:.3f} s "
                                           f"(allowed difference {DURATION_TOLERANCE} s; give an 'offset' for a segment)")
        return info
    end = entry.offset + entry.duration
    if entry.offset >= info.duration or end > info.duration + DURATION_TOLERANCE:
        raise bad("segment past end", f"offset {entry.offset:g} s + duration {entry.duration:g} s = {end:g} s "
                                      f"runs past the end of {audio} ({info.duration:.3f} s)")
    return info


def _iter_checked(
    path: str | Path,
    skip_bad: bool,
    report: ManifestReport | None,
    require_text: bool,
    check_audio: bool,
    text_field: str,
    lang_field: str,
    make: Callable[[ManifestEntry, Path, AudioInfo | None], Any] | None = None,
) -> Iterator[tuple[ManifestEntry, Any]]:
    """The reader behind :func:`read_manifest`: yields ``(entry, make(entry, audio path, header))``.

    ``make`` may raise :class:`ManifestError` too; its errors are skipped and counted like the line checks,
    so each file gets one report and one warning.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a manifest file" if path.is_dir() else "manifest file not found"
        raise ManifestError(path, 0, "missing manifest", what)
    local = ManifestReport()
    headers = _AudioHeaders()
    try:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                local.read += 1
                if report is not None:
                    report.read += 1
                try:
                    entry = _parse_line(path, lineno, raw.rstrip(b"\r\n"), require_text, text_field, lang_field)
                    audio = resolve_audio_path(path, entry.audio_filepath)
                    info = _check_audio(entry, audio, headers, path) if check_audio else None
                    made = make(entry, audio, info) if make is not None else None
                except ManifestError as err:
                    # _skipme is the file's own instruction, not a fault: skipped even without skip_bad.
                    if not skip_bad and err.reason != "_skipme":
                        raise
                    local.add_skip(err)
                    if report is not None:
                        report.add_skip(err)
                    continue
                yield entry, made
    finally:
        if local.skipped:
            logger.warning("%s: %s", path, local)


def read_manifest(
    path: str | Path,
    skip_bad: bool = False,
    report: ManifestReport | None = None,
    require_text: bool = True,
    check_audio: bool = False,
    text_field: str = "text",
    lang_field: str = "lang",
) -> Iterator[ManifestEntry]:
    """Stream the entries of a NeMo manifest, checking each line.

    The file is read lazily, line by line, as the iterator is consumed. Every line must be a JSON object
    with ``audio_filepath`` (non-empty string), ``duration`` (positive number) and, when ``require_text``,
    a non-empty ``text``; ``offset`` must be >= 0. A blank line is an error. With ``check_audio`` the audio
    file must also exist (relative paths resolve against the manifest's folder), have a readable header,
    contain ``[offset, offset + duration]`` (tolerance :data:`DURATION_TOLERANCE`), last ``duration``
    seconds when no offset is given, and have the declared ``sampling_rate``. Lines marked ``_skipme`` are
    always skipped and counted. When lines were skipped, one warning per file is logged at the end.

    Args:
        path: the manifest file.
        skip_bad: skip bad lines (counting them in ``report``) instead of raising on the first one.
        report: collects lines read and skipped per reason (may be shared across several files).
        require_text: a missing or empty text is an error.
        check_audio: also check each line against its audio file's header.
        text_field: key holding the transcript.
        lang_field: key holding the language.

    Returns:
        An iterator of :class:`ManifestEntry`, in file order.

    Raises:
        ManifestError: the file is missing, or (without ``skip_bad``) a line is bad; the message reads
            ``"<file>:<line>: <what>"``. Raised while iterating, not at the call.
    """
    for entry, _ in _iter_checked(path, skip_bad, report, require_text, check_audio, text_field, lang_field):
        yield entry


def _manifest_path_for(out: Path, audio: Path) -> str:
    """Relative to ``out``'s folder when the audio lies under it, else absolute."""
    folder = Path(os.path.abspath(out.parent))
    audio = Path(os.path.abspath(audio))
    try:
        return audio.relative_to(folder).as_posix()
    except ValueError:
        return str(audio)


def write_manifest(
    path: str | Path,
    entries: Iterable[ManifestEntry | dict[str, Any]],
    text_field: str = "text",
    lang_field: str = "lang",
) -> int:
    """Write entries as a NeMo manifest, rewriting audio paths so they resolve from the new location.

    A :class:`ManifestEntry` read from a manifest has its relative path resolved against that manifest's
    folder first; a dict's (or a code-made entry's) relative path is taken as relative to the current
    directory. The path written is relative to the new manifest's folder when the audio lies under it,
    else absolute. The file is written to a temporary name and renamed, so a failure leaves no half file.

    Args:
        path: output manifest (parent folders are created).
        entries: entries or NeMo line dicts (each dict needs ``audio_filepath``).
        text_field: key the text of a :class:`ManifestEntry` is written under.
        lang_field: key the language of a :class:`ManifestEntry` is written under.

    Returns:
        Number of lines written.

    Raises:
        ValueError: a dict without ``audio_filepath``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for item in entries:
                if isinstance(item, ManifestEntry):
                    line = item.to_json(text_field, lang_field)
                    audio = item.audio_path()
                else:
                    line = dict(item)
                    if not isinstance(line.get("audio_filepath"), str):
                        raise ValueError(  # noqa: TRY004 - bad input data, shown plainly by the CLI
                            f"{path}: entry {n + 1} has no 'audio_filepath': {line!r}")
                    audio = Path(os.path.expanduser(line["audio_filepath"]))
                line["audio_filepath"] = _manifest_path_for(path, audio)
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


# ----------------------------------------------------------------------------------------------------------
# Lhotse cuts


def _recording_id(audio: Path, base: Path) -> str:
    """Stable id: the audio path relative to ``base`` (else absolute) without suffix, '/' -> '_'."""
    try:
        rel = audio.relative_to(base)
    except ValueError:
        rel = Path(*audio.parts[1:]) if audio.is_absolute() else audio
    return rel.with_suffix("").as_posix().replace("/", "_")


def _segment_id(recording_id: str, offset: float, duration: float) -> str:
    # NeMo's adapter names a segment this way; keeping it makes ids comparable across the two toolkits.
    return f"{recording_id}-{round(offset * 100):06d}-{round(duration * 100):06d}"


def entry_to_cut(
    entry: ManifestEntry,
    audio: str | Path | None = None,
    info: AudioInfo | None = None,
    recording_id: str | None = None,
) -> Cut:
    """Turn one manifest entry into a Lhotse cut (no I/O: header facts come from ``info`` or the entry).

    The cut has one supervision spanning it, with the text, ``language`` = ``entry.lang`` and ``speaker`` =
    ``entry.extra["speaker"]`` (as a string; the key is not repeated in ``cut.custom``). Every other extra key
    goes to ``cut.custom``. With an offset the cut starts ``offset`` seconds into the recording and its id is
    ``<recording_id>-<offset*100:06d>-<duration*100:06d>``; otherwise the id is the recording id. Without
    ``info`` the recording is made up from the entry (declared rate or 16 kHz, one channel,
    ``offset + duration`` seconds long). A multi-channel file gives a ``MultiCut`` over all channels.

    Args:
        entry: the manifest entry.
        audio: the audio file (default: :meth:`ManifestEntry.audio_path`); stored absolute in the recording so
            ``cut.load_audio()`` works from any directory.
        info: the file's header, or ``None`` to use the entry's declared facts.
        recording_id: id of the recording (default: the file stem).

    Returns:
        A ``MonoCut`` (or ``MultiCut`` for multi-channel audio).
    """
    from lhotse import AudioSource, Recording, SupervisionSegment
    from lhotse.cut import MonoCut, MultiCut

    audio = Path(os.path.abspath(audio if audio is not None else entry.audio_path()))
    rec_id = recording_id or audio.stem
    if info is not None:
        rate, num_samples, channels = info.sample_rate, info.num_samples, info.num_channels
    else:
        rate = entry.sampling_rate or DEFAULT_SAMPLING_RATE
        # Round up so the made-up recording always covers the declared segment.
        num_samples = math.ceil((entry.offset + entry.duration) * rate - 1e-6)
        channels = 1
    channel_ids = list(range(channels))
    recording = Recording(
        id=rec_id,
        sources=[AudioSource(type="file", channels=channel_ids, source=str(audio))],
        sampling_rate=rate,
        num_samples=num_samples,
        duration=num_samples / rate,
        channel_ids=channel_ids,
    )
    # Without an offset the line means the whole file; the declared duration is kept unless it runs past
    # the end (allowed within the tolerance), so writing the cut back gives the same line.
    duration = entry.duration if entry.offset else min(entry.duration, recording.duration)
    if entry.offset:
        duration = min(duration, recording.duration - entry.offset)
    cut_id = _segment_id(rec_id, entry.offset, entry.duration) if entry.offset else rec_id
    custom = dict(entry.extra)
    speaker = custom.pop("speaker", None)
    channel: int | list[int] = 0 if channels == 1 else channel_ids
    sup = SupervisionSegment(
        id=cut_id, recording_id=rec_id, start=0.0, duration=duration, channel=channel,
        text=entry.text, language=entry.lang, speaker=None if speaker is None else str(speaker),
    )
    cls = MonoCut if channels == 1 else MultiCut
    return cls(
        id=cut_id, start=entry.offset, duration=duration, channel=channel, supervisions=[sup],
        recording=recording, custom=custom or None,
    )


def iter_manifest_cuts(
    paths: Sequence[str | Path],
    skip_bad: bool = False,
    report: ManifestReport | None = None,
    metadata_only: bool = False,
    text_field: str = "text",
    lang_field: str = "lang",
    require_text: bool = True,
) -> Iterator[tuple[ManifestEntry, Cut]]:
    """Stream ``(entry, cut)`` pairs from NeMo manifest(s): what :func:`manifest_to_cutset` iterates over.

    Importers use it to write a clean manifest and its cuts in one pass. Recording ids are the audio path
    relative to the folder all manifests share (else the absolute path), without suffix, ``/`` -> ``_``;
    a line whose cut id was already produced in this pass (a duplicate line) is a ``"duplicate cut"`` error.

    Args:
        paths: manifests, read one after another.
        skip_bad: count and skip bad lines instead of raising.
        report: collects lines read and skipped.
        metadata_only: no audio I/O: recordings are made up from the lines; otherwise every line is checked
            against its audio header as in ``read_manifest(check_audio=True)``.
        text_field: key holding the transcript.
        lang_field: key holding the language.
        require_text: a missing or empty text is an error.

    Returns:
        An iterator of ``(ManifestEntry, Cut)``.

    Raises:
        ManifestError: a missing manifest or (without ``skip_bad``) a bad line, naming file and line.
    """
    paths = [Path(p) for p in paths]
    # Relative to the shared folder, equal relative paths in two manifest folders still differ.
    base = Path(os.path.commonpath([os.path.abspath(p.parent) for p in paths])) if paths else Path("/")
    seen: set[str] = set()

    def make(entry: ManifestEntry, audio: Path, info: AudioInfo | None) -> Cut:
        cut = entry_to_cut(entry, audio, info, _recording_id(audio, base))
        if cut.id in seen:
            raise ManifestError(entry.manifest or "", entry.line, "duplicate cut",
                                f"duplicate entry: cut id {cut.id!r} was already produced (an earlier line has "
                                f"the same audio file, offset and duration; without an offset a line stands "
                                f"for the whole file)")
        seen.add(cut.id)
        return cut

    for path in paths:
        yield from _iter_checked(path, skip_bad, report, require_text, not metadata_only, text_field, lang_field, make)


class NemoManifestCuts:
    """A lazy, re-iterable source of cuts read from NeMo manifest(s); wrap it in ``lhotse.CutSet``.

    Lhotse treats any ``CutSet`` whose data is not a list/dict/tuple as lazy, so ``filter``, ``map``,
    ``subset(first=n)`` and ``to_file`` stream through it. Each ``iter()`` re-reads the files from the start.
    There is deliberately no ``__len__`` (it would have to read every line).

    Args: see :func:`manifest_to_cutset`.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        skip_bad: bool = False,
        report: ManifestReport | None = None,
        metadata_only: bool = False,
        text_field: str = "text",
        lang_field: str = "lang",
        require_text: bool = True,
    ) -> None:
        # Absolute now, so a later chdir (or a DataLoader worker elsewhere) reads the same files.
        self.paths = [Path(os.path.abspath(p)) for p in paths]
        self.skip_bad = skip_bad
        self.report = report
        self.metadata_only = metadata_only
        self.text_field = text_field
        self.lang_field = lang_field
        self.require_text = require_text

    def __iter__(self) -> Iterator[Cut]:
        for _, cut in iter_manifest_cuts(self.paths, self.skip_bad, self.report, self.metadata_only,
                                         self.text_field, self.lang_field, self.require_text):
            yield cut

    def __repr__(self) -> str:
        return f"NemoManifestCuts({[str(p) for p in self.paths]}, metadata_only={self.metadata_only})"


def manifest_to_cutset(
    paths: str | Path | Sequence[str | Path],
    skip_bad: bool = False,
    report: ManifestReport | None = None,
    metadata_only: bool = False,
    text_field: str = "text",
    lang_field: str = "lang",
    require_text: bool = True,
) -> CutSet:
    """A lazy Lhotse ``CutSet`` over NeMo manifest(s): nothing is read until it is iterated.

    Each line becomes a cut (see :func:`entry_to_cut`). By default each audio header is probed and checked
    like ``read_manifest(check_audio=True)``; ``metadata_only=True`` does no audio I/O at all (rates and
    lengths are taken from the lines), which is what bin estimation and statistics want. Recording ids are
    the audio path relative to the manifests' common folder, without suffix, ``/`` replaced by ``_``;
    a line that would repeat an earlier cut id (a duplicate line) is an error, or skipped with ``skip_bad``.
    The CutSet can be iterated many times; ``len()`` is not available (it would need a full read).

    Args:
        paths: one manifest or several (read one after another).
        skip_bad: skip bad lines, counting them in ``report``, instead of raising.
        report: collects lines read/skipped (counts grow on every iteration).
        metadata_only: build recordings from the declared facts, without opening any audio file.
        text_field: key holding the transcript.
        lang_field: key holding the language.
        require_text: a missing or empty text is an error (pass ``False`` for VAD/LID manifests).

    Returns:
        A lazy ``lhotse.CutSet``.

    Raises:
        ManifestError: a manifest file does not exist (at the call); bad lines raise while iterating.

    Example:
        >>> cuts = manifest_to_cutset("manifests/tiny/train.json")  # doctest: +SKIP
        >>> cuts.filter(lambda c: c.duration < 5).subset(first=2).to_file("short.jsonl.gz")  # doctest: +SKIP
    """
    from lhotse import CutSet

    plist = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not plist:
        raise ValueError("manifest_to_cutset: no manifest paths given")
    for p in plist:
        # A stat, not a read: a typo in a path should fail here, not an hour into training.
        if not Path(p).is_file():
            raise ManifestError(p, 0, "missing manifest", "manifest file not found")
    source = NemoManifestCuts(plist, skip_bad, report, metadata_only, text_field, lang_field, require_text)
    return CutSet(source)


def cutset_to_manifest(
    cuts: Iterable[Cut],
    path: str | Path,
    text_field: str = "text",
    lang_field: str = "lang",
) -> int:
    """Write cuts back as a NeMo manifest.

    Per cut: ``audio_filepath`` = the recording's (first) file source, written relative to the manifest's
    folder when under it; ``offset`` = ``cut.start`` when > 0; ``duration``; the text = the supervisions'
    texts joined by spaces; the language and speaker of the first supervision that has one; then
    ``cut.custom``. The recording's rate is not written (pass it through ``cut.custom`` if wanted).

    Args:
        cuts: a CutSet or any iterable of cuts with file-backed recordings.
        path: output manifest.
        text_field: key to write the text under.
        lang_field: key to write the language under.

    Returns:
        Number of lines written.

    Raises:
        ValueError: a cut has no recording or its audio is not a file (e.g. in-memory audio), or a key of
            ``cut.custom`` collides with a field written from the cut (e.g. ``text``).
    """

    def lines() -> Iterator[dict[str, Any]]:
        for cut in cuts:
            rec = getattr(cut, "recording", None)
            files = [s for s in rec.sources if s.type == "file"] if rec is not None else []
            if not files:
                raise ValueError(f"{path}: cut {cut.id!r} has no file-backed recording to point audio_filepath at")
            sups = list(cut.supervisions)
            line: dict[str, Any] = {"audio_filepath": str(files[0].source), "duration": _round_s(cut.duration)}
            if cut.start > 0:
                line["offset"] = _round_s(cut.start)
            texts = [s.text for s in sups if s.text]
            if texts:
                line[text_field] = " ".join(texts)
            lang = next((s.language for s in sups if s.language), None)
            if lang is not None:
                line[lang_field] = lang
            speaker = next((s.speaker for s in sups if s.speaker), None)
            if speaker is not None:
                line["speaker"] = speaker
            _add_extra(line, cut.custom or {}, f"cut {cut.id!r}")
            yield line

    return write_manifest(path, lines())


def _round_s(seconds: float) -> float:
    # Float noise from lhotse's sample arithmetic should not show up as 1.2300000000000002 in a manifest.
    return round(float(seconds), 6)


def load_cutset(
    path: str | Path,
    skip_bad: bool = False,
    report: ManifestReport | None = None,
    metadata_only: bool = False,
) -> CutSet:
    """Open a manifest as a lazy ``CutSet``, by suffix: Lhotse ``.jsonl``/``.jsonl.gz`` cuts or a NeMo ``.json``.

    Args:
        path: ``*.cuts.jsonl.gz`` / ``*.jsonl`` (Lhotse) or ``*.json`` (NeMo JSON lines).
        skip_bad: NeMo manifests only: see :func:`manifest_to_cutset`.
        report: NeMo manifests only: collects skipped lines.
        metadata_only: NeMo manifests only: no audio header reads.

    Returns:
        A lazy ``lhotse.CutSet``.

    Raises:
        ManifestError: the file does not exist.
        ValueError: the suffix is neither.
    """
    from lhotse import CutSet

    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ManifestError(path, 0, "missing manifest", "manifest file not found")
    if name.endswith((".jsonl", ".jsonl.gz")):
        return CutSet.from_jsonl_lazy(path)
    if name.endswith(".json"):
        return manifest_to_cutset(path, skip_bad=skip_bad, report=report, metadata_only=metadata_only)
    raise ValueError(f"{path}: unknown manifest type (expected a NeMo '.json' or Lhotse '.jsonl[.gz]' file)")
