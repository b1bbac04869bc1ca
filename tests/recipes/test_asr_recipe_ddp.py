"""Two-process CPU DDP (gloo) of the ASR recipe on Lhotse Shar shards of the tiny corpus completes and exports.

The recipe runs as a script, as a user runs it: Lightning's DDP launcher starts the second rank by re-running the
command, which it cannot do from inside pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from speechkit.data.manifests import manifest_to_cutset
from speechkit.data.shar import list_shards, write_shar
from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "asr" / "fastconformer_transducer"
TINY = ROOT / "manifests" / "tiny"


def test_two_process_ddp_on_shar_shards(tmp_path: Path) -> None:
    shar = tmp_path / "shar"
    write_shar(manifest_to_cutset(TINY / "train.json"), shar, shard_size=3)
    assert len(list_shards(shar)["cuts"]) == 4  # 12 utterances, 3 a shard: two shards for each rank
    train_tokenizer_from_manifests([TINY / "train.json"], tmp_path / "tok", TokenizerTrainConfig(vocab_size=48))
    exp = tmp_path / "exp"
    out = subprocess.run(
        [sys.executable, str(RECIPE / "train.py"), "--config", str(RECIPE / "conf" / "tiny_tdt.yaml"),
         f"exp_dir={exp}", f"data.shar_dir={shar}", "data.train=[]", f"data.dev=[{TINY / 'dev.json'}]",
         f"data.tokenizer.dir={tmp_path / 'tok'}", "trainer.devices=2", "trainer.accelerator=cpu",
         "trainer.max_steps=10", "trainer.val_check_interval=5"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "`max_steps=10` reached" in out.stderr + out.stdout
    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 10
    assert (exp / "model.safetensors").is_file() and "dev WER" in out.stdout
