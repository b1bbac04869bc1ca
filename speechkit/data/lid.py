"""Spoken language identification data: NeMo manifests with a language field -> labelled waveforms -> batches.

Any NeMo manifest whose lines carry a language code works; ``speechkit prepare synth --langs ...`` writes one
(``"lang"``, plus ``"engine"``, ``"voice"`` and ``"voice_group"``, which :class:`LIDDataset` can filter on).

* **Label map**: the sorted set of languages of the training manifests (:func:`build_label_map`); the model file
  stores it, and every other split is read against it. A line whose language is not in the map is an error that
  names the file, the line and the known languages (or, with ``skip_unknown``, is counted and left out).
* **Items**: a whole utterance, ``(samples float32 (N,), label int)``.
* **Batches** (:class:`LIDCollator`): in training, one crop length per batch is drawn uniformly from
  ``crop_range`` seconds and every longer utterance is cut to a random window of that length (shorter ones stay
  whole), so a batch holds little padding and the model sees 1-20 s of speech (TitaNet-LID's range) over training.
  For evaluation the utterances are kept whole. With an :class:`~speechkit.data.datasets.AugmentConfig`, each
  training utterance is first speed-perturbed (which moves pitch and formants, i.e. makes a new voice: what a test
  set of unseen voices asks for) and mixed with noise, then cropped.

Nothing is dropped silently: the lines left out (excluded engine, unknown language with ``skip_unknown``, shorter
than ``min_seconds``) are counted per reason in :attr:`LIDDataset.skipped` and shown by :meth:`LIDDataset.report`.

Example:
    >>> labels = build_label_map(["data/synth_lid/train.json"])  # doctest: +SKIP
    >>> ds = LIDDataset(["data/synth_lid/train.json"], labels)  # doctest: +SKIP
    >>> loader = DataLoader(ds, batch_size=32, shuffle=True, collate_fn=LIDCollator((1.0, 20.0)))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechkit.audio.io import load_audio
from speechkit.data.datasets import AugmentConfig, WaveformAugmenter, worker_rng
from speechkit.data.manifests import read_manifest

__all__ = ["LIDCollator", "LIDDataset", "LIDEntry", "UnknownLanguageError", "build_label_map", "random_crop"]


class UnknownLanguageError(ValueError):
    """A manifest line has no language, or one outside the label map; the message names the file and line."""


@dataclass(frozen=True)
class LIDEntry:
    """One labelled utterance of a manifest.

    Attributes:
        path: the audio file.
        offset: seconds into the file.
        duration: seconds.
        lang: the language code.
        label: its index in the label map.
        where: ``"<manifest>:<line>"`` for error messages.
        extra: the line's other fields (``engine``, ``voice`` ...).
    """

    path: Path
    offset: float
    duration: float
    lang: str
    label: int
    where: str
    extra: dict[str, Any]


def _lang_of(entry: Any, lang_field: str, where: str) -> str:
    lang = entry.lang if lang_field == "lang" else entry.extra.get(lang_field)
    if not isinstance(lang, str) or not lang:
        raise UnknownLanguageError(f"{where}: no language: the line needs a non-empty {lang_field!r} field")
    return lang


def build_label_map(manifests: Sequence[str | Path], lang_field: str = "lang") -> list[str]:
    """The sorted language codes found in the manifests (the class order of a model).

    Args:
        manifests: NeMo manifests.
        lang_field: the key holding the language code.

    Returns:
        Sorted, distinct language codes.

    Raises:
        UnknownLanguageError: a line without a language (the message names file and line).
        ManifestError: a malformed manifest line.
        ValueError: no manifest or no line at all.
    """
    if not manifests:
        raise ValueError("build_label_map needs at least one manifest")
    langs: set[str] = set()
    for m in manifests:
        for e in read_manifest(m, require_text=False, lang_field="lang"):
            langs.add(_lang_of(e, lang_field, f"{e.manifest}:{e.line}"))
    if not langs:
        raise ValueError(f"no lines in {list(map(str, manifests))}")
    return sorted(langs)


class LIDDataset:
    """A map-style dataset of labelled utterances (``torch.utils.data.Dataset`` protocol).

    Args:
        manifests: NeMo manifests with a language field.
        labels: the label map (class order); ``None`` = :func:`build_label_map` of ``manifests``.
        sample_rate: rate the audio is loaded at.
        lang_field: the key holding the language code.
        exclude: leave out lines whose field has one of these values, e.g. ``{"engine": ["festival"]}`` to hold an
            engine out of training (counted in :attr:`skipped` as ``"engine=festival"``).
        skip_unknown: count and leave out lines whose language is not in ``labels`` instead of raising.
        min_seconds: leave out (and count) utterances shorter than this.

    Attributes:
        entries: the kept :class:`LIDEntry` items.
        skipped: lines left out, per reason.

    Raises:
        UnknownLanguageError: a line without a language, or (without ``skip_unknown``) with one outside ``labels``.
        ManifestError: a malformed manifest line (file and line named).
        ValueError: every line was left out.
    """

    def __init__(self, manifests: Sequence[str | Path], labels: Sequence[str] | None = None,
                 sample_rate: int = 16000, lang_field: str = "lang",
                 exclude: dict[str, Sequence[str]] | None = None, skip_unknown: bool = False,
                 min_seconds: float = 0.0) -> None:
        self.labels = list(labels) if labels is not None else build_label_map(manifests, lang_field)
        index = {lang: i for i, lang in enumerate(self.labels)}
        self.sample_rate = sample_rate
        self.manifests = [str(m) for m in manifests]
        self.entries: list[LIDEntry] = []
        self.skipped: Counter = Counter()
        exclude = {k: set(v) for k, v in (exclude or {}).items()}
        for m in manifests:
            for e in read_manifest(m, require_text=False):
                where = f"{e.manifest}:{e.line}"
                lang = _lang_of(e, lang_field, where)
                fields = {**e.extra, "lang": e.lang}
                hit = next((f"{k}={fields.get(k)}" for k, vs in exclude.items() if fields.get(k) in vs), None)
                if hit:
                    self.skipped[hit] += 1
                    continue
                if lang not in index:
                    if skip_unknown:
                        self.skipped[f"language {lang!r} not in the label map"] += 1
                        continue
                    raise UnknownLanguageError(f"{where}: language {lang!r} is not one the model knows "
                                               f"({', '.join(self.labels)})")
                if e.duration < min_seconds:
                    self.skipped[f"shorter than {min_seconds} s"] += 1
                    continue
                self.entries.append(LIDEntry(e.audio_path(), e.offset, e.duration, lang, index[lang], where,
                                             dict(e.extra)))
        if not self.entries:
            raise ValueError(f"no usable lines in {self.manifests} ({self.report()})")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """The ``i``-th utterance: ``(samples float32 (N,), label)``.

        Raises:
            ValueError: the audio is missing, unreadable or empty (the message names the manifest line and file).
        """
        e = self.entries[i]
        try:
            samples = load_audio(e.path, self.sample_rate, offset=e.offset, duration=e.duration if e.offset else None)
        except FileNotFoundError:
            raise ValueError(f"{e.where}: audio file not found: {e.path}") from None
        except ValueError as err:
            raise ValueError(f"{e.where}: cannot read {e.path}: {err}") from None
        if samples.shape[0] == 0:
            raise ValueError(f"{e.where}: {e.path} holds no audio")
        return samples.astype(np.float32, copy=False), e.label

    def counts(self) -> dict[str, int]:
        """Kept utterances per language (label-map order)."""
        c = Counter(e.lang for e in self.entries)
        return {lang: c[lang] for lang in self.labels}

    def report(self) -> str:
        """One line: utterances kept and left out per reason."""
        text = f"{len(self.entries)} utterances kept"
        if self.skipped:
            text += "; left out: " + ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
        return text


def random_crop(samples: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of ``length`` samples (the whole array when it is not longer).

    Args:
        samples: ``(N,)``.
        length: window length in samples (> 0).
        rng: random generator for the start.

    Returns:
        ``(min(N, length),)``, a view of ``samples``.
    """
    if length <= 0:
        raise ValueError(f"crop length must be positive, got {length}")
    n = samples.shape[0]
    if n <= length:
        return samples
    start = int(rng.integers(n - length + 1))
    return samples[start : start + length]


