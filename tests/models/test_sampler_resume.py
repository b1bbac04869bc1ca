"""Resuming a Lightning run from a mid-epoch checkpoint continues the epoch with the batches an uninterrupted run
draws (the SamplerResume callback + BucketingSampler.skip_batches), with DataLoader workers prefetching ahead."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision

from speechkit.data.sampling import SamplerConfig, build_sampler
from speechkit.models.callbacks import SamplerResume


def make_cuts(n: int = 120, seed: int = 0) -> CutSet:
    rng = np.random.default_rng(seed)
    cuts = []
    for i in range(n):
        d = float(rng.uniform(1.0, 12.0))
        c = dummy_cut(i, duration=d, supervisions=[dummy_supervision(i, duration=d, text="a b c")])
        cuts.append(c)
    return CutSet.from_cuts(cuts)


class CutIds(torch.utils.data.Dataset):
    """A batch is the list of its cut ids (no audio needed to test the order)."""

    def __getitem__(self, cuts: CutSet) -> list[str]:
        return [c.id for c in cuts]


class Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, tuple[str, ...]]] = []

    def training_step(self, batch: list[str], batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, tuple(batch)))
        return (self.w - 1.0).pow(2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def run(tmp, max_steps: int, ckpt: str | None, every: int, workers: int) -> Recorder:
    sampler = build_sampler(make_cuts(), SamplerConfig(max_duration=40.0, num_buckets=4, shuffle=True, seed=3))
    loader = torch.utils.data.DataLoader(CutIds(), sampler=sampler, batch_size=None, num_workers=workers,
                                         prefetch_factor=4 if workers else None)
    module = Recorder()
    callbacks = [SamplerResume(sampler),
                 pl.callbacks.ModelCheckpoint(dirpath=tmp, every_n_train_steps=every, save_top_k=-1,
                                              filename="{step}")]
    trainer = pl.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=callbacks, accelerator="cpu", devices=1, use_distributed_sampler=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, loader, ckpt_path=ckpt)
    return module


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_mid_epoch_continues_the_epoch(tmp_path, workers: int) -> None:
    full = run(tmp_path / "a", max_steps=40, ckpt=None, every=7, workers=workers).seen
    per_epoch = sum(1 for e, _ in full if e == 0)
    assert 7 < per_epoch < 40 - 7, "the test needs a checkpoint inside the first epoch and a second epoch"
    # Stop at step 7 (mid first epoch) and at step per_epoch + 7 (mid second epoch); resume each to the end.
    for stop in (7, per_epoch + 7 - (per_epoch + 7) % 7):
        ckpt = tmp_path / "a" / f"step={stop}.ckpt"
        assert ckpt.is_file()
        resumed = run(tmp_path / f"b{stop}", max_steps=40, ckpt=str(ckpt), every=1000, workers=workers).seen
        assert resumed == full[stop:], f"resumed at step {stop}: batches differ from the uninterrupted run"


def test_skip_batches_validates() -> None:
    sampler = build_sampler(make_cuts(20), SamplerConfig(max_duration=40.0, num_buckets=2))
    with pytest.raises(ValueError, match="n must be >= 0"):
        sampler.skip_batches(-1)
    sampler.skip_batches(1000)  # more than the epoch holds: the epoch is simply over (and a warning says so)
    assert list(sampler) == []
