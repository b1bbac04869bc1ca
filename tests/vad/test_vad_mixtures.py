"""VAD mixtures: labels line up with the audio, held-out backgrounds stay out of training, runs are reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechkit.audio.io import load_audio
from speechkit.data.vad_mixtures import BACKGROUNDS, VadMixtureConfig, make_background, make_mixture, prepare_vad

TINY = Path(__file__).resolve().parents[2] / "manifests" / "tiny"


def build(out: Path, **kw) -> list[dict]:
    cfg = VadMixtureConfig(speech=[str(TINY / "train.json"), str(TINY / "dev.json")], out_dir=str(out), hours=0.02,
                           min_seconds=2.0, max_seconds=4.0, **kw)
    prepare_vad(cfg)
    return [json.loads(x) | {"split": s} for s in ("train", "dev", "test") for x in open(out / f"{s}.json")]


def test_manifest_labels_and_backgrounds(tmp_path: Path) -> None:
    lines = build(tmp_path / "vad")
    assert {x["split"] for x in lines} == {"train", "dev", "test"}
    for x in lines:
        labels = x["label"].split()
        assert set(labels) <= {"0", "1"}
        audio = load_audio(tmp_path / "vad" / x["audio_filepath"])
        assert audio.shape[0] % 320 == 0 and len(labels) == audio.shape[0] // 320
        assert x["duration"] == pytest.approx(audio.shape[0] / 16000)
        held = {"brown", "blue", "chords", "hum", "none"}
        assert x["noise"] in (held if x["split"] == "test" else {"white", "pink", "tones", "none"})


def test_clean_mixture_energy_follows_labels() -> None:
    rng = np.random.default_rng(0)
    clip = np.sin(np.arange(8000) / 5.0).astype(np.float32)
    cfg = VadMixtureConfig(speech=["x"], reverb_prob=0.0, no_speech_prob=0.0, min_seconds=3, max_seconds=3)
    samples, labels, _ = make_mixture([clip], "none", cfg, rng)
    frames = samples.reshape(-1, 320)
    rms = np.sqrt((frames**2).mean(1))
    assert labels.any() and (~labels.astype(bool)).any()
    # Boundary frames hold part of a clip; frames whose neighbours agree are pure speech or pure floor.
    inner = np.r_[False, (labels[1:-1] == labels[:-2]) & (labels[1:-1] == labels[2:]), False]
    assert rms[inner & (labels == 1)].min() > 30 * rms[inner & (labels == 0)].max()


def test_reproducible(tmp_path: Path) -> None:
    assert build(tmp_path / "a") == build(tmp_path / "b")


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_backgrounds(kind: str) -> None:
    x = make_background(kind, 4000, 16000, np.random.default_rng(1))
    assert x.shape == (4000,) and np.isfinite(x).all()
    if kind != "none":
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="speech"):
        VadMixtureConfig().validate()
    with pytest.raises(ValueError, match="train_noises"):
        VadMixtureConfig(speech=["a"], train_noises=["purple"]).validate()


def test_frame_dataset_and_collate(tmp_path: Path) -> None:
    from speechkit.data.vad_mixtures import FrameVADDataset, collate_frames, parse_frame_labels

    build(tmp_path / "vad")
    ds = FrameVADDataset([str(tmp_path / "vad" / "train.json")], crop_seconds=1.0)
    x, y = ds[0]
    assert x.shape == (16000,) and y.shape == (50,)
    batch = collate_frames([ds[0], (np.zeros(640, np.float32), np.array([1, 0]))])
    assert batch["audio"].shape == (2, 16000) and batch["labels"][1, 2:].eq(-100).all()
    assert parse_frame_labels("0 1 1", "m:1").tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="m:3"):
        parse_frame_labels("0 2", "m:3")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"audio_filepath": "x.wav", "duration": 1.0}) + "\n")
    with pytest.raises(ValueError, match="bad.json:1: no 'label'"):
        FrameVADDataset([str(bad)])


def test_frame_dataset_crops_differ_between_workers(tmp_path: Path) -> None:
    """Each DataLoader worker holds a copy of the dataset; its crop positions must come from its own stream."""
    import torch

    from speechkit.data.vad_mixtures import FrameVADDataset

    build(tmp_path / "vad")
    ds = FrameVADDataset([str(tmp_path / "vad" / "train.json")], crop_seconds=0.2)
    one = torch.utils.data.Subset(ds, [0] * 8)  # the same file 8 times: only the crop position varies
    loader = torch.utils.data.DataLoader(one, batch_size=1, num_workers=2, collate_fn=lambda b: b[0][0])
    torch.manual_seed(0)
    crops = [x.tobytes() for x in loader]
    assert crops[0::2] != crops[1::2] and len(set(crops)) > 4
