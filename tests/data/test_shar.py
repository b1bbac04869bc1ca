"""Shar shards: audio round trip, and rank x worker partitions that cover every cut exactly once per epoch."""

from __future__ import annotations

import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from lhotse import CutSet

from speechkit.data.manifests import manifest_to_cutset
from speechkit.data.sampling import SamplerConfig
from speechkit.data.shar import SharPartition, list_shards, make_shar_dataloader, write_shar
from speechkit.text.tokenizer import Tokenizer, TokenizerTrainConfig, train_tokenizer_from_manifests

TINY = Path(__file__).resolve().parents[2] / "manifests" / "tiny"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def shar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shar")
    write_shar(manifest_to_cutset(TINY / "train.json"), out, shard_size=1)  # 12 shards of 1 cut
    return out


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return train_tokenizer_from_manifests([TINY / "train.json"], tmp_path_factory.mktemp("tok"),
                                          TokenizerTrainConfig(vocab_size=40))


def test_roundtrip_keeps_audio(shar_dir: Path) -> None:
    fields = list_shards(shar_dir)
    assert len(fields["cuts"]) == len(fields["recording"]) == 12
    orig = {c.id: c for c in manifest_to_cutset(TINY / "train.json")}
    back = list(SharPartition(shar_dir, shuffle_shards=False))
    assert [c.id for c in back] == list(orig)
    for c in back[:3]:
        np.testing.assert_allclose(c.load_audio(), orig[c.id].load_audio(), atol=1e-4)


@pytest.mark.parametrize(("world_size", "num_workers"), [(1, 1), (2, 3), (4, 2), (3, 4)])
@pytest.mark.parametrize("epoch", [0, 1])
def test_partition_covers_all_without_duplicates(shar_dir: Path, world_size: int, num_workers: int,
                                                 epoch: int) -> None:
    all_ids = set(CutSet(SharPartition(shar_dir, metadata_only=True)).ids)
    seen: list[set[str]] = []
    for rank, worker in product(range(world_size), range(num_workers)):
        part = SharPartition(shar_dir, rank, world_size, num_workers, worker_id=worker, seed=5, metadata_only=True)
        part.epoch = epoch
        seen.append({c.id for c in part})
    union = set().union(*seen)
    assert union == all_ids
    assert sum(len(s) for s in seen) == len(all_ids)  # pairwise disjoint


def test_shard_order_changes_per_epoch(shar_dir: Path) -> None:
    part = SharPartition(shar_dir, 0, 2, 1, worker_id=0, seed=1, metadata_only=True)
    assert part.shard_indices(0, 0) != part.shard_indices(1, 0)


def test_repeat_loops_with_reshuffle(shar_dir: Path) -> None:
    part = SharPartition(shar_dir, 0, 4, 1, worker_id=0, seed=2, repeat=True, metadata_only=True)
    it = iter(part)
    first = [next(it).id for _ in range(3)]
    second = [next(it).id for _ in range(3)]
    assert len(set(first)) == 3 and len(set(second)) == 3


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shar_dataloader_ranks_and_workers(shar_dir: Path, tokenizer: Tokenizer, num_workers: int) -> None:
    cfg = SamplerConfig(max_duration=8.0, num_buckets=2, buffer_size=50)
    ids: list[str] = []
    for rank in range(2):
        loader = make_shar_dataloader(shar_dir, tokenizer, cfg, rank=rank, world_size=2, num_workers=num_workers,
                                      repeat=False)
        for batch in loader:
            assert batch["audio"].shape[0] == len(batch["cut_ids"])
            ids += batch["cut_ids"]
    assert sorted(ids) == sorted(c.id for c in manifest_to_cutset(TINY / "train.json"))


def test_recipe_switches_to_shar_with_data_shar_dir(shar_dir: Path, tokenizer: Tokenizer) -> None:
    import importlib.util

    from speechkit.config import load_config

    path = TINY.parents[1] / "recipes" / "asr" / "fastconformer_transducer" / "train.py"
    spec = importlib.util.spec_from_file_location("fastconformer_train_for_shar_test", path)
    assert spec is not None and spec.loader is not None
    recipe = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = recipe  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(recipe)
    cfg = load_config(recipe.TrainConfig, path.parent / "conf" / "tiny_tdt.yaml",
                      [f"data.shar_dir={shar_dir}", "data.max_duration=8.0", "data.num_buckets=2"])
    loader = recipe.build_loader(cfg, cfg.data.train, tokenizer, train=True)
    assert type(loader.dataset).__name__ == "IterableDatasetWrapper"
    it = iter(loader)
    ids = [i for _ in range(8) for i in next(it)["cut_ids"]]  # endless: more batches than one pass holds
    assert set(ids) <= {c.id for c in manifest_to_cutset(TINY / "train.json")}
    assert len(ids) > 12
    dev = recipe.build_loader(cfg, cfg.data.dev, tokenizer, train=False)
    assert type(dev.dataset).__name__ == "ASRDataset"
