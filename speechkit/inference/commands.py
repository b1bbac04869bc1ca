"""The ``speechkit transcribe`` and ``speechkit eval-asr`` commands: option dataclasses and the functions taking them.

This module imports nothing heavy (the CLI imports it to build ``--help``); torch and the model are imported when a
command runs. Both are usable from Python::

    >>> from speechkit.inference.commands import TranscribeCommand, transcribe_command
    >>> print(transcribe_command(TranscribeCommand(["a.wav"], model="exp/tdt/model.safetensors")))  # doctest: +SKIP
    a.wav	hello world
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.inference.evaluate import ASREvalReport
    from speechkit.inference.offline import Transcript

__all__ = ["EvalASRCommand", "TranscribeCommand", "TranscribeOutput", "eval_asr_command", "transcribe_command"]

_MODEL_HELP = "bundled model name (speechkit/assets/models.json) or a model file exported by a recipe"


@dataclass
class TranscribeCommand:
    """Options of ``speechkit transcribe``."""

    files: list[str] = field(metadata={"help": "audio files (any format soundfile, ffmpeg or sox reads)"})
    model: str | None = field(default=None, metadata={"help": _MODEL_HELP + "; unset: the bundled default"})
    json: bool = field(default=False, metadata={
        "help": "print one JSON object per file: audio, text, tokens, token timestamps, words"})
    batch_size: int = field(default=16, metadata={"help": "files decoded together"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1 ..."})
    max_symbols: int = field(default=10, metadata={"help": "most tokens one encoder frame may emit"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads; unset: torch's choice"})
    cuda_graphs: bool = field(default=False, metadata={
        "help": "with a CUDA --device: run the greedy decoder's loop as CUDA graphs (same output, faster)"})


@dataclass
class TranscribeOutput:
    """What ``speechkit transcribe`` prints: ``path<TAB>text`` lines, or JSON lines with ``as_json``."""

    transcripts: list[Transcript]
    as_json: bool = False

    def __str__(self) -> str:
        if self.as_json:
            return "\n".join(json.dumps(t.to_dict(), ensure_ascii=False) for t in self.transcripts)
        return "\n".join(f"{t.source}\t{t.text}" for t in self.transcripts)


def transcribe_command(opts: TranscribeCommand) -> TranscribeOutput:
    """Transcribe files with a model; every file is checked to exist before the model is loaded."""
    from pathlib import Path

    from speechkit.inference.offline import TranscribeOptions, load_model

    # Fail on a typo before spending seconds loading the model.
    for f in opts.files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"audio file not found: {f}")
    options = TranscribeOptions(max_symbols=opts.max_symbols, timestamps=opts.json, num_threads=opts.threads,
                                cuda_graphs=opts.cuda_graphs)
    model = load_model(opts.model, device=opts.device)
    return TranscribeOutput(model.transcribe(opts.files, batch_size=opts.batch_size, options=options), opts.json)


@dataclass
class EvalASRCommand:
    """Options of ``speechkit eval-asr``."""

    manifest: str = field(metadata={"help": "NeMo JSON-lines manifest with audio_filepath, duration, text"})
    model: str | None = field(default=None, metadata={"help": _MODEL_HELP + "; unset: the bundled default"})
    batch_size: int = field(default=16, metadata={"help": "utterances decoded together"})
    limit: int | None = field(default=None, metadata={"help": "score only the first N lines of the manifest"})
    json_out: str | None = field(default=None, metadata={"help": "also write the numbers to this JSON file"})
    worst: int = field(default=5, metadata={"help": "how many of the worst utterances to show"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1 ..."})
    max_symbols: int = field(default=10, metadata={"help": "most tokens one encoder frame may emit"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads; unset: torch's choice"})
    cuda_graphs: bool = field(default=False, metadata={
        "help": "with a CUDA --device: run the greedy decoder's loop as CUDA graphs (same output, faster)"})
    group_by: str | None = field(default=None, metadata={
        "help": "also print WER and CER per value of this manifest field (lang, speaker, engine ...)"})


def eval_asr_command(opts: EvalASRCommand) -> ASREvalReport:
    """WER / CER / RTFx of a model on a manifest (see :mod:`speechkit.inference.evaluate` for what is timed)."""
    from speechkit.inference.evaluate import evaluate_manifest, write_report_json
    from speechkit.inference.offline import TranscribeOptions, load_model

    model = load_model(opts.model, device=opts.device)
    options = TranscribeOptions(max_symbols=opts.max_symbols, timestamps=False, num_threads=opts.threads,
                                cuda_graphs=opts.cuda_graphs)
    report = evaluate_manifest(model, opts.manifest, batch_size=opts.batch_size, limit=opts.limit, options=options,
                               worst=opts.worst, group_by=opts.group_by)
    if opts.json_out:
        write_report_json(report, opts.json_out)
    return report
