"""``speechkit prepare synth``: build a speech corpus from the synthesisers and texts Debian ships.

The corpus is what speechkit's recipes train and test on when no recorded corpus is at hand, built the same way a
user builds it: ``apt-get install`` the voices (``make setup``; ``make setup-multilang`` for more languages), then

    speechkit prepare synth --out-dir data/synth_en --hours 1
    speechkit prepare synth --out-dir data/synth_lid --langs en de fr es it pt nl pl ru ca sv uk --hours 4

How it is made:

* **Voices** (:mod:`speechkit.data.tts`): every installed espeak-ng accent, flite and festival voice of each
  language (pico, mbrola and ``mbrola-accented``, other languages' mbrola speakers reading this one, only when named
  with ``--engines``: their audio may not be redistributed). Each
  utterance draws a speaking rate and pitch from ``--rate-range`` / ``--pitch-range`` and, for espeak-ng, a
  variant (``+m3``, ``+f2``, ``klatt``...).
* **Splits by voice**: the unit of a split is a voice *group*, one recorded speaker across engines (flite's and
  festival's ``slt`` are one group). Test and dev each get at least two groups (from different engines where
  possible), train the rest; espeak-ng variants are partitioned as well, so a test utterance has an accent *and* a
  variant never heard in training. A language with fewer than three groups cannot be split by voice; its espeak-ng
  variants are split instead and the summary says so. ``--dev-fraction 0`` / ``--test-fraction 0`` hold out
  nothing for that split, so a corpus of extra training voices uses every voice it is given.
* **Texts** (:mod:`speechkit.data.texts`): sentences are de-duplicated by transcript and partitioned between the
  splits before any is read, so no test sentence occurs in training. ``--exclude MANIFEST...`` drops the
  transcripts of another corpus (say its dev and test) from every split, counted in the summary: extra voices for
  an existing corpus then never speak its held-out sentences.
* **Transcripts**: English text goes through :func:`speechkit.text.normalize.normalize_english`; other languages
  are case-folded with punctuation removed. The manifest's ``text`` is that transcript; the spoken sentence is
  kept in ``source_text``.
* **Audio**: resampled to 16 kHz mono, leading/trailing silence trimmed and replaced by ``--silence-range``
  seconds, peak level drawn from -12..-1 dBFS; with ``--noise-prob`` white/pink/brown noise at an SNR from
  ``--snr-range``, with ``--reverb-prob`` a simulated room (pyroomacoustics).
* **Determinism and resuming**: the plan (voice, variant, rate, pitch, sentence, augmentation of utterance *i*) is
  a pure function of the seed and the settings, and utterances are kept in plan order until the requested hours are
  reached, so the corpus does not depend on ``--num-jobs``. Finished wavs are reused when the command is run again
  (after an interruption, or with more ``--hours``); a folder built with other settings is refused.

Output in ``--out-dir``: ``audio/<split>/<id>.wav``, NeMo manifests ``train.json dev.json test.json`` and Lhotse
cuts ``<split>.cuts.jsonl.gz``, ``settings.json`` (what was asked) and ``summary.txt``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from speechkit.data.tts import SHIPPABLE_ENGINES, SynthJob, Voice, find_voices, synthesize_batch

SPLITS = ("train", "dev", "test")
SAMPLE_RATE = 16000
NOISE_KINDS = ("white", "pink", "brown")
HELD_OUT_SENTENCES = 5000
ENGINES = ("espeak-ng", "flite", "festival", "pico", "mbrola", "mbrola-accented")
# Settings that change no utterance: a folder built with other values of these is still ours to extend.
_NOT_FINGERPRINTED = {"out_dir", "hours", "num_jobs", "max_utterances", "overwrite", "cuts"}


@dataclass
class SynthConfig:
    """Options of ``speechkit prepare synth`` (every field is a ``--flag``)."""

    out_dir: str = field(default="data/synth_en", metadata={"help": "output folder"})
    hours: float = field(default=1.0, metadata={"help": "hours of speech in all (shared equally by the languages)"})
    langs: list[str] = field(default_factory=lambda: ["en"], metadata={"help": "language codes"})
    engines: list[str] = field(default_factory=list, metadata={
        "help": "engines to use: espeak-ng flite festival pico mbrola mbrola-accented (default: the first three, "
                "whose audio may be shipped; mbrola-accented: other languages' mbrola speakers reading this one)"})
    texts: list[str] = field(default_factory=list, metadata={
        "help": "text sources: fortunes wordnet bible wordlist or text files (default per language)"})
    dev_fraction: float = field(default=0.1, metadata={"help": "share of utterances in dev"})
    test_fraction: float = field(default=0.1, metadata={"help": "share of utterances in test"})
    exclude: list[str] = field(default_factory=list, metadata={
        "help": "NeMo manifests whose transcripts this corpus must never speak (e.g. another corpus's dev and test, "
                "when this one adds training voices to it)"})
    min_words: int = field(default=3, metadata={"help": "shortest sentence in words"})
    max_words: int = field(default=25, metadata={"help": "longest sentence in words"})
    rate_range: list[float] = field(default_factory=lambda: [0.85, 1.2], metadata={"help": "speaking-rate factors"})
    pitch_range: list[float] = field(default_factory=lambda: [0.85, 1.15], metadata={"help": "pitch factors"})
    silence_range: list[float] = field(default_factory=lambda: [0.1, 0.4], metadata={
        "help": "seconds of silence before and after the speech"})
    noise_prob: float = field(default=0.0, metadata={"help": "share of utterances mixed with noise"})
    snr_range: list[float] = field(default_factory=lambda: [5.0, 25.0], metadata={"help": "noise SNR range in dB"})
    reverb_prob: float = field(default=0.0, metadata={"help": "share of utterances given room reverberation"})
    seed: int = field(default=0, metadata={"help": "seed of the plan (voices, texts, splits, augmentation)"})
    num_jobs: int = field(default=0, metadata={"help": "worker processes (0 = all cores)"})
    max_utterances: int = field(default=0, metadata={"help": "stop after this many utterances (0 = no limit)"})
    cuts: bool = field(default=True, metadata={"help": "also write Lhotse cuts (<split>.cuts.jsonl.gz)"})
    overwrite: bool = field(default=False, metadata={"help": "delete a corpus built with other settings in out-dir"})

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        def pair(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name)
            if len(v) != 2 or not lo <= v[0] <= v[1] <= hi:
                raise ValueError(f"--{name.replace('_', '-')} must be two numbers lo <= hi within [{lo}, {hi}], got {v}")
        if self.hours <= 0 and self.max_utterances <= 0:
            raise ValueError(f"--hours must be positive, got {self.hours}")
        if not self.langs:
            raise ValueError("--langs needs at least one language code")
        for name in ("dev_fraction", "test_fraction", "noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be within [0, 1], got {getattr(self, name)}")
        if self.dev_fraction + self.test_fraction >= 1.0:
            raise ValueError("--dev-fraction plus --test-fraction must leave room for train")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"--min-words/--max-words must satisfy 1 <= min <= max, got {self.min_words}, {self.max_words}")
        pair("rate_range", 0.3, 3.0)
        pair("pitch_range", 0.3, 3.0)
        pair("silence_range", 0.0, 5.0)
        pair("snr_range", -20.0, 80.0)
        unknown = set(self.engines) - set(ENGINES)
        if unknown:
            raise ValueError(f"--engines: unknown engine(s) {sorted(unknown)} (known: {' '.join(ENGINES)})")


@dataclass
class LanguagePlan:
    """Which voices, variants and sentences each split of one language may use."""

    lang: str
    voices: dict[str, list[Voice]]
    variants: dict[str, list[str]]
    sentences: dict[str, list[str]]
    by_variant_only: bool
    rejected: Counter
    held_out: set[str]


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: everything needed to make it, a pure function of (settings, language, index)."""

    id: str
    index: int
    lang: str
    split: str
    voice: Voice
    variant: str
    rate: float
    pitch: float
    sentence: str
    transcript: str
    seed: int
    noise: str
    snr_db: float
    reverb: bool

    @property
    def speaker(self) -> str:
        return self.voice.id + (f"+{self.variant}" if self.variant else "")

    def wav_path(self, out_dir: Path) -> Path:
        return out_dir / "audio" / self.split / f"{self.id}.wav"


