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
    from speechkit.inference.offline import TranscribeOptions, Transcript

__all__ = ["DecodingFlags", "EvalASRCommand", "TranscribeCommand", "TranscribeOutput", "eval_asr_command", "transcribe_command"]

# TranscribeOptions.long_audio_s's default, written out because this module must not import torch (a test checks
# that the two agree).
_LONG_AUDIO_S = 120.0

_ATT_CONTEXT_HELP = ("LEFT RIGHT attention context in encoder frames (-1 = unlimited) for every input, in place of "
                     "the model's own")
_LONG_AUDIO_HELP = ("inputs at least this many seconds long use --long-audio-context when the model attends to "
                    "unlimited context (full attention needs memory quadratic in the length); 0: never")
_LONG_CONTEXT_HELP = "LEFT RIGHT attention context of long inputs, in encoder frames (80 ms each)"
_VAD_HELP = ("cut each input at the speech a VAD finds, transcribe the pieces and join them (long recordings with "
             "pauses, several speakers or channels)")
_MODEL_HELP = "bundled model name (speechkit/assets/models.json) or a model file exported by a recipe"


@dataclass(kw_only=True)
class DecodingFlags:
    """The decoding options ``speechkit transcribe`` and ``speechkit eval-asr`` share (``--help`` lists them after
    the command's own flags); :func:`_options` turns them into :class:`~speechkit.inference.offline.TranscribeOptions`.
    """

    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1 ..."})
    max_symbols: int = field(default=10, metadata={"help": "most tokens one encoder frame may emit"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads; unset: torch's choice"})
    cuda_graphs: bool = field(default=False, metadata={
        "help": "with a CUDA --device: run the greedy decoder's loop as CUDA graphs (same output, faster)"})
    att_context_size: list[int] | None = field(default=None, metadata={"help": _ATT_CONTEXT_HELP})
    long_audio_s: float = field(default=_LONG_AUDIO_S, metadata={"help": _LONG_AUDIO_HELP})
    long_audio_context: list[int] = field(default_factory=lambda: [128, 128], metadata={"help": _LONG_CONTEXT_HELP})
    vad: bool = field(default=False, metadata={"help": _VAD_HELP})
    vad_model: str | None = field(default=None, metadata={"help": "VAD model name or file for --vad; unset: bundled"})
    max_segment_s: float = field(default=20.0, metadata={"help": "with --vad: longest segment, cut at a pause"})
    vad_pad_s: float = field(default=0.1, metadata={"help": "with --vad: seconds kept before and after each segment"})


@dataclass
class TranscribeCommand(DecodingFlags):
    """Options of ``speechkit transcribe``."""

    files: list[str] = field(metadata={
        "help": "audio files (any format soundfile, ffmpeg or sox reads), or NeMo manifests (.json, .jsonl): each "
                "of their lines is transcribed (its offset and duration; no text needed)"})
    model: str | None = field(default=None, metadata={"help": _MODEL_HELP + "; unset: the bundled default"})
    json: bool = field(default=False, metadata={
        "help": "print one JSON object per file: audio, text, tokens, token timestamps, words"})
    batch_size: int = field(default=16, metadata={"help": "files decoded together"})
    pred_manifest: str | None = field(default=None, metadata={
        "help": "with manifest inputs: also write their lines as one NeMo manifest with each transcript under "
                "pred_text"})


@dataclass
class TranscribeOutput:
    """What ``speechkit transcribe`` prints: ``path<TAB>text`` lines, or JSON lines with ``as_json``."""

    transcripts: list[Transcript]
    as_json: bool = False

    def __str__(self) -> str:
        if self.as_json:
            return "\n".join(json.dumps(t.to_dict(), ensure_ascii=False) for t in self.transcripts)
        return "\n".join(f"{t.source}\t{t.text}" for t in self.transcripts)


def _options(opts: DecodingFlags, timestamps: bool) -> TranscribeOptions:
    """The decoding options of either command (checked before the model is loaded)."""
    from speechkit.inference.offline import TranscribeOptions

    for name in ("att_context_size", "long_audio_context"):
        value = getattr(opts, name)
        if value is not None and len(value) != 2:
            raise ValueError(f"--{name.replace('_', '-')} takes two numbers (LEFT RIGHT), got {value}")
    context = tuple(opts.att_context_size) if opts.att_context_size is not None else None
    return TranscribeOptions(max_symbols=opts.max_symbols, timestamps=timestamps, num_threads=opts.threads,
                             cuda_graphs=opts.cuda_graphs, att_context_size=context,  # type: ignore[arg-type]
                             long_audio_s=opts.long_audio_s if opts.long_audio_s > 0 else None,
                             long_audio_context=tuple(opts.long_audio_context),  # type: ignore[arg-type]
                             vad=opts.vad, vad_model=opts.vad_model, max_segment_s=opts.max_segment_s,
                             vad_pad_s=opts.vad_pad_s)


MANIFEST_SUFFIXES = (".json", ".jsonl")


def transcribe_command(opts: TranscribeCommand) -> TranscribeOutput:
    """Transcribe files, or the lines of NeMo manifests, with a model; outputs keep the inputs' order.

    Every input is checked to exist (and ``--pred-manifest`` to have manifest inputs) before the model is loaded.
    """
    from pathlib import Path

    from speechkit.data.manifests import read_manifest
    from speechkit.inference.evaluate import transcribe_entries, write_predictions
    from speechkit.inference.offline import load_model

    # Fail on a typo before spending seconds loading the model.
    for f in opts.files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"{'manifest' if f.endswith(MANIFEST_SUFFIXES) else 'audio file'} not found: {f}")
    manifests = [f for f in opts.files if f.endswith(MANIFEST_SUFFIXES)]
    if opts.pred_manifest is not None:
        audio = [f for f in opts.files if not f.endswith(MANIFEST_SUFFIXES)]
        if audio:
            raise ValueError(f"--pred-manifest writes manifest lines: give only manifests, not audio files ({audio[0]})")
        if any(Path(f).resolve() == Path(opts.pred_manifest).resolve() for f in manifests):
            raise ValueError(f"--pred-manifest {opts.pred_manifest} is one of the input manifests: choose another file")
    # Read (and so validate) every manifest before loading the model, too.
    entries = {f: list(read_manifest(f, require_text=False)) for f in manifests}
    options = _options(opts, timestamps=opts.json)
    model = load_model(opts.model, device=opts.device)
    transcripts: list[Transcript] = []
    files: list[str] = []  # a run of audio files between manifests, decoded in one call
    for f in [*opts.files, None]:
        if f is not None and not f.endswith(MANIFEST_SUFFIXES):
            files.append(f)
            continue
        if files:
            transcripts += model.transcribe(files, batch_size=opts.batch_size, options=options)
            files = []
        if f is not None:
            transcripts += transcribe_entries(model, entries[f], batch_size=opts.batch_size, options=options).transcripts
    if opts.pred_manifest is not None:
        lines = [e for f in manifests for e in entries[f]]
        write_predictions(lines, [t.text for t in transcripts], opts.pred_manifest)
    return TranscribeOutput(transcripts, opts.json)


@dataclass
class EvalASRCommand(DecodingFlags):
    """Options of ``speechkit eval-asr``."""

    manifest: str = field(metadata={"help": "NeMo JSON-lines manifest with audio_filepath, duration, text"})
    model: str | None = field(default=None, metadata={"help": _MODEL_HELP + "; unset: the bundled default"})
    batch_size: int = field(default=16, metadata={"help": "utterances decoded together"})
    limit: int | None = field(default=None, metadata={"help": "score only the first N lines of the manifest"})
    json_out: str | None = field(default=None, metadata={"help": "also write the numbers to this JSON file"})
    worst: int = field(default=5, metadata={"help": "how many of the worst utterances to show"})
    group_by: str | None = field(default=None, metadata={
        "help": "also print WER and CER per value of this manifest field (lang, speaker, engine ...)"})
    pred_manifest: str | None = field(default=None, metadata={
        "help": "also write the scored lines as a NeMo manifest with each hypothesis under pred_text"})


def eval_asr_command(opts: EvalASRCommand) -> ASREvalReport:
    """WER / CER / RTFx of a model on a manifest (see :mod:`speechkit.inference.evaluate` for what is timed)."""
    from speechkit.inference.evaluate import evaluate_manifest, write_report_json
    from speechkit.inference.offline import load_model

    options = _options(opts, timestamps=False)
    model = load_model(opts.model, device=opts.device)
    report = evaluate_manifest(model, opts.manifest, batch_size=opts.batch_size, limit=opts.limit, options=options,
                               worst=opts.worst, group_by=opts.group_by, predictions_out=opts.pred_manifest)
    if opts.json_out:
        write_report_json(report, opts.json_out)
    return report
