"""ASRDataset and make_dataloader on the tiny corpus: padding, lengths, no cut dropped, bad audio and bad text."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet
from lhotse.utils import fastcopy

from speechkit.data.datasets import ASRDataset, AugmentConfig, TranscriptError, make_dataloader, open_cuts
from speechkit.data.manifests import manifest_to_cutset
from speechkit.text.tokenizer import Tokenizer, TokenizerTrainConfig, train_tokenizer_from_manifests

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "manifests" / "tiny"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return train_tokenizer_from_manifests([TINY / "train.json"], tmp_path_factory.mktemp("tok"),
                                          TokenizerTrainConfig(vocab_size=40))


@pytest.fixture(scope="module")
def cuts() -> CutSet:
    return manifest_to_cutset(TINY / "train.json").to_eager()


def with_text(cut, text: str):
    return fastcopy(cut, supervisions=[fastcopy(cut.supervisions[0], text=text)])


def test_padding_lengths_and_tokens(cuts: CutSet, tokenizer: Tokenizer) -> None:
    some = cuts.subset(first=4)
    batch = ASRDataset(tokenizer)[some]
    b = 4
    assert batch["audio"].dtype == torch.float32 and batch["audio"].shape[0] == b
    assert batch["cut_ids"] == [c.id for c in some]
    for i, cut in enumerate(some):
        samples = cut.load_audio()[0]
        n = int(batch["audio_lens"][i])
        assert n == samples.shape[0] == cut.num_samples
        np.testing.assert_allclose(batch["audio"][i, :n].numpy(), samples, atol=1e-6)
        assert not batch["audio"][i, n:].any()  # zero padding
        ids = tokenizer.encode(cut.supervisions[0].text)
        k = int(batch["token_lens"][i])
        assert batch["tokens"][i, :k].tolist() == ids
        assert not batch["tokens"][i, k:].any()
        assert batch["texts"][i] == tokenizer.normalize(cut.supervisions[0].text)
    assert batch["audio"].shape[1] == int(batch["audio_lens"].max())
    assert batch["tokens"].shape[1] == int(batch["token_lens"].max())
    assert batch["tokens"].dtype == batch["token_lens"].dtype == batch["audio_lens"].dtype == torch.int64
    assert (batch["num_skipped_audio"], batch["num_skipped_text"], batch["skipped_ids"]) == (0, 0, [])


@pytest.mark.parametrize(("num_buckets", "world_size"), [(1, 1), (3, 1), (3, 2)])
def test_loader_drops_no_cut_and_respects_max_duration(tokenizer: Tokenizer, num_buckets: int,
                                                        world_size: int) -> None:
    """Invariant: over one epoch, every cut appears exactly once across all ranks. Lhotse closes a batch once it is
    close to ``max_duration`` padded seconds, so the batch without its last cut always fits."""
    all_cuts = open_cuts([TINY / "train.json", TINY / "dev.json"])
    expected = sorted(c.id for c in all_cuts)
    max_duration = 8.0
    seen: list[str] = []
    for rank in range(world_size):
        loader = make_dataloader(all_cuts, tokenizer, max_duration, shuffle=True, seed=3, rank=rank,
                                 world_size=world_size, num_buckets=num_buckets)
        loader.sampler.set_epoch(1)
        for batch in loader:
            seconds = batch["audio_lens"] / 16000
            assert len(seconds) == 1 or (len(seconds) - 1) * float(seconds[:-1].max()) <= max_duration + 1e-6
            seen += batch["cut_ids"]
    assert sorted(seen) == expected


def test_unreadable_audio_is_skipped_counted_and_logged(cuts: CutSet, tokenizer: Tokenizer, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    good = list(cuts.subset(first=3))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    bad = fastcopy(good[1], id="broken-cut",
                   recording=fastcopy(good[1].recording, id="broken-rec",
                                      sources=[fastcopy(good[1].recording.sources[0], source=str(broken))]))
    missing = fastcopy(bad, id="missing-cut", recording=fastcopy(
        bad.recording, sources=[fastcopy(bad.recording.sources[0], source=str(tmp_path / "nope.wav"))]))
    dataset = ASRDataset(tokenizer)
    with caplog.at_level(logging.WARNING, logger="speechkit.data.datasets"):
        batch = dataset[CutSet.from_cuts([good[0], bad, good[2], missing])]
    assert batch["cut_ids"] == [good[0].id, good[2].id]
    assert batch["audio"].shape[0] == 2
    assert batch["num_skipped_audio"] == 2 and batch["skipped_ids"] == ["broken-cut", "missing-cut"]
    assert dataset.skipped_audio == 2
    assert "broken-cut" in caplog.text and "missing-cut" in caplog.text
    # A batch whose every cut is unreadable is empty, not an exception.
    empty = dataset[CutSet.from_cuts([bad])]
    assert empty["audio"].shape == (0, 0) and empty["tokens"].shape == (0, 0) and empty["num_skipped_audio"] == 1
    assert dataset.skipped_audio == 3


def test_unknown_characters_error_names_the_cut(cuts: CutSet, tmp_path: Path) -> None:
    # A tokenizer without the English normaliser knows only the characters of its training text.
    tok = train_tokenizer_from_manifests([TINY / "train.json"], tmp_path / "tok",
                                         TokenizerTrainConfig(vocab_size=40, normalize=False))
    first, second = list(cuts.subset(first=2))
    odd = with_text(second, "naïve façade")
    with pytest.raises(TranscriptError, match=f"cut '{second.id}'.*'ï'"):
        ASRDataset(tok)[CutSet.from_cuts([first, odd])]
    dataset = ASRDataset(tok, on_bad_text="skip")
    batch = dataset[CutSet.from_cuts([first, odd])]
    assert batch["cut_ids"] == [first.id]
    assert (batch["num_skipped_text"], batch["skipped_ids"], dataset.skipped_text) == (1, [second.id], 1)
    with pytest.raises(ValueError, match="on_bad_text"):
        ASRDataset(tok, on_bad_text="ignore")


def test_augmentation_speed_and_noise(cuts: CutSet, tokenizer: Tokenizer) -> None:
    one = CutSet.from_cuts([cuts[0]])
    clean = ASRDataset(tokenizer)[one]
    n = int(clean["audio_lens"][0])
    fast = ASRDataset(tokenizer, augment=AugmentConfig(speed_factors=[1.25]))[one]
    assert int(fast["audio_lens"][0]) == round(n / 1.25)
    noisy_cfg = AugmentConfig(noise_prob=1.0, snr_range=[10.0, 10.0], noise_kinds=["white"])
    noisy = ASRDataset(tokenizer, augment=noisy_cfg, seed=1)[one]
    again = ASRDataset(tokenizer, augment=noisy_cfg, seed=1)[one]
    torch.testing.assert_close(noisy["audio"], again["audio"])  # seeded: reproducible
    speech = clean["audio"][0].double()
    noise = noisy["audio"][0].double() - speech
    snr = 10 * torch.log10(speech.pow(2).mean() / noise.pow(2).mean())
    assert float(snr) == pytest.approx(10.0, abs=0.01)
    assert noisy["tokens"].tolist() == clean["tokens"].tolist()
    with pytest.raises(ValueError, match="snr_range"):
        ASRDataset(tokenizer, augment=AugmentConfig(noise_prob=0.5, snr_range=[30.0, 10.0]))


def test_dataloader_worker_processes(cuts: CutSet, tokenizer: Tokenizer) -> None:
    loader = make_dataloader(open_cuts(TINY / "dev.json"), tokenizer, max_duration=30.0, num_workers=1, num_buckets=1)
    ids = [i for batch in loader for i in batch["cut_ids"]]
    assert len(ids) == 4


def test_waveform_augmenter_speed_then_noise_at_the_snr() -> None:
    from speechkit.data.datasets import WaveformAugmenter

    x = (np.sin(np.arange(16000) * 0.05) * 0.3).astype(np.float32)
    faster = WaveformAugmenter(AugmentConfig(speed_factors=[1.25]), 16000, seed=0)(x)
    assert faster.shape[0] == round(16000 / 1.25)
    noisy = WaveformAugmenter(AugmentConfig(noise_prob=1.0, snr_range=[10.0, 10.0]), 16000, seed=0)(x)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((noisy - x) ** 2))
    assert abs(snr - 10.0) < 1e-3
    # The same seed draws the same noise; another seed another.
    again = WaveformAugmenter(AugmentConfig(noise_prob=1.0, snr_range=[10.0, 10.0]), 16000, seed=0)(x)
    other = WaveformAugmenter(AugmentConfig(noise_prob=1.0, snr_range=[10.0, 10.0]), 16000, seed=1)(x)
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)
    with pytest.raises(ValueError, match="speed_factors"):
        WaveformAugmenter(AugmentConfig(speed_factors=[0.0]), 16000)


def test_waveform_augmenter_pads_with_a_quiet_floor_before_the_noise() -> None:
    from speechkit.data.datasets import WaveformAugmenter

    x = (np.sin(np.arange(16000) * 0.05) * 0.3).astype(np.float32)
    cfg = AugmentConfig(pad_prob=1.0, pad_range=[0.25, 0.5], pad_level_db=[-60.0, -60.0])
    aug = WaveformAugmenter(cfg, 16000, seed=0)
    lengths = set()
    for _ in range(20):
        y = aug(x)
        # The utterance is intact somewhere inside, between 0.25-0.5 s of floor on each side.
        n_before = next(i for i in range(y.shape[0] - x.shape[0] + 1) if np.array_equal(y[i:i + 16000], x))
        n_after = y.shape[0] - n_before - 16000
        assert 4000 <= n_before <= 8000 and 4000 <= n_after <= 8000
        floor = np.concatenate([y[:n_before], y[n_before + 16000:]])
        assert abs(20 * np.log10(np.sqrt(np.mean(floor**2))) + 60.0) < 0.5
        lengths.add(y.shape[0])
    assert len(lengths) > 5  # drawn per utterance
    # With noise on top, the noise covers the padding too (the floor is no longer at -60 dBFS).
    both = WaveformAugmenter(AugmentConfig(pad_prob=1.0, pad_range=[0.5, 0.5], pad_level_db=[-60.0, -60.0],
                                           noise_prob=1.0, snr_range=[10.0, 10.0]), 16000, seed=0)(x)
    assert both.shape[0] == 32000 and np.sqrt(np.mean(both[:8000] ** 2)) > 0.01
    for bad in ({"pad_prob": 1.5}, {"pad_range": [0.5, 0.2]}, {"pad_range": [-0.1, 0.2]},
                {"pad_level_db": [-50.0, -60.0]}, {"pad_level_db": [-20.0, 3.0]}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            WaveformAugmenter(AugmentConfig(**bad), 16000)
