"""The recipe scaffolding shared by recipes/{asr,vad,lid}/*/train.py (speechkit.models.recipe): the command line,
the trainer section, the trainer's checkpoints and logs, and resolving / reading checkpoints back."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from speechkit.config import ConfigError
from speechkit.models.callbacks import KeepCheckpoints, SamplerResume
from speechkit.models.recipe import (MODES, TrainerConfig, average_checkpoints, build_trainer, kept_checkpoints,
                                     load_averaged_checkpoint, load_checkpoint, parse_recipe_args, prepare_run,
                                     resolve_checkpoint, resolve_export_path)


@dataclass
class ExtraTrainerConfig(TrainerConfig):
    accumulate_grad_batches: int = 1


@dataclass
class DataSection:
    train: list[str] = field(default_factory=list)


@dataclass
class ToyConfig:
    data: DataSection = field(default_factory=DataSection)
    trainer: ExtraTrainerConfig = field(default_factory=ExtraTrainerConfig)
    exp_dir: str = "exp/toy"
    seed: int = 0
    resume: str = ""
    export_path: str = ""
    mode: str = "train"


class Toy(pl.LightningModule):
    """Fits y = 2x; logs ``val_err`` (lower is better), which falls as it learns."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = ((self.w * batch - 2 * batch) ** 2).mean()
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_err", (self.w - 2).abs().sum())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.linspace(0.5, 1.5, 8), batch_size=2)


# resolve_checkpoint / load_checkpoint


def test_resolve_checkpoint_empty_is_none_and_last_is_under_exp_dir(tmp_path: Path) -> None:
    assert resolve_checkpoint(tmp_path, "") is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert resolve_checkpoint(tmp_path, "last") == last
    assert resolve_checkpoint(tmp_path, "", default="last") == last
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"x")
    assert resolve_checkpoint(tmp_path, str(other), default="last") == other  # resume wins over the default


def test_resolve_checkpoint_errors_name_the_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"resume='last': no checkpoint at .*checkpoints/last\.ckpt"):
        resolve_checkpoint(tmp_path, "last")
    with pytest.raises(FileNotFoundError, match=r"resume='last': .*last\.ckpt"):
        resolve_checkpoint(tmp_path, "", default="last")
    missing = tmp_path / "nowhere" / "step=3.ckpt"
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at {missing}"):
        resolve_checkpoint(tmp_path, str(missing))


def test_load_checkpoint_restores_weights_and_step(tmp_path: Path) -> None:
    src = torch.nn.Linear(3, 2)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": src.state_dict(), "global_step": 7, "speechkit": {"labels": ["a"]}},
               tmp_path / "checkpoints" / "last.ckpt")
    ckpt = load_checkpoint(tmp_path, "")  # empty resume: last.ckpt
    assert ckpt.path == tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.global_step == 7 and ckpt.data["speechkit"]["labels"] == ["a"]
    dst = ckpt.restore(torch.nn.Linear(3, 2))
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, src.bias)
    with pytest.raises(RuntimeError, match="size mismatch"):
        ckpt.restore(torch.nn.Linear(4, 2))

    torch.save({"state_dict": {}}, tmp_path / "old.ckpt")
    assert load_checkpoint(tmp_path, str(tmp_path / "old.ckpt")).global_step == 0
    with pytest.raises(FileNotFoundError, match="gone.ckpt"):
        load_checkpoint(tmp_path, str(tmp_path / "gone.ckpt"))


# build_trainer


def test_build_trainer_has_the_configured_callbacks_and_logger(tmp_path: Path) -> None:
    cfg = TrainerConfig(max_steps=123, val_check_interval=7, checkpoint_every_n_steps=5, accelerator="cpu",
                        gradient_clip_val=0.5, log_every_n_steps=3)
    extra = SamplerResume()
    trainer = build_trainer(cfg, tmp_path, "val_wer", "min", callbacks=[extra], accumulate_grad_batches=4)
    assert trainer.max_steps == 123 and trainer.val_check_interval == 7 and trainer.check_val_every_n_epoch is None
    assert trainer.gradient_clip_val == 0.5 and trainer.log_every_n_steps == 3
    assert trainer.accumulate_grad_batches == 4  # extra keyword arguments reach pl.Trainer
    assert trainer.num_sanity_val_steps == 0

    checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(checkpoints) == 2
    last, best = checkpoints
    assert Path(last.dirpath) == tmp_path / "checkpoints" == Path(best.dirpath)
    assert last.save_last and last.save_top_k == 0 and last._every_n_train_steps == 5
    assert best.monitor == "val_wer" and best.mode == "min" and best.save_top_k == 1
    assert best.filename == "best-{step}-{val_wer:.4f}"
    assert extra in trainer.callbacks  # (Lightning itself moves checkpoint callbacks last)

    assert isinstance(trainer.logger, CSVLogger)
    assert Path(trainer.logger.log_dir) == tmp_path / "logs" / "version_0"
    assert Path(trainer.default_root_dir) == tmp_path


