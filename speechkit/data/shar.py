"""Lhotse Shar shards for many GPUs: write a CutSet with its audio, read it back partitioned by rank x worker.

Shar keeps each shard as ``cuts.NNNNNN.jsonl.gz`` (metadata) plus ``recording.NNNNNN.tar`` (the audio), read
sequentially, so a training node streams a few large files instead of opening millions of small ones.

Reading for training (:class:`SharPartition`): the ``N = world_size x num_workers`` data consumers (every
DataLoader worker of every rank) split the *shards* between them: the shard list is shuffled identically on every
process (``seed + epoch``), and consumer ``k = rank x num_workers + worker_id`` reads shards ``k, k + N, k + 2N ...``.
Within an epoch no two consumers read the same shard and together they read all of them. Write at least ``N``
shards (better a few times more, to even out the load); a consumer left without a shard yields nothing, with a
warning. Consumers hold different numbers of cuts, so training on Shar data is step-based: with ``repeat=True``
(the default of :func:`make_shar_dataloader`) each consumer loops over its shards forever, reshuffled each pass.

The sampler then runs *inside* each worker with ``rank=0, world_size=1`` (Lhotse's ``IterableDatasetWrapper``):
the partition already keeps ranks apart; a distributed sampler on top would drop data.

Example:
    >>> from speechkit.data.shar import write_shar, make_shar_dataloader
    >>> write_shar(cuts, "data/shar/train", shard_size=1000)  # doctest: +SKIP
    >>> loader = make_shar_dataloader("data/shar/train", tokenizer, sampler_cfg, rank=r, world_size=w,
    ...                               num_workers=4)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from lhotse import CutSet
    from lhotse.cut import Cut

    from speechkit.data.datasets import AugmentConfig
    from speechkit.data.sampling import SamplerConfig
    from speechkit.text.tokenizer import Tokenizer

__all__ = ["SharPartition", "list_shards", "make_shar_dataloader", "write_shar"]

logger = logging.getLogger(__name__)

_SHARD = re.compile(r"^(?P<field>[A-Za-z_]+)\.(?P<idx>\d{6})\.(?:jsonl\.gz|tar|jsonl)$")


def write_shar(cuts: CutSet, out_dir: str | Path, shard_size: int = 1000, audio_format: str = "flac",
               num_jobs: int = 1) -> dict[str, list[str]]:
    """Write ``cuts`` and their audio as Shar shards of ``shard_size`` cuts; returns the files per field.

    The audio is read (and re-encoded as ``audio_format``: ``flac``, ``wav`` or ``opus``) once here, so a cut
    whose audio cannot be read fails now, naming the cut, rather than in the middle of training.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return cuts.to_shar(out, fields={"recording": audio_format}, shard_size=shard_size, num_jobs=num_jobs)


def list_shards(shar_dir: str | Path) -> dict[str, list[str]]:
    """Shard files of a Shar folder per field (``"cuts"``, ``"recording"`` ...), in shard order.

    Raises:
        FileNotFoundError: no ``cuts.*.jsonl.gz`` shard in the folder.
        ValueError: a field has a different number of shards than ``cuts``.
    """
    root = Path(shar_dir)
    found: dict[str, dict[int, str]] = {}
    for p in root.iterdir() if root.is_dir() else []:
        m = _SHARD.match(p.name)
        if m:
            found.setdefault(m["field"], {})[int(m["idx"])] = str(p)
    if "cuts" not in found:
        raise FileNotFoundError(f"{root}: no Shar shards (cuts.000000.jsonl.gz ...) found")
    idx = sorted(found["cuts"])
    fields = {}
    for name, shards in found.items():
        if sorted(shards) != idx:
            raise ValueError(f"{root}: field {name!r} has shards {sorted(shards)[:5]}..., cuts has {idx[:5]}...")
        fields[name] = [shards[i] for i in idx]
    return fields


