"""Bucketed batch sampling over Lhotse cuts: 1-D (duration) and 2-D (duration x output tokens) dynamic bucketing.

:func:`build_sampler` turns a :class:`SamplerConfig` into a Lhotse ``DynamicBucketingSampler`` (our subclass
:class:`BucketingSampler`, which adds counters, 2-D buckets and resumable state with a custom constraint).
Three batching modes, chosen by what the config holds:

1. **Duration budget, 1-D** (``bucket_batch_size`` empty): a batch holds at most ``max_duration`` *padded* seconds
   (count x longest cut, each cut's ``d`` counted as ``d + d**2 / quadratic_duration`` when that is set).
   ``bucket_duration_bins`` are ``num_buckets - 1`` **lower boundaries** (Lhotse's convention: bucket 0 is
   ``[0, b0)``, the last bucket ``[b_last, inf)``, open); empty means "estimate from the first
   ``num_cuts_for_bins_estimate`` cuts" (equal total duration per bucket).
2. **Fixed batch size per bucket, 1-D** (``bucket_duration_bins`` floats + ``bucket_batch_size``, OOMptimizer output):
   one **upper bound** per bucket (``len(bins) == len(bucket_batch_size)``); a cut longer than the last bound fits
   no bucket.
3. **Fixed batch size per bucket, 2-D** (``bucket_duration_bins`` ``[duration, tokens]`` pairs + ``bucket_batch_size``):
   upper bounds in both dimensions. Strict lookup: the duration dimension picks the group of sub-buckets sharing
   the smallest duration bound >= the cut's duration, then the smallest token bound >= the cut's tokens in that
   group; a cut whose tokens exceed the group's largest bound, or whose tokens per second exceed that bucket's
   ``max_tps`` (when a per-bucket list), fits no bucket.

The two bin conventions (lower boundaries with a duration budget, upper bounds with fixed sizes) are never mixed:
which one applies is decided only by whether ``bucket_batch_size`` is set.

Nothing is dropped silently: a cut that fits no bucket, or fails the tokens-per-second filter, is filtered out and
counted (:attr:`BucketingSampler.counters`, a warning at the end of an epoch). With ``world_size > 1``, the final
round that gives every rank a batch may repeat a few cuts (only when fewer cuts are left than ranks); those
duplicates are counted too (ids end in ``_dup<N>``).

Example:
    >>> from speechkit.data.sampling import SamplerConfig, build_sampler
    >>> cfg = SamplerConfig(max_duration=60.0, num_buckets=10, shuffle=True, seed=0)
    >>> sampler = build_sampler(cuts, cfg, rank=0, world_size=1)  # doctest: +SKIP
    >>> for batch in sampler: ...  # a CutSet per batch  # doctest: +SKIP
    >>> sampler.counters  # doctest: +SKIP
    {'no_bucket': 0, 'tps': 0, 'duplicates': 0}
"""

from __future__ import annotations

import itertools
import logging
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lhotse.dataset.sampling.base import CutSampler, SamplingConstraint
from lhotse.dataset.sampling.dynamic_bucketing import DynamicBucketingSampler

if TYPE_CHECKING:  # pragma: no cover
    from lhotse import CutSet
    from lhotse.cut import Cut

    from speechkit.text.tokenizer import Tokenizer

__all__ = ["BucketBatchSizeConstraint", "BucketingSampler", "SamplerConfig", "build_sampler", "count_tokens",
           "is_2d_bins"]

logger = logging.getLogger(__name__)

_DUP = re.compile(r"_dup\d+$")
_STATE_KEY = "speechkit"