def test_build_trainer_zero_clip_turns_clipping_off_and_bad_mode_is_an_error(tmp_path: Path) -> None:
    trainer = build_trainer(TrainerConfig(gradient_clip_val=0.0, accelerator="cpu"), tmp_path, "val_acc", "max")
    assert trainer.gradient_clip_val is None
    with pytest.raises(ValueError, match="mode='maximum'"):
        build_trainer(TrainerConfig(accelerator="cpu"), tmp_path, "val_acc", "maximum")
    with pytest.raises(ValueError, match="monitor"):
        build_trainer(TrainerConfig(accelerator="cpu"), tmp_path, "", "max")


def test_trainer_writes_last_best_and_logs_and_resumes(tmp_path: Path) -> None:
    cfg = TrainerConfig(max_steps=6, val_check_interval=2, checkpoint_every_n_steps=2, accelerator="cpu",
                        log_every_n_steps=1)
    first = build_trainer(cfg, tmp_path, "val_err", "min", enable_model_summary=False)
    first.fit(Toy(), loader(), loader(), ckpt_path=resolve_checkpoint(tmp_path, ""))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6
    best = list((tmp_path / "checkpoints").glob("best-*.ckpt"))
    assert [p.name for p in best] == ["best-step=6-val_err=" + f"{first.callback_metrics['val_err']:.4f}.ckpt"]
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train_loss")]
    assert steps == list(range(6))

    # resume=last continues at step 6 and logs into a new version.
    cfg.max_steps = 8
    again = build_trainer(cfg, tmp_path, "val_err", "min", enable_model_summary=False)
    again.fit(Toy(), loader(), loader(), ckpt_path=resolve_checkpoint(tmp_path, "last"))
    assert again.global_step == 8
    with open(tmp_path / "logs" / "version_1" / "metrics.csv") as f:
        assert min(int(r["step"]) for r in csv.DictReader(f) if r.get("train_loss")) == 6


# keep_checkpoints / checkpoint averaging


def test_keep_checkpoints_keeps_the_newest_and_averaging_reads_them(tmp_path: Path) -> None:
    cfg = TrainerConfig(max_steps=8, val_check_interval=4, checkpoint_every_n_steps=2, keep_checkpoints=3,
                        accelerator="cpu", log_every_n_steps=1)
    trainer = build_trainer(cfg, tmp_path, "val_err", "min", enable_model_summary=False)
    kept = [c for c in trainer.callbacks if isinstance(c, KeepCheckpoints)]
    assert len(kept) == 1 and kept[0].keep == 3 and kept[0].every_n_steps == 2
    # 8 batches of 2 a loader epoch: 4 steps an epoch, so steps 4 and 8 end an epoch (Lightning's own monitored
    # ModelCheckpoint loses saves there when validation is step-based)
    trainer.fit(Toy(), loader(), loader())
    steps = kept_checkpoints(tmp_path)
    assert list(steps) == [4, 6, 8] and steps[8].name == "step=8.ckpt"  # step 2 was dropped, the newest 3 stay
    weights = {s: torch.load(p, map_location="cpu", weights_only=False)["state_dict"]["w"] for s, p in steps.items()}
    assert len({float(w) for w in weights.values()}) == 3  # the model moved between them

    # last.ckpt (step 8) and the kept ones before it
    two = load_averaged_checkpoint(tmp_path, "", 2)
    assert two.global_step == 8
    assert two.data["averaged_from"] == [str(steps[6]), str(tmp_path / "checkpoints" / "last.ckpt")]
    assert torch.allclose(two.data["state_dict"]["w"], (weights[6] + weights[8]) / 2)
    three = load_averaged_checkpoint(tmp_path, str(steps[8]), 3)
    assert torch.allclose(three.restore(Toy()).w.detach(), (weights[4] + weights[6] + weights[8]) / 3)
    # ending at an earlier checkpoint
    assert load_averaged_checkpoint(tmp_path, str(steps[6]), 2).data["averaged_from"] == [str(steps[4]),
                                                                                          str(steps[6])]
    single = load_averaged_checkpoint(tmp_path, "last", 1)
    assert "averaged_from" not in single.data and torch.equal(single.data["state_dict"]["w"], weights[8])
    with pytest.raises(FileNotFoundError, match=r"steps \[4, 6\].*keep_checkpoints >= 4"):
        load_averaged_checkpoint(tmp_path, "last", 4)
    with pytest.raises(ValueError, match="keep_checkpoints=-1"):
        build_trainer(TrainerConfig(keep_checkpoints=-1, accelerator="cpu"), tmp_path, "val_err", "min")


