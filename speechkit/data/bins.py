"""Bucket bin estimation from manifest metadata (durations and transcripts; no audio is read).

Two outputs, matching the two bin conventions of :mod:`speechkit.data.sampling`:

- **1-D** (:func:`estimate_bins_1d`): ``num_buckets - 1`` *lower boundaries* in seconds for duration-budget batching,
  by Lhotse's rule: walk the durations in ascending order and start a new bucket once the running total of the
  current one exceeds ``total / num_buckets`` (so buckets hold about equal total audio, not equal counts).
- **2-D** (:func:`estimate_bins_2d`): ``[duration, tokens]`` *upper bounds* for fixed per-bucket batch sizes
  (pass the result to ``speechkit data oomptimize`` for the sizes). Duration groups hold about equal total
  duration; inside each group, upper outliers of tokens per second (z-score above ``token_outlier_threshold``)
  are set aside, the largest remaining rate becomes that group's suggested ``max_tps``, and the rest is split
  into ``num_sub_buckets`` sub-buckets of about equal total tokens. Splits never fall between equal values, so a
  cut on a bound always lands in the bucket that bound closes; a group swollen by many equal durations gets
  proportionally more sub-buckets.

Example:
    >>> from speechkit.data.bins import estimate_bins_1d, estimate_bins_2d
    >>> estimate_bins_1d([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], num_buckets=2)
    [5.0]
    >>> est = estimate_bins_2d([1.0, 2.0, 3.0, 4.0], [3, 7, 9, 12], num_buckets=2, num_sub_buckets=1)
    >>> est.bins
    [[3.0, 9], [4.0, 12]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.text.tokenizer import Tokenizer

__all__ = ["Bins2D", "EstimateBinsCommand", "estimate_bins_1d", "estimate_bins_2d", "estimate_bins_command",
           "iter_lengths"]


def estimate_bins_1d(durations: Sequence[float], num_buckets: int) -> list[float]:
    """``num_buckets - 1`` lower bucket boundaries (seconds) holding about equal total duration each.

    Raises:
        ValueError: ``num_buckets < 2`` or fewer durations than buckets.
    """
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be >= 2 for bins, got {num_buckets}")
    values = np.sort(np.asarray(durations, dtype=np.float64))
    if values.size < num_buckets:
        raise ValueError(f"{values.size} utterances cannot fill {num_buckets} buckets")
    target = values.sum() / num_buckets
    bounds: list[float] = []
    filled = 0.0
    for v in values:
        if filled > target:  # the current bucket is full: this value opens the next one
            bounds.append(float(v))
            filled = 0.0
        filled += float(v)
    return bounds


def _split_runs(values: np.ndarray, weights: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split sorted ``values`` into at most ``parts`` contiguous [start, end) ranges of about equal total weight.

    A range never ends inside a run of equal values.
    """
    n = values.size
    if n == 0:
        return []
    target = weights.sum() / max(parts, 1)
    ranges: list[tuple[int, int]] = []
    start, filled = 0, 0.0
    for i in range(n):
        filled += float(weights[i])
        last = i == n - 1
        if last or (filled >= target and values[i + 1] != values[i] and len(ranges) < parts - 1):
            ranges.append((start, i + 1))
            start, filled = i + 1, 0.0
    return ranges


@dataclass
class Bins2D:
    """2-D bins: ``bins`` (``[duration_upper, tokens_upper]`` pairs, sorted), ``max_tps`` (one per bin), and the
    count of utterances set aside as tokens-per-second outliers (they will be filtered and counted in training)."""

    bins: list[list[float]]
    max_tps: list[float]
    num_outliers: int = 0
    durations: list[float] = field(default_factory=list)  # the distinct duration upper bounds


