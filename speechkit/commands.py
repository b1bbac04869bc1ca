"""Small CLI commands that glue library functions together: ``info``, ``features``, ``tokenizer train/encode``.

Each command is an options dataclass plus a function taking it (see :mod:`speechkit.cli`); both are usable from
Python as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class InfoCommand:
    """Options of ``speechkit info``."""

    manifest: list[str] = field(metadata={"help": "NeMo JSON-lines manifest(s)"})
    skip_bad: bool = field(default=False, metadata={"help": "count and skip unreadable lines instead of failing"})


def info_command(opts: InfoCommand) -> str:
    """Statistics table of the given manifests."""
    from speechkit.data.stats import summarize_manifests

    return str(summarize_manifests(opts.manifest, skip_bad=opts.skip_bad))


@dataclass
class FeaturesCommand:
    """Options of ``speechkit features``."""

    audio: list[str] = field(metadata={"help": "audio file(s)"})
    save_dir: str | None = field(default=None, metadata={"help": "also save each (F, T) feature matrix as .npy here"})


@dataclass
class FeatureReport:
    """Per-file feature shapes and statistics printed by ``speechkit features``."""

    rows: list[tuple[str, float, int, int, float, float]]

    def __str__(self) -> str:
        head = f"{'file':<32} {'seconds':>8} {'mels':>5} {'frames':>7} {'mean':>8} {'std':>7}"
        lines = [head, "-" * len(head)]
        for name, secs, mels, frames, mean, std in self.rows:
            lines.append(f"{name[-32:]:<32} {secs:>8.2f} {mels:>5} {frames:>7} {mean:>8.3f} {std:>7.3f}")
        return "\n".join(lines)


def features_command(opts: FeaturesCommand) -> FeatureReport:
    """Log-mel features (FastConformer settings, eval mode) of each file."""
    import numpy as np
    import torch

    from speechkit.audio.features import FeatureConfig, log_mel_spectrogram
    from speechkit.audio.io import load_audio

    cfg = FeatureConfig()
    rows = []
    for path in opts.audio:
        samples = load_audio(path, sample_rate=cfg.sample_rate)
        x = torch.from_numpy(samples)[None]
        feats, lens = log_mel_spectrogram(x, torch.tensor([x.shape[1]]), cfg)
        f = feats[0, :, : int(lens[0])]
        rows.append((str(path), len(samples) / cfg.sample_rate, f.shape[0], f.shape[1],
                     float(f.mean()), float(f.std())))
        if opts.save_dir:
            out = Path(opts.save_dir)
            out.mkdir(parents=True, exist_ok=True)
            np.save(out / (Path(path).stem + ".npy"), f.numpy())
    return FeatureReport(rows)


@dataclass
class TokenizerTrainCommand:
    """Options of ``speechkit tokenizer train``."""

    manifest: list[str] = field(metadata={"help": "NeMo manifest(s) whose 'text' fields are the training text"})
    out_dir: str = field(metadata={"help": "folder for tokenizer.model / tokenizer.vocab / tokenizer.json"})
    vocab_size: int = field(default=256, metadata={"help": "number of pieces (the transducer blank is extra)"})
    model_type: str = field(default="bpe", metadata={"help": "bpe or unigram"})
    character_coverage: float = field(default=1.0, metadata={"help": "SentencePiece character coverage"})
    normalize: bool = field(default=True, metadata={"help": "apply the English text normaliser before training"})
    seed: int = field(default=0, metadata={"help": "random seed of the trainer"})
    max_sentences: int = field(default=0, metadata={"help": "train on a random sample of this many texts (0 = all)"})


@dataclass
class TokenizerSummary:
    """What ``speechkit tokenizer train`` made.

    Printed as::

        tokenizer: bpe, 40 pieces -> data/tok/tokenizer.model
        trained on 120 texts (english normaliser; 0 empty after normalising, 0 lines skipped)
        example: 'hello world'
          pieces: ▁hello ▁world
    """

    out_dir: str
    vocab_size: int
    model_type: str
    example: str
    pieces: list[str]
    sentences: int = 0
    normalizer: str = "english"
    empty: int = 0
    skipped_lines: int = 0

    def __str__(self) -> str:
        return (
            f"tokenizer: {self.model_type}, {self.vocab_size} pieces -> {self.out_dir}/tokenizer.model\n"
            f"trained on {self.sentences} texts ({self.normalizer} normaliser; {self.empty} empty after "
            f"normalising, {self.skipped_lines} lines skipped)\n"
            f"example: {self.example!r}\n  pieces: {' '.join(self.pieces)}"
        )


def train_tokenizer_command(opts: TokenizerTrainCommand) -> TokenizerSummary:
    """Train a tokenizer on manifest texts and show how it splits the first text."""
    from speechkit.data.manifests import read_manifest
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    cfg = TokenizerTrainConfig(
        vocab_size=opts.vocab_size, model_type=opts.model_type, character_coverage=opts.character_coverage,
        normalize=opts.normalize, seed=opts.seed, max_sentences=opts.max_sentences,
    )
    tok = train_tokenizer_from_manifests(opts.manifest, opts.out_dir, cfg)
    raw = next((e.text for e in read_manifest(opts.manifest[0], require_text=False) if e.text), "")
    example = tok.normalize(raw)
    # With character_coverage < 1 the example may hold a character that became <unk>: show it, do not fail.
    pieces = [tok.id_to_piece(i) for i in tok.encode(example, allow_unknown=True)]
    meta = tok.metadata
    return TokenizerSummary(
        opts.out_dir, tok.vocab_size, opts.model_type, example, pieces, sentences=meta.get("sentences", 0),
        normalizer=tok.normalizer, empty=meta.get("empty_after_normalizing", 0),
        skipped_lines=meta.get("skipped_lines", 0),
    )


@dataclass
class TokenizerEncodeCommand:
    """Options of ``speechkit tokenizer encode``."""

    text: list[str] = field(metadata={"help": "text to encode (several words are joined with spaces)"})
    tokenizer: str = field(metadata={"help": "tokenizer.model file or the folder holding it"})


def encode_command(opts: TokenizerEncodeCommand) -> str:
    """Pieces and ids of a text."""
    from speechkit.text.tokenizer import Tokenizer

    tok = Tokenizer.load(opts.tokenizer)
    text = " ".join(opts.text)
    # Unknown characters are shown as <unk> and listed below rather than failing the command.
    ids = tok.encode(text, allow_unknown=True)
    unknown = tok.unknown_characters(text)
    lines = [
        f"text:   {tok.normalize(text)!r} ({tok.normalizer} normaliser)",
        f"pieces: {' '.join(tok.id_to_piece(i) for i in ids)}",
        f"ids:    {' '.join(map(str, ids))}",
    ]
    if unknown:
        lines.append(f"characters the tokenizer cannot represent (encoded as <unk>, id {tok.unk_id}): "
                     f"{' '.join(map(repr, unknown))}")
    return "\n".join(lines)
