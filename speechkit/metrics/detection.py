"""Detection metrics for voice activity detection: frame AUROC, precision / recall / F1, detection error rate.

Frame metrics compare per-frame 0/1 reference labels with per-frame decisions (or scores, for AUROC). The detection
error rate (DetER, pyannote's ``DetectionErrorRate``) is ``(false alarm + missed detection) / total reference
speech``; :func:`interval_detection_error` computes it from time intervals, :class:`DetectionCounts` from frames
(each frame weighs the same, so the two agree when segments are whole frames).

Example:
    >>> c = detection_counts([1, 1, 0, 0], [1, 0, 1, 0])
    >>> c.precision, c.recall, c.detection_error_rate
    (0.5, 0.5, 1.0)
    >>> frame_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DetectionCounts", "detection_counts", "frame_auroc", "interval_detection_error"]


@dataclass(frozen=True)
class DetectionCounts:
    """Frame counts; add them over files (``a + b``) and read the rates at the end.

    Attributes:
        tp: speech frames detected as speech.
        fp: non-speech frames detected as speech (false alarms).
        fn: speech frames missed.
        tn: non-speech frames left out.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``; 1.0 when nothing was detected."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``; 1.0 when the reference holds no speech."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_alarm_rate(self) -> float:
        """False-alarm frames over reference speech frames (DetER's first term)."""
        return self.fp / max(self.tp + self.fn, 1)

    @property
    def miss_rate(self) -> float:
        """Missed speech frames over reference speech frames."""
        return self.fn / max(self.tp + self.fn, 1)

    @property
    def detection_error_rate(self) -> float:
        """``(fp + fn) / (tp + fn)``; when the reference holds no speech, 0 if nothing was detected, else inf."""
        if self.tp + self.fn == 0:
            return 0.0 if self.fp == 0 else float("inf")
        return (self.fp + self.fn) / (self.tp + self.fn)

    def __str__(self) -> str:
        return (f"DetER {100 * self.detection_error_rate:.2f}% (FA {100 * self.false_alarm_rate:.2f}%, miss "
                f"{100 * self.miss_rate:.2f}%), P {self.precision:.4f} R {self.recall:.4f} F1 {self.f1:.4f}")


def _as_binary(x: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return a.astype(bool)


def detection_counts(reference: Sequence[int] | np.ndarray, hypothesis: Sequence[int] | np.ndarray) -> DetectionCounts:
    """Count frame agreements of two equally long 0/1 sequences.

    Raises:
        ValueError: different lengths, not 1-D, or values other than 0/1.
    """
    ref, hyp = _as_binary(reference, "reference"), _as_binary(hypothesis, "hypothesis")
    if ref.shape != hyp.shape:
        raise ValueError(f"reference has {ref.shape[0]} frames, hypothesis {hyp.shape[0]}")
    return DetectionCounts(int((ref & hyp).sum()), int((~ref & hyp).sum()), int((ref & ~hyp).sum()),
                           int((~ref & ~hyp).sum()))


def frame_auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve of frame scores against 0/1 labels (the Mann-Whitney statistic; ties count 1/2).

    Raises:
        ValueError: lengths differ, or the labels hold only one class (AUROC is undefined).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = _as_binary(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores has shape {s.shape}, labels {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("frame_auroc needs both speech and non-speech frames in the labels")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.shape[0], dtype=np.float64)
    sorted_s = s[order]
    # Average ranks (1-based) over runs of tied scores.
    starts = np.r_[0, np.nonzero(np.diff(sorted_s))[0] + 1]
    ends = np.r_[starts[1:], s.shape[0]]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _union(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted((float(s), float(e)) for s, e in intervals if e > s):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def interval_detection_error(reference: Sequence[tuple[float, float]],
                             hypothesis: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """False alarm, missed detection and total speech (seconds) of two sets of ``(start, end)`` speech intervals.

    Overlapping intervals within one set are merged first. DetER is ``(fa + miss) / total``.

    Example:
        >>> interval_detection_error([(0.0, 2.0), (3.0, 4.0)], [(1.0, 3.5)])
        (1.0, 1.5, 3.0)
    """
    ref, hyp = _union(reference), _union(hypothesis)
    both = _overlap(ref, hyp)
    total = sum(e - s for s, e in ref)
    detected = sum(e - s for s, e in hyp)
    return detected - both, total - both, total
