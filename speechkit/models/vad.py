"""The VAD LightningModule: trains a frame-level :class:`~speechkit.modules.marblenet.MarbleNet`.

Loss: cross-entropy over the valid frames (labels ``-100`` are padding). Logged values: ``train_loss``, ``lr``,
``val_loss``, ``val_auroc`` (frame AUROC over the whole dev set), ``val_der`` (frame detection error rate at
probability 0.5), ``val_f1``. :meth:`VADLightningModule.export` writes the one-file model (kind ``"vad"``) that
:func:`speechkit.vad.load_model` reads without Lightning.

Example:
    >>> module = VADLightningModule(MarbleNetConfig(), OptimConfig(lr=1e-3, warmup_steps=100))  # doctest: +SKIP
    >>> pl.Trainer(max_steps=5000).fit(module, train_loader, dev_loader)  # doctest: +SKIP
    >>> module.export("exp/vad/model.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812

from speechkit.config import to_yaml
from speechkit.metrics.detection import detection_counts, frame_auroc
from speechkit.models.asr import OptimConfig, adamw_cosine
from speechkit.modules.export import save_model_file
from speechkit.modules.marblenet import MarbleNet, MarbleNetConfig

__all__ = ["OptimConfig", "VADLightningModule", "frame_loss"]


def frame_loss(logits: torch.Tensor, lens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over valid, labelled frames.

    Args:
        logits: ``(B, T, C)``.
        lens: valid output frames ``(B,)``.
        labels: ``(B, T_l)`` class ids, ``-100`` where unlabelled; cut or padded to ``T``.
    """
    t = logits.shape[1]
    labels = labels[:, :t] if labels.shape[1] >= t else F.pad(labels, (0, t - labels.shape[1]), value=-100)
    valid = torch.arange(t, device=lens.device)[None, :] < lens[:, None]
    labels = labels.masked_fill(~valid, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)


class VADLightningModule(pl.LightningModule):
    """Trains a frame-mode :class:`MarbleNet`.

    Args:
        model_cfg: the network (``mode="frame"``).
        optim_cfg: AdamW with warmup and cosine decay (:class:`speechkit.models.asr.OptimConfig`).

    Raises:
        ValueError: a segment-mode config.
    """

    def __init__(self, model_cfg: MarbleNetConfig, optim_cfg: OptimConfig) -> None:
        super().__init__()
        if model_cfg.mode != "frame":
            raise ValueError("VADLightningModule trains frame-mode MarbleNets (model.mode=frame)")
        self.model_cfg = model_cfg
        self.optim_cfg = optim_cfg
        self.model = MarbleNet(model_cfg)
        self._val: list[tuple[np.ndarray, np.ndarray]] = []
        self._val_loss: list[float] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits, lens = self.model(batch["audio"], batch["audio_lens"])
        loss = frame_loss(logits, lens, batch["labels"])
        self.log_dict({"train_loss": loss.detach(), "lr": self.optimizers().param_groups[0]["lr"]}, prog_bar=True,
                      batch_size=int(batch["audio"].shape[0]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val, self._val_loss = [], []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits, lens = self.model(batch["audio"], batch["audio_lens"])
        self._val_loss.append(float(frame_loss(logits, lens, batch["labels"])))
        probs = torch.softmax(logits.float(), -1)[..., 1].cpu().numpy()
        labels = batch["labels"].cpu().numpy()
        for k, n in enumerate(lens.tolist()):
            y = labels[k, :n]
            keep = y >= 0
            self._val.append((probs[k, : y.shape[0]][keep], y[keep]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        probs = np.concatenate([p for p, _ in self._val])
        labels = np.concatenate([y for _, y in self._val])
        counts = detection_counts(labels, (probs > 0.5).astype(np.int64))
        logs = {"val_loss": float(np.mean(self._val_loss)), "val_der": counts.detection_error_rate,
                "val_f1": counts.f1}
        if 0 < labels.sum() < labels.shape[0]:
            logs["val_auroc"] = frame_auroc(probs, labels)
        self.log_dict(logs, prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_cosine(self, self.optim_cfg)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["speechkit"] = {"model_config": to_yaml(self.model_cfg)}

    def export(self, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write the one-file model (kind ``"vad"``; float32 by default: the network is 91 k parameters)."""
        return save_model_file(path, self.model, to_yaml(self.model_cfg), None, kind="vad", dtype=dtype)