@dataclass
class SamplerConfig:
    """How training batches are drawn (see the module docstring for the three modes).

    Attributes:
        max_duration: padded seconds per batch (duration-budget mode).
        quadratic_duration: Lhotse's penalty for long cuts: ``d`` counts as ``d + d**2 / q`` (``None`` = off).
        num_buckets: buckets to estimate when ``bucket_duration_bins`` is empty (1 = no bucketing).
        bucket_duration_bins: 1-D floats or 2-D ``[duration, tokens]`` pairs (sorted); empty = estimate.
        bucket_batch_size: one batch size per bucket (OOMptimizer output); switches bins to upper bounds.
        max_tps: tokens per second above which a cut is filtered (a float, or one value per 2-D bucket).
        min_tps: tokens per second below which a cut is filtered.
        shuffle: shuffle within the bucket buffers (training).
        seed: shuffle seed (``set_epoch`` adds the epoch).
        drop_last: drop partial batches at the end of an epoch (loses data; off by default).
        sync_buckets: every rank draws from the same bucket at the same step (less waiting on the slowest rank).
        buffer_size: cuts held across all bucket buffers.
        num_cuts_for_bins_estimate: cuts read to estimate 1-D bins.
        concurrent: fill the buffers in a background thread (faster start, non-deterministic order).
        max_cuts: at most this many cuts per batch in duration-budget mode (``None`` = no limit).
    """

    max_duration: float = 40.0
    quadratic_duration: float | None = None
    num_buckets: int = 10
    bucket_duration_bins: list[Any] = field(default_factory=list)
    bucket_batch_size: list[int] = field(default_factory=list)
    max_tps: Any = None
    min_tps: float | None = None
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False
    sync_buckets: bool = True
    buffer_size: int = 20000
    num_cuts_for_bins_estimate: int = 10000
    concurrent: bool = False
    max_cuts: int | None = None

    def validate(self) -> None:
        """Raise ValueError naming the field when the combination of values is inconsistent."""
        if self.max_duration <= 0 and not self.bucket_batch_size:
            raise ValueError(f"SamplerConfig.max_duration must be > 0 seconds, got {self.max_duration}")
        if self.num_buckets < 1:
            raise ValueError(f"SamplerConfig.num_buckets must be >= 1, got {self.num_buckets}")
        bins = list(self.bucket_duration_bins)
        two_d = is_2d_bins(bins)
        if two_d:
            if any(len(b) != 2 for b in bins):
                raise ValueError("SamplerConfig.bucket_duration_bins: 2-D bins must be [duration, tokens] pairs, "
                                 f"got {bins[:3]}...")
            if not self.bucket_batch_size:
                raise ValueError("SamplerConfig.bucket_duration_bins holds 2-D [duration, tokens] pairs: "
                                 "bucket_batch_size (one batch size per pair, e.g. from `speechkit data "
                                 "oomptimize`) is required")
        if [tuple(b) if two_d else b for b in bins] != sorted(tuple(b) if two_d else b for b in bins):
            raise ValueError(f"SamplerConfig.bucket_duration_bins must be sorted ascending, got {bins}")
        if self.bucket_batch_size:
            if len(self.bucket_batch_size) != len(bins):
                raise ValueError(f"SamplerConfig.bucket_batch_size has {len(self.bucket_batch_size)} sizes but "
                                 f"bucket_duration_bins has {len(bins)} upper bounds (one size per bucket)")
            if any(int(b) < 1 for b in self.bucket_batch_size):
                raise ValueError(f"SamplerConfig.bucket_batch_size must be >= 1, got {self.bucket_batch_size}")
        if isinstance(self.max_tps, (list, tuple)) or _is_listconfig(self.max_tps):
            if not two_d or len(self.max_tps) != len(bins):
                raise ValueError("SamplerConfig.max_tps as a list needs 2-D bins and one value per bucket, got "
                                 f"{len(self.max_tps)} values for {len(bins)} bins")


def _is_listconfig(x: Any) -> bool:
    return type(x).__name__ == "ListConfig"


def is_2d_bins(bins: Sequence[Any]) -> bool:
    """True when ``bins`` are ``[duration, tokens]`` pairs rather than plain durations."""
    return bool(bins) and not isinstance(bins[0], (int, float))


