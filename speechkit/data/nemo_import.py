"""``speechkit prepare nemo``: import NeMo JSON-lines manifests, checking every line against its audio.

For each input manifest (or for all of them together with ``--name``) this writes, in ``--out-dir``:

* ``<name>.json``: a clean NeMo manifest holding only the lines that passed the checks, with audio paths
  rewritten so they resolve from the new location (relative when the audio lies under ``--out-dir``, else
  absolute). Field names are kept as in the input (``--text-field`` / ``--lang-field`` say which keys hold the
  transcript and the language), so nothing in a line is lost;
* ``<name>.cuts.jsonl.gz``: the same lines as Lhotse cuts (see :func:`speechkit.data.manifests.entry_to_cut`).

Checks (:func:`speechkit.data.manifests.read_manifest` with ``check_audio``): valid JSON object per line,
``audio_filepath`` present and the file readable, ``duration`` positive and matching the file (within 0.1 s, or
``offset + duration`` inside it), a non-empty text, a declared ``sampling_rate`` equal to the file's, no
duplicate line. Without ``--skip-bad`` the first bad line stops the import with an error naming file and line;
with it, bad lines are left out and counted per reason in the printed summary. ``--no-check-audio`` checks the
lines only (no audio I/O; the cuts then take rates and lengths from the lines, 16 kHz when undeclared).

Example:
    speechkit prepare nemo train.json dev.json --out-dir data/mycorpus --skip-bad
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechkit.data.manifests import (
    ManifestError,
    ManifestReport,
    iter_manifest_cuts,
    write_manifest,
)

__all__ = ["ImportSummary", "ImportedManifest", "NemoImportConfig", "import_nemo_manifest"]


@dataclass
class NemoImportConfig:
    """Options of ``speechkit prepare nemo`` (``manifest`` is positional, one or more files)."""

    manifest: list[str] = field(metadata={"help": "NeMo JSON-lines manifest(s) to import"})
    out_dir: str = field(metadata={"help": "where the clean manifest(s) and cuts go"})
    skip_bad: bool = field(default=False, metadata={
        "help": "leave bad lines out and count them, instead of stopping at the first bad line"})
    name: str | None = field(default=None, metadata={
        "help": "output name: all inputs merged into <out-dir>/<name>.json (unset: one output per input, "
                "named after it)"})
    text_field: str = field(default="text", metadata={"help": "key holding the transcript"})
    lang_field: str = field(default="lang", metadata={"help": "key holding the language"})
    check_audio: bool = field(default=True, metadata={
        "help": "check each line against its audio file's header (--no-check-audio: lines only)"})
    require_text: bool = field(default=True, metadata={
        "help": "a line without text is bad (--no-require-text for VAD/LID manifests)"})


@dataclass
class ImportedManifest:
    """One output of the import.

    Attributes:
        inputs: the manifests read.
        manifest: the clean NeMo manifest written.
        cuts: the Lhotse cuts file written.
        report: lines read, kept and skipped per reason.
        seconds: total duration of the kept lines.
    """

    inputs: list[str]
    manifest: str
    cuts: str
    report: ManifestReport
    seconds: float = 0.0


@dataclass
class ImportSummary:
    """What ``speechkit prepare nemo`` wrote; printed as a table (lines read, kept, skipped, hours)."""

    outputs: list[ImportedManifest]
    seconds_taken: float = 0.0

    @property
    def skipped(self) -> int:
        """Lines left out, over all outputs."""
        return sum(o.report.skipped for o in self.outputs)

    def __str__(self) -> str:
        width = max([len(Path(o.manifest).name) for o in self.outputs] + [8])
        head = f"{'manifest':<{width}} {'read':>7} {'kept':>7} {'skipped':>7} {'hours':>8}  from"
        rows = [head, "-" * len(head)]
        for o in self.outputs:
            r = o.report
            rows.append(f"{Path(o.manifest).name:<{width}} {r.read:>7} {r.kept:>7} {r.skipped:>7} "
                        f"{o.seconds / 3600:>8.3f}  {', '.join(o.inputs)}")
        for o in self.outputs:
            if o.report.skipped:
                rows.append(f"{Path(o.manifest).name}: {o.report}")
                rows += [f"  {m}" for m in o.report.examples[1:]]
        out_dirs = sorted({str(Path(o.manifest).parent) for o in self.outputs})
        rows.append(f"wrote <name>.json and <name>.cuts.jsonl.gz in {', '.join(out_dirs)} "
                    f"({self.seconds_taken:.1f} s)")
        return "\n".join(rows)


def _same_file(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b) or (a.exists() and b.exists() and a.samefile(b))


def _import(inputs: list[Path], out: Path, name: str, cfg: NemoImportConfig) -> ImportedManifest:
    from lhotse import CutSet

    manifest = out / f"{name}.json"
    cuts_path = out / f"{name}.cuts.jsonl.gz"
    for src in inputs:
        if _same_file(src, manifest):
            raise ValueError(f"{src}: the output {manifest} would overwrite this input; choose another --out-dir "
                             f"or --name")
    result = ImportedManifest([str(p) for p in inputs], str(manifest), str(cuts_path), ManifestReport())
    tmp_cuts = cuts_path.with_name(cuts_path.name.replace(".jsonl.gz", ".tmp.jsonl.gz"))

    def entries():
        with CutSet.open_writer(tmp_cuts) as writer:
            for entry, cut in iter_manifest_cuts(
                inputs, skip_bad=cfg.skip_bad, report=result.report, metadata_only=not cfg.check_audio,
                text_field=cfg.text_field, lang_field=cfg.lang_field, require_text=cfg.require_text,
            ):
                writer.write(cut)
                result.seconds += entry.duration
                yield entry

    try:
        write_manifest(manifest, entries(), text_field=cfg.text_field, lang_field=cfg.lang_field)
        os.replace(tmp_cuts, cuts_path)
    finally:
        if tmp_cuts.exists():
            tmp_cuts.unlink()
    return result


def import_nemo_manifest(cfg: NemoImportConfig) -> ImportSummary:
    """Validate NeMo manifest(s) and write clean copies with their Lhotse cuts (see the module docstring).

    Args:
        cfg: the options (see :class:`NemoImportConfig`).

    Returns:
        An :class:`ImportSummary`: per output, lines read, kept, skipped per reason, and hours kept.

    Raises:
        ManifestError: a manifest is missing, or (without ``skip_bad``) a line is bad; the message names file
            and line. Both outputs are written to temporary names and renamed at the end, so a failed import
            leaves no half-written file (and earlier outputs of the same name as they were).
        ValueError: two inputs would get the same output name, or an output would overwrite an input.
    """
    t0 = time.perf_counter()
    inputs = [Path(p) for p in cfg.manifest]
    if not inputs:
        raise ValueError("prepare nemo: no manifest given")
    for p in inputs:
        if not p.is_file():
            raise ManifestError(p, 0, "missing manifest", "manifest file not found")
    if cfg.name:
        groups = {cfg.name: inputs}
    else:
        groups = {}
        for p in inputs:
            stem = p.name[: -len(".json")] if p.name.endswith(".json") else p.stem
            if stem in groups:
                raise ValueError(f"{p}: two inputs are both named {stem!r}; give --name to merge them into one "
                                 f"manifest, or import them into different --out-dir folders")
            groups[stem] = [p]
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = [_import(paths, out, name, cfg) for name, paths in groups.items()]
    return ImportSummary(outputs, time.perf_counter() - t0)
