"""The ``speechkit stream`` command: streaming recognition of a file (optionally in simulated real time) or of raw
16-bit PCM on stdin, printing partial and final results as they come.

This module imports nothing heavy (the CLI imports it to build ``--help``). Usable from Python::

    >>> from speechkit.inference.stream_cli import StreamCommand, run_stream
    >>> run_stream(StreamCommand("a.wav", model="exp/tdt_streaming/model.safetensors", json=True))  # doctest: +SKIP
    {"type": "partial", "segment": 0, "text": "hel", "start": 0.0, "end": 1.12, "tokens": [...]}
    ...

Output: one line per new partial text (only when it changed) and one per final segment. Text lines read
``[start-end] partial: text`` / ``[start-end] final: text``; with ``--json`` each line is a JSON object with
``type`` (``"partial"`` / ``"final"``), ``segment``, ``text``, ``start``, ``end`` (seconds) and ``tokens`` (pieces with
their ``start`` / ``end``).
"""

from __future__ import annotations

import json as _json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from speechkit.inference.streaming import Recognizer, Stream, StreamResult

__all__ = ["StreamCommand", "StreamSummary", "run_stream", "stream_command"]


@dataclass
class StreamCommand:
    """Options of ``speechkit stream``."""

    file: str = field(metadata={"help": "audio file (any format speechkit reads), or - for raw signed 16-bit "
                                        "little-endian mono PCM on stdin at --sample-rate"})
    model: str | None = field(default=None, metadata={
        "help": "streaming model: registry name or exported model file; unset: the bundled streaming model"})
    sample_rate: int = field(default=16000, metadata={"help": "rate of the PCM on stdin, Hz (files carry their own)"})
    chunk_ms: int = field(default=100, metadata={"help": "audio per accept_waveform call, milliseconds"})
    realtime: bool = field(default=False, metadata={
        "help": "feed a file no faster than real time (simulates a live source)"})
    json: bool = field(default=False, metadata={"help": "print JSON lines: type, segment, text, start, end, tokens"})
    endpointing: bool = field(default=True, metadata={"help": "split into segments at pauses"})
    trailing_silence: float = field(default=1.2, metadata={"help": "seconds without speech that end a segment"})
    max_utterance: float = field(default=20.0, metadata={"help": "longest segment, seconds"})
    use_vad: bool = field(default=False, metadata={"help": "detect pauses with the bundled VAD model"})
    att_context_size: list[int] | None = field(default=None, metadata={
        "help": "LEFT RIGHT attention context (look-ahead) among those the model was trained with"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1 ..."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads; unset: torch's choice"})


@dataclass
class StreamSummary:
    """What ``speechkit stream`` returns after the input ends (printed to stderr by the CLI as one line).

    Attributes:
        segments: final segments printed.
        audio_seconds: audio streamed.
        wall_seconds: time taken.
        dropped_bytes: stdin bytes that did not make a whole 16-bit sample (at the very end), reported, not used.
    """

    segments: int
    audio_seconds: float
    wall_seconds: float
    dropped_bytes: int = 0

    def __str__(self) -> str:
        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0
        extra = f", {self.dropped_bytes} trailing byte(s) of stdin dropped (not a whole sample)" \
            if self.dropped_bytes else ""
        return (f"{self.segments} segment(s), {self.audio_seconds:.2f} s of audio in {self.wall_seconds:.2f} s "
                f"(RTF {rtf:.3f}){extra}")


