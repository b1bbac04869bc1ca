"""Token and word timestamps."""

from __future__ import annotations

import pytest

from speechkit.decoding.timestamps import WordTimestamp, frame_seconds, token_timestamps, word_timestamps


def flat(spans):
    return [x for span in spans for x in span]


def test_token_timestamps():
    assert frame_seconds(8) == pytest.approx(0.08)
    rnnt = token_timestamps([0, 5, 5], subsampling_factor=4)
    assert flat(rnnt) == pytest.approx([0.0, 0.04, 0.2, 0.24, 0.2, 0.24])
    tdt = token_timestamps([2, 4], [2, 0], subsampling_factor=8, hop_s=0.01)
    assert flat(tdt) == pytest.approx([0.16, 0.32, 0.32, 0.32])
    with pytest.raises(ValueError, match="2 frames but 1 durations"):
        token_timestamps([1, 2], [1])
    with pytest.raises(ValueError, match="subsampling_factor"):
        frame_seconds(0)


def test_word_timestamps():
    spans = [(float(i), float(i) + 0.5) for i in range(7)]
    words = word_timestamps(["he", "llo", "▁", "world", "▁", "▁!", "▁"], spans)
    assert words == [
        WordTimestamp("hello", 0.0, 1.5, 0, 1),
        WordTimestamp("world", 2.0, 3.5, 2, 3),  # a lone marker starts the word that follows it
        WordTimestamp("!", 5.0, 5.5, 5, 5),  # empty words (lone markers before another word, at the end) vanish
    ]
    assert word_timestamps([], []) == []
    with pytest.raises(ValueError, match="2 pieces but 1 spans"):
        word_timestamps(["a", "b"], [(0.0, 1.0)])