@dataclass
class SplitSummary:
    utterances: int = 0
    seconds: float = 0.0
    speakers: set = field(default_factory=set)
    groups: set = field(default_factory=set)
    engines: set = field(default_factory=set)
    langs: set = field(default_factory=set)


@dataclass
class SynthSummary:
    """What ``speechkit prepare synth`` built; printed as a table."""

    out_dir: str
    splits: dict[str, SplitSummary]
    seconds_taken: float
    reused: int
    failed: Counter
    rejected_sentences: Counter
    reused_sentences: int
    warnings: list[str]

    def __str__(self) -> str:
        head = f"{'split':<6} {'utts':>6} {'hours':>7} {'voices':>7} {'groups':>7}  engines"
        rows = [head, "-" * len(head)]
        for name in SPLITS:
            s = self.splits[name]
            rows.append(f"{name:<6} {s.utterances:>6} {s.seconds / 3600:>7.3f} {len(s.speakers):>7} {len(s.groups):>7}  "
                        f"{','.join(sorted(s.engines))}" + (f"  [{','.join(sorted(s.langs))}]" if len(s.langs) > 1 else ""))
        total = sum(s.seconds for s in self.splits.values())
        rows.append(f"total {sum(s.utterances for s in self.splits.values())} utterances, {total / 3600:.3f} h of "
                    f"16 kHz audio in {self.out_dir} ({self.seconds_taken:.0f} s, {self.reused} reused from an earlier run)")
        if self.rejected_sentences:
            rows.append("sentences left out by the text filter: " + ", ".join(
                f"{n} {r}" for r, n in self.rejected_sentences.most_common()))
        if self.reused_sentences:
            rows.append(f"sentences read more than once (pool exhausted within a split): {self.reused_sentences}")
        if self.failed:
            rows.append("synthesis failures (left out): " + ", ".join(f"{n} {v}" for v, n in self.failed.most_common()))
        rows += [f"warning: {w}" for w in self.warnings]
        return "\n".join(rows)