def count_tokens(cut: Cut, tokenizer: Tokenizer | None = None) -> int:
    """Output tokens of ``cut``: cached ``cut.num_tokens``, else the tokenizer's encoding of its supervisions' text.

    Raises:
        ValueError: no tokenizer and the cut carries no ``num_tokens`` custom field.
    """
    custom = cut.custom or {}
    if "num_tokens" in custom:
        return int(custom["num_tokens"])
    if tokenizer is None:
        raise ValueError(f"cut {cut.id!r}: token-aware sampling (2-D bins or a tokens-per-second filter) needs a "
                         "tokenizer or a 'num_tokens' custom field on each cut")
    text = " ".join(s.text for s in cut.supervisions if s.text)
    n = len(tokenizer.encode(text, allow_unknown=True))
    cut.num_tokens = n  # cached on the cut object; the constraint reads it again
    return n


@dataclass
class BucketBatchSizeConstraint(SamplingConstraint):
    """A fixed batch size per bucket; buckets are upper bounds, 1-D (seconds) or 2-D (``(seconds, tokens)``).

    :meth:`select_bucket` is the strict lookup described in the module docstring and returns
    ``len(bins)`` (no bucket) for a cut that fits none; :class:`BucketingSampler` filters such cuts out before they
    reach the buckets.
    """

    bins: list[Any]
    batch_sizes: list[int]
    max_tps: list[float] | None = None
    current_bucket: int | None = None
    num_cuts: int = 0

    def __post_init__(self) -> None:
        self.two_d = is_2d_bins(self.bins)
        if self.two_d:
            self.bins = [(float(d), float(t)) for d, t in self.bins]
            self._durations = sorted({d for d, _ in self.bins})
        else:
            self.bins = [float(b) for b in self.bins]

    def is_active(self) -> bool:
        return True

    def measure_length(self, example: Cut) -> Any:
        if self.two_d:
            return (example.duration, count_tokens(example))
        return example.duration

    def bucket_of(self, duration: float, tokens: int | None = None) -> int | None:
        """The bucket index of a cut of ``duration`` seconds and ``tokens`` tokens, or ``None`` when none fits."""
        if not self.two_d:
            i = bisect_left(self.bins, duration)
            return i if i < len(self.bins) else None
        j = bisect_left(self._durations, duration)
        if j == len(self._durations):
            return None
        dmax = self._durations[j]
        group = [i for i, (d, _) in enumerate(self.bins) if d == dmax]
        for i in group:  # sorted by tokens within a duration group
            if tokens is not None and tokens <= self.bins[i][1]:
                if self.max_tps is not None and duration > 0 and tokens / duration > self.max_tps[i]:
                    return None
                return i
        return None

    def select_bucket(self, buckets: Any, example: Any = None, example_len: Any = None) -> int:
        if example_len is None:
            example_len = self.measure_length(example)
        idx = self.bucket_of(*example_len) if self.two_d else self.bucket_of(example_len)
        return len(self.bins) if idx is None else idx

    def add(self, example: Cut) -> None:
        idx = self.select_bucket(self.bins, example)
        if idx >= len(self.bins):
            raise ValueError(f"cut {example.id!r} fits no bucket of {self.bins} (it should have been filtered)")
        if self.current_bucket is None:
            self.current_bucket = idx
        elif idx != self.current_bucket:
            raise ValueError(f"cut {example.id!r} belongs to bucket {idx}, not to the batch's bucket "
                             f"{self.current_bucket}")
        self.num_cuts += 1

    def exceeded(self) -> bool:
        return self.current_bucket is not None and self.num_cuts > self.batch_sizes[self.current_bucket]

    def close_to_exceeding(self) -> bool:
        return self.current_bucket is not None and self.num_cuts >= self.batch_sizes[self.current_bucket]

    def reset(self) -> None:
        self.current_bucket = None
        self.num_cuts = 0


