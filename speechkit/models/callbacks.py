"""Lightning callbacks shared by the recipes.

:class:`SamplerResume` puts the training sampler's position in every Lightning checkpoint, so that ``resume=last``
continues the interrupted epoch with the very batches an uninterrupted run would have drawn, instead of starting the
epoch over (which would train twice on its first batches and never on the rest).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

__all__ = ["SamplerResume"]


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
