"""Post-processing: hand-worked hysteresis / padding / filtering, streaming == offline, threshold tuning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from speechkit.vad.postprocess import (PostProcessingOptions, Segment, StreamingSegmenter, binarize, filter_segments,
                                       segments_to_frames, speech_segments, tune_thresholds)

BARE = PostProcessingOptions(onset=0.5, offset=0.3, pad_onset=0.0, pad_offset=0.0, min_duration_on=0.0,
                             min_duration_off=0.0, frame_shift=1.0)


def test_hysteresis_hand_worked() -> None:
    #        frame: 0    1    2    3    4    5    6    7
    probs = [0.4, 0.6, 0.4, 0.35, 0.2, 0.45, 0.55, 0.9]
    # 1 starts (0.6 > 0.5); 2 and 3 stay (>= 0.3); 4 ends (0.2 < 0.3); 5 does not start (0.45 <= 0.5); 6 starts.
    assert binarize(probs, BARE) == [Segment(1.0, 4.0), Segment(6.0, 8.0)]


def test_padding_clamps_and_merges() -> None:
    opts = dataclasses.replace(BARE, pad_onset=1.5, pad_offset=1.0)
    raw = [Segment(1.0, 2.0), Segment(4.0, 5.0), Segment(9.0, 9.5)]
    # (0->clamped, 3), (2.5, 6) overlap -> (0, 6); (7.5, 10.5) clamped to 10.
    assert filter_segments(raw, opts, 10.0) == [Segment(0.0, 6.0), Segment(7.5, 10.0)]


def test_filter_order() -> None:
    raw = [Segment(0.0, 3.0), Segment(3.5, 3.8), Segment(4.0, 7.0)]
    on_first = dataclasses.replace(BARE, min_duration_on=0.5, min_duration_off=0.4, filter_speech_first=True)
    # Speech first: (3.5, 3.8) goes, then the 1.0 s gap stays.
    assert filter_segments(raw, on_first, None) == [Segment(0.0, 3.0), Segment(4.0, 7.0)]
    # Gaps first: 0.5 and 0.2 s gaps... only the 0.2 s gap (< 0.4) fills; then nothing is short.
    off_first = dataclasses.replace(on_first, filter_speech_first=False)
    assert filter_segments(raw, off_first, None) == [Segment(0.0, 3.0), Segment(3.5, 7.0)]


def test_defaults_are_nemo_frame_vad() -> None:
    o = PostProcessingOptions()
    assert (o.onset, o.offset, o.pad_onset, o.pad_offset, o.min_duration_on, o.min_duration_off, o.frame_shift) == (
        0.3, 0.3, 0.2, 0.2, 0.2, 0.2, 0.02)
    with pytest.raises(ValueError, match="pad_onset"):
        PostProcessingOptions(pad_onset=-1)


def test_segments_to_frames() -> None:
    frames = segments_to_frames([Segment(0.02, 0.06)], 5, 0.02)
    assert frames.tolist() == [0, 1, 1, 0, 0]
    assert speech_segments([0.1, 0.9, 0.9, 0.2, 0.1], dataclasses.replace(BARE, frame_shift=0.02)) == [
        Segment(0.02, 0.06)]


def random_probs(rng: np.random.Generator, n: int) -> np.ndarray:
    # Runs of 1-60 frames at random levels plus jitter: long and short bursts and gaps, so every rule fires.
    lengths = rng.integers(1, 60, n)
    levels = np.repeat(rng.uniform(0, 1, n), lengths)[:n]
    return np.clip(levels + rng.normal(0, 0.08, n), 0, 1)


@pytest.mark.parametrize("speech_first", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_offline(seed: int, speech_first: bool) -> None:
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, 1500)
    opts = PostProcessingOptions(onset=0.55, offset=0.4, pad_onset=0.1, pad_offset=0.2, min_duration_on=0.3,
                                 min_duration_off=0.25, filter_speech_first=speech_first)
    offline = speech_segments(probs, opts)
    assert len(offline) > 2
    for chunk in (1, 7, 50, 1500):
        seg = StreamingSegmenter(opts)
        out, emitted_early = [], 0
        for i in range(0, len(probs), chunk):
            new = seg.accept(probs[i : i + chunk])
            if i + chunk < len(probs):
                emitted_early += len(new)
            out += new
        out += seg.finish()
        assert out == offline, chunk
        if chunk < 1500:
            assert emitted_early > 0  # segments come out before the end of the stream


def test_tune_thresholds_finds_the_separating_onset() -> None:
    rng = np.random.default_rng(0)
    labels = [np.repeat(rng.integers(0, 2, 20), 25) for _ in range(4)]
    # Speech frames score 0.65-0.75, non-speech 0.45-0.55: only onset/offset near 0.6 separate them.
    probs = [np.where(y == 1, rng.uniform(0.65, 0.75, y.shape), rng.uniform(0.45, 0.55, y.shape)) for y in labels]
    base = PostProcessingOptions(pad_onset=0.0, pad_offset=0.0, min_duration_on=0.0, min_duration_off=0.0)
    result = tune_thresholds(probs, labels, base)
    assert result.options.onset == 0.6 and result.options.offset == 0.6
    assert result.counts.detection_error_rate == 0.0
    assert len(result.table) == sum(1 for a in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8) for b in (0.2, 0.3, 0.4, 0.5, 0.6)
                                    if b <= a)
    # With a pad grid, padding that only adds false alarms on tight labels is not chosen.
    padded = tune_thresholds(probs, labels, dataclasses.replace(base, pad_onset=0.2, pad_offset=0.2),
                             pads=(0.0, 0.1, 0.2))
    assert padded.options.pad_onset == 0.0 and padded.counts.detection_error_rate == 0.0


def test_split_long_segments_cuts_at_the_quietest_frame() -> None:
    from speechkit.vad.postprocess import split_long_segments

    probs = np.full(1000, 0.9)  # 20 s of speech at 20 ms frames
    probs[[300, 620, 700]] = [0.1, 0.05, 0.2]  # pauses at 6.0 s, 12.4 s and 14.0 s
    segs = split_long_segments([Segment(0.0, 20.0), Segment(21.0, 23.0)], probs, 0.02, max_duration=8.0)
    # The first cut is in [4 s, 8 s] at the quietest frame (6.0 s), the next in [10 s, 14 s] (12.4 s); short
    # segments pass through; the pieces tile each segment.
    assert [round(s.start, 2) for s in segs] == [0.0, 6.0, 12.4, 21.0]
    assert [round(s.end, 2) for s in segs] == [6.0, 12.4, 20.0, 23.0]
    # Without a pause, a segment is cut into pieces no longer than the limit, none shorter than half of it but the
    # last; past the probabilities' end it cuts at the limit.
    flat = split_long_segments([Segment(0.0, 30.0)], np.full(1500, 0.9), 0.02, max_duration=8.0)
    assert all(s.duration <= 8.0 + 1e-9 for s in flat) and all(s.duration >= 4.0 for s in flat[:-1])
    assert flat[0].start == 0.0 and flat[-1].end == 30.0
    assert all(a.end == b.start for a, b in zip(flat, flat[1:], strict=False))
    beyond = split_long_segments([Segment(0.0, 10.0)], np.zeros(0), 0.02, max_duration=4.0)
    assert [(s.start, s.end) for s in beyond] == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    with pytest.raises(ValueError, match="max_duration"):
        split_long_segments([], probs, 0.02, max_duration=0.0)
