"""Frame-labelled VAD training data: synthetic mixtures of speech, silence, noise and music-like sounds.

``speechkit prepare vad --speech data/synth_en/train.json --out-dir data/vad --hours 2`` reads a speech manifest (any
NeMo manifest; ``speechkit prepare synth`` builds one), trims each utterance's leading and trailing silence by
energy, and writes mixtures of ``min_seconds``-``max_seconds`` where speech clips sit at known positions between
silences of random length, with random gain (``gain_db``) per clip and optionally room reverberation. A background
is then added over the whole mixture at ``snr_db`` (relative to the speech power): coloured noise (white, pink,
brown, blue), *tones* (a melody of sine notes with harmonics), *chords* (three simultaneous notes), or *hum* (mains
hum with harmonics). A share of mixtures holds no speech at all.

Splits: the speech utterances are split into train / dev / test (no utterance in two splits). train and dev use the
``train_noises``; test uses the ``heldout_noises`` (by default none of the training kinds), so test numbers show
how the VAD copes with noise it never heard.

Output: ``<out_dir>/audio/<split>/*.wav`` (16 kHz, lengths a whole number of 20 ms frames) and NeMo manifests
``<out_dir>/<split>.json`` whose ``label`` is a space-separated 0/1 string, one per ``frame_shift`` (20 ms) frame
(NeMo's frame-VAD manifest format); also ``noise``, ``snr`` and ``speech_seconds``. A frame is speech when more than
half of its samples lie inside a (trimmed) speech clip.

Example:
    >>> cfg = VadMixtureConfig(speech=["data/synth_en/train.json"], out_dir="data/vad", hours=0.5)  # doctest: +SKIP
    >>> print(prepare_vad(cfg))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechkit.audio.augment import colored_noise, make_rir, reverberate
from speechkit.audio.io import load_audio, save_audio
from speechkit.data.manifests import read_manifest

__all__ = ["BACKGROUNDS", "VadMixtureConfig", "VadSummary", "make_background", "prepare_vad", "trim_silence"]

SPLITS = ("train", "dev", "test")
BACKGROUNDS = ("white", "pink", "brown", "blue", "tones", "chords", "hum", "none")


@dataclass
class VadMixtureConfig:
    """Options of ``speechkit prepare vad`` (every field is a ``--flag``)."""

    speech: list[str] = field(default_factory=list, metadata={"help": "speech NeMo manifest(s)"})
    out_dir: str = field(default="data/vad", metadata={"help": "output folder"})
    hours: float = field(default=1.0, metadata={"help": "hours of mixtures in all splits together"})
    dev_fraction: float = field(default=0.1, metadata={"help": "share of hours (and speech utterances) in dev"})
    test_fraction: float = field(default=0.1, metadata={"help": "share of hours (and speech utterances) in test"})
    min_seconds: float = field(default=4.0, metadata={"help": "shortest mixture"})
    max_seconds: float = field(default=12.0, metadata={"help": "longest mixture"})
    gap_range: list[float] = field(default_factory=lambda: [0.2, 2.5], metadata={
        "help": "seconds of non-speech between speech clips"})
    gain_db: list[float] = field(default_factory=lambda: [-12.0, 6.0], metadata={"help": "per-clip gain range (dB)"})
    snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0], metadata={"help": "background SNR range (dB)"})
    background_prob: float = field(default=0.9, metadata={"help": "share of mixtures with a background"})
    reverb_prob: float = field(default=0.3, metadata={"help": "share of mixtures whose speech is reverberated"})
    no_speech_prob: float = field(default=0.1, metadata={"help": "share of mixtures with no speech at all"})
    train_noises: list[str] = field(default_factory=lambda: ["white", "pink", "tones"], metadata={
        "help": f"backgrounds of train and dev ({', '.join(BACKGROUNDS[:-1])})"})
    heldout_noises: list[str] = field(default_factory=lambda: ["brown", "blue", "chords", "hum"], metadata={
        "help": "backgrounds of test (held out: not used in training)"})
    frame_shift: float = field(default=0.02, metadata={"help": "label frame shift in seconds"})
    sample_rate: int = field(default=16000, metadata={"help": "output sample rate"})
    seed: int = field(default=0, metadata={"help": "random seed"})

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        if not self.speech:
            raise ValueError("speech: give at least one speech manifest (--speech data/synth_en/train.json)")
        if not self.hours > 0:
            raise ValueError(f"hours={self.hours}: must be > 0")
        if not (0 <= self.dev_fraction and 0 <= self.test_fraction and self.dev_fraction + self.test_fraction < 1):
            raise ValueError("dev_fraction and test_fraction must be >= 0 and sum to < 1")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"min_seconds={self.min_seconds}, max_seconds={self.max_seconds}: need 0 < min <= max")
        for name in ("gap_range", "gain_db", "snr_db"):
            pair = getattr(self, name)
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ValueError(f"{name}={pair}: need [low, high] with low <= high")
        for name in ("background_prob", "reverb_prob", "no_speech_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be in [0, 1]")
        for name in ("train_noises", "heldout_noises"):
            bad = [k for k in getattr(self, name) if k not in BACKGROUNDS]
            if bad or not getattr(self, name):
                raise ValueError(f"{name}={getattr(self, name)}: give one or more of {', '.join(BACKGROUNDS)}")
        hop = self.frame_shift * self.sample_rate
        if abs(hop - round(hop)) > 1e-6 or hop < 1:
            raise ValueError(f"frame_shift={self.frame_shift}: must be a whole number of samples")


@dataclass
class VadSummary:
    """What ``speechkit prepare vad`` wrote; printed as a table."""

    out_dir: str
    splits: dict[str, dict[str, float]]
    backgrounds: dict[str, list[str]]
    seconds_taken: float

    def __str__(self) -> str:
        rows = [f"{'split':<6} {'files':>6} {'hours':>7} {'speech%':>8}  backgrounds", "-" * 50]
        for name, s in self.splits.items():
            share = 100 * s["speech_seconds"] / max(s["seconds"], 1e-9)
            rows.append(f"{name:<6} {int(s['files']):>6} {s['seconds'] / 3600:>7.3f} {share:>7.1f}%  "
                        f"{','.join(self.backgrounds[name])}")
        rows.append(f"wrote {self.out_dir}/{{train,dev,test}}.json in {self.seconds_taken:.1f} s")
        return "\n".join(rows)


def trim_silence(samples: np.ndarray, sample_rate: int, top_db: float = 40.0) -> np.ndarray:
    """Cut leading and trailing frames (10 ms) whose RMS is more than ``top_db`` below the loudest frame.

    Returns:
        The trimmed waveform (empty when the input is silent).
    """
    hop = max(1, sample_rate // 100)
    n = samples.shape[0] // hop
    if n == 0 or not np.any(samples):
        return samples[:0]
    rms = np.sqrt(np.mean(samples[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -top_db)[0]
    return samples[loud[0] * hop : (loud[-1] + 1) * hop]


def _note(freq: float, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sample_rate
    harmonics = rng.integers(1, 5)
    tone = sum(np.sin(2 * np.pi * freq * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, harmonics + 1))
    attack = min(n, int(0.01 * sample_rate))
    env = np.exp(-t * rng.uniform(0.5, 4.0))
    env[:attack] *= np.linspace(0, 1, attack, endpoint=False) if attack else 1
    return tone * env


def make_background(kind: str, num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A background of ``kind`` (see :data:`BACKGROUNDS`; ``"none"`` gives zeros), unit RMS unless ``none``.

    Returns:
        float32 ``(num_samples,)``.
    """
    if kind in ("white", "pink", "brown", "blue"):
        return colored_noise(kind, num_samples, rng)  # type: ignore[arg-type]
    if kind == "none":
        return np.zeros(num_samples, dtype=np.float32)
    out = np.zeros(num_samples)
    if kind == "hum":
        t = np.arange(num_samples) / sample_rate
        base = rng.choice([50.0, 60.0])
        out = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3)) * rng.uniform(0.2, 1) / k
                  for k in range(1, 8))
    elif kind in ("tones", "chords"):
        pos = 0
        while pos < num_samples:
            length = min(num_samples - pos, int(rng.uniform(0.15, 0.8) * sample_rate))
            notes = 1 if kind == "tones" else 3
            root = rng.integers(40, 80)  # MIDI note
            for semis in [0, 4, 7][:notes] if notes > 1 else [0]:
                freq = 440.0 * 2 ** ((root + semis - 69) / 12)
                out[pos : pos + length] += _note(freq, length, sample_rate, rng)
            pos += length
    else:
        raise ValueError(f"unknown background {kind!r}; known: {', '.join(BACKGROUNDS)}")
    out = np.asarray(out, dtype=np.float64)
    rms = float(np.sqrt(np.mean(out**2)))
    return (out / rms if rms > 0 else out).astype(np.float32)


