"""What every training recipe (``recipes/<task>/<model>/train.py``) shares: the command line, the trainer section of
the config, the Lightning trainer with its checkpoints and logs, and reading a checkpoint back.

A recipe keeps what is its own (the config schema, ``build_model``, the data loaders, the evaluation) and gets the
rest from here, so that the three recipes resume, checkpoint and log alike:

- :func:`parse_recipe_args`: ``--config a.yaml [--config b.yaml] key=value ...`` -> the typed config, with every key
  checked against the recipe's schema and ``mode`` one of :data:`MODES`.
- :class:`TrainerConfig`: the ``trainer.*`` keys every recipe has (a recipe with more subclasses it).
- :func:`build_trainer`: the ``pl.Trainer`` that writes ``exp_dir/checkpoints/last.ckpt`` every
  ``trainer.checkpoint_every_n_steps`` steps (for ``resume=last``), the best checkpoint on a validation metric
  (``best-{step}-{<metric>:.4f}.ckpt``) and CSV logs under ``exp_dir/logs/version_<n>/``.
- :func:`resolve_checkpoint` / :func:`load_checkpoint`: ``resume`` (a path, or ``"last"``) -> the checkpoint file,
  and its weights for ``mode=export``.
- :func:`load_averaged_checkpoint`: the mean weights of the last N checkpoints up to ``resume`` (icefall's
  ``--avg``, NeMo's checkpoint averaging); ``trainer.keep_checkpoints`` keeps them as ``step=<N>.ckpt``.

Lightning checkpoints are only for resuming training; the model a recipe exports is one plain file that loads
without Lightning.

Example (the skeleton of a recipe's ``main``)::

    cfg = parse_recipe_args(TrainConfig, argv, "Train a thing")
    export_path = prepare_run(cfg)  # seeded; exp_dir/model.safetensors unless export_path is set
    if cfg.mode == "train":
        trainer = build_trainer(cfg.trainer, cfg.exp_dir, monitor="val_acc", mode="max")
        trainer.fit(module, train_loader, dev_loader, ckpt_path=resolve_checkpoint(cfg.exp_dir, cfg.resume))
    elif cfg.mode == "export":
        ckpt = load_checkpoint(cfg.exp_dir, cfg.resume)  # resume unset: last.ckpt
        ckpt.restore(build_model(cfg)).export(export_path)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from speechkit.config import ConfigError, load_config
from speechkit.models.callbacks import KEPT_NAME, KeepCheckpoints

__all__ = ["MODES", "Checkpoint", "RecipeConfig", "TrainerConfig", "average_checkpoints", "build_trainer",
           "kept_checkpoints", "load_averaged_checkpoint", "load_checkpoint", "load_recipe_script", "parse_recipe_args",
           "prepare_run", "resolve_checkpoint", "resolve_export_path"]

MODES = ("train", "export", "evaluate")
"""What a recipe's ``mode`` key may say: train (then export and evaluate), export a checkpoint, evaluate a model file."""


def load_recipe_script(path: str | Path, name: str) -> ModuleType:
    """Import a recipe script (``recipes/<task>/<model>/train.py``, which is not in a package) as module ``name``,
    for tests and benchmarks that call its functions. The module is registered in ``sys.modules`` first, because
    dataclasses resolve string annotations through it.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class RecipeConfig(Protocol):
    """The top-level keys every recipe's ``TrainConfig`` has (besides its own ``data``, ``model``, ``optim`` ...)."""

    exp_dir: str  # checkpoints/, logs/, config.yaml and the exported model go here
    seed: int
    resume: str  # a checkpoint path, or "last" = exp_dir/checkpoints/last.ckpt
    export_path: str  # empty: exp_dir/model.safetensors
    mode: str  # one of MODES


C = TypeVar("C", bound=RecipeConfig)
M = TypeVar("M", bound=torch.nn.Module)


