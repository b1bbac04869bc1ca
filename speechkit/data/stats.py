"""What a corpus holds: per-manifest statistics for ``speechkit info``, the demo and the notebooks.

Reads manifests with :func:`speechkit.data.manifests.read_manifest` (no audio is decoded, no lhotse import).

Example:
    >>> from speechkit.data.stats import summarize_manifests
    >>> print(summarize_manifests(["manifests/tiny/train.json"]))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ManifestStats:
    """Statistics of one manifest.

    Attributes:
        name: the manifest's file name.
        utterances: number of entries read.
        seconds: total duration.
        durations: per-utterance durations in seconds, in file order.
        speakers: entries per speaker (the ``speaker`` field, when present).
        languages: entries per ``lang`` value (``"-"`` when absent).
        characters: occurrences of each character in the texts.
        words: number of whitespace-separated words.
        skipped: lines skipped as unreadable (only with ``skip_bad``).
    """

    name: str
    utterances: int = 0
    seconds: float = 0.0
    durations: list[float] = field(default_factory=list)
    speakers: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    characters: Counter = field(default_factory=Counter)
    words: int = 0
    skipped: int = 0

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    def duration_percentiles(self, qs: Sequence[float] = (0, 50, 90, 100)) -> list[float]:
        """Duration percentiles in seconds (zeros for an empty manifest)."""
        if not self.durations:
            return [0.0 for _ in qs]
        return [float(v) for v in np.percentile(np.asarray(self.durations), qs)]


@dataclass
class CorpusStats:
    """Statistics of several manifests (e.g. the train/dev/test splits of one corpus)."""

    manifests: list[ManifestStats]

    def __str__(self) -> str:
        head = f"{'manifest':<16} {'utts':>6} {'hours':>7} {'min/med/p90/max s':>22} {'spk':>4} {'langs':<10} {'words':>7}"
        rows = [head, "-" * len(head)]
        for m in self.manifests:
            lo, med, p90, hi = m.duration_percentiles()
            langs = ",".join(sorted(m.languages)) if m.languages else "-"
            rows.append(
                f"{m.name:<16} {m.utterances:>6} {m.hours:>7.3f} {f'{lo:.1f}/{med:.1f}/{p90:.1f}/{hi:.1f}':>22} "
                f"{len(m.speakers):>4} {langs[:10]:<10} {m.words:>7}"
            )
        chars: Counter = Counter()
        for m in self.manifests:
            chars.update(m.characters)
        alphabet = "".join(sorted(c for c in chars if c != " "))
        rows.append(f"characters ({len(alphabet)} + space): {alphabet}")
        skipped = sum(m.skipped for m in self.manifests)
        if skipped:
            rows.append(f"skipped lines: {skipped} (see the warnings above)")
        return "\n".join(rows)


def summarize_manifest(path: str | Path, skip_bad: bool = False) -> ManifestStats:
    """Read one NeMo manifest and collect its :class:`ManifestStats`.

    Args:
        path: a JSON-lines manifest.
        skip_bad: count and skip unreadable lines instead of raising ``ManifestError``.
    """
    from speechkit.data.manifests import ManifestReport, read_manifest

    path = Path(path)
    stats = ManifestStats(name=path.name)
    report = ManifestReport()
    for entry in read_manifest(path, skip_bad=skip_bad, report=report, require_text=False):
        stats.utterances += 1
        stats.seconds += entry.duration
        stats.durations.append(entry.duration)
        speaker = entry.extra.get("speaker")
        if speaker is not None:
            stats.speakers[str(speaker)] += 1
        stats.languages[entry.lang or "-"] += 1
        text = entry.text or ""
        stats.characters.update(text)
        stats.words += len(text.split())
    stats.skipped = report.skipped
    return stats


def summarize_manifests(paths: Sequence[str | Path], skip_bad: bool = False) -> CorpusStats:
    """:func:`summarize_manifest` for each path, printable as a table."""
    return CorpusStats([summarize_manifest(p, skip_bad=skip_bad) for p in paths])