def transcript_of(sentence: str, lang: str) -> str:
    """The manifest transcript of a spoken sentence (English: the speechkit normaliser; else case-fold + strip)."""
    if lang == "en":
        from speechkit.text.normalize import normalize_english

        return normalize_english(sentence)
    kept = []
    for i, c in enumerate(sentence.casefold()):
        if c.isalpha() or c.isspace():
            kept.append(c)
        elif c == "'" and 0 < i < len(sentence) - 1 and sentence[i - 1].isalpha() and sentence[i + 1].isalpha():
            kept.append(c)
        else:
            kept.append(" ")
    return " ".join("".join(kept).split())


def _split_counts(n: int, cfg: SynthConfig) -> tuple[int, int]:
    """How many of n units go to (test, dev): none for a fraction of 0, else at least two each when n allows, else one."""
    least = 2 if n >= 6 else 1

    def count(fraction: float) -> int:
        # A split asked for no utterances holds no voice out: every voice then trains.
        return 0 if fraction == 0 else max(least, round(n * fraction))

    return count(cfg.test_fraction), count(cfg.dev_fraction)


def excluded_transcripts(paths: list[str], lang: str) -> set[str]:
    """The transcripts of the given NeMo manifests, normalised as this corpus's transcripts are.

    Raises:
        ManifestError: a file is missing or a line is bad (the message names file and line).
    """
    from speechkit.data.manifests import read_manifest

    out: set[str] = set()
    for path in paths:
        for entry in read_manifest(path):
            out.add(transcript_of(entry.text, lang))
    return out


def _pick_spread(groups: list[list[Voice]], k: int) -> list[list[Voice]]:
    """Take k groups, preferring engines not yet taken, so that each held-out split has more than one engine."""
    taken: list[list[Voice]] = []
    engines: set[str] = set()
    for _ in range(min(k, len(groups))):
        fresh = [g for g in groups if not {v.engine for v in g} <= engines]
        g = (fresh or groups)[0]
        groups.remove(g)
        taken.append(g)
        engines |= {v.engine for v in g}
    return taken


