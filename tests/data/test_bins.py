"""Bin estimation: 1-D equals Lhotse's rule, 2-D bins cover every non-outlier utterance, the CLI prints usable bins."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from lhotse.dataset.sampling.dynamic_bucketing import estimate_duration_buckets
from lhotse.testing.dummies import dummy_cut

from speechkit.cli import main
from speechkit.data.bins import estimate_bins_1d, estimate_bins_2d
from speechkit.data.sampling import BucketBatchSizeConstraint, SamplerConfig
from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

TINY = Path(__file__).resolve().parents[2] / "manifests" / "tiny"


def corpus(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = np.clip(np.round(rng.lognormal(1.8, 0.6, n), 2), 1.0, 30.0)
    t = np.maximum(1, np.round(3 * d + rng.normal(0, 2, n))).astype(int)
    t[:5] = (d[:5] * 40).astype(int)  # a few transcripts far too long for their audio
    return d, t


@pytest.mark.parametrize("buckets", [2, 7, 30])
def test_1d_matches_lhotse_rule(buckets: int) -> None:
    d, _ = corpus()
    cuts = [dummy_cut(i, duration=float(x)) for i, x in enumerate(d)]
    assert estimate_bins_1d(d.tolist(), buckets) == pytest.approx(estimate_duration_buckets(cuts, buckets))


def test_1d_buckets_hold_about_equal_total_duration() -> None:
    d, _ = corpus()
    bins = estimate_bins_1d(d.tolist(), 10)
    idx = np.searchsorted(bins, d, side="right")  # lower boundaries: bucket i = [b_{i-1}, b_i)
    totals = np.bincount(idx, weights=d, minlength=10)
    assert totals.max() < 1.35 * d.sum() / 10


@pytest.mark.parametrize(("buckets", "subs"), [(8, 2), (30, 2), (5, 3)])
def test_2d_bins_cover_every_non_outlier(buckets: int, subs: int) -> None:
    d, t = corpus()
    est = estimate_bins_2d(d.tolist(), t.tolist(), buckets, subs, token_outlier_threshold=4.0)
    assert [tuple(b) for b in est.bins] == sorted(tuple(b) for b in est.bins)
    assert len(est.max_tps) == len(est.bins)
    assert len(est.durations) <= buckets and len(est.bins) >= len(est.durations)
    assert 5 <= est.num_outliers < 40
    con = BucketBatchSizeConstraint(est.bins, [1] * len(est.bins), max_tps=est.max_tps)
    lost = sum(con.bucket_of(float(x), int(y)) is None for x, y in zip(d, t, strict=True))
    assert lost == est.num_outliers  # exactly the outliers fit no bucket; everything else does
    assert d.max() <= est.bins[-1][0]
    SamplerConfig(bucket_duration_bins=est.bins, bucket_batch_size=[1] * len(est.bins),
                  max_tps=est.max_tps).validate()


def test_2d_equal_durations_get_more_sub_buckets() -> None:
    d = [5.0] * 60 + [float(x) for x in np.linspace(6, 20, 40)]
    t = [int(3 * x) + i % 7 for i, x in enumerate(d)]
    est = estimate_bins_2d(d, t, num_buckets=4, num_sub_buckets=2, token_outlier_threshold=0)
    fives = [b for b in est.bins if b[0] == 5.0]
    assert len(fives) > 2  # one swollen group instead of repeated 5.0 bounds
    assert len(set(est.durations)) == len(est.durations)


def test_cli_1d_and_2d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "estimate-bins", str(TINY / "train.json"), "--buckets", "3"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("sampler.bucket_duration_bins="))
    bins = ast.literal_eval(line.split("=", 1)[1])
    assert len(bins) == 2 and bins == sorted(bins)
    tok = train_tokenizer_from_manifests([TINY / "train.json"], tmp_path / "tok", TokenizerTrainConfig(vocab_size=40))
    assert tok is not None
    assert main(["data", "estimate-bins", str(TINY / "train.json"), "--buckets", "2", "--sub-buckets", "2",
                 "--tokenizer", str(tmp_path / "tok")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("sampler.bucket_duration_bins="))
    pairs = ast.literal_eval(line.split("=", 1)[1])
    assert all(len(p) == 2 for p in pairs)
    tps = ast.literal_eval(next(x for x in out.splitlines() if x.startswith("sampler.max_tps=")).split("=", 1)[1])
    assert len(tps) == len(pairs)
