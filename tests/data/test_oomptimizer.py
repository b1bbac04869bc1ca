"""OOMptimizer: the search on fake probes, the CPU memory-budget probe on the tiny recipe model, and (marked cuda)
the GPU probe within a memory fraction."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechkit.cli import main
from speechkit.data.oomptimizer import (CPUProbe, CUDAProbe, OOMptimizeCommand, _model_yaml, bucket_shapes,
                                        oomptimize, search_batch_size)

TINY_RECIPE = Path(__file__).resolve().parents[2] / "recipes/asr/fastconformer_transducer/conf/tiny_tdt.yaml"


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 31, 32, 33, 100, 1000])
@pytest.mark.parametrize("start", [1, 5, 32, 256])
def test_search_within_threshold(limit: int, start: int) -> None:
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= limit

    got = search_batch_size(fits, start=start, threshold=0.05)
    assert got <= limit  # never an answer that failed
    assert (limit - got) / (limit + 1) <= 0.05 or limit - got <= 1
    assert len(tried) < 30


def test_search_edges() -> None:
    assert search_batch_size(lambda b: False, start=8) == 0
    assert search_batch_size(lambda b: True, start=8, max_batch_size=100) == 100


def test_largest_bucket_first_and_next_starts_at_twice() -> None:
    calls: list[tuple[int, float, int]] = []
    budget = 2000.0

    def probe(b: int, seconds: float, tokens: int) -> bool:
        calls.append((b, seconds, tokens))
        return b * (seconds + 0.1 * tokens) <= budget

    res = oomptimize([[5.0, 20], [5.0, 60], [10.0, 40]], probe, start_batch_size=4, threshold=0.02)
    assert calls[0] == (4, 10.0, 40)  # the largest bucket goes first
    first_small = next(c for c in calls if c[1:] == (5.0, 60))
    assert first_small[0] == 2 * res.bucket_batch_size[2]
    for (s, t), b in zip(bucket_shapes(res.bucket_duration_bins), res.bucket_batch_size, strict=True):
        assert b * (s + 0.1 * t) <= budget < (b + 1) * (s + 0.1 * t) * 1.03
    assert "sampler.bucket_batch_size=[" in str(res)


def test_1d_buckets_use_tokens_per_second() -> None:
    assert bucket_shapes([2.5, 10], tokens_per_second=12) == [(2.5, 30), (10.0, 120)]


def test_cpu_budget_probe_on_the_tiny_model() -> None:
    """Real trials in subprocesses: the answer's step fits the budget, one more does not (within the threshold)."""
    probe = CPUProbe(_model_yaml(OOMptimizeCommand(recipe=str(TINY_RECIPE))), budget_bytes=0)
    base = probe.peak_bytes(1, 2.0, 20)
    assert base is not None
    probe.budget_bytes = base + 80 * 2**20  # room for a few utterances above a batch of one
    res = oomptimize([[2.0, 20]], probe, start_batch_size=2, threshold=0.3)
    (b,) = res.bucket_batch_size
    assert b >= 1
    peaks = {bs: p for (s, t, bs), p in probe.peaks.items()}
    assert peaks[b] <= probe.budget_bytes
    failed = [bs for bs, p in peaks.items() if p > probe.budget_bytes]
    assert failed and min(failed) > b


def test_cli_reports_a_bucket_that_cannot_fit(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["data", "oomptimize", "--recipe", str(TINY_RECIPE), "--buckets", "[[1.0,10]]",
               "--memory-budget-gb", "0.01", "--start-batch-size", "1"])
    assert rc != 0
    assert "does not fit" in capsys.readouterr().err


@pytest.mark.cuda
def test_cuda_probe_answer_fits_and_a_larger_batch_does_not() -> None:
    """Real train steps on the GPU within 2 % of its memory: the answer fits, 25 % more runs out of memory."""
    import torch

    probe = CUDAProbe(_model_yaml(OOMptimizeCommand(recipe=str(TINY_RECIPE))), memory_fraction=0.02)
    try:
        res = oomptimize([[4.0, 40]], probe, start_batch_size=8, threshold=0.05)
        (b,) = res.bucket_batch_size
        assert b >= 1
        assert probe(b, 4.0, 40)
        assert not probe(int(b * 1.25) + 1, 4.0, 40)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, probe.device)
        torch.cuda.empty_cache()
