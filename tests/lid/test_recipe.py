"""Smoke run of recipes/lid/titanet/train.py with conf/tiny.yaml on a tiny 3-language espeak-ng set (CPU).

Trains 60 steps, and checks that the loss falls and the training accuracy rises (the model overfits 18
utterances), that the exported file loads without Lightning and classifies the training utterances, that
``resume=last`` continues, and that ``mode=export`` / ``mode=evaluate`` work from the checkpoint.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import ModuleType

from speechkit.models.recipe import load_recipe_script

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "lid" / "titanet"


def load_recipe() -> ModuleType:
    return load_recipe_script(RECIPE / "train.py", "lid_titanet_train")


def train_log(exp_dir: Path, version: int) -> dict[int, tuple[float, float]]:
    with open(exp_dir / "logs" / f"version_{version}" / "metrics.csv") as f:
        return {int(r["step"]): (float(r["train_loss"]), float(r["train_acc"])) for r in csv.DictReader(f)
                if r.get("train_loss")}


def test_smoke_train_resume_export(lid_corpus: Path, tmp_path: Path, assert_mean_of) -> None:
    recipe = load_recipe()
    exp = tmp_path / "exp"
    train = lid_corpus / "train.json"
    args = ["--config", str(RECIPE / "conf" / "tiny.yaml"), f"exp_dir={exp}", f"data.train=[{train}]",
            f"data.dev=[{train}]", f"data.test=[{lid_corpus / 'test.json'}]"]
    # average=2: the exported weights are the mean of the kept steps 30 and 60 (BatchNorm statistics recomputed)
    result = recipe.main([*args, "trainer.keep_checkpoints=2", "average=2"])
    assert result.global_step == 60 and result.labels == ["de", "en", "es"]
    assert_mean_of(result.model_path, [exp / "checkpoints" / f"step={s}.ckpt" for s in (30, 60)])
    log = train_log(exp, 0)
    steps = sorted(log)
    first_loss = sum(log[s][0] for s in steps[:10]) / 10
    last_loss = sum(log[s][0] for s in steps[-10:]) / 10
    first_acc = sum(log[s][1] for s in steps[:10]) / 10
    last_acc = sum(log[s][1] for s in steps[-10:]) / 10
    assert last_loss < 0.5 * first_loss, (first_loss, last_loss)
    # The tiny task is learnt within the first ten logged steps already (their mean accuracy was 0.74 in one run,
    # chance being 1/3), so the accuracy check is the end point; the loss check above is the learning curve.
    assert last_acc > first_acc and last_acc >= 0.9, (first_acc, last_acc)
    # "dev" is the training set here: the exported model has learnt it.
    assert result.metrics["dev"].accuracy >= 0.9 and result.metrics["dev"].utterances == 18
    assert set(result.metrics["test"].per_language) == {"de", "en", "es"}
    assert (exp / "metrics.json").is_file() and (exp / "checkpoints" / "last.ckpt").is_file()

    from speechkit.audio.io import load_audio
    from speechkit.lid import load_model

    lid = load_model(result.model_path)
    first = json.loads(train.read_text().splitlines()[0])
    assert lid.classify(load_audio(first["audio_filepath"]), 16000).language == first["lang"]

    resumed = recipe.main([*args, "resume=last", "trainer.max_steps=64"])
    assert resumed.global_step == 64
    exported = recipe.main([*args, "mode=export", "resume=last", f"export_path={tmp_path / 'again.safetensors'}"])
    assert exported.global_step == 64 and load_model(exported.model_path).labels == ["de", "en", "es"]
    averaged = recipe.main([*args, "mode=export", "average=2", f"export_path={tmp_path / 'avg.safetensors'}"])
    assert averaged.global_step == 64
    assert_mean_of(averaged.model_path, [exp / "checkpoints" / "step=60.ckpt", exp / "checkpoints" / "last.ckpt"])
    evaluated = recipe.main([*args, "mode=evaluate"])
    assert evaluated.metrics["dev"].utterances == 18
