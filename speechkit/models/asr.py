"""The ASR LightningModule: a thin training wrapper around :class:`~speechkit.modules.asr.TransducerASR`.

It builds the network from an :class:`~speechkit.modules.asr.ASRModelConfig`, and only adds what training needs:
the steps (loss from :meth:`TransducerASR.forward`, greedy decoding -> ``val_wer``), AdamW with linear warmup and
cosine annealing (FastConformer's recipe), the data-fault counters, and :meth:`ASRLightningModule.export` to the
single-file model format. Everything about the network itself lives in :mod:`speechkit.modules.asr`.

Logged values: ``train_loss`` (and ``train_transducer_loss`` / ``train_ctc_loss`` for hybrid models), ``lr``,
``skipped_audio`` / ``skipped_text`` (cuts the data loader had to skip so far on this rank), ``val_wer`` (corpus-level
WER over the whole dev set, pooled across ranks).

Example:
    >>> module = ASRLightningModule(model_cfg, OptimConfig(lr=2e-3, warmup_steps=500), tokenizer)  # doctest: +SKIP
    >>> pl.Trainer(max_steps=10_000).fit(module, train_loader, dev_loader)  # doctest: +SKIP
    >>> module.export("exp/model.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from speechkit.config import to_yaml
from speechkit.decoding.greedy import GreedyOptions
from speechkit.metrics.wer import ErrorRate, word_error_rate
from speechkit.modules.asr import ASRModelConfig, TransducerASR
from speechkit.modules.export import save_model_file
from speechkit.text.tokenizer import Tokenizer

__all__ = ["ASRLightningModule", "OptimConfig", "adamw_cosine", "cosine_with_warmup", "make_adamw", "transcribe_batch"]


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine annealing to ``min_lr`` (NeMo's FastConformer settings by default).

    Attributes:
        lr: peak learning rate, reached after ``warmup_steps``.
        betas: AdamW betas.
        weight_decay: decoupled weight decay.
        warmup_steps: optimizer steps of linear warmup from 0.
        min_lr: learning rate at the end of the cosine.
        decay_steps: optimizer step at which the cosine reaches ``min_lr`` (0 = the trainer's ``max_steps``); the
            rate stays at ``min_lr`` after it.
    """

    lr: float = 5e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 1e-3
    warmup_steps: int = 15000
    min_lr: float = 5e-4
    decay_steps: int = 0