def _split_speech(cfg: VadMixtureConfig, rng: np.random.Generator) -> dict[str, list[Path]]:
    paths = []
    for manifest in cfg.speech:
        paths += [e.audio_path() for e in read_manifest(manifest, require_text=False)]
    if len(paths) < 3:
        raise ValueError(f"speech manifests {cfg.speech} hold {len(paths)} utterances; need at least 3 (one per split)")
    order = rng.permutation(len(paths))
    n_dev = max(1, round(cfg.dev_fraction * len(paths)))
    n_test = max(1, round(cfg.test_fraction * len(paths)))
    idx = {"dev": order[:n_dev], "test": order[n_dev : n_dev + n_test], "train": order[n_dev + n_test :]}
    return {k: [paths[i] for i in v] for k, v in idx.items()}


def make_mixture(clips: list[np.ndarray], kind: str, cfg: VadMixtureConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """One mixture: ``(samples (N,), frame labels (N // hop,) uint8, snr_db)``; clips are drawn from ``clips``."""
    sr, hop = cfg.sample_rate, round(cfg.frame_shift * cfg.sample_rate)
    frames = max(1, int(rng.uniform(cfg.min_seconds, cfg.max_seconds) / cfg.frame_shift))
    n = frames * hop
    speech = np.zeros(n)
    is_speech = np.zeros(n, dtype=bool)
    if rng.random() >= cfg.no_speech_prob:
        pos = int(rng.uniform(0, cfg.gap_range[1]) * sr)
        while pos < n:
            clip = clips[rng.integers(len(clips))]
            end = min(n, pos + clip.shape[0])
            gain = 10 ** (rng.uniform(*cfg.gain_db) / 20)
            speech[pos:end] += gain * clip[: end - pos] / max(float(np.sqrt(np.mean(clip**2))), 1e-6) * 0.1
            is_speech[pos:end] = True
            pos = end + int(rng.uniform(*cfg.gap_range) * sr)
        if rng.random() < cfg.reverb_prob and is_speech.any():
            speech = reverberate(speech, make_rir(sr, rng)).astype(np.float64)
    snr = float(rng.uniform(*cfg.snr_db))
    if kind != "none":
        noise = make_background(kind, n, sr, rng).astype(np.float64)
        p_speech = float(np.mean(speech[is_speech] ** 2)) if is_speech.any() else 0.01 * 10 ** (rng.uniform(-3, 0))
        speech = speech + noise * math.sqrt(p_speech / 10 ** (snr / 10))
    speech += 10 ** (-65 / 20) * rng.standard_normal(n)  # a recording floor: no digital silence
    peak = float(np.abs(speech).max())
    if peak > 0.95:
        speech *= 0.95 / peak
    labels = (is_speech.reshape(frames, hop).sum(1) * 2 > hop).astype(np.uint8)
    return speech.astype(np.float32), labels, snr


def prepare_vad(cfg: VadMixtureConfig) -> VadSummary:
    """Build the mixtures and manifests; see the module docstring.

    Raises:
        ValueError: bad options or too few speech utterances.
    """
    cfg.validate()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out_dir)
    speech = _split_speech(cfg, rng)
    shares = {"train": 1 - cfg.dev_fraction - cfg.test_fraction, "dev": cfg.dev_fraction, "test": cfg.test_fraction}
    summary: dict[str, dict[str, float]] = {}
    backgrounds = {"train": cfg.train_noises, "dev": cfg.train_noises, "test": cfg.heldout_noises}
    for split in SPLITS:
        clips = [c for c in (trim_silence(load_audio(p, cfg.sample_rate), cfg.sample_rate) for p in speech[split])
                 if c.shape[0] > 0]
        if not clips:
            raise ValueError(f"{split}: every speech utterance given to it is silent")
        target = cfg.hours * 3600 * shares[split]
        seconds = speech_seconds = 0.0
        lines = []
        i = 0
        while seconds < target:
            kind = str(rng.choice(backgrounds[split])) if rng.random() < cfg.background_prob else "none"
            samples, labels, snr = make_mixture(clips, kind, cfg, rng)
            path = save_audio(out / "audio" / split / f"vad-{split}-{i:06d}.wav", samples, cfg.sample_rate)
            dur = samples.shape[0] / cfg.sample_rate
            lines.append({"audio_filepath": str(path.relative_to(out)), "duration": round(dur, 4),
                          "label": " ".join(map(str, labels.tolist())), "frame_shift": cfg.frame_shift,
                          "noise": kind, "snr": round(snr, 2) if kind != "none" else None,
                          "speech_seconds": round(float(labels.sum()) * cfg.frame_shift, 3)})
            seconds += dur
            speech_seconds += float(labels.sum()) * cfg.frame_shift
            i += 1
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"{split}.json", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
        summary[split] = {"files": i, "seconds": seconds, "speech_seconds": speech_seconds}
    (out / "settings.json").write_text(json.dumps(asdict(cfg), indent=1))
    return VadSummary(str(out), summary, backgrounds, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------------
# Reading frame-labelled manifests for training


def parse_frame_labels(label: object, where: str) -> np.ndarray:
    """A manifest ``label`` (space-separated 0/1 string, or a list of 0/1) -> uint8 ``(T,)``.

    Raises:
        ValueError: anything else; the message names ``where`` (``file:line``).
    """
    items = label.split() if isinstance(label, str) else label
    if not isinstance(items, list) or not items:
        raise ValueError(f"{where}: 'label' must be a non-empty space-separated string of 0/1 frame labels")
    try:
        out = np.asarray([int(x) for x in items], dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'label' holds something other than 0/1: {str(label)[:60]!r}") from None
    if not np.isin(out, (0, 1)).all():
        raise ValueError(f"{where}: 'label' holds something other than 0/1: {str(label)[:60]!r}")
    return out.astype(np.uint8)


class FrameVADDataset:
    """A map-style dataset over frame-labelled NeMo manifests (``torch.utils.data.Dataset`` protocol).

    Each item is ``(samples float32 (N,), labels int64 (N // hop,))``; in training, files longer than
    ``crop_seconds`` are cropped at a random whole frame. Audio is cut to a whole number of frames and labels to
    the frames the audio holds (a label list longer than the audio by more than one frame is an error).

    Args:
        manifests: NeMo manifests with ``label``.
        frame_shift: seconds per label frame.
        sample_rate: audio rate.
        crop_seconds: longest item in seconds (0 = whole files).
        seed: seed of the crops (mixed with the DataLoader worker's seed, see
            :func:`speechkit.data.datasets.worker_rng`).
    """

    def __init__(self, manifests: list[str], frame_shift: float = 0.02, sample_rate: int = 16000,
                 crop_seconds: float = 0.0, seed: int = 0) -> None:
        self.entries = []
        for m in manifests:
            for e in read_manifest(m, require_text=False):
                where = f"{e.manifest}:{e.line}"
                if "label" not in e.extra:
                    raise ValueError(f"{where}: no 'label' (frame labels) in this manifest line")
                self.entries.append((e.audio_path(), e.offset, e.duration,
                                     parse_frame_labels(e.extra["label"], where), where))
        if not self.entries:
            raise ValueError(f"no entries in {manifests}")
        self.hop = round(frame_shift * sample_rate)
        self.sample_rate = sample_rate
        self.crop_frames = int(crop_seconds / frame_shift) if crop_seconds > 0 else 0
        self.seed = seed
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        path, offset, duration, labels, where = self.entries[i]
        audio = load_audio(path, self.sample_rate, offset=offset, duration=duration if offset else None)
        frames = audio.shape[0] // self.hop
        if labels.shape[0] > frames + 1:
            raise ValueError(f"{where}: {labels.shape[0]} frame labels but the audio holds only {frames} frames")
        frames = min(frames, labels.shape[0])
        start = 0
        if self.crop_frames and frames > self.crop_frames:
            if self._rng is None:
                # Imported here: the corpus builder above runs without torch; training is where crops are drawn.
                from speechkit.data.datasets import worker_rng

                self._rng = worker_rng(self.seed)
            start = int(self._rng.integers(frames - self.crop_frames + 1))
            frames = self.crop_frames
        samples = audio[start * self.hop : (start + frames) * self.hop]
        return samples.astype(np.float32), labels[start : start + frames].astype(np.int64)


def collate_frames(items: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    """Pad a list of dataset items: ``audio (B, N)``, ``audio_lens (B,)``, ``labels (B, T)`` (-100 = padding)."""
    import torch

    n = max(x.shape[0] for x, _ in items)
    t = max(y.shape[0] for _, y in items)
    audio = torch.zeros(len(items), n)
    labels = torch.full((len(items), t), -100, dtype=torch.long)
    for k, (x, y) in enumerate(items):
        audio[k, : x.shape[0]] = torch.from_numpy(x)
        labels[k, : y.shape[0]] = torch.from_numpy(y)
    return {"audio": audio, "audio_lens": torch.tensor([x.shape[0] for x, _ in items]), "labels": labels}
