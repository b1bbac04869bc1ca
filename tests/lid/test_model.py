"""The LID facade and CLI: export -> load without Lightning, classify (single and batched), clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit import cli
from speechkit.assets import ModelNotFoundError
from speechkit.audio.io import save_audio
from speechkit.lid import LIDResult, load_model
from speechkit.modules.export import ModelFileError, read_model_file, save_model_file
from speechkit.modules.titanet import TitaNetConfig

LABELS = ["de", "en", "es"]


def tiny_cfg() -> TitaNetConfig:
    return TitaNetConfig(channels=32, repeat=1, epilog_channels=64, attention_channels=16, embedding_dim=16,
                         num_classes=3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.nn.Module]:
    from speechkit.models.lid import LIDLightningModule, LossConfig, OptimConfig

    torch.manual_seed(0)
    module = LIDLightningModule(tiny_cfg(), LABELS, OptimConfig(lr=1e-3), LossConfig(scale=20.0))
    # Non-trivial BatchNorm statistics, so a mistake in eval mode or in padding would show.
    module.model.train()
    with torch.no_grad():
        module.model(torch.randn(4, 16000), torch.tensor([16000, 12000, 9000, 16000]))
    module.model.eval()
    folder = tmp_path_factory.mktemp("lid_model")
    f32 = module.export(folder / "model.safetensors", torch.float32)
    f16 = module.export(folder / "model16.safetensors")
    return f32, f16, module.model


def waves(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in (16000, 7000, 23000)]


def test_round_trip_matches_the_network(exported: tuple[Path, Path, torch.nn.Module]) -> None:
    f32, _, net = exported
    mf = read_model_file(f32, expected_kind="lid")
    assert mf.kind == "lid" and "labels" in mf.config_yaml
    lid = load_model(f32)
    assert lid.labels == LABELS and lid.sample_rate == 16000 and lid.score_scale == 20.0
    x = waves()[0]
    r = lid.classify(x, 16000)
    assert isinstance(r, LIDResult) and r.duration == 1.0
    with torch.no_grad():
        logits, _ = net(torch.from_numpy(x)[None], torch.tensor([16000]))
    probs = torch.softmax(20.0 * logits[0], -1).numpy()
    assert r.language == LABELS[int(probs.argmax())] and r.score == pytest.approx(float(probs.max()), abs=1e-5)
    assert list(r.scores) == [LABELS[i] for i in np.argsort(-probs)]  # highest first
    assert sum(r.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert r.top(2) == list(r.scores.items())[:2]
    assert lid.embed(x, 16000).shape == (16,)
    # A folder stands for its model.safetensors
    assert load_model(f32.parent).labels == LABELS


def test_batch_equals_single_and_fp16(exported: tuple[Path, Path, torch.nn.Module]) -> None:
    f32, f16, _ = exported
    lid = load_model(f32)
    ws = waves(1)
    batched = lid.classify(ws, 16000, batch_size=2)
    assert isinstance(batched, list) and len(batched) == 3
    for w, b in zip(ws, batched, strict=True):
        single = lid.classify(w, 16000)
        assert single.language == b.language and b.duration == round(w.shape[0] / 16000, 3)
        for lang in LABELS:
            assert b.scores[lang] == pytest.approx(single.scores[lang], abs=1e-4)
    half = load_model(f16)
    assert f16.stat().st_size < 0.6 * f32.stat().st_size
    for w, b in zip(ws, batched, strict=True):
        h = half.classify(w, 16000)
        assert max(abs(h.scores[k] - b.scores[k]) for k in LABELS) < 2e-2
    # Another rate is resampled first: same length in seconds.
    assert lid.classify(ws[0][::2], 8000).duration == 1.0


def test_bad_input(exported: tuple[Path, Path, torch.nn.Module], tmp_path: Path, nothing_bundled: None) -> None:
    lid = load_model(exported[0])
    with pytest.raises(ValueError, match="empty audio"):
        lid.classify(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match=r"batch item 1"):
        lid.classify([np.ones(100, np.float32), np.zeros(0, np.float32)], 16000)
    with pytest.raises(ValueError, match="mono"):
        lid.classify(np.zeros((2, 100), np.float32), 16000)
    with pytest.raises(ModelNotFoundError, match="no default lid model.*recipes/lid/titanet"):
        load_model(None)
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    other = save_model_file(tmp_path / "vad.safetensors", torch.nn.Linear(2, 2), "{}", None, kind="vad")
    with pytest.raises(ModelFileError, match="'lid'"):
        load_model(other)
    broken = save_model_file(tmp_path / "broken.safetensors", torch.nn.Linear(2, 2), "labels: [a, b]\n", None,
                             kind="lid")
    with pytest.raises(ModelFileError, match="TitaNet language classifier"):
        load_model(broken)


def test_cli_plain_and_json(exported: tuple[Path, Path, torch.nn.Module], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    model = str(exported[0])
    a = save_audio(tmp_path / "a.wav", waves(2)[0])
    b = save_audio(tmp_path / "b.wav", waves(2)[2])
    expected = load_model(model).classify([waves(2)[0], waves(2)[2]], 16000)
    assert cli.main(["lid", "--model", model, "--top-k", "2", str(a), str(b)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [r[0] for r in rows] == [str(a), str(b)] and all(len(r) == 3 for r in rows)
    for row, res in zip(rows, expected, strict=True):
        assert row[1].split()[0] == res.language
        assert float(row[1].split()[1]) == pytest.approx(res.score, abs=2e-3)  # 16-bit wav round trip
    assert cli.main(["lid", "--model", model, "--json", str(a)]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["audio"] == str(a) and out["duration"] == 1.0 and out["language"] == expected[0].language
    assert list(out["scores"]) == [k for k, _ in expected[0].top(3)] and len(out["scores"]) == 3


def test_cli_errors(exported: tuple[Path, Path, torch.nn.Module], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str], nothing_bundled: None) -> None:
    model = str(exported[0])
    assert cli.main(["lid", "--model", model, str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err
    empty = save_audio(tmp_path / "empty.wav", np.zeros(0, np.float32))
    assert cli.main(["lid", "--model", model, str(empty)]) == 2
    assert "empty.wav" in capsys.readouterr().err
    assert cli.main(["lid", "--model", model, "--top-k", "0", str(empty)]) == 2
    assert "--top-k" in capsys.readouterr().err
    assert cli.main(["lid", str(empty)]) == 2
    assert "no default lid model" in capsys.readouterr().err


def test_recalibrate_batchnorm_uses_final_weights() -> None:
    from speechkit.models.lid import LIDLightningModule, LossConfig, OptimConfig, SpecAugmentConfig

    torch.manual_seed(0)
    module = LIDLightningModule(tiny_cfg(), LABELS, OptimConfig(), LossConfig(), SpecAugmentConfig(1, 4, 1, 0.05))
    first = module.model.encoder[0].norms[0]
    first.running_mean.fill_(100.0)  # stale statistics
    batch = {"audio": torch.randn(3, 16000), "audio_lens": torch.tensor([16000, 16000, 16000])}
    seen: list[torch.Tensor] = []
    hook = first.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    module.eval()
    assert module.recalibrate_batchnorm([batch, batch], max_batches=1) == 1
    hook.remove()
    # The running mean is now the batch mean of what the BN saw with the current weights (one batch, equal weight).
    torch.testing.assert_close(first.running_mean, seen[0].mean(dim=(0, 2)), atol=1e-5, rtol=1e-4)
    assert first.momentum == 0.1 and not module.model.training
    assert module.spec_augment is not None and not module.spec_augment.training
    with pytest.raises(ValueError, match="no batch"):
        module.recalibrate_batchnorm([], 5)


def test_frequency_warp_acts_in_training_only_and_not_in_recalibration() -> None:
    from speechkit.models.lid import LIDLightningModule, LossConfig, OptimConfig, SpecAugmentConfig

    batch = {"audio": torch.randn(3, 16000), "audio_lens": torch.tensor([16000, 16000, 16000])}

    def build(warp: float) -> LIDLightningModule:
        torch.manual_seed(0)
        return LIDLightningModule(tiny_cfg(), LABELS, OptimConfig(), LossConfig(), SpecAugmentConfig(0, 0, 0, 0.0, warp))

    plain, warped = build(0.0), build(0.15)
    assert plain.freq_warp is None and warped.freq_warp is not None
    seen: dict[str, list[torch.Tensor]] = {"plain": [], "warped": []}
    for name, module in (("plain", plain), ("warped", warped)):
        module.model.encoder[0].register_forward_pre_hook(lambda m, a, n=name: seen[n].append(a[0].detach().clone()))
        for mode in (True, False):
            module.model.train(mode)
            module.train(mode)
            module.model(batch["audio"], batch["audio_lens"])
    assert not torch.allclose(seen["warped"][0], seen["plain"][0])  # training: warped
    torch.testing.assert_close(seen["warped"][1], seen["plain"][1])  # eval: the plain features
    plain.recalibrate_batchnorm([batch])
    warped.recalibrate_batchnorm([batch])
    torch.testing.assert_close(warped.model.encoder[0].norms[0].running_mean, plain.model.encoder[0].norms[0].running_mean)
    assert warped.freq_warp is not None and not warped.freq_warp.training


def test_facade_imports_no_lightning() -> None:
    code = ("import sys, speechkit.lid, speechkit.lid.model, speechkit.lid.commands; "
            "assert 'pytorch_lightning' not in sys.modules and 'lightning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_bundled_model_hears_english_in_the_bundled_clips(capsys: pytest.CaptureFixture[str]) -> None:
    """load_model() with no name loads the bundled 12-language model; the bundled English clips (voices it never
    heard) are English to it, from the API and from `speechkit lid` without --model."""
    from speechkit.assets import list_models

    (entry,) = [m for m in list_models("lid") if m.default]
    assert entry.available and entry.path.stat().st_size < 8 * 2**20
    lid = load_model()
    assert lid.labels == ["ca", "de", "en", "es", "fr", "it", "nl", "pl", "pt", "ru", "sv", "uk"]
    clips = sorted((Path(__file__).resolve().parents[2] / "speechkit" / "assets" / "clips").glob("*.flac"))
    assert len(clips) == 3
    from speechkit.audio.io import load_audio

    results = lid.classify([load_audio(c, 16000) for c in clips], 16000)
    assert [r.language for r in results] == ["en"] * 3
    assert cli.main(["lid", "--json", str(clips[0])]) == 0
    assert json.loads(capsys.readouterr().out)["language"] == "en"
