"""Train a MarbleNet frame VAD (20 ms frames) on frame-labelled manifests, export it, report dev/test metrics.

Usage (from the repository root; see README.md for the whole pipeline)::

    speechkit prepare vad --speech data/synth_en/train.json --out-dir data/vad --hours 5
    python recipes/vad/marblenet/train.py --config recipes/vad/marblenet/conf/marblenet.yaml \
        data.train=[data/vad/train.json] data.dev=[data/vad/dev.json] data.test=[data/vad/test.json] exp_dir=exp/vad
    ... exp_dir=exp/vad resume=last       # continue from exp/vad/checkpoints/last.ckpt
    ... exp_dir=exp/vad mode=export       # checkpoint (resume=..., default last) -> model file
    ... exp_dir=exp/vad mode=evaluate     # metrics of the exported model file on dev and test

``mode=train`` trains (Lightning: ``last.ckpt`` for resuming, the best ``val_auroc`` checkpoint, CSV logs under
``exp_dir/logs``), exports the model file (kind ``vad``, float32) to ``export_path`` (default
``exp_dir/model.safetensors``), reloads it *without* Lightning (:func:`speechkit.vad.load_model`), tunes the
onset/offset thresholds on dev (frame DetER) and prints frame AUROC, F1 and DetER on dev and test.
Every key of the YAML and of ``key=value`` overrides is checked against :class:`TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechkit.config import ConfigError, save_config
from speechkit.data.vad_mixtures import FrameVADDataset, collate_frames
from speechkit.metrics.detection import DetectionCounts, detection_counts, frame_auroc
from speechkit.models.recipe import (TrainerConfig, build_trainer, load_averaged_checkpoint, parse_recipe_args,
                                     prepare_run, resolve_checkpoint)
from speechkit.models.vad import OptimConfig, VADLightningModule
from speechkit.modules.marblenet import MarbleNetConfig
from speechkit.vad import load_model
from speechkit.vad.postprocess import PostProcessingOptions, segments_to_frames, speech_segments, tune_thresholds


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # frame-labelled NeMo manifests (speechkit prepare vad)
    dev: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    batch_size: int = 32
    crop_seconds: float = 4.0  # training items are random crops of this length


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: MarbleNetConfig = field(default_factory=MarbleNetConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=500, min_lr=1e-5,
                                                                   weight_decay=1e-3))
    postprocess: PostProcessingOptions = field(default_factory=PostProcessingOptions)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=5000))
    tune_pads: list[float] = field(default_factory=lambda: [0.0, 0.04, 0.1, 0.2])  # [] keeps postprocess' pads
    exp_dir: str = "exp/vad_marblenet"
    seed: int = 0
    resume: str = ""  # a checkpoint path, or "last"
    export_path: str = ""  # default exp_dir/model.safetensors
    average: int = 0  # export the mean weights of the last N checkpoints (trainer.keep_checkpoints >= N); 0/1: last
    mode: str = "train"  # train | export | evaluate


@dataclass
class SplitMetrics:
    auroc: float
    counts: DetectionCounts  # frames after post-processing with the tuned thresholds


@dataclass
class RunResult:
    model_path: Path
    metrics: dict[str, SplitMetrics]
    postprocess: PostProcessingOptions | None = None
    global_step: int = 0


def build_model(cfg: TrainConfig) -> VADLightningModule:
    return VADLightningModule(cfg.model, cfg.optim)


def build_loader(cfg: TrainConfig, paths: list[str], train: bool) -> torch.utils.data.DataLoader:
    ds = FrameVADDataset(paths, cfg.model.frame_shift, cfg.model.features.sample_rate,
                         cfg.data.crop_seconds if train else 0.0, seed=cfg.seed)
    return torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_size if train else 1, shuffle=train,  # type: ignore[arg-type]
                                       collate_fn=collate_frames, num_workers=cfg.trainer.num_workers)


def split_probs(model_path: Path, cfg: TrainConfig, paths: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frame probabilities of the exported model and the reference labels, per file."""
    vad = load_model(model_path)
    probs, labels = [], []
    for samples, y in FrameVADDataset(paths, cfg.model.frame_shift, cfg.model.features.sample_rate):
        probs.append(vad.frame_probs(samples, vad.sample_rate)[: y.shape[0]])
        labels.append(y)
    return probs, labels


