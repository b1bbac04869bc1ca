"""ASR training data: a Lhotse-style dataset (CutSet batch -> padded tensors) and the bucketing data loader.

Lhotse splits the work three ways: a *sampler* decides which cuts form a batch (here Lhotse's
``DynamicBucketingSampler``: similar durations together, at most ``max_duration`` padded seconds per batch), the
*dataset* turns that CutSet into tensors (:class:`ASRDataset`, running in the DataLoader workers), and the DataLoader
only moves batches between processes (``batch_size=None``). :func:`make_dataloader` wires the three.

Fault tolerance, so one bad file never stops a long run and nothing vanishes unnoticed:

- an audio file that cannot be read (missing, corrupt, empty) is skipped; the batch reports it
  (``num_skipped_audio``, ``skipped_ids``), a warning names the cut and the error, and the LightningModule adds the
  counts to the values it logs;
- a transcript with characters the tokenizer cannot represent is an error naming the cut (:class:`TranscriptError`),
  or, with ``on_bad_text="skip"``, counted and skipped the same way (``num_skipped_text``).

Example:
    >>> from speechkit.data.manifests import load_cutset
    >>> cuts = load_cutset("manifests/tiny/train.json")  # doctest: +SKIP
    >>> loader = make_dataloader(cuts, tokenizer, max_duration=20.0, shuffle=True, seed=0)  # doctest: +SKIP
    >>> batch = next(iter(loader))  # doctest: +SKIP
    >>> batch["audio"].shape, batch["tokens"].shape  # doctest: +SKIP
    (torch.Size([5, 61440]), torch.Size([5, 17]))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from speechkit.audio.augment import AugmentError, colored_noise, mix_noise, speed_perturb
from speechkit.text.tokenizer import Tokenizer, UnknownCharactersError

if TYPE_CHECKING:  # pragma: no cover
    from lhotse import CutSet
    from lhotse.cut import Cut

    from speechkit.data.sampling import SamplerConfig

__all__ = ["ASRDataset", "AugmentConfig", "TranscriptError", "WaveformAugmenter", "make_dataloader", "open_cuts",
           "worker_rng"]

logger = logging.getLogger(__name__)

BAD_TEXT_POLICIES = ("error", "skip")
_NOISE_KINDS = ("white", "pink", "brown", "blue")


class TranscriptError(ValueError):
    """A cut's transcript cannot be encoded by the tokenizer; the message names the cut."""


