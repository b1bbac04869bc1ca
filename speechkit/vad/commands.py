"""``speechkit vad``: speech segments of audio files with a VAD model file (text or JSON lines)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from speechkit.vad.postprocess import PostProcessingOptions, Segment

__all__ = ["VadCommand", "VadOutput", "vad_command"]


@dataclass
class VadCommand:
    """Options of ``speechkit vad``."""

    files: list[str] = field(metadata={"help": "audio files (any format soundfile, ffmpeg or sox reads)"})
    model: str | None = field(default=None, metadata={
        "help": "VAD model file exported by recipes/vad/marblenet/train.py (unset: the bundled one, none yet)"})
    json: bool = field(default=False, metadata={"help": "print one JSON object per file (segments and frame shift)"})
    onset: float = field(default=0.3, metadata={"help": "speech starts above this probability"})
    offset: float = field(default=0.3, metadata={"help": "speech ends below this probability"})
    pad_onset: float = field(default=0.2, metadata={"help": "seconds added before each segment"})
    pad_offset: float = field(default=0.2, metadata={"help": "seconds added after each segment"})
    min_duration_on: float = field(default=0.2, metadata={"help": "drop shorter segments (seconds)"})
    min_duration_off: float = field(default=0.2, metadata={"help": "fill shorter gaps (seconds)"})
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
    """Run the VAD over each file."""
    from speechkit.audio.io import load_audio
    from speechkit.vad.model import load_model

    vad = load_model(cmd.model, cmd.device)
    opts = PostProcessingOptions(cmd.onset, cmd.offset, cmd.pad_onset, cmd.pad_offset, cmd.min_duration_on,
                                 cmd.min_duration_off)
    results = []
    for path in cmd.files:
        samples = load_audio(path, vad.sample_rate)
        results.append((path, samples.shape[0] / vad.sample_rate, vad.segments(samples, vad.sample_rate, opts)))
    return VadOutput(results, cmd.json)
