"""A tiny random-weight transducer saved as a model file, shared by the inference tests.

Random weights decode to gibberish, which is all these tests need: they compare the offline API with the network
called directly, batched with one-by-one, and check formats and errors. The joint's output layer is scaled up so
that the argmax varies from frame to frame (several pieces and words per utterance, not one repeated letter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "manifests" / "tiny"


@dataclass
class TinyModel:
    path: Path
    tokenizer_dir: Path
    model_type: str


def _make_model(out: Path, model_type: str, seed: int = 0) -> TinyModel:
    from speechkit.config import to_yaml
    from speechkit.modules.asr import ASRModelConfig, TransducerASR
    from speechkit.modules.export import save_model_file
    from speechkit.modules.fastconformer import FastConformerConfig
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    tok_dir = out / "tok"
    tok = train_tokenizer_from_manifests([TINY / "train.json"], tok_dir, TokenizerTrainConfig(vocab_size=40))
    torch.manual_seed(seed)
    cfg = ASRModelConfig(encoder=FastConformerConfig.preset("tiny"), model_type=model_type,
                         vocab_size=tok.vocab_size, pred_hidden=32, joint_hidden=32)
    net = TransducerASR.from_config(cfg).eval()
    with torch.no_grad():
        net.joint.out.weight.mul_(4.0)
        # Favour word-initial pieces a little, so that the gibberish has several words whatever the random draw.
        starts = [i for i in range(tok.vocab_size) if tok.id_to_piece(i).startswith("\u2581")]
        net.joint.out.bias[starts] += 1.0
    # float32 so that the file's network is bit-identical to the one the tests rebuild from it.
    path = save_model_file(out / "model.safetensors", net, to_yaml(cfg), tok, dtype=torch.float32)
    return TinyModel(path, tok_dir, model_type)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A TDT model file (tiny FastConformer, 40-piece BPE tokenizer trained on manifests/tiny)."""
    return _make_model(tmp_path_factory.mktemp("tdt"), "tdt")


@pytest.fixture(scope="session")
def tiny_rnnt_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The same with an RNN-T joint (tokens last one frame: no durations)."""
    return _make_model(tmp_path_factory.mktemp("rnnt"), "rnnt")


@pytest.fixture(scope="session")
def tiny_audio() -> list[Path]:
    """The four 16 kHz test wavs of manifests/tiny, in different lengths."""
    files = sorted((TINY / "audio" / "test").glob("*.wav"))
    assert len(files) >= 3
    return files
