"""``speechkit lid``: the spoken language of audio files with an LID model file (text or JSON lines)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from speechkit.lid import LIDResult

__all__ = ["LidCommand", "LidOutput", "lid_command"]


@dataclass
class LidCommand:
    """Options of ``speechkit lid``."""

    files: list[str] = field(metadata={"help": "audio files (any format soundfile, ffmpeg or sox reads)"})
    model: str | None = field(default=None, metadata={
        "help": "LID model file exported by recipes/lid/titanet/train.py (unset: the bundled 12-language one)"})
    json: bool = field(default=False, metadata={"help": "print one JSON object per file"})
    top_k: int = field(default=3, metadata={"help": "how many languages (with probabilities) to show per file"})
    batch_size: int = field(default=8, metadata={"help": "files per forward pass"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda ..."})


@dataclass
class LidOutput:
    """``path<TAB>lang score<TAB>lang score ...`` lines (top language first), or one JSON object per file."""

    results: list[tuple[str, LIDResult]]
    top_k: int = 3
    as_json: bool = False

    def __str__(self) -> str:
        if self.as_json:
            return "\n".join(json.dumps({
                "audio": p, "duration": r.duration, "language": r.language, "score": round(r.score, 4),
                "scores": {lang: round(s, 4) for lang, s in r.top(self.top_k)}}) for p, r in self.results)
        return "\n".join("\t".join([p, *(f"{lang} {s:.4f}" for lang, s in r.top(self.top_k))])
                         for p, r in self.results)


def lid_command(cmd: LidCommand) -> LidOutput:
    """Classify each file.

    Raises:
        ValueError: ``--top-k`` below 1, or an unreadable or empty audio file (named).
        FileNotFoundError: a missing model or audio file.
    """
    from speechkit.audio.io import load_audio
    from speechkit.lid.model import load_model

    if cmd.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {cmd.top_k}")
    lid = load_model(cmd.model, cmd.device)
    waves = []
    for path in cmd.files:
        samples = load_audio(path, lid.sample_rate)
        if samples.shape[0] == 0:
            raise ValueError(f"{path}: empty audio, nothing to classify")
        waves.append(samples)
    results = lid.classify_batch(waves, lid.sample_rate, cmd.batch_size)
    return LidOutput(list(zip(cmd.files, results, strict=True)), cmd.top_k, cmd.json)