def plan_language(lang: str, cfg: SynthConfig) -> LanguagePlan:
    """Assign one language's voice groups, espeak-ng variants and sentences to the splits.

    Raises:
        ValueError: no voice or no text is installed for the language (the message says what to install).
    """
    from speechkit.data.texts import sentence_pool

    engines = cfg.engines or list(SHIPPABLE_ENGINES)
    voices = find_voices(lang, engines)
    if not voices:
        raise ValueError(f"no voice for language '{lang}' with engines {engines}: install espeak-ng "
                         f"(and festvox-* voices), e.g. `make setup-multilang`")
    rng = random.Random(f"{cfg.seed}:{lang}:voices")
    groups: dict[str, list[Voice]] = defaultdict(list)
    for v in voices:
        groups[v.group].append(v)
    order = sorted(groups)
    rng.shuffle(order)
    group_list = [groups[g] for g in order]
    variants = sorted({var for v in voices for var in v.variants})
    rng.shuffle(variants)
    split_voices: dict[str, list[Voice]] = {}
    by_variant_only = len(group_list) < 3
    if by_variant_only:
        # Too few speakers to hold any out: every split hears every base voice; variants are held out instead.
        for s in SPLITS:
            split_voices[s] = list(voices)
    else:
        n_test, n_dev = _split_counts(len(group_list), cfg)
        n_test, n_dev = min(n_test, len(group_list) - 2), min(n_dev, len(group_list) - 2)
        split_voices["test"] = [v for g in _pick_spread(group_list, n_test) for v in g]
        split_voices["dev"] = [v for g in _pick_spread(group_list, n_dev) for v in g]
        split_voices["train"] = [v for g in group_list for v in g]
    split_variants: dict[str, list[str]] = {}
    if len(variants) >= 3:
        n_test, n_dev = _split_counts(len(variants), cfg)
        split_variants["test"], split_variants["dev"] = variants[:n_test], variants[n_test:n_test + n_dev]
        split_variants["train"] = variants[n_test + n_dev:]
    else:
        split_variants = {s: variants for s in SPLITS}
    pool = sentence_pool(lang, cfg.texts, seed=cfg.seed, min_words=cfg.min_words, max_words=cfg.max_words)
    if cfg.exclude:
        # Sentences another corpus holds out are dropped before anything is split: none can reach any split here.
        excluded = excluded_transcripts(cfg.exclude, lang)
        kept = [t for t in pool.sentences if transcript_of(t, lang) not in excluded]
        if len(kept) < len(pool.sentences):
            pool.rejected["excluded by --exclude"] += len(pool.sentences) - len(kept)
        pool.sentences = kept
    n = len(pool.sentences)
    if n < 3:
        raise ValueError(f"only {n} usable sentence(s) for language '{lang}': add text sources (--texts)")
    # Held-out pools need only as many sentences as their utterances (a few thousand even for long corpora);
    # keeping them small keeps the transcript check below cheap.
    n_test = min(HELD_OUT_SENTENCES, max(1, math.ceil(n * cfg.test_fraction))) if cfg.test_fraction else 0
    n_dev = min(HELD_OUT_SENTENCES, max(1, math.ceil(n * cfg.dev_fraction))) if cfg.dev_fraction else 0
    test = pool.sentences[:n_test]
    test_transcripts = {transcript_of(t, lang) for t in test}
    # Sentences that differ in spelling can share a transcript ("Dr." and "Doctor"): compare transcripts.
    dev = [t for t in pool.sentences[n_test:n_test + n_dev] if transcript_of(t, lang) not in test_transcripts]
    held_out = test_transcripts | {transcript_of(t, lang) for t in dev}
    sentences = {"test": test, "dev": dev, "train": pool.sentences[n_test + n_dev:]}
    return LanguagePlan(lang, split_voices, split_variants, sentences, by_variant_only, pool.rejected, held_out)


