"""Frame speech probabilities -> speech segments: hysteresis, padding, minimum durations; streaming; threshold tuning.

The steps (NeMo's frame-VAD post-processing, after pyannote's binarisation):

1. **Hysteresis.** Scan the frames; outside speech, a frame with ``p > onset`` starts a segment at its start; inside,
   a frame with ``p < offset`` ends it at its start. A segment still open at the end closes at the last frame's end.
2. **Padding.** Each segment grows by ``pad_onset`` before (clamped at 0) and ``pad_offset`` after (clamped at the
   audio's end); overlapping or touching segments merge.
3. **Filtering.** ``filter_speech_first``: drop segments shorter than ``min_duration_on``, then fill gaps shorter
   than ``min_duration_off``; otherwise gaps first, then short segments.

Frame ``i`` covers ``[i * frame_shift, (i + 1) * frame_shift)`` seconds. :class:`StreamingSegmenter` gives exactly
the offline segments from probabilities fed in chunks, each as soon as no later frame can change it.

Example:
    >>> opts = PostProcessingOptions(pad_onset=0.0, pad_offset=0.0, min_duration_on=0.0, min_duration_off=0.0)
    >>> speech_segments([0.1, 0.9, 0.9, 0.2, 0.1], opts)
    [Segment(start=0.02, end=0.06)]
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from speechkit.metrics.detection import DetectionCounts, detection_counts

__all__ = ["PostProcessingOptions", "Segment", "StreamingSegmenter", "TuningResult", "binarize", "filter_segments",
           "segments_to_frames", "speech_segments", "split_long_segments", "tune_thresholds"]


@dataclass(frozen=True)
class PostProcessingOptions:
    """Post-processing settings (defaults: NeMo's frame-VAD inference config).

    Attributes:
        onset: probability above which speech starts.
        offset: probability below which speech ends.
        pad_onset: seconds added before each segment.
        pad_offset: seconds added after each segment.
        min_duration_on: shorter segments are dropped (seconds).
        min_duration_off: shorter gaps are filled (seconds).
        filter_speech_first: drop short segments before filling short gaps (True) or after.
        frame_shift: seconds per probability frame.
    """

    onset: float = 0.3
    offset: float = 0.3
    pad_onset: float = 0.2
    pad_offset: float = 0.2
    min_duration_on: float = 0.2
    min_duration_off: float = 0.2
    filter_speech_first: bool = True
    frame_shift: float = 0.02

    def __post_init__(self) -> None:
        for name in ("pad_onset", "pad_offset", "min_duration_on", "min_duration_off"):
            if getattr(self, name) < 0:
                raise ValueError(f"PostProcessingOptions.{name}={getattr(self, name)}: must be >= 0")
        if not self.frame_shift > 0:
            raise ValueError(f"PostProcessingOptions.frame_shift={self.frame_shift}: must be > 0")


@dataclass(frozen=True)
class Segment:
    """A speech segment in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def _hysteresis(probs: np.ndarray, opts: PostProcessingOptions, first_frame: int, in_speech: bool,
                start: int) -> tuple[list[tuple[int, int]], bool, int]:
    """Raw segments as frame spans ``[start, end)`` closed within ``probs``; returns the open state too."""
    out = []
    for i, p in enumerate(probs.tolist(), start=first_frame):
        if not in_speech and p > opts.onset:
            in_speech, start = True, i
        elif in_speech and p < opts.offset:
            out.append((start, i))
            in_speech = False
    return out, in_speech, start


def binarize(probs: Sequence[float] | np.ndarray, opts: PostProcessingOptions) -> list[Segment]:
    """Step 1 only: hysteresis segments (no padding, no filtering)."""
    p = np.asarray(probs, dtype=np.float64)
    spans, in_speech, start = _hysteresis(p, opts, 0, False, 0)
    if in_speech:
        spans.append((start, p.shape[0]))
    return [Segment(s * opts.frame_shift, e * opts.frame_shift) for s, e in spans]


def _merge(segs: Iterable[Segment], max_gap: float) -> list[Segment]:
    """Merge neighbours whose gap is < ``max_gap`` (or <= 0: touching / overlapping)."""
    out: list[Segment] = []
    for s in segs:
        if out and (s.start - out[-1].end < max_gap or s.start <= out[-1].end):
            out[-1] = Segment(out[-1].start, max(out[-1].end, s.end))
        else:
            out.append(s)
    return out


def filter_segments(raw: Sequence[Segment], opts: PostProcessingOptions, duration: float | None) -> list[Segment]:
    """Steps 2 and 3: pad, merge, drop short segments and fill short gaps.

    Args:
        raw: hysteresis segments in time order.
        opts: the settings.
        duration: audio length in seconds (pads are clamped to it), or ``None`` for no clamp.
    """
    end_cap = float("inf") if duration is None else duration
    padded = _merge((Segment(max(0.0, s.start - opts.pad_onset), min(end_cap, s.end + opts.pad_offset))
                     for s in raw), 0.0)

    def drop_short(segs: list[Segment]) -> list[Segment]:
        return [s for s in segs if s.duration >= opts.min_duration_on]

    if opts.filter_speech_first:
        return _merge(drop_short(padded), opts.min_duration_off)
    return drop_short(_merge(padded, opts.min_duration_off))


def speech_segments(probs: Sequence[float] | np.ndarray, opts: PostProcessingOptions | None = None) -> list[Segment]:
    """Frame probabilities ``(T,)`` -> speech segments (all three steps)."""
    opts = opts or PostProcessingOptions()
    p = np.asarray(probs, dtype=np.float64)
    return filter_segments(binarize(p, opts), opts, p.shape[0] * opts.frame_shift)


def split_long_segments(segments: Sequence[Segment], probs: Sequence[float] | np.ndarray, frame_shift: float,
                        max_duration: float) -> list[Segment]:
    """Cut every segment longer than ``max_duration`` seconds into pieces no longer than that.

    Each cut goes at the least speech-like frame (lowest probability in ``probs``, one per ``frame_shift``
    seconds) of the second half of the piece's allowed length, so that it falls in a pause when there is one,
    and no piece is shorter than half of ``max_duration`` except the last.
    """
    if not max_duration > 0:
        raise ValueError(f"max_duration={max_duration}: must be > 0")
    p = np.asarray(probs, dtype=np.float64)
    out: list[Segment] = []
    for seg in segments:
        start = seg.start
        while seg.end - start > max_duration:
            lo = int(round((start + max_duration / 2) / frame_shift))
            hi = max(lo + 1, int((start + max_duration) / frame_shift))
            window = p[lo:hi]
            # Cut at the start of the quietest frame; without frames (past the probabilities), at the limit.
            cut = (lo + int(np.argmin(window))) * frame_shift if window.size else start + max_duration
            cut = min(max(cut, start + frame_shift), start + max_duration)
            out.append(Segment(start, cut))
            start = cut
        out.append(Segment(start, seg.end))
    return out


def segments_to_frames(segments: Iterable[Segment], num_frames: int, frame_shift: float) -> np.ndarray:
    """0/1 frame labels ``(num_frames,)``: frame ``i`` is speech when its centre lies inside a segment."""
    centres = (np.arange(num_frames) + 0.5) * frame_shift
    out = np.zeros(num_frames, dtype=np.uint8)
    for s in segments:
        out[(centres >= s.start) & (centres < s.end)] = 1
    return out


class StreamingSegmenter:
    """Stateful post-processing over probability chunks; yields exactly :func:`speech_segments`' output.

    A segment is emitted once it is final: no speech starting at or after the current frame can reach it through
    padding or gap filling. Feed chunks with :meth:`accept`, then call :meth:`finish` at the end of the audio.

    Example:
        >>> seg = StreamingSegmenter(PostProcessingOptions())
        >>> out = seg.accept([0.9] * 30 + [0.0] * 60) + seg.accept([0.0] * 10) + seg.finish()
        >>> out == speech_segments([0.9] * 30 + [0.0] * 70)
        True
    """

    def __init__(self, opts: PostProcessingOptions | None = None) -> None:
        self.opts = opts or PostProcessingOptions()
        self.frames = 0
        self._in_speech = False
        self._start = 0
        self._pending: list[Segment] = []  # raw segments that may still change the output

    def accept(self, probs: Sequence[float] | np.ndarray) -> list[Segment]:
        """Add the next frames ``(T,)``; returns segments that became final (in time order)."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        spans, self._in_speech, self._start = _hysteresis(p, self.opts, self.frames, self._in_speech, self._start)
        self.frames += p.shape[0]
        shift = self.opts.frame_shift
        self._pending += [Segment(s * shift, e * shift) for s, e in spans]
        if not self._pending:
            return []
        # Any raw segment still to come starts at or after this time.
        next_start = (self._start if self._in_speech else self.frames) * shift
        safe = next_start - self.opts.pad_onset - self.opts.min_duration_off
        out = [s for s in filter_segments(self._pending, self.opts, None) if s.end < safe]
        if out:
            self._pending = [s for s in self._pending if s.start >= out[-1].end]
        return out

    def finish(self) -> list[Segment]:
        """Close the stream: the remaining segments (pads clamped at the audio's end). Resets the state."""
        if self._in_speech:
            self._pending.append(Segment(self._start * self.opts.frame_shift, self.frames * self.opts.frame_shift))
        out = filter_segments(self._pending, self.opts, self.frames * self.opts.frame_shift)
        self.frames, self._in_speech, self._start, self._pending = 0, False, 0, []
        return out


@dataclass(frozen=True)
class TuningResult:
    """Best settings of :func:`tune_thresholds` and the dev-set counts they give."""

    options: PostProcessingOptions
    counts: DetectionCounts
    table: list[tuple[float, float, float, float]]  # (onset, offset, pad_onset, DetER) for every grid point


def tune_thresholds(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], base: PostProcessingOptions,
                    onsets: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
                    offsets: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6),
                    pads: Sequence[float] = ()) -> TuningResult:
    """Grid search of ``onset`` x ``offset`` (``offset <= onset``) [x ``pad``] minimising the frame DetER on a dev set.

    Args:
        probs: per-file frame probabilities ``(T_i,)``.
        labels: per-file 0/1 reference frames ``(T_i,)`` (same frame shift).
        base: the other settings (padding, minimum durations, frame shift).
        onsets: onset grid.
        offsets: offset grid.
        pads: if given, also a grid of paddings (``pad_onset = pad_offset``); empty keeps ``base``'s. Padding
            suits references that include the edges of speech; tight frame labels favour little or none.

    Raises:
        ValueError: different numbers of files, or no grid point with ``offset <= onset``.
    """
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probability arrays but {len(labels)} label arrays")
    best: tuple[float, PostProcessingOptions, DetectionCounts] | None = None
    table = []
    pad_grid = list(pads) or [None]
    for on, off, pad in itertools.product(onsets, offsets, pad_grid):
        if off > on:
            continue
        opts = dataclasses.replace(base, onset=on, offset=off)
        if pad is not None:
            opts = dataclasses.replace(opts, pad_onset=pad, pad_offset=pad)
        counts = DetectionCounts()
        for p, y in zip(probs, labels, strict=True):
            y = np.asarray(y)
            hyp = segments_to_frames(speech_segments(p, opts), y.shape[0], opts.frame_shift)
            counts = counts + detection_counts(y, hyp)
        table.append((on, off, opts.pad_onset, counts.detection_error_rate))
        if best is None or counts.detection_error_rate < best[0]:
            best = (counts.detection_error_rate, opts, counts)
    if best is None:
        raise ValueError("no (onset, offset) pair with offset <= onset in the grid")
    return TuningResult(best[1], best[2], table)
