"""Smoke runs of recipes/asr/fastconformer_transducer/train.py on manifests/tiny with conf/tiny_tdt.yaml (CPU).

The fast test trains a tiny TDT model for 40 steps and checks that the loss falls, that ``last.ckpt`` is written and
that ``resume=last`` continues from its step, and that the exported model file loads without Lightning and decodes.
The slow test overfits the 12 training utterances until greedy decoding reads them back.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import pytest
import torch

from speechkit.models.recipe import load_recipe_script

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "asr" / "fastconformer_transducer"
TINY = ROOT / "manifests" / "tiny"


def load_recipe() -> ModuleType:
    return load_recipe_script(RECIPE / "train.py", "fastconformer_transducer_train")


def train_losses(exp_dir: Path, version: int) -> dict[int, float]:
    """Training loss per step from the CSV log of one run."""
    with open(exp_dir / "logs" / f"version_{version}" / "metrics.csv") as f:
        return {int(row["step"]): float(row["train_loss"]) for row in csv.DictReader(f) if row.get("train_loss")}


def run(recipe: ModuleType, exp_dir: Path, *overrides: str):
    return recipe.main([
        "--config", str(RECIPE / "conf" / "tiny_tdt.yaml"),
        f"exp_dir={exp_dir}", f"data.train=[{TINY / 'train.json'}]", f"data.dev=[{TINY / 'dev.json'}]", *overrides,
    ])


def test_smoke_train_resume_export(tmp_path: Path) -> None:
    recipe = load_recipe()
    exp = tmp_path / "exp"
    # average=2: the exported file holds the mean weights of steps 30 and 40 (trainer.keep_checkpoints keeps them)
    result = run(recipe, exp, "trainer.keep_checkpoints=2", "average=2")
    assert result.global_step == 40

    losses = train_losses(exp, 0)
    steps = sorted(losses)
    assert steps[0] == 0 and steps[-1] == 39
    first = sum(losses[s] for s in steps[:10]) / 10
    last = sum(losses[s] for s in steps[-10:]) / 10
    assert last < 0.7 * first, (first, last)

    # last.ckpt for resuming, the best val_wer checkpoint, the config and the tokenizer are kept.
    ckpt = exp / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 40
    assert list((exp / "checkpoints").glob("best-*.ckpt"))
    assert (exp / "config.yaml").is_file() and (exp / "tokenizer" / "tokenizer.model").is_file()

    # The exported file loads without Lightning and decodes; the recipe already reported its dev WER.
    from speechkit.modules.asr import TransducerASR

    model, tokenizer, cfg = TransducerASR.from_model_file(result.model_path)
    assert cfg.model_type == "tdt" and cfg.vocab_size == tokenizer.vocab_size
    states = [torch.load(exp / "checkpoints" / f"step={s}.ckpt", map_location="cpu", weights_only=False)["state_dict"]
              for s in (30, 40)]
    exported = model.state_dict()
    moved = 0
    for name, tensor in exported.items():
        a, b = states[0]["model." + name], states[1]["model." + name]
        if tensor.is_floating_point():
            assert torch.allclose(tensor.float(), (a.float() + b.float()) / 2, rtol=2e-3, atol=1e-4), name
            moved += int(not torch.equal(a, b))
    assert moved > 10  # the two checkpoints differ, so the mean is neither of them
    hyps = model.decode(torch.zeros(1, 16000), torch.tensor([16000]))
    assert isinstance(tokenizer.decode(hyps[0].tokens), str)
    assert "dev" in result.wer and result.wer["dev"].utterances == 4

    # resume=last continues from step 40, with the same tokenizer.
    resumed = run(recipe, exp, "resume=last", "trainer.max_steps=50")
    assert resumed.global_step == 50
    assert min(train_losses(exp, 1)) >= 40
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 50

    # mode=export rebuilds the model file from last.ckpt; mode=evaluate only decodes.
    again = run(recipe, exp, "mode=export", f"export_path={tmp_path / 'again.safetensors'}")
    assert again.global_step == 50 and again.model_path.is_file()
    # average=3 at export: last.ckpt (step 50) and the kept steps 30 and 40
    averaged = run(recipe, exp, "mode=export", "average=3", f"export_path={tmp_path / 'avg.safetensors'}")
    assert averaged.global_step == 50
    with pytest.raises(FileNotFoundError, match="keep_checkpoints >= 4"):
        run(recipe, exp, "mode=export", "average=4", f"export_path={tmp_path / 'avg4.safetensors'}")
    evaluated = run(recipe, exp, "mode=evaluate", f"data.test=[{TINY / 'test.json'}]")
    assert set(evaluated.wer) == {"dev", "test"}


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    from speechkit.config import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'trainer.max_stepz'"):
        run(load_recipe(), tmp_path, "trainer.max_stepz=3")
    with pytest.raises(ConfigError, match=r"average=3 needs trainer.keep_checkpoints >= 3 \(it is 2\)"):
        run(load_recipe(), tmp_path, "average=3", "trainer.keep_checkpoints=2")


@pytest.mark.slow
def test_overfits_the_training_utterances(tmp_path: Path) -> None:
    """Decoded after 300 steps on the same 12 utterances it was trained on, the model reads them back (~35 s)."""
    result = run(load_recipe(), tmp_path, f"data.dev=[{TINY / 'train.json'}]", "trainer.max_steps=300",
                 "trainer.val_check_interval=100", "trainer.checkpoint_every_n_steps=100",
                 "trainer.log_every_n_steps=10", "optim.warmup_steps=20")
    assert result.wer["dev"].utterances == 12
    assert result.wer["dev"].rate < 0.05, str(result.wer["dev"])


def test_streaming_config_trains_and_streams(tmp_path: Path) -> None:
    """conf/tiny_tdt_streaming.yaml (chunked-limited, causal, several look-aheads): the recipe trains it, the loss
    falls, and the exported file streams through the Recognizer to the same tokens as its offline transcription."""
    import json

    import numpy as np

    from speechkit.audio.io import load_audio
    from speechkit.inference.streaming import Recognizer

    recipe = load_recipe()
    exp = tmp_path / "exp"
    result = recipe.main([
        "--config", str(RECIPE / "conf" / "tiny_tdt_streaming.yaml"),
        f"exp_dir={exp}", f"data.train=[{TINY / 'train.json'}]", f"data.dev=[{TINY / 'dev.json'}]",
    ])
    losses = train_losses(exp, 0)
    steps = sorted(losses)
    assert sum(losses[s] for s in steps[-10:]) < 0.8 * sum(losses[s] for s in steps[:10])

    rec = Recognizer.from_pretrained(str(result.model_path))
    first = json.loads((TINY / "dev.json").read_text().splitlines()[0])
    x = load_audio(TINY / first["audio_filepath"], 16000)
    offline = rec.transcribe(x, 16000)
    stream = rec.create_stream()
    for i in range(0, x.shape[0], 1234):  # a chunk size that divides nothing
        stream.accept_waveform(16000, np.asarray(x[i: i + 1234]))
        while rec.is_ready(stream):
            rec.decode([stream])
    stream.input_finished()
    while rec.is_ready(stream):
        rec.decode([stream])
    assert [t for seg in stream.segments for t in seg.token_ids] == offline.token_ids


def test_init_from_warm_starts_the_streaming_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """init_from copies an offline model's fitting tensors (and its tokenizer) into the streaming config's network;
    a run with another tokenizer is refused unless the vocabulary-bound layers are excluded."""
    from speechkit.config import ConfigError
    from speechkit.modules.export import read_model_file

    recipe = load_recipe()
    offline = run(recipe, tmp_path / "offline", "trainer.max_steps=4", "trainer.val_check_interval=4").model_path

    def streaming(exp: str, *overrides: str):
        return recipe.main([
            "--config", str(RECIPE / "conf" / "tiny_tdt_streaming.yaml"), f"exp_dir={tmp_path / exp}",
            f"data.train=[{TINY / 'train.json'}]", f"data.dev=[{TINY / 'dev.json'}]", f"init_from={offline}",
            *overrides])

    # A learning rate of ~0: what was copied comes out of the exported file unchanged.
    warm = streaming("warm", "trainer.max_steps=2", "trainer.val_check_interval=2", "optim.lr=1e-12",
                     "optim.min_lr=0", "optim.weight_decay=0", "optim.warmup_steps=0")
    assert "tensors loaded; 1 left fresh, shapes differ: encoder.subsampling.out.weight" in capsys.readouterr().out
    src, dst = read_model_file(offline), read_model_file(warm.model_path)
    assert src.tokenizer is not None and dst.tokenizer is not None
    assert dst.tokenizer.to_bytes() == src.tokenizer.to_bytes()
    for name in ("encoder.layers.1.att.linear_q.weight", "prediction.embed.weight", "joint.out.weight"):
        torch.testing.assert_close(dst.state_dict[name], src.state_dict[name], rtol=0, atol=1e-3)
    assert dst.state_dict["encoder.subsampling.out.weight"].shape != src.state_dict["encoder.subsampling.out.weight"].shape

    # Resuming takes the weights from the checkpoint, and says so.
    resumed = streaming("warm", "trainer.max_steps=3", "trainer.val_check_interval=1", "resume=last")
    assert resumed.global_step == 3 and "is not applied: resuming from" in capsys.readouterr().out

    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    train_tokenizer_from_manifests([TINY / "train.json"], tmp_path / "tok40", TokenizerTrainConfig(vocab_size=40))
    with pytest.raises(ConfigError, match="init_from=.*tokenizer differs.*init_exclude"):
        streaming("other_tokenizer", f"data.tokenizer.dir={tmp_path / 'tok40'}")


@pytest.mark.parametrize("config", sorted(p.name for p in (RECIPE / "conf").glob("*.yaml")))
def test_every_shipped_config_parses_and_validates(config: str) -> None:
    """A typo in a shipped YAML (unknown key, bad value) fails here, not hours into someone's run."""
    from speechkit.data.datasets import AugmentConfig
    from speechkit.models.recipe import parse_recipe_args
    from speechkit.modules.asr import TransducerASR

    recipe = load_recipe()
    cfg = parse_recipe_args(recipe.TrainConfig, ["--config", str(RECIPE / "conf" / config)], "")
    cfg.model.vocab_size = cfg.data.tokenizer.vocab_size
    TransducerASR.from_config(cfg.model)  # validates the model config
    assert isinstance(cfg.data.augment, AugmentConfig)
    cfg.data.augment.validate()
    assert cfg.trainer.max_steps > 0 and cfg.exp_dir
