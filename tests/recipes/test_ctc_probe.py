"""recipes/asr/fastconformer_transducer/ctc_probe.py: the CTC-only probe trains the recipe's encoder and CTC head on
manifests/tiny, logs a falling loss and evaluates the dev set through the command line."""

from __future__ import annotations

from pathlib import Path

from speechkit.models.recipe import load_recipe_script

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "asr" / "fastconformer_transducer"


def load_probe():
    return load_recipe_script(RECIPE / "ctc_probe.py", "fastconformer_ctc_probe")


def test_probe_loss_falls_and_dev_is_evaluated(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    probe = load_probe()
    result = probe.main([
        "--config", str(RECIPE / "conf" / "tiny_tdt.yaml"), "--steps", "40", "--lr", "3e-3", "--warmup", "5",
        "--log-every", "10", "--eval-every", "20", "--dev-utts", "4", "--threads", "1", "--no-augment",
        f"exp_dir={tmp_path / 'exp'}",
    ])
    assert result.steps == [10, 20, 30, 40]
    assert result.ctc_loss[-1] < 0.7 * result.ctc_loss[0], result.ctc_loss
    assert result.eval_steps == [20, 40]
    assert all(0.0 <= w for w in result.dev_wer)
    out = capsys.readouterr().out
    assert "step 40 ctc_loss" in out and "dev_ctc_wer" in out
    # the probe trained the tokenizer into exp_dir, as the recipe does
    assert (tmp_path / "exp" / "tokenizer" / "tokenizer.model").is_file()
