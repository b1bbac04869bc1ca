"""`speechkit demo` (what `make demo` runs) builds a corpus and reports stats, features and a tokenizer."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from speechkit import cli

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the Debian voices (make setup)")


def test_demo_reports_every_section(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out-dir", str(out), "--minutes", "0.5", "--vocab-size", "40", "--num-jobs", "1"]) == 0
    printed = capsys.readouterr().out
    for title in ("1. corpus built", "2. what is in it", "3. log-mel features", "4. BPE tokenizer"):
        assert f"== {title}" in printed
    assert "decoded back:" in printed and (out / "tokenizer" / "tokenizer.model").is_file()
    # A second run reuses the corpus instead of synthesising it again.
    assert cli.main(["demo", "--out-dir", str(out), "--minutes", "0.5", "--vocab-size", "40", "--num-jobs", "1"]) == 0
    reused = re.search(r"(\d+) reused from an earlier run", capsys.readouterr().out)
    assert reused and int(reused.group(1)) > 0


def test_demo_transcribes_the_bundled_clips_with_a_given_model(tmp_path, capsys):
    """Step 5 with --model: every bundled clip (and the LibriVox one when installed) gets a hypothesis and a WER."""
    import torch

    from speechkit.config import to_yaml
    from speechkit.demo import bundled_clips, transcribe_clips
    from speechkit.modules.asr import ASRModelConfig, TransducerASR
    from speechkit.modules.export import save_model_file
    from speechkit.modules.fastconformer import FastConformerConfig
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    tiny = Path(__file__).resolve().parents[1] / "manifests" / "tiny" / "train.json"
    tok = train_tokenizer_from_manifests([tiny], tmp_path / "tok", TokenizerTrainConfig(vocab_size=40))
    torch.manual_seed(0)
    cfg = ASRModelConfig(encoder=FastConformerConfig.preset("tiny"), model_type="tdt", vocab_size=tok.vocab_size,
                         pred_hidden=32, joint_hidden=32)
    path = save_model_file(tmp_path / "m.safetensors", TransducerASR.from_config(cfg).eval(), to_yaml(cfg), tok)
    clips = bundled_clips()
    assert len(clips) >= 3 and all(p.is_file() and ref for p, ref in clips)
    title, body = transcribe_clips(str(path), tmp_path)
    assert title.startswith("5. the bundled clips") and "m.safetensors" in title
    for p, _ in clips:
        assert p.name in body
    assert body.count("hypothesis:") >= len(clips) and re.search(r"all clips: WER [\d.]+ %.*RTFx [\d.]+", body)
