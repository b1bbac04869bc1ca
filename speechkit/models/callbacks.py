"""Lightning callbacks shared by the recipes.

:class:`SamplerResume` puts the training sampler's position in every Lightning checkpoint, so that ``resume=last``
continues the interrupted epoch with the very batches an uninterrupted run would have drawn, instead of starting the
epoch over (which would train twice on its first batches and never on the rest).

:class:`KeepCheckpoints` keeps the newest few periodic checkpoints as ``step=<N>.ckpt``, for exporting their mean
weights (:func:`speechkit.models.recipe.load_averaged_checkpoint`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

__all__ = ["KeepCheckpoints", "SamplerResume"]

KEPT_NAME = re.compile(r"^step=(\d+)\.ckpt$")


class KeepCheckpoints(pl.Callback):
    """Every ``every_n_steps`` optimizer steps, saves a full checkpoint as ``folder/step=<N>.ckpt`` and deletes the
    oldest such files beyond the newest ``keep``.

    Lightning's own ``ModelCheckpoint(monitor="step")`` would do this, but with step-based validation it defers a save
    that falls on the last batch of an epoch to a validation that never comes, and so loses checkpoints. The folder
    is scanned for older files, so the count holds across resumed runs.

    Args:
        folder: where the checkpoints go (the recipes' ``exp_dir/checkpoints``).
        every_n_steps: save period in optimizer steps.
        keep: how many of the newest to keep (>= 1).
    """

    def __init__(self, folder: str | Path, every_n_steps: int, keep: int) -> None:
        if every_n_steps < 1 or keep < 1:
            raise ValueError(f"KeepCheckpoints: every_n_steps={every_n_steps} and keep={keep} must be >= 1")
        self.folder = Path(folder)
        self.every_n_steps = every_n_steps
        self.keep = keep
        self._saved_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        # With gradient accumulation several batches end at the same step: save once.
        if step == 0 or step % self.every_n_steps or step == self._saved_step:
            return
        self._saved_step = step
        trainer.save_checkpoint(self.folder / f"step={step}.ckpt")  # every rank calls it; rank 0 writes
        if trainer.is_global_zero:
            kept = sorted((int(m.group(1)), p) for p in self.folder.glob("step=*.ckpt")
                          if (m := KEPT_NAME.match(p.name)))
            for _, old in kept[: max(0, len(kept) - self.keep)]:
                old.unlink()


class SamplerResume(pl.Callback):
    """Saves ``{"epoch", "batches"}`` (training batches used in the current epoch) in checkpoints and, on resume,
    tells the sampler to skip that many batches of that epoch.

    Args:
        sampler: the training loader's sampler; it needs ``skip_batches(n)``
            (:class:`speechkit.data.sampling.BucketingSampler`). Loaders whose sampling happens inside the workers
            (Lhotse Shar) have none in the main process: pass ``None`` and resuming restarts the epoch, as before.
    """

    def __init__(self, sampler: Any | None = None) -> None:
        self.sampler: Any | None = None
        self.attach(sampler)
        self.epoch = 0
        self.batches = 0

    def attach(self, sampler: Any | None) -> None:
        """Set the sampler (before ``trainer.fit``: a recipe builds it once the trainer knows its rank)."""
        self.sampler = sampler if hasattr(sampler, "skip_batches") else None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            self.epoch, self.batches = trainer.current_epoch, 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # Counted on start: a checkpoint written at the end of this batch already includes it.
        self.batches += 1

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epoch = int(state_dict.get("epoch", 0))
        self.batches = int(state_dict.get("batches", 0))
        if self.sampler is not None and self.batches:
            # Lightning may build the epoch's iterator before it calls set_epoch on a mid-epoch restart, so the
            # epoch (the sampler's shuffle seed) is set here too.
            self.sampler.set_epoch(self.epoch)
            self.sampler.skip_batches(self.batches)