@dataclass
class TrainerConfig:
    """The ``trainer.*`` keys of every recipe (a recipe that needs more subclasses this dataclass).

    Attributes:
        max_steps: optimizer steps to train (training is step-based; epochs run on as needed).
        val_check_interval: training batches between validations, counted across epochs.
        checkpoint_every_n_steps: how often ``checkpoints/last.ckpt`` (what ``resume=last`` reads) is rewritten.
        keep_checkpoints: also keep the newest this many of those checkpoints as ``checkpoints/step=<N>.ckpt``, for
            exporting their mean weights (:func:`load_averaged_checkpoint`); 0 keeps none.
        devices: devices (processes with DDP) to train on.
        accelerator: Lightning accelerator: ``"auto"``, ``"cpu"``, ``"gpu"`` ...
        precision: Lightning precision: ``"32-true"``; ``"bf16-mixed"`` on GPUs that have it.
        gradient_clip_val: gradient norm clipping; 0 turns clipping off.
        log_every_n_steps: training steps between rows of the CSV log.
        num_workers: DataLoader worker processes.
    """

    max_steps: int = 3000
    val_check_interval: int = 500
    checkpoint_every_n_steps: int = 250
    keep_checkpoints: int = 0
    devices: int = 1
    accelerator: str = "auto"
    precision: str = "32-true"
    gradient_clip_val: float = 1.0
    log_every_n_steps: int = 25
    num_workers: int = 0