class BucketingSampler(DynamicBucketingSampler):
    """Lhotse's ``DynamicBucketingSampler`` plus counted filtering, 2-D buckets and resumable custom constraints.

    Build it with :func:`build_sampler`. ``counters`` (reset at the start of each epoch) holds, for the current
    epoch on this rank: ``no_bucket`` (cuts that fit no bucket), ``tps`` (cuts outside ``[min_tps, max_tps]``)
    and ``duplicates`` (cuts repeated in the final batch-equalising round across ranks).
    """

    def __init__(self, cuts: CutSet, cfg: SamplerConfig, rank: int, world_size: int,
                 tokenizer: Tokenizer | None = None) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.counters = {"no_bucket": 0, "tps": 0, "duplicates": 0}
        bins = [list(b) for b in cfg.bucket_duration_bins] if is_2d_bins(cfg.bucket_duration_bins) else \
            [float(b) for b in cfg.bucket_duration_bins]
        self.fixed: BucketBatchSizeConstraint | None = None
        kwargs: dict[str, Any] = {"num_buckets": cfg.num_buckets, "shuffle": cfg.shuffle, "drop_last": cfg.drop_last,
                                  "buffer_size": cfg.buffer_size, "world_size": world_size, "rank": rank,
                                  "seed": cfg.seed, "sync_buckets": cfg.sync_buckets, "concurrent": cfg.concurrent,
                                  "num_cuts_for_bins_estimate": cfg.num_cuts_for_bins_estimate}
        per_bucket_tps = isinstance(cfg.max_tps, (list, tuple)) or _is_listconfig(cfg.max_tps)
        if cfg.bucket_batch_size:
            self.fixed = BucketBatchSizeConstraint(bins, [int(b) for b in cfg.bucket_batch_size],
                                                   [float(x) for x in cfg.max_tps] if per_bucket_tps else None)
            # Lhotse asserts sorted bins and makes len(bins) + 1 queues; the extra one stays empty (filtered).
            super().__init__(cuts, constraint=self.fixed, duration_bins=self.fixed.bins, **kwargs)
        else:
            super().__init__(cuts, max_duration=cfg.max_duration, max_cuts=cfg.max_cuts,
                             quadratic_duration=cfg.quadratic_duration, duration_bins=bins or None, **kwargs)
        self._scalar_max_tps = None if per_bucket_tps or cfg.max_tps is None else float(cfg.max_tps)
        self._needs_tokens = (self.fixed is not None and self.fixed.two_d) or self._scalar_max_tps is not None \
            or cfg.min_tps is not None
        self.filter(self._keep)

    # -- filtering -------------------------------------------------------------------------------------------
    def _keep(self, cut: Cut) -> bool:
        tokens = count_tokens(cut, self.tokenizer) if self._needs_tokens else None
        if tokens is not None and cut.duration > 0:
            tps = tokens / cut.duration
            if (self._scalar_max_tps is not None and tps > self._scalar_max_tps) or \
                    (self.cfg.min_tps is not None and tps < self.cfg.min_tps):
                self.counters["tps"] += 1
                logger.debug("filtered cut %r: %.1f tokens/s outside [%s, %s]", cut.id, tps, self.cfg.min_tps,
                             self.cfg.max_tps)
                return False
        if self.fixed is not None and self.fixed.bucket_of(cut.duration, tokens) is None:
            self.counters["no_bucket"] += 1
            logger.debug("filtered cut %r (%.2f s, %s tokens): fits no bucket", cut.id, cut.duration, tokens)
            return False
        return True

    # -- iteration -------------------------------------------------------------------------------------------
    def skip_batches(self, n: int) -> None:
        """Make the next iteration start ``n`` batches into the epoch (resuming a run mid-epoch).

        The skipped batches are drawn and discarded (cut metadata only, no audio), so the rest of the epoch is
        exactly what an uninterrupted run would have seen, and the filter counters cover the whole epoch. The
        epoch comes from :meth:`set_epoch`, which Lightning calls before iterating. Unlike Lhotse's
        ``load_state_dict``, this counts batches *trained on*, not batches *drawn*, which with DataLoader workers
        prefetching run ahead of training.

        Args:
            n: batches of the current epoch already used (>= 0).
        """
        if n < 0:
            raise ValueError(f"skip_batches: n must be >= 0, got {n}")
        self._skip = int(n)

    def __iter__(self) -> BucketingSampler:
        if not self._just_restored_state:
            self.counters = dict.fromkeys(self.counters, 0)
        super().__iter__()
        # The skip holds until a batch is taken: PyTorch's multi-worker loader iterates its sampler twice before
        # asking for the first batch.
        skip = getattr(self, "_skip", 0)
        for done in range(skip):
            try:
                self._draw_batch()
            except StopIteration:
                logger.warning("sampler: asked to skip %d batches but epoch %d has only %d", skip, self.epoch, done)
                break
        return self

    def __next__(self) -> CutSet:
        self._skip = 0
        return self._draw_batch()

    def _draw_batch(self) -> CutSet:
        try:
            batch = super().__next__()
        except StopIteration:
            self._report()
            raise
        dups = sum(1 for c in batch if _DUP.search(c.id))
        if dups:
            self.counters["duplicates"] += dups
        return batch

    def _report(self) -> None:
        if any(self.counters.values()):
            logger.warning("sampler epoch %d, rank %d: %d cuts fit no bucket, %d failed the tokens-per-second "
                           "filter, %d repeated to equalise batches across ranks", self.epoch, self.rank,
                           self.counters["no_bucket"], self.counters["tps"], self.counters["duplicates"])

    # -- checkpointing ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Resumable state (Lhotse refuses custom constraints; ours is rebuilt from the config, so we allow it)."""
        sd = CutSampler.state_dict(self)
        sd.update({"max_duration": self.max_duration, "max_cuts": self.max_cuts,
                   "consistent_ids": self.consistent_ids, "buffer_size": self.buffer_size,
                   "num_cuts_for_bins_estimate": self.num_cuts_for_bins_estimate,
                   "quadratic_duration": self.quadratic_duration,
                   _STATE_KEY: {"duration_bins": [list(b) if isinstance(b, tuple) else b for b in self.duration_bins],
                                "counters": dict(self.counters)}})
        return sd

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        sd = dict(sd)
        ours = sd.pop(_STATE_KEY, {})
        saved_bins = ours.get("duration_bins")
        if saved_bins is not None:
            # Estimated bins depend on the first cuts read; a resumed run must bucket exactly as before.
            self.duration_bins = [tuple(b) if isinstance(b, list) else b for b in saved_bins]
        super().load_state_dict(sd)  # fast-forwards through the batches already drawn (recounting filters)