def evaluate(model_path: Path, cfg: TrainConfig) -> tuple[dict[str, SplitMetrics], PostProcessingOptions]:
    """Tune onset/offset on dev, then AUROC and post-processed frame DetER/F1 on dev and test."""
    dev = split_probs(model_path, cfg, cfg.data.dev)
    opts = dataclasses.replace(cfg.postprocess, frame_shift=cfg.model.frame_shift)
    opts = tune_thresholds(*dev, opts, pads=cfg.tune_pads).options
    print(f"tuned on dev: onset {opts.onset} offset {opts.offset} pad {opts.pad_onset}")
    results = {}
    for split, paths in (("dev", cfg.data.dev), ("test", cfg.data.test)):
        if not paths:
            continue
        probs, labels = dev if split == "dev" else split_probs(model_path, cfg, paths)
        counts = DetectionCounts()
        for p, y in zip(probs, labels, strict=True):
            counts = counts + detection_counts(y, segments_to_frames(speech_segments(p, opts), y.shape[0],
                                                                     opts.frame_shift))
        flat_y = np.concatenate(labels)
        auroc = frame_auroc(np.concatenate(probs), flat_y) if 0 < flat_y.sum() < flat_y.size else float("nan")
        results[split] = SplitMetrics(auroc, counts)
        print(f"{split}: frame AUROC {auroc:.4f}; {counts}")
    summary = {k: {"auroc": v.auroc, "der": v.counts.detection_error_rate, "f1": v.counts.f1}
               for k, v in results.items()} | {"onset": opts.onset, "offset": opts.offset, "pad": opts.pad_onset}
    Path(cfg.exp_dir, "metrics.json").write_text(json.dumps(summary, indent=1))
    return results, opts


def train(cfg: TrainConfig, export_path: Path) -> int:
    exp = Path(cfg.exp_dir)
    module = build_model(cfg)
    save_config(cfg, exp / "config.yaml")
    trainer = build_trainer(cfg.trainer, exp, "val_auroc", "max")
    trainer.fit(module, build_loader(cfg, cfg.data.train, True), build_loader(cfg, cfg.data.dev, False),
                ckpt_path=resolve_checkpoint(exp, cfg.resume))
    if trainer.is_global_zero:
        if cfg.average > 1:
            load_averaged_checkpoint(exp, "last", cfg.average).restore(module)
        module.export(export_path)
    return trainer.global_step


def export_checkpoint(cfg: TrainConfig, export_path: Path) -> int:
    ckpt = load_averaged_checkpoint(cfg.exp_dir, cfg.resume, cfg.average)
    ckpt.restore(build_model(cfg)).export(export_path)
    return ckpt.global_step


def main(argv: Sequence[str] | None = None) -> RunResult:
    cfg = parse_recipe_args(TrainConfig, argv, __doc__.split("\n\n")[0])
    if not cfg.data.dev:
        raise ConfigError("data.dev needs at least one manifest (thresholds are tuned on it)")
    export_path = prepare_run(cfg)
    step = 0
    if cfg.mode == "train":
        if not cfg.data.train:
            raise ConfigError("data.train needs at least one manifest")
        step = train(cfg, export_path)
    elif cfg.mode == "export":
        step = export_checkpoint(cfg, export_path)
    if cfg.mode != "evaluate":
        print(f"exported {export_path} ({export_path.stat().st_size / 2**10:.0f} KiB) at step {step}")
    if cfg.mode == "export":
        return RunResult(export_path, {}, None, step)
    metrics, opts = evaluate(export_path, cfg)
    return RunResult(export_path, metrics, opts, step)


if __name__ == "__main__":
    main()
