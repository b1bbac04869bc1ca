"""``speechkit vad``: speech segments of audio files with a VAD model (text or JSON lines).

Without ``--model`` the bundled VAD is used. Post-processing settings left unset come from the model file (the
bundled model carries the onset/offset tuned on its dev set); a file without them gets NeMo's frame-VAD defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from speechkit.vad.postprocess import PostProcessingOptions, Segment

__all__ = ["VadCommand", "VadOutput", "vad_command"]


@dataclass
class VadCommand:
    """Options of ``speechkit vad``."""

    files: list[str] = field(metadata={"help": "audio files (any format soundfile, ffmpeg or sox reads)"})
    model: str | None = field(default=None, metadata={
        "help": "VAD model: a file exported by recipes/vad/marblenet/train.py or a registry name (unset: the bundled "
                "one)"})
    json: bool = field(default=False, metadata={"help": "print one JSON object per file (segments and frame shift)"})
    onset: float | None = field(default=None, metadata={
        "help": "speech starts above this probability (unset: the model's; bundled 0.7)"})
    offset: float | None = field(default=None, metadata={
        "help": "speech ends below this probability (unset: the model's; bundled 0.6)"})
    pad_onset: float | None = field(default=None, metadata={
        "help": "seconds added before each segment (unset: the model's; bundled 0)"})
    pad_offset: float | None = field(default=None, metadata={
        "help": "seconds added after each segment (unset: the model's; bundled 0)"})
    min_duration_on: float | None = field(default=None, metadata={
        "help": "drop shorter segments, seconds (unset: the model's; bundled 0.2)"})
    min_duration_off: float | None = field(default=None, metadata={
        "help": "fill shorter gaps, seconds (unset: the model's; bundled 0.2)"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda ..."})


@dataclass
class VadOutput:
    """``path<TAB>start<TAB>end`` lines (seconds), or one JSON object per file."""

    results: list[tuple[str, float, list[Segment]]]
    as_json: bool = False

    def __str__(self) -> str:
        if self.as_json:
            return "\n".join(json.dumps({"audio": p, "duration": round(d, 3), "segments": [
                {"start": round(s.start, 3), "end": round(s.end, 3)} for s in segs]}) for p, d, segs in self.results)
        return "\n".join(f"{p}\t{s.start:.2f}\t{s.end:.2f}" for p, _, segs in self.results for s in segs)


def vad_command(cmd: VadCommand) -> VadOutput:
    """Run the VAD over each file.

    Args:
        cmd: the options; unset post-processing fields take the model's defaults (:attr:`VADModel.postprocess`).

    Returns:
        The segments of every file.

    Raises:
        ModelNotFoundError: ``--model`` names no file or registry entry.
        ValueError: a bad model file or audio file, or bad post-processing values.
    """
    from speechkit.audio.io import load_audio
    from speechkit.vad.model import load_model

    vad = load_model(cmd.model, cmd.device)
    given = {k: getattr(cmd, k) for k in ("onset", "offset", "pad_onset", "pad_offset", "min_duration_on",
                                          "min_duration_off") if getattr(cmd, k) is not None}
    opts: PostProcessingOptions = replace(vad.postprocess, **given)
    results = []
    for path in cmd.files:
        samples = load_audio(path, vad.sample_rate)
        results.append((path, samples.shape[0] / vad.sample_rate, vad.segments(samples, vad.sample_rate, opts)))
    return VadOutput(results, cmd.json)
