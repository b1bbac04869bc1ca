"""LID data: label map, language errors naming the line, exclusions counted, crops and batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechkit.audio.io import save_audio
from speechkit.data.lid import LIDCollator, LIDDataset, UnknownLanguageError, build_label_map, random_crop


def write_corpus(root: Path, rows: list[tuple[str, float, str]], name: str = "m.json") -> Path:
    """rows: (lang, seconds, engine) -> wavs whose samples encode their row index, and a manifest."""
    lines = []
    for i, (lang, seconds, engine) in enumerate(rows):
        n = int(seconds * 16000)
        wav = save_audio(root / f"{name}_{i}.wav", np.full(n, (i + 1) / 100, dtype=np.float32))
        lines.append(json.dumps({"audio_filepath": str(wav), "duration": seconds, "lang": lang, "engine": engine}))
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_label_map_and_items(tmp_path: Path) -> None:
    m = write_corpus(tmp_path, [("fr", 1.0, "espeak-ng"), ("de", 0.5, "espeak-ng"), ("fr", 0.25, "festival")])
    assert build_label_map([m]) == ["de", "fr"]
    ds = LIDDataset([m])
    assert ds.labels == ["de", "fr"] and len(ds) == 3 and ds.counts() == {"de": 1, "fr": 2}
    x, y = ds[1]
    assert y == 0 and x.dtype == np.float32 and x.shape == (8000,)
    assert np.allclose(x, 0.02, atol=1e-3)  # the second row's audio
    # A given label map fixes the class order, including languages absent from this manifest.
    assert LIDDataset([m], ["de", "en", "fr"])[0][1] == 2


def test_unknown_and_missing_language_name_the_line(tmp_path: Path) -> None:
    m = write_corpus(tmp_path, [("de", 0.5, "e"), ("xx", 0.5, "e")])
    with pytest.raises(UnknownLanguageError, match=r"m\.json:2: language 'xx' is not one the model knows \(de, fr\)"):
        LIDDataset([m], ["de", "fr"])
    ds = LIDDataset([m], ["de", "fr"], skip_unknown=True)
    assert len(ds) == 1 and ds.skipped == {"language 'xx' not in the label map": 1}
    assert "1 language 'xx' not in the label map" in ds.report()
    no_lang = tmp_path / "nolang.json"
    no_lang.write_text(json.dumps({"audio_filepath": str(tmp_path / "m.json_0.wav"), "duration": 0.5}) + "\n")
    with pytest.raises(UnknownLanguageError, match=r"nolang\.json:1: no language"):
        LIDDataset([no_lang], ["de"])
    with pytest.raises(UnknownLanguageError, match=r"nolang\.json:1"):
        build_label_map([no_lang])


def test_exclusions_and_short_items_are_counted(tmp_path: Path) -> None:
    m = write_corpus(tmp_path, [("de", 1.0, "espeak-ng"), ("de", 1.0, "festival"), ("fr", 0.1, "espeak-ng"),
                                ("fr", 1.0, "festival")])
    ds = LIDDataset([m], exclude={"engine": ["festival"]}, min_seconds=0.2)
    assert len(ds) == 1 and ds.skipped == {"engine=festival": 2, "shorter than 0.2 s": 1}
    with pytest.raises(ValueError, match="no usable lines"):
        LIDDataset([m], exclude={"engine": ["festival", "espeak-ng"]})


def test_bad_audio_names_the_line(tmp_path: Path) -> None:
    m = tmp_path / "bad.json"
    m.write_text(json.dumps({"audio_filepath": str(tmp_path / "missing.wav"), "duration": 1.0, "lang": "de"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.json:1: .*missing\.wav"):
        LIDDataset([m])[0]


def test_random_crop() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(100)
    starts = set()
    for _ in range(50):
        c = random_crop(x, 30, rng)
        assert c.shape == (30,) and np.array_equal(c, np.arange(c[0], c[0] + 30))
        starts.add(int(c[0]))
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 70
    assert random_crop(x, 200, rng) is x
    with pytest.raises(ValueError):
        random_crop(x, 0, rng)


def test_collator_crops_per_batch_and_pads() -> None:
    items = [(np.ones(16000 * 5, np.float32), 0), (np.ones(16000 * 3, np.float32), 1), (np.ones(8000, np.float32), 2)]
    collate = LIDCollator((1.0, 2.0), 16000, seed=0)
    for _ in range(10):
        b = collate(items)
        lens = b["audio_lens"].tolist()
        # One crop length per batch: every item longer than it is cut to exactly that length.
        assert 16000 <= lens[0] <= 32000 and lens[1] == lens[0] and lens[2] == 8000
        assert b["audio"].shape == (3, lens[0]) and float(b["audio"][2, 8000:].abs().sum()) == 0.0
        assert b["labels"].tolist() == [0, 1, 2]
    whole = LIDCollator(None)(items)
    assert whole["audio_lens"].tolist() == [80000, 48000, 8000]
    with pytest.raises(ValueError, match="crop_range"):
        LIDCollator((2.0, 1.0))


def test_collator_workers_and_epochs_draw_different_crops() -> None:
    """Two DataLoader workers hold copies of one collator; each must crop with its own random stream, a new one
    each epoch, and the same ones again for the same torch seed."""
    import torch

    items = [(np.arange(16000 * 4, dtype=np.float32), 0)] * 8
    loader = torch.utils.data.DataLoader(items, batch_size=1, collate_fn=LIDCollator((0.5, 3.0), 16000, seed=0),
                                         num_workers=2)

    def epoch() -> list[tuple[int, float]]:
        return [(int(b["audio_lens"][0]), float(b["audio"][0, 0])) for b in loader]

    torch.manual_seed(0)
    first, second = epoch(), epoch()
    # Batches alternate between the workers: 0, 2, 4, 6 come from worker 0, 1, 3, 5, 7 from worker 1.
    assert len(set(first)) == len(first) and first[0::2] != first[1::2]
    assert second != first
    torch.manual_seed(0)
    assert epoch() == first


def test_collator_augments_before_cropping() -> None:
    from speechkit.data.datasets import AugmentConfig

    rng = np.random.default_rng(0)
    items = [(rng.standard_normal(8000).astype(np.float32) * 0.1, 0), (rng.standard_normal(6000).astype(np.float32) * 0.1, 1)]
    # Half speed doubles every utterance; with no crop the lengths show it.
    slow = LIDCollator(None, 16000, augment=AugmentConfig(speed_factors=[0.5]))(items)
    assert slow["audio_lens"].tolist() == [16000, 12000]
    # The crop applies to the perturbed waveform: 0.5 s crops of the doubled utterances are full 0.5 s windows.
    cropped = LIDCollator((0.5, 0.5), 16000, augment=AugmentConfig(speed_factors=[0.5]))(items)
    assert cropped["audio_lens"].tolist() == [8000, 8000]
    # Noise only: same lengths, different samples; nothing enabled: the collator leaves the audio alone.
    noisy = LIDCollator(None, 16000, augment=AugmentConfig(noise_prob=1.0, snr_range=[0.0, 0.0]))(items)
    assert noisy["audio_lens"].tolist() == [8000, 6000]
    assert not np.allclose(noisy["audio"][0, :8000].numpy(), items[0][0])
    plain = LIDCollator(None, 16000, augment=AugmentConfig())(items)
    assert np.array_equal(plain["audio"][0, :8000].numpy(), items[0][0])
    assert plain["labels"].tolist() == [0, 1]