def plan_utterances(plan: LanguagePlan, cfg: SynthConfig) -> Iterator[Utterance]:
    """The endless, deterministic stream of utterances of one language (cut to length by the caller)."""
    used: Counter = Counter()  # utterances per split
    taken: Counter = Counter()  # sentences consumed per split
    share = dict(zip(SPLITS, (1.0 - cfg.dev_fraction - cfg.test_fraction, cfg.dev_fraction, cfg.test_fraction), strict=False))
    index = 0
    while True:
        rng = random.Random(f"{cfg.seed}:{plan.lang}:{index}")
        # The split furthest behind its share goes next: even a corpus of ten utterances gets its dev and test.
        split = max(SPLITS, key=lambda s: (index + 1) * share[s] - used[s])
        voice = rng.choice(plan.voices[split])
        usable = [v for v in plan.variants[split] if v in voice.variants]
        variant = rng.choice(usable) if usable else ""
        pool = plan.sentences[split]
        for attempt in range(len(pool) + 1):
            sentence = pool[taken[split] % len(pool)]
            taken[split] += 1
            transcript = transcript_of(sentence, plan.lang)
            # A training sentence that sounds like a held-out one is passed over: no test text in training.
            if split != "train" or transcript not in plan.held_out:
                break
            if attempt == len(pool):
                raise ValueError(f"every training sentence of '{plan.lang}' is also a held-out one: add texts")
        used[split] += 1
        noisy = rng.random() < cfg.noise_prob
        snr = rng.uniform(*cfg.snr_range)
        reverb = rng.random() < cfg.reverb_prob
        utt = Utterance(
            id="", index=index, lang=plan.lang, split=split, voice=voice, variant=variant,
            rate=round(rng.uniform(*cfg.rate_range), 3), pitch=round(rng.uniform(*cfg.pitch_range), 3),
            sentence=sentence, transcript=transcript, seed=rng.getrandbits(32),
            noise=rng.choice(NOISE_KINDS) if noisy else "", snr_db=round(snr, 1), reverb=reverb,
        )
        # The id carries a digest of everything that shapes the audio, so a resumed run never reuses a wav made
        # from another plan (another speechkit version, say) under the same index.
        digest = hashlib.sha1(repr(dataclasses.replace(utt, index=0)).encode()).hexdigest()[:8]
        yield dataclasses.replace(utt, id=f"{plan.lang}-{index:06d}-{digest}")
        index += 1


def _trim(samples: "object", threshold_db: float = -45.0) -> "object":
    import numpy as np

    x = np.asarray(samples)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (threshold_db / 20))
    return x[loud[0]: loud[-1] + 1]


def render(utt: Utterance, raw_wav: Path, cfg: SynthConfig) -> "object":
    """Turn an engine's wav into the corpus audio: 16 kHz, trimmed, padded, levelled, optionally noisy/reverberant.

    Returns:
        float32 samples of shape ``(N,)``.
    """
    import numpy as np

    from speechkit.audio.augment import colored_noise, make_rir, mix_noise, reverberate
    from speechkit.audio.io import load_audio

    rng = np.random.default_rng(utt.seed)
    speech = _trim(load_audio(raw_wav, sample_rate=SAMPLE_RATE))
    if len(speech) < SAMPLE_RATE // 10:
        raise ValueError(f"{utt.voice.id}: almost no audio for {utt.sentence!r}")
    pad = [int(rng.uniform(*cfg.silence_range) * SAMPLE_RATE) for _ in range(2)]
    x = np.concatenate([np.zeros(pad[0], np.float32), speech, np.zeros(pad[1], np.float32)])
    if utt.reverb:
        x = reverberate(x, make_rir(SAMPLE_RATE, rng))
    if utt.noise:
        x = mix_noise(x, colored_noise(utt.noise, len(x), rng), utt.snr_db, rng)
    peak_db = rng.uniform(-12.0, -1.0)
    return (x / max(float(np.abs(x).max()), 1e-9) * 10 ** (peak_db / 20)).astype(np.float32)