def parse_recipe_args(schema: type[C], argv: Sequence[str] | None, description: str) -> C:
    """A recipe's command line -> its typed config.

    ``--config`` YAML files (repeatable, merged left to right) and then ``key=value`` overrides are merged onto the
    schema's defaults with :func:`speechkit.config.load_config`.

    Args:
        schema: the recipe's ``TrainConfig`` dataclass (it has the :class:`RecipeConfig` keys).
        argv: the arguments after the program name; None reads ``sys.argv``.
        description: the ``--help`` text.

    Returns:
        An instance of ``schema``.

    Raises:
        ConfigError: an unknown key (the message names it and the keys known beside it), a value of the wrong type,
            an unreadable YAML file, or a ``mode`` not in :data:`MODES`.
        SystemExit: argparse's own errors and ``--help``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", action="append", default=[], help="YAML file(s), merged left to right")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_steps=100")
    args = parser.parse_args(argv)
    cfg = load_config(schema, args.config, args.overrides)
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode!r}: choose train, export or evaluate")
    return cfg


def resolve_export_path(cfg: RecipeConfig) -> Path:
    """Where the recipe writes (``mode=train|export``) or reads (``mode=evaluate``) the model file: ``export_path``,
    or ``exp_dir/model.safetensors`` when that is empty."""
    return Path(cfg.export_path or Path(cfg.exp_dir) / "model.safetensors")


def prepare_run(cfg: RecipeConfig) -> Path:
    """Seed Python, NumPy, torch and the DataLoader workers with ``cfg.seed``; returns :func:`resolve_export_path`.

    Raises:
        ConfigError: a training run whose ``average`` (the recipes' checkpoint averaging at export) asks for more
            checkpoints than ``trainer.keep_checkpoints`` keeps; caught here, before hours of training.
    """
    average = getattr(cfg, "average", 0)
    keep = getattr(getattr(cfg, "trainer", None), "keep_checkpoints", 0)
    if cfg.mode == "train" and average > 1 and keep < average:
        raise ConfigError(f"average={average} needs trainer.keep_checkpoints >= {average} (it is {keep}): the "
                          "checkpoints to average are kept ones")
    pl.seed_everything(cfg.seed, workers=True)
    return resolve_export_path(cfg)


def resolve_checkpoint(exp_dir: str | Path, resume: str, default: str = "") -> Path | None:
    """The Lightning checkpoint a ``resume`` value names.

    Args:
        exp_dir: the experiment folder; ``"last"`` means ``exp_dir/checkpoints/last.ckpt``.
        resume: a checkpoint path, ``"last"``, or empty.
        default: used when ``resume`` is empty (``"last"`` for ``mode=export``; empty: start from scratch).

    Returns:
        The checkpoint file, or None when both ``resume`` and ``default`` are empty.

    Raises:
        FileNotFoundError: no file at the resolved path (the message names ``resume`` and the path).
    """
    resume = resume or default
    if not resume:
        return None
    path = Path(exp_dir) / "checkpoints" / "last.ckpt" if resume == "last" else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume!r}: no checkpoint at {path}")
    return path


@dataclass
class Checkpoint:
    """A Lightning checkpoint read back for ``mode=export``.

    Attributes:
        path: the file it was read from.
        data: what ``torch.load`` returned (``state_dict``, ``global_step``, what the module's
            ``on_save_checkpoint`` added under ``"speechkit"``, ...).
    """

    path: Path
    data: dict[str, Any]

    @property
    def global_step(self) -> int:
        """The optimizer step the checkpoint was written at (0 when it does not say)."""
        return int(self.data.get("global_step", 0))

    def restore(self, module: M) -> M:
        """Load the checkpoint's weights into ``module`` (built from the same config) and return it.

        Raises:
            RuntimeError: the weights do not fit the module (missing or unexpected keys, other shapes).
        """
        module.load_state_dict(self.data["state_dict"])
        return module


def load_checkpoint(exp_dir: str | Path, resume: str) -> Checkpoint:
    """Read the checkpoint ``resume`` names (empty: ``exp_dir/checkpoints/last.ckpt``) onto the CPU.

    Raises:
        FileNotFoundError: no such checkpoint (see :func:`resolve_checkpoint`).
    """
    path = resolve_checkpoint(exp_dir, resume, default="last")
    assert path is not None  # the default is never empty
    # Our own checkpoints hold more than tensors (the config YAML, tokenizer bytes), so not weights_only.
    return Checkpoint(path, torch.load(path, map_location="cpu", weights_only=False))


def kept_checkpoints(exp_dir: str | Path) -> dict[int, Path]:
    """The ``exp_dir/checkpoints/step=<N>.ckpt`` files, by step (ascending)."""
    folder = Path(exp_dir) / "checkpoints"
    found = {int(m.group(1)): p for p in folder.glob("step=*.ckpt") if (m := KEPT_NAME.match(p.name))}
    return dict(sorted(found.items()))


def average_checkpoints(paths: Sequence[str | Path]) -> Checkpoint:
    """The mean of several checkpoints' weights, as one :class:`Checkpoint` that :meth:`Checkpoint.restore` loads.

    Floating-point tensors are averaged (accumulated in float64, then cast back); integer tensors (counters such as
    BatchNorm's ``num_batches_tracked``) and everything outside ``state_dict`` come from the last path given.

    Args:
        paths: the checkpoints, the newest last.

    Raises:
        ValueError: no paths, or checkpoints whose tensors differ in names or shapes (the message names the files).
    """
    if not paths:
        raise ValueError("average_checkpoints: no checkpoints given")
    paths = [Path(p) for p in paths]
    last = torch.load(paths[-1], map_location="cpu", weights_only=False)
    reference: dict[str, torch.Tensor] = last["state_dict"]
    sums = {k: v.to(torch.float64) for k, v in reference.items() if v.is_floating_point()}
    for path in paths[:-1]:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        if state.keys() != reference.keys():
            diff = sorted(set(state) ^ set(reference))
            raise ValueError(f"{path} and {paths[-1]} hold different tensors ({', '.join(diff[:5])} ...)")
        for k, total in sums.items():
            if state[k].shape != total.shape:
                raise ValueError(f"{path}: {k} has shape {tuple(state[k].shape)}, {paths[-1]} {tuple(total.shape)}")
            total += state[k].to(torch.float64)
    averaged = {k: (sums[k] / len(paths)).to(v.dtype) if k in sums else v for k, v in reference.items()}
    return Checkpoint(paths[-1], {**last, "state_dict": averaged, "averaged_from": [str(p) for p in paths]})


def load_averaged_checkpoint(exp_dir: str | Path, resume: str, n: int) -> Checkpoint:
    """The mean weights of the ``n`` newest checkpoints up to the one ``resume`` names (empty: ``last.ckpt``).

    The candidates are that checkpoint and the ``step=<N>.ckpt`` files ``trainer.keep_checkpoints`` kept at earlier
    steps; ``n`` <= 1 reads the checkpoint alone (:func:`load_checkpoint`).

    Raises:
        FileNotFoundError: no such checkpoint, or fewer than ``n`` candidates (the message lists the steps found).
    """
    if n <= 1:
        return load_checkpoint(exp_dir, resume)
    end = load_checkpoint(exp_dir, resume)
    candidates = {step: p for step, p in kept_checkpoints(exp_dir).items() if step < end.global_step}
    steps = sorted(candidates)[-(n - 1):]
    if len(steps) < n - 1:
        raise FileNotFoundError(
            f"averaging {n} checkpoints needs {n - 1} kept before step {end.global_step} ({end.path}), but "
            f"{Path(exp_dir) / 'checkpoints'} holds step=<N>.ckpt files for steps {sorted(candidates) or 'none'}: "
            f"train with trainer.keep_checkpoints >= {n}")
    return average_checkpoints([*(candidates[s] for s in steps), end.path])


def build_trainer(cfg: TrainerConfig, exp_dir: str | Path, monitor: str, mode: str,
                  callbacks: Sequence[pl.Callback] = (), **trainer_kwargs: Any) -> pl.Trainer:
    """The recipes' ``pl.Trainer``: step-based, with ``last.ckpt`` for resuming, the best checkpoint and CSV logs.

    Writes, under ``exp_dir``: ``checkpoints/last.ckpt`` every ``cfg.checkpoint_every_n_steps`` steps and at the
    end, ``checkpoints/best-{step}-{<monitor>:.4f}.ckpt`` (the one best validation value so far), the newest
    ``cfg.keep_checkpoints`` periodic checkpoints as ``checkpoints/step=<N>.ckpt``, and
    ``logs/version_<n>/metrics.csv`` (a new version each run, resumed or not).

    Args:
        cfg: the recipe's trainer section.
        exp_dir: the experiment folder.
        monitor: the logged validation metric that picks the best checkpoint, e.g. ``"val_wer"``.
        mode: ``"min"`` or ``"max"``: whether a lower or a higher ``monitor`` is better.
        callbacks: more callbacks, run after the two checkpoint callbacks (e.g.
            :class:`speechkit.models.callbacks.SamplerResume`).
        **trainer_kwargs: further ``pl.Trainer`` arguments (e.g. ``accumulate_grad_batches``); they take precedence
            over the ones set here.

    Returns:
        The trainer; ``trainer.global_rank`` and ``trainer.world_size`` are known before ``fit``.

    Raises:
        ValueError: ``mode`` is neither ``"min"`` nor ``"max"``, ``monitor`` is empty, or ``keep_checkpoints`` < 0.
    """
    if cfg.keep_checkpoints < 0:
        raise ValueError(f"trainer.keep_checkpoints={cfg.keep_checkpoints}: must be >= 0")
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r}: choose 'min' (lower {monitor} is better) or 'max'")
    if not monitor:
        raise ValueError("monitor: name the validation metric that picks the best checkpoint, e.g. 'val_wer'")
    exp = Path(exp_dir)
    checkpoints = [
        ModelCheckpoint(dirpath=exp / "checkpoints", every_n_train_steps=cfg.checkpoint_every_n_steps, save_top_k=0,
                        save_last=True),
        ModelCheckpoint(dirpath=exp / "checkpoints", filename=f"best-{{step}}-{{{monitor}:.4f}}", monitor=monitor,
                        mode=mode, save_top_k=1),
    ]
    # After the recipe's callbacks, so that what they save (the sampler's position) is already up to date.
    keep = [KeepCheckpoints(exp / "checkpoints", cfg.checkpoint_every_n_steps, cfg.keep_checkpoints)
            ] if cfg.keep_checkpoints else []
    kwargs: dict[str, Any] = dict(
        max_steps=cfg.max_steps, val_check_interval=cfg.val_check_interval, check_val_every_n_epoch=None,
        devices=cfg.devices, accelerator=cfg.accelerator, precision=cfg.precision,
        gradient_clip_val=cfg.gradient_clip_val or None, log_every_n_steps=cfg.log_every_n_steps,
        callbacks=[*checkpoints, *callbacks, *keep], logger=CSVLogger(exp, name="logs"), default_root_dir=exp,
        # A progress bar only where someone watches; in logs it is thousands of carriage returns.
        enable_progress_bar=sys.stderr.isatty(), num_sanity_val_steps=0,
    )
    return pl.Trainer(**(kwargs | trainer_kwargs))