@dataclass
class AugmentConfig:
    """On-the-fly waveform augmentation in training (all off by default).

    Attributes:
        speed_factors: speed factors to draw from uniformly, e.g. ``[0.9, 1.0, 1.1]`` (empty = off). A factor
            < 1 makes the utterance longer, so a batch may exceed ``max_duration`` by up to ``1 / min(factor)``.
        speed_prob: probability that an utterance is speed-perturbed at all.
        noise_prob: probability that an utterance gets additive noise.
        snr_range: ``[low, high]`` signal-to-noise ratio in dB, drawn uniformly.
        noise_files: audio files of noise (drawn uniformly, looped or cropped at a random offset). Each is read once
            per worker process and kept in memory. Empty: coloured noise of the ``noise_kinds``.
        noise_kinds: coloured noise kinds (``white``, ``pink``, ``brown``, ``blue``) used without ``noise_files``.
        pad_prob: probability that an utterance gets a stretch of near-silence before and after it. Synthetic speech
            starts and stops with the first and last phone, while recordings have pauses around speech; a model that
            never heard silence loses accuracy on it (the front end normalises over the whole input).
        pad_range: ``[low, high]`` seconds of silence at each end, drawn uniformly and independently per side.
        pad_level_db: ``[low, high]`` level in dBFS of the white noise floor that fills the silence, drawn
            uniformly per utterance (-100 is as quiet as the front end's dither, i.e. digital silence).
    """

    speed_factors: list[float] = field(default_factory=list)
    speed_prob: float = 1.0
    noise_prob: float = 0.0
    snr_range: list[float] = field(default_factory=lambda: [10.0, 30.0])
    noise_files: list[str] = field(default_factory=list)
    noise_kinds: list[str] = field(default_factory=lambda: ["white", "pink", "brown"])
    pad_prob: float = 0.0
    pad_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    pad_level_db: list[float] = field(default_factory=lambda: [-100.0, -50.0])

    @property
    def enabled(self) -> bool:
        return (bool(self.speed_factors) and self.speed_prob > 0) or self.noise_prob > 0 or self.pad_prob > 0

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        if any(not f > 0 for f in self.speed_factors):
            raise ValueError(f"AugmentConfig.speed_factors must be > 0, got {self.speed_factors}")
        for name in ("speed_prob", "noise_prob", "pad_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if len(self.snr_range) != 2 or self.snr_range[0] > self.snr_range[1]:
            raise ValueError(f"AugmentConfig.snr_range must be [low, high] dB, got {self.snr_range}")
        if len(self.pad_range) != 2 or not 0.0 <= self.pad_range[0] <= self.pad_range[1]:
            raise ValueError(f"AugmentConfig.pad_range must be [low, high] seconds with 0 <= low <= high, "
                             f"got {self.pad_range}")
        if len(self.pad_level_db) != 2 or not self.pad_level_db[0] <= self.pad_level_db[1] <= 0.0:
            raise ValueError(f"AugmentConfig.pad_level_db must be [low, high] dBFS with low <= high <= 0, "
                             f"got {self.pad_level_db}")
        bad = [k for k in self.noise_kinds if k not in _NOISE_KINDS]
        if bad or (self.noise_prob > 0 and not self.noise_files and not self.noise_kinds):
            raise ValueError(f"AugmentConfig.noise_kinds must be non-empty kinds among {_NOISE_KINDS}, "
                             f"got {self.noise_kinds}")
        missing = [f for f in self.noise_files if not Path(f).is_file()]
        if missing:
            raise ValueError(f"AugmentConfig.noise_files: not found: {missing[:3]}")


def worker_rng(seed: int) -> np.random.Generator:
    """A random stream for the calling process: ``seed`` alone in the main process; in a DataLoader worker,
    ``seed`` mixed with the worker's torch seed, which differs between workers and, because non-persistent workers
    are started afresh each epoch from a base seed drawn from torch's (seeded) generator, between epochs too.

    Objects that draw random numbers inside a worker (crops, augmentation) call this on their first draw: a
    generator made in ``__init__`` would be copied into every worker, and every worker would repeat its draws."""
    info = torch.utils.data.get_worker_info()
    return np.random.default_rng(seed if info is None else [seed, info.seed])


class WaveformAugmenter:
    """Applies an :class:`AugmentConfig` to waveforms: speed perturbation, silence padding, then additive noise
    (which covers the padding too, as a recording's background would).

    Used by the ASR dataset and the LID collator alike. Each DataLoader worker process draws from its own random
    stream (:func:`worker_rng`, picked on the first call), so workers do not repeat one another's (or the last
    epoch's) draws; noise files are read once per process and kept.

    Args:
        cfg: what to apply (validated here).
        sample_rate: rate of the waveforms it is given (and of the noise files after loading).
        seed: seed of the draws.

    Example:
        >>> aug = WaveformAugmenter(AugmentConfig(speed_factors=[0.9, 1.1], noise_prob=1.0), 16000, seed=0)
        >>> aug(np.zeros(16000, dtype=np.float32) + 0.1).shape[0] in (14545, 17778)
        True
    """

    @classmethod
    def from_config(cls, cfg: AugmentConfig | None, sample_rate: int, seed: int = 0) -> WaveformAugmenter | None:
        """The augmenter for ``cfg``, or None when there is no config or it enables nothing (validated either way)."""
        if cfg is None:
            return None
        cfg.validate()
        return cls(cfg, sample_rate, seed) if cfg.enabled else None

    def __init__(self, cfg: AugmentConfig, sample_rate: int, seed: int = 0) -> None:
        cfg.validate()
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._noise: dict[str, np.ndarray] = {}

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """``(N,)`` float32 -> ``(N',)`` float32 (``N' = round(N / factor)`` when speed-perturbed)."""
        aug = self.cfg
        if self._rng is None:
            self._rng = worker_rng(self.seed)
        rng = self._rng
        if aug.speed_factors and rng.random() < aug.speed_prob:
            factor = float(aug.speed_factors[int(rng.integers(len(aug.speed_factors)))])
            if factor != 1.0:
                samples = speed_perturb(samples, self.sample_rate, factor)
        if aug.pad_prob > 0 and rng.random() < aug.pad_prob:
            samples = self._pad(samples, rng)
        if aug.noise_prob > 0 and rng.random() < aug.noise_prob:
            snr = float(rng.uniform(aug.snr_range[0], aug.snr_range[1]))
            if aug.noise_files:
                noise = self._noise_file(aug.noise_files[int(rng.integers(len(aug.noise_files)))])
            else:
                kind = aug.noise_kinds[int(rng.integers(len(aug.noise_kinds)))]
                noise = colored_noise(kind, samples.shape[0], rng)  # type: ignore[arg-type]
            try:
                samples = mix_noise(samples, noise, snr, rng)
            except AugmentError as err:  # silent speech: the SNR is undefined, keep the clean utterance
                logger.debug("no noise mixed: %s", err)
        return samples

    def _pad(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``samples`` between two stretches of a white noise floor (lengths and level from the config)."""
        aug = self.cfg
        before, after = (int(rng.uniform(aug.pad_range[0], aug.pad_range[1]) * self.sample_rate) for _ in range(2))
        level = 10.0 ** (float(rng.uniform(aug.pad_level_db[0], aug.pad_level_db[1])) / 20.0)
        floor = (level * rng.standard_normal(before + after)).astype(np.float32)
        return np.concatenate([floor[:before], samples.astype(np.float32, copy=False), floor[before:]])

    def _noise_file(self, path: str) -> np.ndarray:
        if path not in self._noise:
            from speechkit.audio.io import load_audio

            self._noise[path] = load_audio(path, self.sample_rate)
        return self._noise[path]


class ASRDataset(torch.utils.data.Dataset):
    """Maps a CutSet batch (what Lhotse's samplers yield) to padded audio and token tensors.

    Args:
        tokenizer: encodes each cut's transcript (the supervisions' texts joined by spaces).
        sample_rate: audio is resampled to this rate when a cut has another.
        augment: waveform augmentation, applied only when given (pass it for training only).
        seed: seed of the augmentation draws (mixed with the DataLoader worker id).
        on_bad_text: ``"error"`` (raise :class:`TranscriptError` naming the cut) or ``"skip"`` (count and skip) for
            a transcript the tokenizer cannot represent.

    Attributes:
        skipped_audio: cuts skipped in this process because their audio could not be read.
        skipped_text: cuts skipped in this process because of their transcript (``on_bad_text="skip"``).

    Returns (``dataset[cuts]``), a dict; B = cuts kept, N = longest kept waveform, U = longest token sequence:
        - ``audio``: ``(B, N)`` float32, zero padded;
        - ``audio_lens``: ``(B,)`` int64 samples;
        - ``tokens``: ``(B, U)`` int64 token ids, padded with 0 (use ``token_lens``);
        - ``token_lens``: ``(B,)`` int64;
        - ``cut_ids``: list of B cut ids; ``texts``: list of B normalised transcripts (WER references);
        - ``num_skipped_audio``, ``num_skipped_text``: ints; ``skipped_ids``: ids of the skipped cuts.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        sample_rate: int = 16000,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        on_bad_text: str = "error",
    ) -> None:
        super().__init__()
        if on_bad_text not in BAD_TEXT_POLICIES:
            raise ValueError(f"on_bad_text must be one of {', '.join(BAD_TEXT_POLICIES)}, got {on_bad_text!r}")
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self._augmenter = WaveformAugmenter.from_config(augment, sample_rate, seed)
        self.on_bad_text = on_bad_text
        self.skipped_audio = 0
        self.skipped_text = 0

    def __getitem__(self, cuts: CutSet) -> dict[str, Any]:
        audios: list[np.ndarray] = []
        token_lists: list[list[int]] = []
        ids: list[str] = []
        texts: list[str] = []
        skipped: list[str] = []
        bad_audio = bad_text = 0
        for cut in cuts:
            text = " ".join(s.text for s in cut.supervisions if s.text)
            try:
                tokens = self.tokenizer.encode(text)
            except UnknownCharactersError as err:
                if self.on_bad_text == "error":
                    raise TranscriptError(f"cut {cut.id!r}: {err} (set on_bad_text='skip' to count and skip such "
                                          f"cuts)") from None
                logger.warning("skipping cut %r: %s", cut.id, err)
                bad_text += 1
                skipped.append(cut.id)
                continue
            samples = self._load(cut)
            if samples is None:
                bad_audio += 1
                skipped.append(cut.id)
                continue
            if self._augmenter is not None:
                samples = self._augmenter(samples)
            audios.append(samples)
            token_lists.append(tokens)
            ids.append(cut.id)
            texts.append(self.tokenizer.normalize(text))
        self.skipped_audio += bad_audio
        self.skipped_text += bad_text
        batch = len(audios)
        audio_lens = torch.tensor([a.shape[0] for a in audios], dtype=torch.long)
        token_lens = torch.tensor([len(t) for t in token_lists], dtype=torch.long)
        audio = torch.zeros(batch, int(audio_lens.max()) if batch else 0, dtype=torch.float32)
        tokens = torch.zeros(batch, int(token_lens.max()) if batch else 0, dtype=torch.long)
        for i, (a, t) in enumerate(zip(audios, token_lists, strict=True)):
            audio[i, : a.shape[0]] = torch.from_numpy(a)
            tokens[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        return {
            "audio": audio, "audio_lens": audio_lens, "tokens": tokens, "token_lens": token_lens,
            "cut_ids": ids, "texts": texts,
            "num_skipped_audio": bad_audio, "num_skipped_text": bad_text, "skipped_ids": skipped,
        }

    def _load(self, cut: Cut) -> np.ndarray | None:
        """Mono float32 samples at :attr:`sample_rate`, or ``None`` (logged) when the audio cannot be read."""
        try:
            if cut.sampling_rate != self.sample_rate:
                cut = cut.resample(self.sample_rate)
            samples = np.asarray(cut.load_audio(), dtype=np.float32)
            if samples.ndim == 2:
                samples = samples.mean(axis=0)
            if samples.size == 0 or not np.all(np.isfinite(samples)):
                raise ValueError("no samples" if samples.size == 0 else "NaN or infinite samples")
        except Exception as err:  # any reader failure: lhotse, soundfile, ffmpeg, a missing file ...
            logger.warning("skipping cut %r: cannot read its audio: %s: %s", cut.id, type(err).__name__, err)
            return None
        return np.ascontiguousarray(samples)


def open_cuts(paths: str | Path | Sequence[str | Path]) -> CutSet:
    """A lazy CutSet over one or more manifests (NeMo ``.json`` or Lhotse ``.jsonl[.gz]``), read in order.

    Raises:
        ManifestError: a file does not exist.
        ValueError: no paths, or an unknown suffix.
    """
    from lhotse import CutSet

    from speechkit.data.manifests import load_cutset

    plist = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not plist:
        raise ValueError("open_cuts: no manifest paths given")
    sets = [load_cutset(p) for p in plist]
    if len(sets) == 1:
        return sets[0]
    from lhotse.lazy import LazyIteratorChain

    return CutSet(LazyIteratorChain(*[s.data for s in sets]))


def make_dataloader(
    cuts: CutSet,
    tokenizer: Tokenizer,
    max_duration: float,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    num_buckets: int = 10,
    augment: AugmentConfig | None = None,
    sample_rate: int = 16000,
    on_bad_text: str = "error",
    duration_bins: Sequence[float] | None = None,
    quadratic_duration: float | None = None,
    buffer_size: int = 20000,
    max_cuts: int | None = None,
    sampler: SamplerConfig | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`ASRDataset` batches drawn by Lhotse's ``DynamicBucketingSampler``.

    Nothing is dropped: ``drop_last=False``, so every cut of an epoch is in some batch. With ``world_size > 1`` each
    rank gets every ``world_size``-th batch, and at the end of an epoch Lhotse re-splits the last batches so that
    every rank gets one (repeating a few cuts when there are fewer cuts than ranks) rather than letting ranks
    deadlock. Call ``loader.sampler.set_epoch(epoch)`` (Lightning does) for a new shuffle per epoch.

    Args:
        cuts: a (lazy) CutSet, e.g. :func:`open_cuts`.
        tokenizer: encodes the transcripts.
        max_duration: padded seconds per batch (count x longest cut).
        shuffle: shuffle within the bucketing buffer (training).
        seed: sampler shuffle seed; also seeds the augmentation (with the rank).
        rank, world_size: this process's data-parallel rank and the number of ranks.
        num_workers: DataLoader worker processes (0 = load in the main process).
        num_buckets: duration buckets (boundaries estimated from the first cuts unless ``duration_bins`` is given);
            1 = no bucketing (Lhotse's ``DynamicCutSampler``).
        augment: waveform augmentation (training only).
        sample_rate: audio rate of the batches.
        on_bad_text: see :class:`ASRDataset`.
        duration_bins: ``num_buckets - 1`` bucket boundaries in seconds, skipping the estimate.
        quadratic_duration: Lhotse's penalty for long cuts (seconds; ``None`` = off).
        buffer_size: cuts held in the bucketing buffers.
        max_cuts: at most this many cuts per batch (``None`` = no limit).
        sampler: the full sampler config (2-D bins, per-bucket batch sizes, tokens-per-second filters ...,
            :mod:`speechkit.data.sampling`); when given, it replaces ``max_duration``, ``num_buckets``,
            ``duration_bins``, ``quadratic_duration``, ``buffer_size`` and ``max_cuts``, while ``shuffle`` and
            ``seed`` given here still win (train vs dev loaders share one config).

    Returns:
        The DataLoader; ``loader.sampler`` is the Lhotse sampler and ``loader.dataset`` the :class:`ASRDataset`.
    """
    import dataclasses

    from speechkit.data.sampling import SamplerConfig, build_sampler

    if sampler is None:
        if max_duration <= 0:
            raise ValueError(f"max_duration must be > 0 seconds, got {max_duration}")
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        sampler = SamplerConfig(max_duration=max_duration, quadratic_duration=quadratic_duration,
                                num_buckets=num_buckets, bucket_duration_bins=list(duration_bins or []),
                                buffer_size=buffer_size, max_cuts=max_cuts)
    cfg = dataclasses.replace(sampler, shuffle=shuffle, seed=seed, drop_last=sampler.drop_last and shuffle)
    batch_sampler = build_sampler(cuts, cfg, rank=rank, world_size=world_size, tokenizer=tokenizer)
    dataset = ASRDataset(tokenizer, sample_rate, augment, seed=seed + 1000 * rank, on_bad_text=on_bad_text)
    return torch.utils.data.DataLoader(dataset, sampler=batch_sampler, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0)
