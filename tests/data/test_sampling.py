"""Sampler invariants on dummy cuts (no audio): nothing dropped, batches within their constraint, exact resume,
2-D bins respected, filtered cuts counted."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision

from speechkit.data.sampling import BucketBatchSizeConstraint, SamplerConfig, build_sampler

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def make_cuts(n: int = 300, seed: int = 0) -> CutSet:
    """``n`` cuts of 1-30 s (log-normal-ish) with ``num_tokens`` ~ 3 per second plus noise."""
    rng = np.random.default_rng(seed)
    cuts = []
    for i in range(n):
        d = float(np.clip(np.round(rng.lognormal(1.8, 0.6), 2), 1.0, 30.0))
        c = dummy_cut(i, duration=d, recording_duration=d, supervisions=[dummy_supervision(i, duration=d)])
        c.num_tokens = max(1, int(round(3 * d + rng.normal(0, 2))))
        cuts.append(c)
    return CutSet.from_cuts(cuts)


def epoch(cuts: CutSet, cfg: SamplerConfig, world_size: int, epoch_idx: int = 1):
    """All batches of all simulated ranks: list (per rank) of lists of CutSets, and the samplers."""
    out, samplers = [], []
    for rank in range(world_size):
        s = build_sampler(cuts, cfg, rank=rank, world_size=world_size)
        s.set_epoch(epoch_idx)
        out.append(list(s))
        samplers.append(s)
    return out, samplers


def padded(batch: CutSet, q: float | None = None) -> float:
    d = max(c.duration for c in batch)
    if q:
        d = d + d * d / q
    return len(batch) * d


@pytest.mark.parametrize("world_size", [1, 4])
@pytest.mark.parametrize("quadratic", [None, 20.0])
def test_no_cut_dropped_and_budget_respected(world_size: int, quadratic: float | None) -> None:
    cuts = make_cuts()
    cfg = SamplerConfig(max_duration=120.0, quadratic_duration=quadratic, num_buckets=6, shuffle=True, seed=3,
                        buffer_size=1000)
    per_rank, samplers = epoch(cuts, cfg, world_size)
    counts = [len(b) for b in per_rank]
    assert len(set(counts)) == 1, f"ranks got different batch counts {counts}"
    ids = [c.id for batches in per_rank for b in batches for c in b]
    base = Counter(i.split("_dup")[0] for i in ids)
    assert set(base) == set(cuts.ids)
    dups = sum(s.counters["duplicates"] for s in samplers)
    assert sum(base.values()) - len(cuts) == dups  # every extra occurrence is a counted duplicate
    for batches in per_rank:
        for b in batches:
            # Lhotse's TimeConstraint closes a batch when one more cut as long as the longest so far would
            # overflow, so only the last cut added may push it over (when it is the longest): the batch without
            # it has room for one more of its longest cut.
            cs = list(b)
            if len(cs) > 1:
                head = CutSet.from_cuts(cs[:-1])
                assert padded(head, quadratic) * len(cs) / len(head) <= cfg.max_duration + 1e-6


def test_duplicates_only_in_final_round_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    # 21 cuts, 8 ranks, batches of <= 2 cuts: two full rounds of 8 batches would need more cuts, so the last
    # round re-splits what is left and, with fewer cuts than ranks, repeats some.
    cuts = make_cuts(n=21)
    cfg = SamplerConfig(max_duration=1000.0, max_cuts=2, num_buckets=2, shuffle=False, buffer_size=100)
    with caplog.at_level(logging.WARNING, logger="speechkit.data.sampling"):
        per_rank, samplers = epoch(cuts, cfg, world_size=8)
    assert sum(s.counters["duplicates"] for s in samplers) > 0
    assert "repeated to equalise batches" in caplog.text
    dup_batches = [(r, i) for r, batches in enumerate(per_rank) for i, b in enumerate(batches)
                   if any("_dup" in c.id for c in b)]
    assert all(i == len(per_rank[r]) - 1 for r, i in dup_batches)  # only the last batch
    ids = [c.id for batches in per_rank for b in batches for c in b]
    assert {i.split("_dup")[0] for i in ids} == set(cuts.ids)
    assert sum(s.counters["duplicates"] for s in samplers) == len(ids) - len(cuts)


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("two_d", [False, True])
def test_resume_mid_epoch_is_exact(world_size: int, two_d: bool) -> None:
    cuts = make_cuts()
    if two_d:
        cfg = SamplerConfig(bucket_duration_bins=[[5, 10], [5, 25], [12, 30], [12, 60], [31, 200]],
                            bucket_batch_size=[20, 16, 8, 6, 3], shuffle=True, seed=7, buffer_size=500)
    else:
        cfg = SamplerConfig(max_duration=100.0, num_buckets=5, shuffle=True, seed=7, buffer_size=500)
    for rank in range(world_size):
        ref = build_sampler(cuts, cfg, rank, world_size)
        ref.set_epoch(2)
        full = [list(b.ids) for b in ref]
        s = build_sampler(cuts, cfg, rank, world_size)
        s.set_epoch(2)
        it = iter(s)
        k = len(full) // 3
        head = [list(next(it).ids) for _ in range(k)]
        sd = s.state_dict()
        resumed = build_sampler(cuts, cfg, rank, world_size)
        resumed.load_state_dict(sd)
        tail = [list(b.ids) for b in resumed]
        assert head + tail == full


def test_2d_bins_respected_and_strays_counted() -> None:
    cuts = make_cuts()
    bins = [[5.0, 12], [5.0, 30], [10.0, 25], [10.0, 40], [20.0, 50], [20.0, 80]]
    sizes = [16, 12, 8, 6, 4, 3]
    cfg = SamplerConfig(bucket_duration_bins=bins, bucket_batch_size=sizes, shuffle=True, seed=1, buffer_size=400)
    (batches,), (sampler,) = epoch(cuts, cfg, world_size=1)
    con = BucketBatchSizeConstraint(bins, sizes)
    seen = set()
    for b in batches:
        idx = {con.bucket_of(c.duration, c.num_tokens) for c in b}
        assert len(idx) == 1 and None not in idx, idx  # one bucket per batch
        (i,) = idx
        assert len(b) <= sizes[i]
        for c in b:
            assert c.duration <= bins[i][0] and c.num_tokens <= bins[i][1]
            seen.add(c.id)
    expected_out = [c.id for c in cuts if con.bucket_of(c.duration, c.num_tokens) is None]
    assert expected_out, "the test corpus should hold cuts that fit no bucket"
    assert sampler.counters["no_bucket"] == len(expected_out)
    assert seen == set(cuts.ids) - set(expected_out)


def test_strict_lookup_uses_duration_group_first() -> None:
    con = BucketBatchSizeConstraint([[5.0, 10], [5.0, 20], [10.0, 40], [10.0, 60]], [4, 3, 2, 1])
    assert con.bucket_of(4.0, 8) == 0
    assert con.bucket_of(4.0, 15) == 1
    assert con.bucket_of(4.0, 25) is None  # too many tokens for its duration group: not moved to a longer bucket
    assert con.bucket_of(7.0, 8) == 2
    assert con.bucket_of(11.0, 8) is None
    tps = BucketBatchSizeConstraint([[5.0, 10], [5.0, 20]], [4, 3], max_tps=[5.0, 3.0])
    assert tps.bucket_of(4.0, 15) is None  # 3.75 tokens/s > 3.0
    assert tps.bucket_of(4.0, 8) == 0


def test_tps_filter_counted() -> None:
    cuts = make_cuts()
    cfg = SamplerConfig(max_duration=200.0, num_buckets=4, max_tps=3.0, min_tps=1.0, buffer_size=1000)
    (batches,), (sampler,) = epoch(cuts, cfg, world_size=1)
    kept = {c.id for b in batches for c in b}
    out = [c for c in cuts if not 1.0 <= c.num_tokens / c.duration <= 3.0]
    assert out and sampler.counters["tps"] == len(out)
    assert kept == set(cuts.ids) - {c.id for c in out}


def test_1d_fixed_batch_sizes_use_upper_bounds() -> None:
    cuts = make_cuts()
    cfg = SamplerConfig(bucket_duration_bins=[4.0, 8.0, 16.0], bucket_batch_size=[12, 6, 3], buffer_size=1000)
    (batches,), (sampler,) = epoch(cuts, cfg, world_size=1)
    long = [c for c in cuts if c.duration > 16.0]
    assert sampler.counters["no_bucket"] == len(long) > 0
    for b in batches:
        longest = max(c.duration for c in b)
        i = [4.0, 8.0, 16.0].index(next(x for x in [4.0, 8.0, 16.0] if longest <= x))
        assert len(b) <= [12, 6, 3][i]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="bucket_batch_size"):
        build_sampler(make_cuts(20), SamplerConfig(bucket_duration_bins=[[5, 10], [10, 20]]))
    with pytest.raises(ValueError, match="sorted"):
        build_sampler(make_cuts(20), SamplerConfig(bucket_duration_bins=[5.0, 2.0]))
    with pytest.raises(ValueError, match="bucket_batch_size has 1"):
        build_sampler(make_cuts(20), SamplerConfig(bucket_duration_bins=[5.0, 9.0], bucket_batch_size=[3]))


def test_no_bucketing_with_one_bucket() -> None:
    cuts = make_cuts(50)
    (batches,), _ = epoch(cuts, SamplerConfig(max_duration=60.0, num_buckets=1, buffer_size=100), world_size=1)
    assert sorted(c.id for b in batches for c in b) == sorted(cuts.ids)


@pytest.mark.parametrize("n", [1, 4, 9])
def test_fewer_cuts_than_buckets(n: int, caplog: pytest.LogCaptureFixture) -> None:
    """A dev manifest of 4 utterances with num_buckets=10 gets 4 buckets (Lhotse would assert), and loses nothing."""
    cuts = make_cuts(n)
    with caplog.at_level(logging.INFO, logger="speechkit.data.sampling"):
        (batches,), _ = epoch(cuts, SamplerConfig(max_duration=60.0, num_buckets=10, buffer_size=100), world_size=1)
    assert sorted(c.id for b in batches for c in b) == sorted(cuts.ids)
    assert f"{n} cuts, fewer than num_buckets=10" in caplog.text


def test_no_cuts_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no cuts to batch"):
        build_sampler(CutSet.from_cuts([]), SamplerConfig(num_buckets=10))