class LIDCollator:
    """Pads (and in training crops) a list of :class:`LIDDataset` items into a batch.

    Args:
        crop_range: ``(lo, hi)`` seconds: one crop length per batch, uniform in the range; ``None`` = whole
            utterances (evaluation).
        sample_rate: samples per second of the items.
        seed: seed of the crop lengths and positions (and of the augmentation draws), mixed with the DataLoader
            worker's seed on the first call so that workers do not repeat one another's crops.
        augment: waveform augmentation applied to each utterance before it is cropped (training only; ``None`` or
            a config with nothing enabled = off).

    Returns (when called):
        ``{"audio": (B, N) float32, "audio_lens": (B,) int64, "labels": (B,) int64}``.
    """

    def __init__(self, crop_range: tuple[float, float] | Sequence[float] | None = None, sample_rate: int = 16000,
                 seed: int = 0, augment: AugmentConfig | None = None) -> None:
        if crop_range is not None:
            lo, hi = float(crop_range[0]), float(crop_range[1])
            if not 0 < lo <= hi:
                raise ValueError(f"crop_range must be 0 < lo <= hi seconds, got {list(crop_range)}")
            crop_range = (lo, hi)
        self.crop_range = crop_range
        self.sample_rate = sample_rate
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self.augmenter = WaveformAugmenter.from_config(augment, sample_rate, seed)

    def __call__(self, items: Sequence[tuple[np.ndarray, int]]) -> dict[str, Any]:
        import torch

        if not items:
            raise ValueError("cannot collate an empty batch")
        waves = [x for x, _ in items]
        if self.augmenter is not None:
            waves = [self.augmenter(x) for x in waves]
        if self.crop_range is not None:
            if self._rng is None:
                self._rng = worker_rng(self.seed)  # each DataLoader worker holds a copy of this collator
            length = max(1, round(self._rng.uniform(*self.crop_range) * self.sample_rate))
            waves = [random_crop(x, length, self._rng) for x in waves]
        n = max(x.shape[0] for x in waves)
        audio = torch.zeros(len(waves), n)
        for k, x in enumerate(waves):
            audio[k, : x.shape[0]] = torch.from_numpy(np.ascontiguousarray(x))
        return {"audio": audio, "audio_lens": torch.tensor([x.shape[0] for x in waves], dtype=torch.long),
                "labels": torch.tensor([y for _, y in items], dtype=torch.long)}