class SharPartition:
    """A lazy iterable of the cuts (with audio) of this consumer's share of the shards; wrap it as
    ``CutSet(SharPartition(...))``.

    Args:
        shar_dir: folder written by :func:`write_shar`.
        rank, world_size: data-parallel rank and number of ranks.
        num_workers: DataLoader workers per rank (0 counts as 1: loading in the main process).
        worker_id: this consumer's worker; ``None`` = the DataLoader worker running the iteration (0 outside one).
        shuffle_shards: shuffle the shard order (identically on all consumers) with ``seed + epoch``.
        seed: shard shuffle seed.
        repeat: loop over this consumer's shards forever, reshuffling each pass (step-based training).
        metadata_only: read only the ``cuts`` manifests, not the audio (for bin estimation and statistics).
    """

    is_lazy = True

    def __init__(self, shar_dir: str | Path, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 worker_id: int | None = None, shuffle_shards: bool = True, seed: int = 0, repeat: bool = False,
                 metadata_only: bool = False) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.fields = list_shards(shar_dir)
        if metadata_only:
            self.fields = {"cuts": self.fields["cuts"]}
        self.rank, self.world_size = rank, world_size
        self.num_workers = max(1, num_workers)
        self.worker_id = worker_id
        self.shuffle_shards, self.seed, self.repeat = shuffle_shards, seed, repeat
        self.epoch = 0
        consumers = self.world_size * self.num_workers
        if len(self.fields["cuts"]) < consumers:
            logger.warning("%s: %d shards for %d consumers (%d ranks x %d workers): some read nothing; write more "
                           "shards", shar_dir, len(self.fields["cuts"]), consumers, world_size, self.num_workers)

    @property
    def num_shards(self) -> int:
        return len(self.fields["cuts"])

    def shard_indices(self, epoch: int, worker_id: int) -> list[int]:
        """Indices of the shards consumer ``(rank, worker_id)`` reads in ``epoch``."""
        order = list(range(self.num_shards))
        if self.shuffle_shards:
            random.Random(self.seed + epoch).shuffle(order)  # same permutation on every consumer
        consumers = self.world_size * self.num_workers
        return order[self.rank * self.num_workers + worker_id::consumers]

    def _worker(self) -> int:
        if self.worker_id is not None:
            return self.worker_id
        import torch

        info = torch.utils.data.get_worker_info()
        return 0 if info is None else info.id

    def __iter__(self) -> Iterator[Cut]:
        from lhotse import CutSet

        worker = self._worker()
        if worker >= self.num_workers:
            raise ValueError(f"DataLoader worker {worker} but SharPartition was built for {self.num_workers} workers")
        while True:
            picked = self.shard_indices(self.epoch, worker)
            if picked:
                subset = {name: [paths[i] for i in picked] for name, paths in self.fields.items()}
                yield from CutSet.from_shar(fields=subset, shuffle_shards=False)
            self.epoch += 1
            if not self.repeat or not picked:
                return

    def __len__(self) -> int:
        raise TypeError("SharPartition is lazy: its length is unknown until iterated")


def make_shar_dataloader(shar_dir: str | Path, tokenizer: Tokenizer, sampler: SamplerConfig, rank: int = 0,
                         world_size: int = 1, num_workers: int = 0, seed: int = 0, repeat: bool = True,
                         augment: AugmentConfig | None = None, sample_rate: int = 16000,
                         on_bad_text: str = "error") -> torch.utils.data.DataLoader:
    """A training DataLoader over Shar shards: shards split by rank x worker, the sampler inside each worker.

    1-D bins are estimated here from the shards' metadata (no audio read) when ``sampler`` gives none, so every
    worker buckets the same way.
    """
    import torch
    from lhotse import CutSet
    from lhotse.dataset.iterable_dataset import IterableDatasetWrapper

    from speechkit.data.bins import estimate_bins_1d
    from speechkit.data.datasets import ASRDataset
    from speechkit.data.sampling import build_sampler

    cfg = dataclasses.replace(sampler, seed=seed)
    if not cfg.bucket_duration_bins and cfg.num_buckets > 1:
        meta = SharPartition(shar_dir, metadata_only=True, shuffle_shards=False)
        durations = [c.duration for _, c in zip(range(cfg.num_cuts_for_bins_estimate), meta, strict=False)]
        cfg.bucket_duration_bins = estimate_bins_1d(durations, min(cfg.num_buckets, len(durations)))
    cuts = CutSet(SharPartition(shar_dir, rank, world_size, num_workers, shuffle_shards=cfg.shuffle, seed=seed,
                                repeat=repeat))
    batch_sampler = build_sampler(cuts, cfg, rank=0, world_size=1, tokenizer=tokenizer)
    dataset = ASRDataset(tokenizer, sample_rate, augment, seed=seed + 1000 * rank, on_bad_text=on_bad_text)
    return torch.utils.data.DataLoader(IterableDatasetWrapper(dataset, batch_sampler), batch_size=None,
                                       num_workers=num_workers, persistent_workers=num_workers > 0)
