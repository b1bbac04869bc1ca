"""Train a TitaNet spoken language identifier on NeMo manifests with a language field, export it, report accuracy.

Usage (from the repository root; see README.md for the whole pipeline)::

    speechkit prepare synth --langs en de fr es it pt nl pl ru ca sv uk --hours 12 --out-dir data/synth_lid
    python recipes/lid/titanet/train.py --config recipes/lid/titanet/conf/titanet_s.yaml
    ... resume=last          # continue from exp_dir/checkpoints/last.ckpt
    ... mode=export          # checkpoint (resume=..., default last) -> model file
    ... mode=evaluate        # accuracy of the exported model file on dev and test

``mode=train`` trains (Lightning: ``last.ckpt`` for resuming, the best ``val_acc`` checkpoint, CSV logs under
``exp_dir/logs``), exports the model file (kind ``lid``, ``export_dtype``) to ``export_path`` (default
``exp_dir/model.safetensors``), reloads it *without* Lightning (:func:`speechkit.lid.load_model`) and prints the
accuracy per language on dev and test (whole utterances), also written to ``exp_dir/metrics.json``.
The label map is the sorted set of languages of ``data.train``. ``data.exclude_engines`` holds engines out of
training entirely (``bench/lid.py`` then scores them as unseen voices).
Every key of the YAML and of ``key=value`` overrides is checked against :class:`TrainConfig`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from speechkit.config import ConfigError, save_config
from speechkit.data.datasets import AugmentConfig
from speechkit.data.lid import LIDCollator, LIDDataset
from speechkit.lid import load_model
from speechkit.models.lid import LIDLightningModule, LossConfig, OptimConfig, SpecAugmentConfig
from speechkit.models.recipe import (TrainerConfig, build_trainer, load_averaged_checkpoint, parse_recipe_args,
                                     prepare_run, resolve_checkpoint)
from speechkit.modules.titanet import TitaNetConfig

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # NeMo manifests with "lang" (speechkit prepare synth --langs)
    dev: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    batch_size: int = 32
    eval_batch_size: int = 16
    crop_range: list[float] = field(default_factory=lambda: [1.0, 20.0])  # seconds; one crop length per batch
    exclude_engines: list[str] = field(default_factory=list)  # engines held out of training (and dev)
    min_seconds: float = 0.0  # shorter utterances are left out (counted)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # speed perturbation and noise (training only)


@dataclass
class LIDTrainerConfig(TrainerConfig):
    """The shared ``trainer.*`` keys (:class:`speechkit.models.recipe.TrainerConfig`) and BatchNorm recalibration."""

    bn_recalibration_batches: int = 50  # "precise BN" on training batches before export (0 = off)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: TitaNetConfig = field(default_factory=TitaNetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=lambda: SpecAugmentConfig(3, 4, 5, 0.03))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, warmup_steps=300, min_lr=1e-5,
                                                                   weight_decay=1e-3))
    trainer: LIDTrainerConfig = field(default_factory=LIDTrainerConfig)
    exp_dir: str = "exp/lid_titanet"
    seed: int = 0
    resume: str = ""  # a checkpoint path, or "last"
    export_path: str = ""  # default exp_dir/model.safetensors
    average: int = 0  # export the mean weights of the last N checkpoints (trainer.keep_checkpoints >= N); 0/1: last
    export_dtype: str = "float16"
    mode: str = "train"  # train | export | evaluate


@dataclass
class SplitMetrics:
    accuracy: float
    utterances: int
    per_language: dict[str, float]  # accuracy per reference language
    skipped: dict[str, int]


@dataclass
class RunResult:
    model_path: Path
    metrics: dict[str, SplitMetrics]
    labels: list[str]
    global_step: int = 0


def build_model(cfg: TrainConfig, labels: list[str]) -> LIDLightningModule:
    return LIDLightningModule(cfg.model, labels, cfg.optim, cfg.loss, cfg.spec_augment)


def build_dataset(cfg: TrainConfig, paths: list[str], labels: list[str] | None) -> LIDDataset:
    exclude = {"engine": cfg.data.exclude_engines} if cfg.data.exclude_engines else None
    ds = LIDDataset(paths, labels, cfg.model.features.sample_rate, exclude=exclude, min_seconds=cfg.data.min_seconds)
    print(f"{', '.join(paths)}: {ds.report()}")
    return ds


def build_loader(cfg: TrainConfig, ds: LIDDataset, train: bool) -> torch.utils.data.DataLoader:
    collate = LIDCollator(cfg.data.crop_range if train else None, ds.sample_rate, seed=cfg.seed,
                          augment=cfg.data.augment if train else None)
    size = cfg.data.batch_size if train else cfg.data.eval_batch_size
    # A last training batch of one or two utterances gives BatchNorm (over pooled vectors) degenerate statistics:
    # drop it (the next epoch reshuffles, so no utterance is left out for good).
    return torch.utils.data.DataLoader(ds, batch_size=size, shuffle=train, collate_fn=collate,  # type: ignore[arg-type]
                                       num_workers=cfg.trainer.num_workers, drop_last=train and len(ds) >= size)


def evaluate(model_path: Path, cfg: TrainConfig) -> dict[str, SplitMetrics]:
    """Accuracy of the exported model on whole dev and test utterances (engines in exclude_engines left out)."""
    lid = load_model(model_path)
    results = {}
    for split, paths in (("dev", cfg.data.dev), ("test", cfg.data.test)):
        if not paths:
            continue
        ds = build_dataset(cfg, paths, lid.labels)
        refs = [e.lang for e in ds.entries]
        hyps = [r.language for r in lid.classify_batch([ds[i][0] for i in range(len(ds))], ds.sample_rate,
                                                       cfg.data.eval_batch_size)]
        total, right = Counter(refs), Counter(r for r, h in zip(refs, hyps, strict=True) if r == h)
        per_lang = {lang: right[lang] / total[lang] for lang in lid.labels if total[lang]}
        results[split] = SplitMetrics(sum(right.values()) / len(refs), len(refs), per_lang, dict(ds.skipped))
        print(f"{split}: accuracy {results[split].accuracy:.4f} on {len(refs)} utterances; per language: "
              + ", ".join(f"{k} {v:.3f}" for k, v in per_lang.items()))
    summary = {k: {"accuracy": v.accuracy, "utterances": v.utterances, "per_language": v.per_language,
                   "skipped": v.skipped} for k, v in results.items()}
    Path(cfg.exp_dir).mkdir(parents=True, exist_ok=True)
    Path(cfg.exp_dir, "metrics.json").write_text(json.dumps(summary, indent=1))
    return results


def train(cfg: TrainConfig, export_path: Path) -> tuple[int, list[str]]:
    exp = Path(cfg.exp_dir)
    train_ds = build_dataset(cfg, cfg.data.train, None)
    labels = train_ds.labels
    print(f"{len(labels)} languages: {train_ds.counts()}")
    module = build_model(cfg, labels)
    save_config(cfg, exp / "config.yaml")
    trainer = build_trainer(cfg.trainer, exp, "val_acc", "max")
    dev_loader = build_loader(cfg, build_dataset(cfg, cfg.data.dev, labels), False)
    trainer.fit(module, build_loader(cfg, train_ds, True), dev_loader, ckpt_path=resolve_checkpoint(exp, cfg.resume))
    if trainer.is_global_zero:
        if cfg.average > 1:
            load_averaged_checkpoint(exp, "last", cfg.average).restore(module)
        recalibrate(cfg, module, train_ds)
        module.export(export_path, _DTYPES[cfg.export_dtype])
    return trainer.global_step, labels


def recalibrate(cfg: TrainConfig, module: LIDLightningModule, train_ds: LIDDataset | None) -> None:
    """BatchNorm statistics of the final weights, from training batches (see LIDLightningModule)."""
    n = cfg.trainer.bn_recalibration_batches
    if n > 0 and train_ds is not None:
        used = module.recalibrate_batchnorm(build_loader(cfg, train_ds, True), n)
        print(f"BatchNorm statistics recomputed on {used} training batches")


def export_checkpoint(cfg: TrainConfig, export_path: Path) -> tuple[int, list[str]]:
    ckpt = load_averaged_checkpoint(cfg.exp_dir, cfg.resume, cfg.average)
    labels = ckpt.data.get("speechkit", {}).get("labels")
    if not labels:
        raise ValueError(f"{ckpt.path}: not a checkpoint of this recipe (no speechkit.labels)")
    module = ckpt.restore(build_model(cfg, labels))
    recalibrate(cfg, module, build_dataset(cfg, cfg.data.train, labels) if cfg.data.train else None)
    module.export(export_path, _DTYPES[cfg.export_dtype])
    return ckpt.global_step, labels


def main(argv: Sequence[str] | None = None) -> RunResult:
    cfg = parse_recipe_args(TrainConfig, argv, __doc__.split("\n\n")[0])
    if cfg.export_dtype not in _DTYPES:
        raise ConfigError(f"export_dtype={cfg.export_dtype!r}: choose one of {', '.join(_DTYPES)}")
    if cfg.mode == "train" and not (cfg.data.train and cfg.data.dev):
        raise ConfigError("data.train and data.dev need at least one manifest each")
    export_path = prepare_run(cfg)
    step, labels = 0, []
    if cfg.mode == "train":
        step, labels = train(cfg, export_path)
    elif cfg.mode == "export":
        step, labels = export_checkpoint(cfg, export_path)
    if cfg.mode != "evaluate":
        print(f"exported {export_path} ({export_path.stat().st_size / 2**20:.2f} MiB) at step {step}")
    if cfg.mode == "export":
        return RunResult(export_path, {}, labels, step)
    return RunResult(export_path, evaluate(export_path, cfg), labels or load_model(export_path).labels, step)


if __name__ == "__main__":
    main()