def test_average_checkpoints_means_floats_keeps_the_newest_integers(tmp_path: Path) -> None:
    paths = []
    for i, (w, n) in enumerate([(1.0, 3), (2.0, 5), (6.0, 9)]):
        paths.append(tmp_path / f"{i}.ckpt")
        torch.save({"global_step": 10 * i, "state_dict": {"w": torch.full((2,), w, dtype=torch.float16),
                                                          "count": torch.tensor(n)}}, paths[-1])
    avg = average_checkpoints(paths)
    assert avg.global_step == 20 and avg.path == paths[-1]
    assert avg.data["state_dict"]["w"].dtype == torch.float16
    assert torch.equal(avg.data["state_dict"]["w"], torch.full((2,), 3.0, dtype=torch.float16))
    assert int(avg.data["state_dict"]["count"]) == 9
    torch.save({"state_dict": {"w": torch.zeros(3), "count": torch.tensor(1)}}, tmp_path / "shape.ckpt")
    with pytest.raises(ValueError, match=r"shape.ckpt: w has shape \(3,\)"):
        average_checkpoints([tmp_path / "shape.ckpt", paths[0]])
    torch.save({"state_dict": {"v": torch.zeros(2), "count": torch.tensor(1)}}, tmp_path / "names.ckpt")
    with pytest.raises(ValueError, match="names.ckpt and .*hold different tensors"):
        average_checkpoints([tmp_path / "names.ckpt", paths[0]])
    with pytest.raises(ValueError, match="no checkpoints"):
        average_checkpoints([])


# parse_recipe_args / prepare_run


def test_parse_recipe_args_merges_yaml_then_overrides(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("trainer:\n  max_steps: 10\n  accumulate_grad_batches: 2\nexp_dir: exp/a\n")
    b.write_text("trainer:\n  max_steps: 20\n")
    cfg = parse_recipe_args(ToyConfig, ["--config", str(a), "--config", str(b), "trainer.num_workers=3",
                                        "data.train=[x.json,y.json]", "mode=export"], "toy")
    assert isinstance(cfg, ToyConfig) and isinstance(cfg.trainer, ExtraTrainerConfig)
    assert cfg.trainer.max_steps == 20 and cfg.trainer.accumulate_grad_batches == 2 and cfg.trainer.num_workers == 3
    assert cfg.trainer.checkpoint_every_n_steps == 250  # untouched keys keep the schema's defaults
    assert cfg.exp_dir == "exp/a" and cfg.data.train == ["x.json", "y.json"] and cfg.mode == "export"


def test_parse_recipe_args_rejects_an_unknown_key_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"command line: unknown key 'trainer\.max_stepz' \(known keys under "
                                          r"'trainer': max_steps, .*accumulate_grad_batches\)"):
        parse_recipe_args(ToyConfig, ["trainer.max_stepz=3"], "toy")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  bn_recalibration_batches: 4\n")  # a key of another recipe's trainer section
    with pytest.raises(ConfigError, match=f"{bad}: unknown key 'trainer.bn_recalibration_batches'"):
        parse_recipe_args(ToyConfig, ["--config", str(bad)], "toy")
    with pytest.raises(ConfigError, match="bad value for key 'trainer.max_steps'"):
        parse_recipe_args(ToyConfig, ["trainer.max_steps=many"], "toy")


def test_parse_recipe_args_rejects_an_unknown_mode() -> None:
    assert MODES == ("train", "export", "evaluate")
    with pytest.raises(ConfigError, match="mode='fit': choose train, export or evaluate"):
        parse_recipe_args(ToyConfig, ["mode=fit"], "toy")


def test_prepare_run_seeds_and_gives_the_export_path(tmp_path: Path) -> None:
    cfg = ToyConfig(exp_dir=str(tmp_path), seed=5)
    assert prepare_run(cfg) == tmp_path / "model.safetensors" == resolve_export_path(cfg)
    draw = torch.rand(3)
    prepare_run(cfg)
    assert torch.equal(torch.rand(3), draw)
    cfg.export_path = str(tmp_path / "elsewhere.safetensors")
    assert resolve_export_path(cfg) == tmp_path / "elsewhere.safetensors"
