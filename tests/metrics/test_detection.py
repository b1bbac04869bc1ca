"""Detection metrics on hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.metrics.detection import DetectionCounts, detection_counts, frame_auroc, interval_detection_error


def test_counts_hand_worked() -> None:
    #        ref: 1 1 1 0 0 0 1 1
    #        hyp: 1 0 1 1 0 0 0 1   -> tp 3, fp 1, fn 2, tn 2
    c = detection_counts([1, 1, 1, 0, 0, 0, 1, 1], [1, 0, 1, 1, 0, 0, 0, 1])
    assert c == DetectionCounts(tp=3, fp=1, fn=2, tn=2)
    assert c.precision == pytest.approx(3 / 4)
    assert c.recall == pytest.approx(3 / 5)
    assert c.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert c.detection_error_rate == pytest.approx(3 / 5)
    assert c.false_alarm_rate == pytest.approx(1 / 5) and c.miss_rate == pytest.approx(2 / 5)


def test_counts_add_and_edge_cases() -> None:
    a = detection_counts([1, 0], [1, 1])
    b = detection_counts([0, 1], [0, 0])
    assert a + b == DetectionCounts(1, 1, 1, 1)
    assert detection_counts([0, 0], [0, 0]).detection_error_rate == 0.0
    assert detection_counts([0, 0], [0, 1]).detection_error_rate == float("inf")
    with pytest.raises(ValueError, match="frames"):
        detection_counts([1], [1, 0])
    with pytest.raises(ValueError, match="0 and 1"):
        detection_counts([2], [1])


def test_auroc_hand_worked() -> None:
    # Pairs (pos, neg): (0.35 > 0.1) yes, (0.35 > 0.4) no, (0.8 > both) yes yes -> 3/4.
    assert frame_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert frame_auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # a tie counts one half
    assert frame_auroc([0.9, 0.1], [0, 1]) == 0.0
    with pytest.raises(ValueError, match="both"):
        frame_auroc([0.1, 0.2], [1, 1])


def test_auroc_matches_pair_count() -> None:
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60) / 4.0  # many ties
    y = rng.integers(0, 2, 60)
    pos, neg = s[y == 1], s[y == 0]
    expected = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert frame_auroc(s, y) == pytest.approx(expected)


def test_interval_detection_error() -> None:
    fa, miss, total = interval_detection_error([(0.0, 2.0), (3.0, 4.0)], [(1.0, 3.5)])
    # hyp 1.0-3.5 overlaps ref on 1.0-2.0 and 3.0-3.5 (1.5 s): FA = 2.5 - 1.5, miss = 3.0 - 1.5.
    assert (fa, miss, total) == pytest.approx((1.0, 1.5, 3.0))
    assert interval_detection_error([(0, 1), (0.5, 2)], [(0, 2)]) == pytest.approx((0.0, 0.0, 2.0))
