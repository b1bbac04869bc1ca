"""The single-file model: save -> load round trip (fp32 identical, fp16 close), size, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from speechkit.config import to_yaml
from speechkit.modules.asr import ASRModelConfig, TransducerASR
from speechkit.modules.export import FORMAT_VERSION, ModelFileError, read_model_file, save_model_file
from speechkit.modules.fastconformer import FastConformerConfig
from speechkit.text.tokenizer import Tokenizer, TokenizerTrainConfig, train_tokenizer_from_manifests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    out = tmp_path_factory.mktemp("tok")
    return train_tokenizer_from_manifests([ROOT / "manifests/tiny/train.json"], out, TokenizerTrainConfig(vocab_size=40))


@pytest.fixture(scope="module")
def model_and_cfg(tokenizer: Tokenizer) -> tuple[TransducerASR, ASRModelConfig]:
    cfg = ASRModelConfig(encoder=FastConformerConfig(d_model=32, n_heads=2, n_layers=2, subsampling_channels=16),
                         model_type="tdt", vocab_size=tokenizer.vocab_size, pred_hidden=24, joint_hidden=24,
                         ctc_weight=0.3)
    torch.manual_seed(0)
    model = TransducerASR.from_config(cfg)
    # Train mode once so BatchNorm's running statistics are not the trivial initial ones.
    model(0.1 * torch.randn(2, 16000), torch.tensor([16000, 9000]), torch.tensor([[1, 2], [3, 0]]),
          torch.tensor([2, 1]))
    return model.eval(), cfg


def audio() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(2, 20000, generator=g), torch.tensor([20000, 13000])


def test_fp32_round_trip_gives_identical_outputs(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    model, cfg = model_and_cfg
    path = save_model_file(tmp_path / "m.safetensors", model, to_yaml(cfg), tokenizer, dtype=torch.float32)
    loaded, tok, cfg2 = TransducerASR.from_model_file(path)
    assert cfg2 == cfg
    assert not loaded.training
    a, a_lens = audio()
    enc1, lens1 = model.encode(a, a_lens)
    enc2, lens2 = loaded.encode(a, a_lens)
    torch.testing.assert_close(enc2, enc1, rtol=0, atol=0)
    targets, t_lens = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    torch.testing.assert_close(loaded.joint_logits(enc2, targets, t_lens), model.joint_logits(enc1, targets, t_lens),
                               rtol=0, atol=0)
    assert [h.tokens for h in loaded.decode(a, a_lens)] == [h.tokens for h in model.decode(a, a_lens)]
    # The tokenizer comes back equal: same pieces, same normaliser, same ids.
    assert tok.to_bytes() == tokenizer.to_bytes() and tok.normalizer == tokenizer.normalizer
    assert tok.encode("the deaf often fingerspell") == tokenizer.encode("the deaf often fingerspell")


def test_fp16_file_is_half_the_size_and_close(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    model, cfg = model_and_cfg
    p16 = save_model_file(tmp_path / "m16.safetensors", model, to_yaml(cfg), tokenizer)  # float16 by default
    p32 = save_model_file(tmp_path / "m32.safetensors", model, to_yaml(cfg), tokenizer, dtype=torch.float32)
    n_params = sum(t.numel() for t in model.state_dict().values())
    header = len(tokenizer.to_bytes()) * 4 // 3 + 64_000  # base64 tokenizer + config + tensor index
    assert p16.stat().st_size < 2 * n_params + header
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    mf = read_model_file(p16)
    assert mf.dtype == "float16"
    assert all(t.dtype == torch.float16 for t in mf.state_dict.values() if t.is_floating_point())
    assert mf.state_dict["encoder.layers.0.conv.conv_norm.num_batches_tracked"].dtype == torch.int64
    loaded, _, _ = TransducerASR.from_model_file(p16)
    assert next(loaded.parameters()).dtype == torch.float32  # cast back on load
    a, a_lens = audio()
    enc1, _ = model.encode(a, a_lens)
    enc2, _ = loaded.encode(a, a_lens)
    torch.testing.assert_close(enc2, enc1, rtol=0, atol=2e-2)
    assert (enc2 - enc1).abs().mean() < 2e-3


def test_metadata(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    from speechkit import __version__

    model, cfg = model_and_cfg
    mf = read_model_file(save_model_file(tmp_path / "m.safetensors", model, to_yaml(cfg), tokenizer))
    assert (mf.kind, mf.version, mf.format_version) == ("asr", __version__, FORMAT_VERSION)
    assert mf.config_yaml == to_yaml(cfg)
    assert set(mf.state_dict) == set(model.state_dict())
    assert not list(tmp_path.glob("*.tmp"))


def test_model_file_follows_the_umask(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    import os
    import stat

    model, cfg = model_and_cfg
    old = os.umask(0o022)
    try:
        path = save_model_file(tmp_path / "m.safetensors", model, to_yaml(cfg), tokenizer)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by others, as a bundled model must be


def test_not_a_model_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 3)
    with pytest.raises(ModelFileError, match="not a speechkit model file"):
        read_model_file(junk)
    junk.write_bytes(b"this is a text file, not a model")
    with pytest.raises(ModelFileError, match="not a speechkit model file"):
        TransducerASR.from_model_file(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))  # a valid safetensors file, but not one of ours
    with pytest.raises(ModelFileError, match="not a speechkit model file"):
        TransducerASR.from_model_file(plain)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        read_model_file(tmp_path / "missing.safetensors")


def test_wrong_kind(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    model, cfg = model_and_cfg
    path = save_model_file(tmp_path / "vad.safetensors", model, to_yaml(cfg), tokenizer, kind="vad")
    with pytest.raises(ModelFileError, match="holds a 'vad' model, not an 'asr' model"):
        TransducerASR.from_model_file(path)


def test_newer_format_version(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    model, cfg = model_and_cfg
    path = save_model_file(tmp_path / "m.safetensors", model, to_yaml(cfg), tokenizer)
    mf = read_model_file(path)
    newer = tmp_path / "newer.safetensors"
    save_file(mf.state_dict, str(newer), metadata={**mf.metadata, "format_version": str(FORMAT_VERSION + 1),
                                                   "speechkit_version": "9.9.9"})
    with pytest.raises(ModelFileError, match=r"format version 2 \(written by speechkit 9\.9\.9\) is newer.*upgrade"):
        TransducerASR.from_model_file(newer)


def test_weights_that_do_not_fit_the_config(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    model, cfg = model_and_cfg
    other = to_yaml(cfg).replace("n_layers: 2", "n_layers: 3")
    path = save_model_file(tmp_path / "m.safetensors", model, other, tokenizer)
    with pytest.raises(ModelFileError, match="do not fit the embedded config"):
        TransducerASR.from_model_file(path)


def test_bad_embedded_config_key_is_named(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    from speechkit.config import ConfigError

    model, cfg = model_and_cfg
    path = save_model_file(tmp_path / "m.safetensors", model, to_yaml(cfg) + "not_a_key: 1\n", tokenizer)
    with pytest.raises(ConfigError, match="embedded config.*not_a_key"):
        TransducerASR.from_model_file(path)


def test_loading_imports_no_lightning_or_lhotse(tmp_path: Path, model_and_cfg, tokenizer: Tokenizer) -> None:
    model, cfg = model_and_cfg
    path = save_model_file(tmp_path / "m.safetensors", model, to_yaml(cfg), tokenizer)
    code = (
        "import sys, json, torch\n"
        "from speechkit.modules.asr import TransducerASR\n"
        f"m, tok, cfg = TransducerASR.from_model_file({str(path)!r})\n"
        "m.decode(torch.zeros(1, 8000), torch.tensor([8000]))\n"
        "print(json.dumps([k for k in ('lightning', 'pytorch_lightning', 'lhotse') if k in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_transfer_weights_into_a_streaming_variant(model_and_cfg) -> None:
    """An offline model's tensors warm-start its streaming variant: equal names and shapes are copied, the causal
    subsampling's wider projection stays fresh, BatchNorm statistics the LayerNorm lacks are listed as unused."""
    import dataclasses

    from speechkit.modules.export import transfer_weights

    source, cfg = model_and_cfg
    enc = dataclasses.replace(cfg.encoder, causal_downsampling=True, conv_context="causal", conv_norm="layer_norm",
                              att_context_style="chunked_limited", att_context_size=[[8, 1]])
    torch.manual_seed(1)
    target = TransducerASR.from_config(dataclasses.replace(cfg, encoder=enc))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = transfer_weights(target, source.state_dict(), exclude=["ctc.*"])

    src, dst = source.state_dict(), target.state_dict()
    assert report.loaded and all(torch.equal(dst[k], src[k]) for k in report.loaded)
    assert "encoder.layers.0.att.linear_q.weight" in report.loaded and "joint.out.weight" in report.loaded
    assert [m.split(":")[0] for m in report.shape_mismatch] == ["encoder.subsampling.out.weight"]
    assert report.excluded == ["ctc.proj.weight", "ctc.proj.bias"]
    assert "encoder.layers.0.conv.conv_norm.running_mean" in report.unused and not report.missing
    for name in [m.split(":")[0] for m in report.shape_mismatch] + report.excluded:  # left as they were
        assert torch.equal(dst[name], fresh[name])
    assert sorted(report.loaded + report.excluded + [m.split(":")[0] for m in report.shape_mismatch]) == sorted(dst)
    summary = report.summary(limit=1)
    assert "1 left fresh, shapes differ: encoder.subsampling.out.weight" in summary and "6 in the source, not in the model" in summary and "(5 more)" in summary
