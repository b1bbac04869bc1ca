"""Smoke run of recipes/vad/marblenet/train.py with conf/tiny.yaml on a tiny mixture set (CPU, seconds).

Builds mixtures from manifests/tiny, trains 40 steps, and checks that the loss falls, that ``resume=last`` continues,
and that the exported file loads without Lightning and gives probabilities and segments.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from speechkit.models.recipe import load_recipe_script

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "vad" / "marblenet"
TINY = ROOT / "manifests" / "tiny"


def load_recipe() -> ModuleType:
    return load_recipe_script(RECIPE / "train.py", "vad_marblenet_train")


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speechkit.data.vad_mixtures import VadMixtureConfig, prepare_vad

    out = tmp_path_factory.mktemp("vad")
    prepare_vad(VadMixtureConfig(speech=[str(TINY / "train.json"), str(TINY / "dev.json")], out_dir=str(out),
                                 hours=0.04, min_seconds=3.0, max_seconds=6.0))
    return out


def train_losses(exp_dir: Path, version: int) -> dict[int, float]:
    with open(exp_dir / "logs" / f"version_{version}" / "metrics.csv") as f:
        return {int(row["step"]): float(row["train_loss"]) for row in csv.DictReader(f) if row.get("train_loss")}


def test_smoke_train_resume_export(mixtures: Path, tmp_path: Path, assert_mean_of) -> None:
    recipe = load_recipe()
    exp = tmp_path / "exp"
    data = [f"data.train=[{mixtures / 'train.json'}]", f"data.dev=[{mixtures / 'dev.json'}]",
            f"data.test=[{mixtures / 'test.json'}]"]
    # average=2: the exported weights are the mean of the kept steps 20 and 40
    result = recipe.main(["--config", str(RECIPE / "conf" / "tiny.yaml"), f"exp_dir={exp}", *data,
                          "trainer.keep_checkpoints=2", "average=2"])
    assert result.global_step == 40
    assert_mean_of(result.model_path, [exp / "checkpoints" / f"step={s}.ckpt" for s in (20, 40)])
    losses = train_losses(exp, 0)
    steps = sorted(losses)
    first = sum(losses[s] for s in steps[:8]) / 8
    last = sum(losses[s] for s in steps[-8:]) / 8
    assert last < 0.6 * first, (first, last)
    assert result.metrics["dev"].auroc > 0.8 and "test" in result.metrics
    assert (exp / "metrics.json").is_file() and (exp / "checkpoints" / "last.ckpt").is_file()

    from speechkit.vad import load_model

    vad = load_model(result.model_path)
    samples = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.01
    assert vad.frame_probs(samples, 16000).shape == (50,)
    assert isinstance(vad.segments(samples, 16000), list)

    resumed = recipe.main(["--config", str(RECIPE / "conf" / "tiny.yaml"), f"exp_dir={exp}", *data, "resume=last",
                           "trainer.max_steps=44"])
    assert resumed.global_step == 44
