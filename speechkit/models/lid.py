"""The spoken language ID LightningModule: trains a :class:`~speechkit.modules.titanet.TitaNet` classifier.

Batches come from :class:`speechkit.data.lid.LIDCollator` (random 1-20 s crops in training, whole utterances in
validation). In training, SpecAugment masks the log-mel features between the front end and the encoder (a forward
pre-hook on the first encoder block, so the network's own forward pass is the one used everywhere). Loss
(:class:`LossConfig`): additive angular margin softmax on the cosines of an ``angular`` network (TitaNet's speaker
setting: scale 30, margin 0.2), or cross-entropy (on ``scale * cosine`` for an angular network, on the plain logits
otherwise; NeMo's TitaNet-LID setting). Logged: ``train_loss``, ``train_acc`` (argmax of the un-margined scores),
``lr``, ``val_loss``, ``val_acc``.

The exported model file (kind ``"lid"``) holds the network's weights and this YAML config, which
:func:`speechkit.lid.load_model` reads without Lightning::

    labels: [de, en, ...]      # class order
    score_scale: 30.0          # probabilities = softmax(score_scale * cosines) for an angular network
    network: {...}             # TitaNetConfig

Example:
    >>> module = LIDLightningModule(TitaNetConfig(), ["de", "en", "fr"], OptimConfig(lr=1e-3))  # doctest: +SKIP
    >>> pl.Trainer(max_steps=3000).fit(module, train_loader, dev_loader)  # doctest: +SKIP
    >>> module.export("exp/lid/model.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from speechkit.audio.augment import FrequencyWarp, SpecAugment
from speechkit.losses.aam import aam_softmax_loss
from speechkit.models.asr import OptimConfig, adamw_cosine
from speechkit.modules.asr import SpecAugmentConfig
from speechkit.modules.export import save_model_file
from speechkit.modules.titanet import TitaNet, TitaNetConfig

__all__ = ["LIDLightningModule", "LossConfig", "OptimConfig", "SpecAugmentConfig", "lid_config_yaml"]

LOSS_KINDS = ("aam", "ce")


@dataclass
class LossConfig:
    """The training loss.

    Attributes:
        kind: ``"aam"`` (additive angular margin softmax; needs ``model.angular``) or ``"ce"`` (cross-entropy).
        margin: angular margin in radians (aam).
        scale: cosine scale (aam, and ce on an angular network); also the inference temperature.
        label_smoothing: as in cross-entropy.
    """

    kind: str = "aam"
    margin: float = 0.2
    scale: float = 30.0
    label_smoothing: float = 0.0


def lid_config_yaml(network: TitaNetConfig, labels: list[str], score_scale: float) -> str:
    """The YAML an LID model file carries (labels, score scale, network config)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create({"labels": list(labels), "score_scale": float(score_scale),
                                               "network": OmegaConf.structured(network)}))