def build_sampler(cuts: CutSet, cfg: SamplerConfig, rank: int = 0, world_size: int = 1,
                  tokenizer: Tokenizer | None = None) -> BucketingSampler:
    """The training sampler for this rank: one CutSet per batch, every cut of an epoch in some rank's batch.

    Args:
        cuts: a lazy CutSet (e.g. :func:`speechkit.data.datasets.open_cuts`); the same on every rank.
        cfg: batching mode, bins and sizes (:class:`SamplerConfig`).
        rank, world_size: this process's data-parallel rank and the number of ranks.
        tokenizer: counts output tokens for 2-D bins and the tokens-per-second filter (else cuts need a
            ``num_tokens`` custom field).

    Returns:
        A :class:`BucketingSampler`; call ``set_epoch(epoch)`` for a new shuffle each epoch.

    Raises:
        ValueError: an inconsistent config (the message names the field).
    """
    cfg.validate()
    if cfg.num_buckets > 1 and not cfg.bucket_duration_bins:
        # Lhotse estimates the bins from the cuts and asserts there are at least num_buckets of them; a small dev
        # or test manifest (or a smoke run's) gets as many buckets as it has cuts instead.
        have = sum(1 for _ in itertools.islice(iter(cuts), cfg.num_buckets))
        if have == 0:
            raise ValueError("no cuts to batch: the manifests are empty (or every line was skipped)")
        if have < cfg.num_buckets:
            logger.info("%d cuts, fewer than num_buckets=%d: using %d bucket(s)", have, cfg.num_buckets, have)
            cfg = SamplerConfig(**{**cfg.__dict__, "num_buckets": have})
    if cfg.num_buckets == 1 and not cfg.bucket_duration_bins:
        # One bucket = no bucketing: a single lower boundary above any duration keeps everything in bucket 0.
        cfg = SamplerConfig(**{**cfg.__dict__, "bucket_duration_bins": [float("inf")]})
    return BucketingSampler(cuts, cfg, rank, world_size, tokenizer)