def estimate_bins_2d(durations: Sequence[float], tokens: Sequence[int], num_buckets: int = 30,
                     num_sub_buckets: int = 2, token_outlier_threshold: float = 4.0) -> Bins2D:
    """Duration x tokens upper-bound bins (see the module docstring).

    Args:
        durations: seconds per utterance.
        tokens: output tokens per utterance (same order).
        num_buckets: duration groups.
        num_sub_buckets: token sub-buckets per duration group (more for groups swollen by equal durations).
        token_outlier_threshold: z-score of tokens per second above which an utterance is an outlier
            (``<= 0`` disables the outlier removal).

    Raises:
        ValueError: mismatched lengths, or fewer utterances than buckets.
    """
    d = np.asarray(durations, dtype=np.float64)
    t = np.asarray(tokens, dtype=np.float64)
    if d.shape != t.shape:
        raise ValueError(f"{d.size} durations but {t.size} token counts")
    if d.size < num_buckets or num_buckets < 1 or num_sub_buckets < 1:
        raise ValueError(f"need >= 1 bucket and sub-bucket and at least as many utterances as buckets "
                         f"(got {d.size} utterances, {num_buckets} buckets, {num_sub_buckets} sub-buckets)")
    order = np.argsort(d, kind="stable")
    d, t = d[order], t[order]
    target = d.sum() / num_buckets
    bins: list[list[float]] = []
    max_tps: list[float] = []
    dur_bounds: list[float] = []
    outliers = 0
    for start, end in _split_runs(d, d, num_buckets):
        gd, gt = d[start:end], t[start:end]
        dmax = math.ceil(float(gd.max()) * 1000) / 1000  # 3 decimals, rounded up so the group's longest fits
        tps = gt / np.maximum(gd, 1e-6)
        keep = np.ones(gd.size, dtype=bool)
        if token_outlier_threshold > 0 and gd.size > 2 and tps.std() > 0:
            keep = (tps - tps.mean()) / tps.std() <= token_outlier_threshold
        outliers += int((~keep).sum())
        gt_kept = np.sort(gt[keep])
        group_tps = float(tps[keep].max())
        subs = max(1, round(num_sub_buckets * float(gd.sum()) / target))  # swollen group: more sub-buckets
        dur_bounds.append(dmax)
        for _, e in _split_runs(gt_kept, gt_kept, subs):
            bins.append([dmax, int(gt_kept[e - 1])])
            max_tps.append(math.ceil(group_tps * 100) / 100)  # rounded up: the fastest kept cut still fits
    return Bins2D(bins, max_tps, outliers, dur_bounds)


def iter_lengths(manifests: Sequence[str | Path], tokenizer: Tokenizer | None = None
                 ) -> Iterator[tuple[float, int | None]]:
    """``(duration, tokens or None)`` per utterance of NeMo ``.json`` or Lhotse ``.jsonl[.gz]`` manifests.

    Only metadata is read: durations from the manifest lines, texts tokenized when a tokenizer is given.
    """
    from speechkit.data.manifests import read_manifest

    def count(text: str | None) -> int | None:
        return None if tokenizer is None else len(tokenizer.encode(text or "", allow_unknown=True))

    for path in manifests:
        if str(path).endswith(".json"):
            for entry in read_manifest(path, require_text=tokenizer is not None):
                yield entry.duration, count(entry.text)
        else:
            from speechkit.data.manifests import load_cutset

            for cut in load_cutset(path):
                yield cut.duration, count(" ".join(s.text for s in cut.supervisions if s.text))


@dataclass
class EstimateBinsCommand:
    """Options of ``speechkit data estimate-bins``."""

    manifest: list[str] = field(metadata={"help": "NeMo .json or Lhotse .jsonl.gz manifest(s)"})
    buckets: int = field(default=30, metadata={"help": "duration buckets"})
    sub_buckets: int = field(default=2, metadata={"help": "token sub-buckets per duration bucket (2-D only)"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder: 2-D [duration, tokens] bins"})
    token_outlier_threshold: float = field(default=4.0, metadata={
        "help": "z-score of tokens/second above which an utterance is an outlier (2-D only)"})
    max_utterances: int | None = field(default=None, metadata={"help": "read at most this many utterances"})


def estimate_bins_command(opts: EstimateBinsCommand) -> str:
    """Bins ready to paste into a recipe config (as ``key=value`` overrides)."""
    from itertools import islice

    tok = None
    if opts.tokenizer:
        from speechkit.text.tokenizer import Tokenizer

        tok = Tokenizer.load(opts.tokenizer)
    lengths = list(islice(iter_lengths(opts.manifest, tok), opts.max_utterances))
    durations = [d for d, _ in lengths]
    hours = sum(durations) / 3600
    head = f"# {len(durations)} utterances, {hours:.2f} h, {min(durations):.2f}-{max(durations):.2f} s"
    if tok is None:
        bins = estimate_bins_1d(durations, opts.buckets)
        return "\n".join([
            head + f"; 1-D lower boundaries, {opts.buckets} buckets of ~equal total duration",
            f"sampler.num_buckets={opts.buckets}",
            "sampler.bucket_duration_bins=[" + ",".join(f"{b:.3f}" for b in bins) + "]",
        ])
    est = estimate_bins_2d(durations, [n or 0 for _, n in lengths], opts.buckets, opts.sub_buckets,
                           opts.token_outlier_threshold)
    return "\n".join([
        head + f"; 2-D upper bounds, {len(est.bins)} buckets, {est.num_outliers} tokens/s outliers set aside",
        "# 2-D bins need per-bucket batch sizes: speechkit data oomptimize --buckets '<the bins below>'",
        "sampler.bucket_duration_bins=[" + ",".join(f"[{d:.3f},{int(t)}]" for d, t in est.bins) + "]",
        "sampler.max_tps=[" + ",".join(f"{x:.2f}" for x in est.max_tps) + "]",
    ])