def cosine_with_warmup(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warmup, then cosine from ``lr`` to ``min_lr``.

    Example:
        >>> cfg = OptimConfig(lr=1.0, min_lr=0.0, warmup_steps=10)
        >>> [round(cosine_with_warmup(s, cfg, 110), 3) for s in (0, 9, 10, 60, 110, 500)]
        [0.1, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_adamw(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    """The recipes' AdamW (``cfg.lr``, betas, weight decay), fused where PyTorch has the fused kernel (float
    parameters on CPU or CUDA): it updates every tensor in one pass, on 2 CPU cores in a third of the time of the
    per-parameter loop."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), weight_decay=cfg.weight_decay,
                             fused=fused)


def adamw_cosine(module: pl.LightningModule, cfg: OptimConfig) -> dict[str, Any]:
    """What every recipe's ``configure_optimizers`` returns: AdamW over ``module``'s parameters with the
    :func:`cosine_with_warmup` schedule, stepped per optimizer step, ending at ``cfg.decay_steps`` or else at the
    trainer's ``max_steps``.

    Raises:
        ValueError: neither ``cfg.decay_steps`` nor ``trainer.max_steps`` is positive.
    """
    total = cfg.decay_steps or module.trainer.max_steps
    if total <= 0:
        raise ValueError("the cosine schedule needs optim.decay_steps > 0 or trainer.max_steps > 0")
    optimizer = make_adamw(module.parameters(), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_with_warmup(step, cfg, total) / cfg.lr)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def transcribe_batch(model: TransducerASR, tokenizer: Tokenizer, batch: dict[str, Any],
                     options: GreedyOptions | None = None) -> list[str]:
    """Greedy-decode a data-loader batch (:class:`~speechkit.data.datasets.ASRDataset`) to texts."""
    if batch["audio"].shape[0] == 0:
        return []
    device = next(model.parameters()).device
    hyps = model.decode(batch["audio"].to(device), batch["audio_lens"].to(device), options)
    return [tokenizer.decode(h.tokens) for h in hyps]


class ASRLightningModule(pl.LightningModule):
    """Trains a :class:`TransducerASR` (RNN-T / TDT / multi-blank, optionally hybrid with CTC).

    Args:
        model_cfg: the network; ``vocab_size`` must equal the tokenizer's.
        optim_cfg: optimizer and schedule.
        tokenizer: turns decoded ids into text for ``val_wer``; exported with the model.
        decoding: greedy decoding options for validation.
        seed: seed of the TDT ``omega`` draws.

    Attributes:
        model: the :class:`TransducerASR`.
        skipped_audio, skipped_text: cuts skipped by the data loader so far on this rank (from the batches).
    """

    def __init__(self, model_cfg: ASRModelConfig, optim_cfg: OptimConfig, tokenizer: Tokenizer,
                 decoding: GreedyOptions | None = None, seed: int = 0) -> None:
        super().__init__()
        if model_cfg.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"model vocab_size {model_cfg.vocab_size} != tokenizer vocab_size {tokenizer.vocab_size}")
        self.model_cfg = model_cfg
        self.optim_cfg = optim_cfg
        self.tokenizer = tokenizer
        self.decoding = decoding or GreedyOptions()
        self.model = TransducerASR.from_config(model_cfg)
        self.skipped_audio = 0
        self.skipped_text = 0
        self._omega_generator = torch.Generator().manual_seed(seed)
        self._val_counts = ErrorRate()

    def _count_skipped(self, batch: dict[str, Any]) -> None:
        self.skipped_audio += int(batch.get("num_skipped_audio", 0))
        self.skipped_text += int(batch.get("num_skipped_text", 0))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._count_skipped(batch)
        size = int(batch["audio"].shape[0])
        self.log_dict({"skipped_audio": float(self.skipped_audio), "skipped_text": float(self.skipped_text)},
                      batch_size=max(size, 1))
        if size == 0:
            # Every cut of the batch was unreadable: a zero loss that still touches every parameter keeps DDP ranks
            # in step (a skipped step on one rank would hang the others' gradient all-reduce).
            return sum(p.sum() for p in self.parameters()) * 0.0  # type: ignore[return-value]
        out = self.model(batch["audio"], batch["audio_lens"], batch["tokens"], batch["token_lens"],
                         generator=self._omega_generator)
        logs = {"train_loss": out.loss.detach(), "lr": self.optimizers().param_groups[0]["lr"]}
        if out.ctc_loss is not None:
            logs.update(train_transducer_loss=out.transducer_loss, train_ctc_loss=out.ctc_loss)
        self.log_dict(logs, prog_bar=True, batch_size=size)
        return out.loss

    def on_validation_epoch_start(self) -> None:
        self._val_counts = ErrorRate()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._count_skipped(batch)
        texts = transcribe_batch(self.model, self.tokenizer, batch, self.decoding)
        self._val_counts = self._val_counts + word_error_rate(batch["texts"], texts)

    def on_validation_epoch_end(self) -> None:
        counts = torch.tensor([self._val_counts.errors, self._val_counts.reference_length], dtype=torch.float64,
                              device=self.device)
        # WER is pooled over the whole dev set: sum edits and words over ranks, then divide once.
        counts = self.trainer.strategy.reduce(counts, reduce_op="sum") if self.trainer.world_size > 1 else counts
        # Every rank now holds the same value; sync_dist only tells Lightning so (averaging equal values).
        self.log("val_wer", float(counts[0] / counts[1].clamp(min=1)), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_cosine(self, self.optim_cfg)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint then carries what rebuilds the network and reads its ids, like an exported file does.
        checkpoint["speechkit"] = {"model_config": to_yaml(self.model_cfg), "tokenizer": self.tokenizer.to_bytes(),
                                   "normalizer": self.tokenizer.normalizer}

    def export(self, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """Write the single-file model (weights in ``dtype``, config YAML, tokenizer); load it with
        :meth:`TransducerASR.from_model_file`."""
        return save_model_file(path, self.model, to_yaml(self.model_cfg), self.tokenizer, kind="asr", dtype=dtype)