def _make_batch(args: tuple[list[Utterance], str, SynthConfig]) -> list[tuple[str, float | None, str | None]]:
    """Worker: synthesise and render a batch; returns (utterance id, seconds or None, error or None) each."""
    import tempfile

    from speechkit.audio.io import save_audio

    utts, out_dir, cfg = args
    out = Path(out_dir)
    results: list[tuple[str, float | None, str | None]] = []
    with tempfile.TemporaryDirectory(prefix="speechkit-synth-") as tmp:
        jobs = [SynthJob(u.voice, u.sentence, os.path.join(tmp, f"{u.id}.wav"), u.variant, u.rate, u.pitch)
                for u in utts]
        errors = synthesize_batch(jobs)
        for u, job, err in zip(utts, jobs, errors, strict=False):
            if err is not None:
                results.append((u.id, None, err))
                continue
            try:
                samples = render(u, Path(job.out_path), cfg)
            except (ValueError, RuntimeError) as e:
                results.append((u.id, None, str(e)))
                continue
            final = u.wav_path(out)
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_suffix(".partial.wav")
            save_audio(partial, samples, SAMPLE_RATE)
            os.replace(partial, final)  # a wav that exists is complete: resuming can trust it
            results.append((u.id, len(samples) / SAMPLE_RATE, None))
    return results


def _batches(utts: list[Utterance], size: int) -> list[list[Utterance]]:
    """Group festival utterances of one voice together (one process each), others in plan order."""
    fest: dict[str, list[Utterance]] = defaultdict(list)
    other: list[Utterance] = []
    for u in utts:
        (fest[u.voice.name] if u.voice.engine == "festival" else other).append(u)
    groups = [other[i:i + size] for i in range(0, len(other), size)]
    for us in fest.values():
        groups += [us[i:i + size] for i in range(0, len(us), size)]
    return groups


def _check_settings(out: Path, cfg: SynthConfig) -> None:
    settings = {k: v for k, v in asdict(cfg).items() if k not in _NOT_FINGERPRINTED}
    path = out / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text())
        # A setting added after the corpus was built counts as having had its default (older corpora stay ours).
        default = asdict(SynthConfig())
        diff = sorted(k for k in set(old) | set(settings) if old.get(k, default.get(k)) != settings.get(k))
        if diff and not cfg.overwrite:
            raise ValueError(
                f"{out} holds a corpus built with other settings ({', '.join(f'{k}: {old.get(k)} -> {settings.get(k)}' for k in diff)}); "
                f"use --overwrite to rebuild it or choose another --out-dir")
        if diff:
            shutil.rmtree(out / "audio", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1, sort_keys=True))


def _manifest_line(u: Utterance, seconds: float, out: Path) -> dict:
    line = {
        "audio_filepath": str(u.wav_path(out).resolve()), "duration": round(seconds, 3), "text": u.transcript,
        "lang": u.lang, "speaker": u.speaker, "voice": u.voice.id, "voice_group": u.voice.group,
        "engine": u.voice.engine, "rate": u.rate, "pitch": u.pitch, "source_text": u.sentence,
    }
    if u.noise:
        line["noise"], line["snr_db"] = u.noise, u.snr_db
    if u.reverb:
        line["reverb"] = True
    return line