def _file_chunks(path: str, chunk_ms: int) -> tuple[int, Iterator[np.ndarray]]:
    from speechkit.audio.io import audio_info, load_audio

    rate = audio_info(path).sample_rate
    samples = load_audio(path, sample_rate=rate)  # the file's own rate: the stream resamples
    step = max(1, rate * chunk_ms // 1000)
    return rate, (samples[i: i + step] for i in range(0, samples.shape[0], step))


def _pcm_chunks(source: IO[bytes], rate: int, chunk_ms: int, dropped: list[int]) -> Iterator[np.ndarray]:
    """float32 chunks of s16le PCM read from ``source``; an odd last byte is counted in ``dropped``."""
    import numpy as np

    nbytes = max(2, rate * chunk_ms // 1000 * 2)
    carry = b""
    while True:
        data = source.read(nbytes)
        if not data:
            break
        data = carry + data
        whole = len(data) // 2 * 2
        carry = data[whole:]
        if whole:
            yield np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
    dropped.append(len(carry))


class _Printer:
    """Prints a stream's new results: each new final segment once, the partial text when it changes."""

    def __init__(self, out: IO[str], as_json: bool) -> None:
        self.out, self.as_json = out, as_json
        self.finals = 0
        self.last_partial: tuple[int, str] | None = None

    def line(self, r: StreamResult) -> None:
        if self.as_json:
            text = _json.dumps(r.to_dict(), ensure_ascii=False)
        else:
            text = f"[{r.start:.2f}-{r.end:.2f}] {'final' if r.is_final else 'partial'}: {r.text}"
        self.out.write(text + "\n")
        self.out.flush()

    def update(self, stream: Stream) -> None:
        segments = stream.segments
        for r in segments[self.finals:]:
            self.line(r)
        self.finals = len(segments)
        if stream.is_done:
            return
        r = stream.result
        key = (r.segment, r.text)
        if r.text and key != self.last_partial:
            self.line(r)
        self.last_partial = key


def _run(recognizer: Recognizer, rate: int, chunks: Iterator[np.ndarray], realtime: bool, out: IO[str],
         as_json: bool) -> tuple[int, float]:
    stream = recognizer.create_stream()
    printer = _Printer(out, as_json)
    t0 = time.perf_counter()
    fed = 0
    for chunk in chunks:
        if realtime:
            # Wait until the wall clock reaches the end of this chunk, as a live source would deliver it.
            delay = (fed + chunk.shape[0]) / rate - (time.perf_counter() - t0)
            if delay > 0:
                time.sleep(delay)
        stream.accept_waveform(rate, chunk)
        fed += chunk.shape[0]
        while recognizer.is_ready(stream):
            recognizer.decode([stream])
        printer.update(stream)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode([stream])
    printer.update(stream)
    return printer.finals, fed / rate


def stream_command(opts: StreamCommand) -> None:
    """``speechkit stream``: results to stdout (:func:`run_stream`), the :class:`StreamSummary` line to stderr."""
    summary = run_stream(opts)
    print(f"speechkit stream: {summary}", file=sys.stderr)


def run_stream(opts: StreamCommand, stdin: IO[bytes] | None = None, stdout: IO[str] | None = None) -> StreamSummary:
    """Stream a file or stdin through a :class:`~speechkit.inference.streaming.Recognizer`, printing results.

    Args:
        opts: the options.
        stdin: where ``-`` reads PCM from (default: ``sys.stdin.buffer``).
        stdout: where results go (default: ``sys.stdout``).

    Returns:
        A :class:`StreamSummary` (the command prints it to stderr, so stdout holds only results).

    Raises:
        FileNotFoundError: the file does not exist (checked before the model is loaded).
        ValueError: bad options (a non-positive rate or chunk size, an ``att_context_size`` not of two numbers).
    """
    from pathlib import Path

    if opts.file != "-" and not Path(opts.file).is_file():
        raise FileNotFoundError(f"audio file not found: {opts.file}")
    if opts.sample_rate <= 0:
        raise ValueError(f"--sample-rate must be > 0 Hz, got {opts.sample_rate}")
    if opts.chunk_ms <= 0:
        raise ValueError(f"--chunk-ms must be > 0, got {opts.chunk_ms}")
    if opts.att_context_size is not None and len(opts.att_context_size) != 2:
        raise ValueError(f"--att-context-size takes two numbers (LEFT RIGHT), got {opts.att_context_size}")

    import torch

    from speechkit.inference.streaming import Recognizer, StreamingOptions

    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    options = StreamingOptions(
        att_context_size=tuple(opts.att_context_size) if opts.att_context_size else None,  # type: ignore[arg-type]
        endpointing=opts.endpointing, trailing_silence=opts.trailing_silence, max_utterance=opts.max_utterance,
        use_vad=opts.use_vad)
    recognizer = Recognizer.from_pretrained(opts.model, options, device=opts.device)
    out = stdout or sys.stdout
    dropped: list[int] = []
    t0 = time.perf_counter()
    if opts.file == "-":
        source = stdin or sys.stdin.buffer
        segments, seconds = _run(recognizer, opts.sample_rate, _pcm_chunks(source, opts.sample_rate, opts.chunk_ms,
                                                                          dropped), False, out, opts.json)
    else:
        rate, chunks = _file_chunks(opts.file, opts.chunk_ms)
        segments, seconds = _run(recognizer, rate, chunks, opts.realtime, out, opts.json)
    return StreamSummary(segments, seconds, time.perf_counter() - t0, sum(dropped))
