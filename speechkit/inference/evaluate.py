"""Evaluate an ASR model on a NeMo manifest: WER, CER and speed (RTFx), as ``speechkit eval-asr`` prints them.

**Scoring.** References are normalised with the model tokenizer's own normaliser (``tokenizer.normalize``: for
English, lower case, digits and symbols spelled out, punctuation removed; :mod:`speechkit.text.normalize`) before
scoring, so a model is not charged for casing or punctuation it was never trained to produce. The hypothesis is the
model's decoded text, which is already in that form (it is normalised again, which changes nothing: the normalisers
are idempotent). WER and CER are corpus-level: total edits over total reference words / characters
(:mod:`speechkit.metrics.wer`).

**Timing.** Two clocks, so that disk and codec speed do not hide model speed:

- *loading*: reading, decoding and resampling the audio files into memory;
- *compute*: from in-memory samples to text: feature extraction, encoder and greedy decoding (plus the
  little Python that makes the batches). ``RTFx = audio seconds / compute seconds``.

Utterances are decoded longest first in batches of ``batch_size``; nothing is warmed up beforehand, so the first
batch's one-time costs are included.

**Groups.** ``group_by="engine"`` (``speechkit eval-asr --group-by engine``) also scores each value of a manifest
field on its own (``lang`` or any extra key: ``speaker``, ``engine``, ``voice_group`` ...), corpus-level within the
group, so one run shows where the errors come from. Every scored line must have the field.

**Predictions.** ``predictions_out`` (``speechkit eval-asr --pred-manifest``; ``speechkit transcribe MANIFEST
--pred-manifest`` does the same for lines without a transcript) writes the scored lines back as a NeMo manifest
with each hypothesis under ``pred_text``, the field NeMo's ``transcribe_speech.py`` writes, so the predictions of
one run can be diffed against another's or scored by other tools. Every key of the input line is kept;
audio paths are rewritten to resolve from the new file's folder (:func:`speechkit.data.manifests.write_manifest`).

Example:
    >>> from speechkit.asr import load_model
    >>> report = evaluate_manifest(load_model("exp/tdt/model.safetensors"), "data/synth_en/test.json")  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechkit.inference.offline import ASRModel, TranscribeOptions, Transcript
from speechkit.metrics.wer import ErrorRate, char_error_rate, edit_counts

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.data.manifests import ManifestEntry

__all__ = ["ASREvalReport", "DecodedEntries", "GroupScore", "UtteranceResult", "evaluate_manifest",
           "transcribe_entries", "write_predictions", "write_report_json"]


@dataclass(frozen=True)
class UtteranceResult:
    """One scored utterance.

    Attributes:
        audio: the manifest's ``audio_filepath`` (with ``@offset`` when the line has an offset).
        reference: the normalised reference text.
        hypothesis: the decoded text.
        words: word-level counts of this utterance.
    """

    audio: str
    reference: str
    hypothesis: str
    words: ErrorRate


@dataclass(frozen=True)
class GroupScore:
    """The scores of the utterances sharing one value of the ``group_by`` field.

    Attributes:
        utterances: utterances in the group.
        audio_seconds: their total audio duration.
        wer: word-level counts pooled over the group.
        cer: character-level counts pooled over the group.
    """

    utterances: int
    audio_seconds: float
    wer: ErrorRate
    cer: ErrorRate


@dataclass
class ASREvalReport:
    """What :func:`evaluate_manifest` measured; ``str()`` is the table ``speechkit eval-asr`` prints.

    Attributes:
        model: the model's source (file path).
        manifest: the manifest evaluated.
        wer: word-level counts pooled over the corpus (``wer.rate`` is the WER).
        cer: character-level counts pooled over the corpus.
        utterances: utterances scored.
        audio_seconds: total audio duration.
        load_seconds: time spent reading audio files into memory.
        compute_seconds: time from in-memory samples to text.
        batch_size: utterances per batch.
        device: where the model ran.
        worst: the utterances with the most word errors (most first).
        group_by: the manifest field the utterances were grouped by, or ``None``.
        groups: each value of that field -> its :class:`GroupScore` (sorted by value); empty without ``group_by``.
        predictions: the manifest the hypotheses were written to, or ``None``.
    """

    model: str
    manifest: str
    wer: ErrorRate
    cer: ErrorRate
    utterances: int
    audio_seconds: float
    load_seconds: float
    compute_seconds: float
    batch_size: int
    device: str
    worst: list[UtteranceResult] = field(default_factory=list)
    group_by: str | None = None
    groups: dict[str, GroupScore] = field(default_factory=dict)
    predictions: str | None = None

    @property
    def rtfx(self) -> float:
        """Audio seconds per compute second (inverse real-time factor; higher is faster)."""
        return self.audio_seconds / self.compute_seconds if self.compute_seconds > 0 else float("inf")

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600.0

    def to_dict(self) -> dict[str, Any]:
        """The numbers as a JSON-ready dict (what ``--json-out`` writes)."""
        def counts(r: ErrorRate) -> dict[str, Any]:
            # An empty reference with insertions has an infinite rate, which JSON cannot hold: null instead.
            return {"rate": r.rate if math.isfinite(r.rate) else None, "errors": r.errors, "substitutions": r.substitutions, "deletions": r.deletions,
                    "insertions": r.insertions, "reference_length": r.reference_length}

        return {
            "model": self.model,
            "manifest": self.manifest,
            "utterances": self.utterances,
            "audio_seconds": self.audio_seconds,
            "audio_hours": self.audio_hours,
            "wer": counts(self.wer),
            "cer": counts(self.cer),
            "load_seconds": self.load_seconds,
            "compute_seconds": self.compute_seconds,
            "rtfx": self.rtfx if math.isfinite(self.rtfx) else None,
            "batch_size": self.batch_size,
            "device": self.device,
            "worst": [{"audio": u.audio, "reference": u.reference, "hypothesis": u.hypothesis,
                       "errors": u.words.errors, "reference_words": u.words.reference_length} for u in self.worst],
            "group_by": self.group_by,
            "groups": {k: {"utterances": g.utterances, "audio_seconds": g.audio_seconds, "wer": counts(g.wer),
                           "cer": counts(g.cer)} for k, g in self.groups.items()},
            "predictions": self.predictions,
        }

    def __str__(self) -> str:
        w, c = self.wer, self.cer
        lines = [
            f"model:       {self.model}",
            f"manifest:    {self.manifest}",
            f"utterances:  {self.utterances} ({self.audio_hours:.4f} h of audio)",
            f"WER:         {100 * w.rate:.2f}%  ({w.errors} errors / {w.reference_length} reference words: "
            f"{w.substitutions} substitutions, {w.deletions} deletions, {w.insertions} insertions)",
            f"CER:         {100 * c.rate:.2f}%  ({c.errors} errors / {c.reference_length} reference characters)",
            f"loading:     {self.load_seconds:.2f} s (reading + resampling audio files; not part of RTFx)",
            f"compute:     {self.compute_seconds:.2f} s (features + encoder + decoding, batch {self.batch_size}, "
            f"{self.device})",
            f"RTFx:        {self.rtfx:.1f} (audio seconds / compute seconds)",
        ]
        if self.predictions:
            lines.append(f"predictions: {self.predictions} ({self.utterances} lines, hypothesis under pred_text)")
        if self.groups:
            width = max(len(k) for k in self.groups)
            lines.append(f"by {self.group_by}:")
            for k, g in self.groups.items():
                lines.append(f"  {k:<{width}}  {g.utterances:>6} utt.  {g.audio_seconds / 3600:.4f} h  "
                             f"WER {100 * g.wer.rate:6.2f}% ({g.wer.errors} / {g.wer.reference_length})  "
                             f"CER {100 * g.cer.rate:6.2f}%")
        if self.worst:
            lines.append("worst utterances:")
            for u in self.worst:
                lines.append(f"  {u.words.errors} errors / {u.words.reference_length} words  {u.audio}")
                lines.append(f"    ref: {u.reference}")
                lines.append(f"    hyp: {u.hypothesis}")
        return "\n".join(lines)


def evaluate_manifest(
    model: ASRModel,
    manifest: str | Path,
    batch_size: int = 16,
    limit: int | None = None,
    options: TranscribeOptions | None = None,
    worst: int = 5,
    group_by: str | None = None,
    predictions_out: str | Path | None = None,
) -> ASREvalReport:
    """Transcribe a manifest's utterances and score them against its ``text`` fields.

    Args:
        model: the model (:func:`speechkit.asr.load_model`).
        manifest: NeMo JSON-lines manifest with ``audio_filepath``, ``duration``, ``text`` (and optional ``offset``);
            relative audio paths resolve against the manifest's folder.
        batch_size: utterances decoded together.
        limit: score only the first ``limit`` lines of the manifest (``None`` = all).
        options: decoding options (timestamps are not needed and are switched off).
        worst: how many of the worst utterances to keep in the report.
        group_by: also score each value of this manifest field on its own (``lang`` or an extra key).
        predictions_out: also write the scored lines, in manifest order, as a NeMo manifest with the model's text
            under ``pred_text`` (an input ``pred_text`` is replaced: the file can be evaluated again).

    Returns:
        An :class:`ASREvalReport`.

    Raises:
        ManifestError: a bad manifest line (the message names file and line), or, with ``group_by``, a line
            without that field.
        AudioError: a missing or unreadable audio file (the message names it).
        ValueError: ``batch_size`` < 1 or ``limit`` < 1.
    """
    from speechkit.data.manifests import ManifestError, read_manifest

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all), got {limit}")
    # Every other option (threads, CUDA graphs ...) as given: only timestamps are never needed for scoring.
    options = dataclasses.replace(options or TranscribeOptions(), timestamps=False)
    entries = []
    keys: list[str] = []
    for entry in read_manifest(manifest, require_text=True):
        if group_by is not None:
            value = entry.lang if group_by == "lang" else entry.extra.get(group_by)
            if value is None:
                raise ManifestError(entry.manifest or manifest, entry.line, "missing field",
                                    f"no {group_by!r} field to group by")
            keys.append(str(value))
        entries.append(entry)
        if limit is not None and len(entries) >= limit:
            break
    if predictions_out is not None and Path(predictions_out).resolve() == Path(manifest).resolve():
        raise ValueError(f"predictions_out is the manifest being evaluated ({manifest}): choose another file")
    decoded = transcribe_entries(model, entries, batch_size=batch_size, options=options)
    hyps = [t.text for t in decoded.transcripts]
    seconds = [t.audio_seconds for t in decoded.transcripts]
    load_seconds, compute_seconds = decoded.load_seconds, decoded.compute_seconds
    if predictions_out is not None:
        predictions_out = str(write_predictions(entries, hyps, predictions_out))
    normalize = model.tokenizer.normalize
    refs = [normalize(e.text or "") for e in entries]
    hyps = [normalize(h) for h in hyps]
    results = [  # a transcript's source is its line's audio_filepath[@offset]
        UtteranceResult(t.source or "", r, h, edit_counts(r.split(), h.split()))
        for t, r, h in zip(decoded.transcripts, refs, hyps, strict=True)
    ]
    total = sum((u.words for u in results), ErrorRate())
    bad = sorted((u for u in results if u.words.errors), key=lambda u: (-u.words.errors, -u.words.rate))
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    groups = {key: GroupScore(len(idx), sum(seconds[i] for i in idx), sum((results[i].words for i in idx), ErrorRate()),
                              char_error_rate([refs[i] for i in idx], [hyps[i] for i in idx]))
              for key, idx in sorted(members.items())}
    return ASREvalReport(
        model=model.source or repr(model), manifest=str(manifest), wer=total, cer=char_error_rate(refs, hyps),
        utterances=len(entries), audio_seconds=sum(seconds), load_seconds=load_seconds,
        compute_seconds=compute_seconds, batch_size=batch_size, device=str(model.device), worst=bad[:worst],
        group_by=group_by, groups=groups, predictions=predictions_out,
    )


@dataclass
class DecodedEntries:
    """What :func:`transcribe_entries` returns.

    Attributes:
        transcripts: one per entry, in the entries' order; ``source`` is the line's ``audio_filepath`` as written,
            with ``@offset`` when the line has an offset.
        load_seconds: time spent reading, decoding and resampling the audio.
        compute_seconds: time from in-memory samples to text.
    """

    transcripts: list[Transcript]
    load_seconds: float
    compute_seconds: float


def transcribe_entries(model: ASRModel, entries: list[ManifestEntry], batch_size: int = 16,
                       options: TranscribeOptions | None = None) -> DecodedEntries:
    """Transcribe manifest lines (each its ``offset`` / ``duration`` span of its audio file), longest first.

    Args:
        model: the model.
        entries: lines of :func:`speechkit.data.manifests.read_manifest` (relative paths resolve against their
            manifest's folder).
        batch_size: utterances decoded together.
        options: decoding options.

    Returns:
        A :class:`DecodedEntries`.

    Raises:
        AudioError: a missing or unreadable audio file (the message names it).
    """
    from speechkit.audio.io import load_audio

    # Longest first across all the lines, as transcribe() does within a call: batches of similar lengths.
    order = sorted(range(len(entries)), key=lambda i: -entries[i].duration)
    out: list[Transcript | None] = [None] * len(entries)
    load_seconds = compute_seconds = 0.0
    rate = model.sample_rate
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        t0 = time.perf_counter()
        waves = [load_audio(entries[i].audio_path(), sample_rate=rate, offset=entries[i].offset,
                            duration=entries[i].duration) for i in idx]
        t1 = time.perf_counter()
        batch = model.transcribe(waves, sample_rate=rate, batch_size=len(waves), options=options)
        t2 = time.perf_counter()
        load_seconds += t1 - t0
        compute_seconds += t2 - t1
        for i, t in zip(idx, batch, strict=True):
            e = entries[i]
            out[i] = dataclasses.replace(t, source=e.audio_filepath + (f"@{e.offset:g}" if e.offset else ""))
    return DecodedEntries([t for t in out if t is not None], load_seconds, compute_seconds)


def write_predictions(entries: list[ManifestEntry], texts: list[str], path: str | Path) -> Path:
    """Write manifest lines plus ``pred_text`` (NeMo's field for a model's transcript) as a NeMo manifest.

    Every key of each line is kept (an input ``pred_text`` is replaced); audio paths are rewritten to resolve from
    the new file's folder.
    """
    from speechkit.data.manifests import write_manifest

    lines = []
    for entry, text in zip(entries, texts, strict=True):
        line = entry.to_json()
        # Absolute, so that write_manifest can make it relative to the new file's folder.
        line["audio_filepath"] = str(entry.audio_path())
        line["pred_text"] = text
        lines.append(line)
    write_manifest(path, lines)
    return Path(path)


def write_report_json(report: ASREvalReport, path: str | Path) -> Path:
    """Write :meth:`ASREvalReport.to_dict` as indented JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