class LIDLightningModule(pl.LightningModule):
    """Trains a TitaNet language classifier.

    Args:
        model_cfg: the network; its ``num_classes`` is set to ``len(labels)``.
        labels: language codes in class order.
        optim_cfg: AdamW with warmup and cosine decay (:class:`speechkit.models.asr.OptimConfig`).
        loss_cfg: the loss.
        spec_augment: feature masking (and ``freq_warp`` frequency warping) in training (``None`` = none).

    Raises:
        ValueError: fewer than two labels, an unknown loss kind, or ``aam`` on a non-angular network.
    """

    def __init__(self, model_cfg: TitaNetConfig, labels: list[str], optim_cfg: OptimConfig,
                 loss_cfg: LossConfig | None = None, spec_augment: SpecAugmentConfig | None = None) -> None:
        super().__init__()
        loss_cfg = loss_cfg or LossConfig()
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"labels must be at least two distinct language codes, got {labels}")
        if loss_cfg.kind not in LOSS_KINDS:
            raise ValueError(f"loss.kind must be one of {LOSS_KINDS}, got {loss_cfg.kind!r}")
        if loss_cfg.kind == "aam" and not model_cfg.angular:
            raise ValueError("loss.kind=aam needs a cosine classifier: set model.angular=true (or loss.kind=ce)")
        self.model_cfg = dataclasses.replace(model_cfg, num_classes=len(labels))
        self.labels = list(labels)
        self.optim_cfg = optim_cfg
        self.loss_cfg = loss_cfg
        self.model = TitaNet(self.model_cfg)
        self.freq_warp: FrequencyWarp | None = None
        self.spec_augment: SpecAugment | None = None
        if spec_augment is not None:
            self.freq_warp, self.spec_augment = spec_augment.build(self.model_cfg.features)
        if self.spec_augment is not None or self.freq_warp is not None:
            self.model.encoder[0].register_forward_pre_hook(self._mask_features)
        self._val: list[tuple[float, int, int]] = []

    def _mask_features(self, module: torch.nn.Module, args: tuple[torch.Tensor, torch.Tensor]) -> Any:
        # Both are the identity in eval mode, so validation and export see the plain features.
        feats, lens = args
        if self.freq_warp is not None:
            feats = self.freq_warp(feats, lens)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, lens)
        return feats, lens

    @property
    def score_scale(self) -> float:
        """Multiplier of the cosines before the softmax (1 for a plain linear classifier)."""
        return self.loss_cfg.scale if self.model_cfg.angular else 1.0

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of network outputs ``(B, C)`` against class ids ``(B,)``."""
        cfg = self.loss_cfg
        if cfg.kind == "aam":
            return aam_softmax_loss(logits, labels, cfg.margin, cfg.scale, label_smoothing=cfg.label_smoothing)
        return F.cross_entropy(logits.float() * self.score_scale, labels, label_smoothing=cfg.label_smoothing)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits, _ = self.model(batch["audio"], batch["audio_lens"])
        loss = self.loss(logits, batch["labels"])
        acc = (logits.argmax(-1) == batch["labels"]).float().mean()
        self.log_dict({"train_loss": loss.detach(), "train_acc": acc, "lr": self.optimizers().param_groups[0]["lr"]},
                      prog_bar=True, batch_size=int(batch["audio"].shape[0]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits, _ = self.model(batch["audio"], batch["audio_lens"])
        n = int(batch["audio"].shape[0])
        self._val.append((float(self.loss(logits, batch["labels"])) * n,
                          int((logits.argmax(-1) == batch["labels"]).sum()), n))

    def on_validation_epoch_end(self) -> None:
        total = sum(n for _, _, n in self._val)
        if not total:
            return
        self.log_dict({"val_loss": sum(v for v, _, _ in self._val) / total,
                       "val_acc": sum(c for _, c, _ in self._val) / total}, prog_bar=True)

    @torch.no_grad()
    def recalibrate_batchnorm(self, batches: Iterable[dict[str, Any]], max_batches: int = 50) -> int:
        """Recompute every BatchNorm's running statistics with the final weights ("precise BN").

        The running averages kept during training mix statistics of older weights; after few steps at a high
        learning rate they can lag so far that eval-mode outputs collapse (the smoke-test model: 100 % accuracy in
        train mode, chance in eval mode at step 30). This resets them and averages the batch statistics of up to
        ``max_batches`` batches with equal weights (``momentum=None``), in train mode with SpecAugment and
        frequency warping off and no gradient; momenta and modes are restored afterwards.

        Args:
            batches: training batches (``audio (B, N)``, ``audio_lens (B,)``), e.g. the training loader.
            max_batches: how many to use.

        Returns:
            The number of batches used.

        Raises:
            ValueError: ``batches`` yields nothing (the statistics are then left untouched).
        """
        net = self.model
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        taken = []
        for batch in batches:
            if len(taken) >= max_batches:
                break
            taken.append(batch)
        if not taken:
            raise ValueError("recalibrate_batchnorm got no batch")
        momenta, was_training = [m.momentum for m in norms], net.training
        augs = [a for a in (self.spec_augment, self.freq_warp) if a is not None]
        aug_modes = [a.training for a in augs]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        for a in augs:
            a.eval()
        net.train()
        try:
            for batch in taken:
                net(batch["audio"].to(self.device), batch["audio_lens"].to(self.device))
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
            net.train(was_training)
            for a, mode in zip(augs, aug_modes, strict=True):
                a.train(mode)
        return len(taken)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_cosine(self, self.optim_cfg)

    def config_yaml(self) -> str:
        """The YAML stored in the model file (see the module docstring)."""
        return lid_config_yaml(self.model_cfg, self.labels, self.score_scale)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["speechkit"] = {"model_config": self.config_yaml(), "labels": list(self.labels)}

    def export(self, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """Write the one-file model (kind ``"lid"``; float16 by default, which halves the bundled size)."""
        return save_model_file(path, self.model, self.config_yaml(), None, kind="lid", dtype=dtype)