def prepare_synth(cfg: SynthConfig) -> SynthSummary:
    """Build (or finish, or extend) a synthetic corpus; see the module docstring.

    Args:
        cfg: the options.

    Returns:
        A printable :class:`SynthSummary`.

    Raises:
        ValueError: bad options, a missing voice or text source, or an out-dir built with other settings.
    """
    from tqdm import tqdm

    cfg.validate()
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    _check_settings(out, cfg)
    num_jobs = cfg.num_jobs or os.cpu_count() or 1
    plans = [plan_language(lang, cfg) for lang in cfg.langs]
    target = cfg.hours * 3600.0 / len(plans)
    cap = math.ceil(cfg.max_utterances / len(plans)) if cfg.max_utterances else 0
    chunk = 24 * num_jobs
    kept: list[tuple[Utterance, float]] = []
    failed: Counter = Counter()
    reused = 0
    warnings = [f"language '{p.lang}' has fewer than 3 voice groups: its splits share base voices and are held out "
                f"by espeak-ng variant only" for p in plans if p.by_variant_only]
    ctx = get_context("spawn")  # workers must not inherit a parent that may hold torch/OpenMP state
    with ProcessPoolExecutor(max_workers=num_jobs, mp_context=ctx) as pool, tqdm(
            total=round(target * len(plans) / 60), unit="min", desc="synthesising", disable=None, file=sys.stderr) as bar:
        for plan in plans:
            stream = plan_utterances(plan, cfg)
            seconds, count, done = 0.0, 0, False
            while not done:
                # Ask for about what the target still needs (a few seconds an utterance), so tiny corpora
                # do not synthesise a whole chunk only to throw most of it away.
                want = math.ceil((target - seconds) / 2.5) + num_jobs
                if cap:
                    want = min(want, cap - count)
                utts = [next(stream) for _ in range(max(1, min(chunk, want)))]
                durations: dict[str, float | None] = {}
                todo = []
                for u in utts:
                    wav = u.wav_path(out)
                    if wav.is_file():
                        from speechkit.audio.io import audio_info

                        durations[u.id] = audio_info(wav).duration
                        reused += 1
                    else:
                        todo.append(u)
                for results in pool.map(_make_batch, [(b, str(out), cfg) for b in _batches(todo, 8)]):
                    for uid, secs, err in results:
                        durations[uid] = secs
                        if err:
                            failed[next(u.voice.id for u in todo if u.id == uid)] += 1
                            print(f"speechkit prepare synth: left out {uid}: {err}", file=sys.stderr)
                # Keep utterances in plan order up to the target, so the corpus is the same for any --num-jobs.
                for u in utts:
                    secs = durations.get(u.id)
                    if done:
                        u.wav_path(out).unlink(missing_ok=True)
                        continue
                    if secs is None:
                        continue
                    kept.append((u, secs))
                    seconds += secs
                    count += 1
                    if seconds >= target or (cap and count >= cap):
                        done = True
                bar.update(round(sum(s for _, s in kept) / 60) - bar.n)
    return _write_outputs(out, cfg, plans, kept, failed, reused, warnings, time.perf_counter() - t0)


def _write_outputs(out: Path, cfg: SynthConfig, plans: Sequence[LanguagePlan], kept: list[tuple[Utterance, float]],
                   failed: Counter, reused: int, warnings: list[str], seconds_taken: float) -> SynthSummary:
    from speechkit.data.manifests import write_manifest

    splits = {s: SplitSummary() for s in SPLITS}
    lines: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for u, secs in kept:
        s = splits[u.split]
        s.utterances += 1
        s.seconds += secs
        s.speakers.add(u.speaker)
        s.groups.add(u.voice.group)
        s.engines.add(u.voice.engine)
        s.langs.add(u.lang)
        lines[u.split].append(_manifest_line(u, secs, out))
    keep_ids = {u.id for u, _ in kept}
    for split in SPLITS:
        # Wavs of an earlier, longer run that this plan no longer keeps must not linger next to the manifests.
        for wav in (out / "audio" / split).glob("*.wav") if (out / "audio" / split).is_dir() else ():
            if wav.stem not in keep_ids:
                wav.unlink()
        write_manifest(out / f"{split}.json", lines[split])
        if cfg.cuts:
            from speechkit.data.manifests import manifest_to_cutset

            manifest_to_cutset(out / f"{split}.json").to_file(out / f"{split}.cuts.jsonl.gz")
    reused_sentences = sum(max(0, Counter((u.lang, u.split) for u, _ in kept)[(p.lang, s)] - len(p.sentences[s]))
                           for p in plans for s in SPLITS)
    rejected: Counter = Counter()
    for p in plans:
        rejected.update(p.rejected)
    summary = SynthSummary(str(out), splits, seconds_taken, reused, failed, rejected, reused_sentences, warnings)
    (out / "summary.txt").write_text(str(summary) + "\n")
    return summary
