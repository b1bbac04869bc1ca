"""``speechkit demo`` (what ``make demo`` runs): build a small corpus and show what speechkit sees in it.

1. synthesise a few minutes of English speech with the Debian voices (``speechkit prepare synth``),
2. print the corpus statistics per split,
3. compute log-mel features (FastConformer settings) of a few test utterances and draw one of them,
4. train a small BPE tokenizer on the training texts and show how it splits a held-out sentence.

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
    return DemoReport(sections)
