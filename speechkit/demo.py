"""``speechkit demo`` (what ``make demo`` runs): build a small corpus and show what speechkit sees in it.

1. synthesise a few minutes of English speech with the Debian voices (``speechkit prepare synth``),
2. print the corpus statistics per split,
3. compute log-mel features (FastConformer settings) of a few test utterances and draw one of them,
4. train a small BPE tokenizer on the training texts and show how it splits a held-out sentence,
5. transcribe the bundled clips (``speechkit/assets/clips``: held-out voices of the synthetic test set, plus the
   first real LibriVox utterance of Debian's ``pocketsphinx-testdata`` when it is installed) with the bundled
   English model, printing each text, the WER against the reference and the RTFx.

Everything lands under ``--out-dir`` (default ``data/demo``); a second run reuses the corpus already built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

SHADES = " .:-=+*#%@"


@dataclass
class DemoConfig:
    """Options of ``speechkit demo``."""

    out_dir: str = field(default="data/demo", metadata={"help": "where the demo corpus and tokenizer go"})
    minutes: float = field(default=4.0, metadata={"help": "minutes of speech to synthesise"})
    vocab_size: int = field(default=128, metadata={"help": "tokenizer vocabulary size"})
    seed: int = field(default=0, metadata={"help": "seed of the corpus plan"})
    num_jobs: int = field(default=0, metadata={"help": "worker processes (0 = all cores)"})
    model: str = field(default="", metadata={"help": "ASR model for step 5: a registry name or a model file "
                                                     "('' = the bundled default)"})


def ascii_spectrogram(features: "object", rows: int = 12, cols: int = 72) -> str:
    """Draw a (F, T) feature matrix as text: low mel bins at the bottom, time left to right.

    Args:
        features: array-like of shape ``(F, T)``.
        rows: text rows (mel bins are averaged into this many bands).
        cols: text columns (frames are averaged into this many slots).
    """
    import numpy as np

    f = np.asarray(features, dtype=np.float32)
    n_f, n_t = f.shape
    rows, cols = min(rows, n_f), min(cols, n_t)
    fb = np.array_split(np.arange(n_f), rows)
    tb = np.array_split(np.arange(n_t), cols)
    grid = np.array([[f[np.ix_(r, c)].mean() for c in tb] for r in fb])
    lo, hi = np.percentile(grid, 2), np.percentile(grid, 98)
    idx = np.clip((grid - lo) / max(hi - lo, 1e-6) * (len(SHADES) - 1), 0, len(SHADES) - 1).round().astype(int)
    return "\n".join("|" + "".join(SHADES[i] for i in row) + "|" for row in idx[::-1])


@dataclass
class DemoReport:
    """Everything the demo printed, as one printable object."""

    sections: list[tuple[str, str]]

    def __str__(self) -> str:
        return "\n\n".join(f"== {title} ==\n{body}" for title, body in self.sections)


def run_demo(cfg: DemoConfig) -> DemoReport:
    """Run the demo and return its report (the CLI prints it)."""
    import torch

    from speechkit.audio.features import FeatureConfig, log_mel_spectrogram
    from speechkit.audio.io import load_audio
    from speechkit.data.manifests import read_manifest, resolve_audio_path
    from speechkit.data.stats import summarize_manifests
    from speechkit.data.synth import SynthConfig, prepare_synth
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    out = Path(cfg.out_dir)
    sections: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    summary = prepare_synth(SynthConfig(out_dir=str(out / "corpus"), hours=cfg.minutes / 60.0, seed=cfg.seed,
                                        num_jobs=cfg.num_jobs))
    sections.append((f"1. corpus built by `speechkit prepare synth` ({time.perf_counter() - t0:.1f} s)", str(summary)))

    corpus = out / "corpus"
    splits = [corpus / f"{s}.json" for s in ("train", "dev", "test")]
    sections.append(("2. what is in it (`speechkit info`)", str(summarize_manifests(splits))))

    fcfg = FeatureConfig()
    entries = list(read_manifest(splits[2]))[:3]
    lines, drawing = [], ""
    for i, e in enumerate(entries):
        path = resolve_audio_path(splits[2], e.audio_filepath)
        samples = torch.from_numpy(load_audio(path, sample_rate=fcfg.sample_rate))
        feats, lens = log_mel_spectrogram(samples[None], torch.tensor([samples.numel()]), fcfg)
        f = feats[0, :, : int(lens[0])]
        lines.append(f"{path.name}: {samples.numel() / fcfg.sample_rate:.2f} s -> features {tuple(f.shape)} "
                     f"(mels x frames), mean {float(f.mean()):+.3f} std {float(f.std()):.3f}  \"{e.text}\"")
        if i == 0:
            drawing = ascii_spectrogram(f.numpy())
    sections.append((
        f"3. log-mel features ({fcfg.n_mels} mels, {fcfg.window_size * 1000:.0f} ms window, "
        f"{fcfg.window_stride * 1000:.0f} ms hop, per-feature normalised)",
        "\n".join(lines) + "\n\nfirst test utterance (low frequencies at the bottom):\n" + drawing,
    ))

    tok_dir = out / "tokenizer"
    tok = train_tokenizer_from_manifests([splits[0]], tok_dir, TokenizerTrainConfig(vocab_size=cfg.vocab_size))
    held_out = entries[0].text if entries else "hello world"
    ids = tok.encode(held_out)
    sections.append((
        f"4. BPE tokenizer trained on the train split ({tok.vocab_size} pieces, {tok_dir}/tokenizer.model)",
        f"held-out test sentence: {held_out!r}\npieces: {' '.join(tok.id_to_piece(i) for i in ids)}\n"
        f"ids:    {' '.join(map(str, ids))}\ndecoded back: {tok.decode(ids)!r}",
    ))
    from speechkit.assets import ModelNotFoundError

    try:
        sections.append(transcribe_clips(cfg.model or None, out))
    except ModelNotFoundError as err:
        if cfg.model:  # a model the user named must exist
            raise
        # No English model is bundled yet: say so (and how to make one) instead of failing the other four steps.
        sections.append(("5. the bundled clips: no bundled ASR model yet", str(err)))
    return DemoReport(sections)


def bundled_clips() -> list[tuple[Path, str]]:
    """The bundled demo clips and their reference texts (``speechkit/assets/clips/clips.json``)."""
    from speechkit.assets import ASSETS_DIR
    from speechkit.data.manifests import read_manifest, resolve_audio_path

    manifest = ASSETS_DIR / "clips" / "clips.json"
    return [(resolve_audio_path(manifest, e.audio_filepath), e.text) for e in read_manifest(manifest)]


def transcribe_clips(model_name: str | None, out_dir: Path) -> tuple[str, str]:
    """Step 5: transcribe the bundled clips (+ one LibriVox utterance when installed); a (title, body) section.

    Raises:
        ModelNotFoundError: the model is not bundled / not found (the message says how to get one).
    """
    from speechkit.data.librivox import LibriVoxError, find_librivox_dir, read_transcription
    from speechkit.inference.offline import load_model
    from speechkit.metrics.wer import word_error_rate
    from speechkit.text.normalize import normalize_english

    t0 = time.perf_counter()
    model = load_model(model_name or None)
    load_s = time.perf_counter() - t0
    clips = bundled_clips()
    notes = []
    try:
        src = find_librivox_dir()
        lines = read_transcription(src / "transcription")
        if lines:
            utt_id, text = lines[0]
            clips.append((src / f"{utt_id}.wav", text))
    except LibriVoxError as err:
        notes.append(f"(no LibriVox clip: {str(err).splitlines()[0]})")
    model.transcribe([str(p) for p, _ in clips[:1]])  # warm-up: the first call pays for lazy initialisation
    t0 = time.perf_counter()
    results = model.transcribe([str(p) for p, _ in clips], batch_size=1)
    compute_s = time.perf_counter() - t0
    audio_s = sum(r.audio_seconds for r in results)
    refs = [normalize_english(ref) for _, ref in clips]
    hyps = [normalize_english(r.text) for r in results]
    rows = []
    for (path, _), ref, hyp, r in zip(clips, refs, hyps, results, strict=True):
        wer = word_error_rate(ref, hyp)
        rows.append(f"{path.name} ({r.audio_seconds:.1f} s)\n  reference:  {ref}\n  hypothesis: {hyp}\n"
                    f"  WER {100 * wer.rate:.1f} % ({wer.errors} errors / {wer.reference_length} words)")
    total = word_error_rate(refs, hyps)
    rows.append(f"all clips: WER {100 * total.rate:.1f} % ({total.errors} / {total.reference_length} words); "
                f"{audio_s:.1f} s of audio in {compute_s:.2f} s of compute, one clip at a time: RTFx "
                f"{audio_s / max(compute_s, 1e-9):.1f} (model loaded in {load_s:.2f} s)")
    title = f"5. the bundled clips transcribed by `speechkit transcribe` with {Path(model.source).name}"
    return title, "\n".join(rows + notes)
