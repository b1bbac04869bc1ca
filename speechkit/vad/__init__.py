"""Voice activity detection: post-processing (:mod:`speechkit.vad.postprocess`) and the model facade
(:func:`load_model`). Importing this package pulls in no Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from speechkit.vad.postprocess import PostProcessingOptions, Segment, StreamingSegmenter, speech_segments

if TYPE_CHECKING:
    from speechkit.vad.model import VADModel

__all__ = ["PostProcessingOptions", "Segment", "StreamingSegmenter", "load_model", "speech_segments"]


def load_model(path: str | None = None, device: str = "cpu") -> VADModel:
    """Load a VAD model as a :class:`~speechkit.vad.model.VADModel` (``.frame_probs(samples, sample_rate)``,
    ``.segments(...)``); see :func:`speechkit.vad.model.load_model`.

    Args:
        path: a model file, a folder holding ``model.safetensors``, a registry name, or ``None``: the bundled
            default VAD (with its dev-tuned post-processing).
        device: where to run.

    Returns:
        The loaded :class:`~speechkit.vad.model.VADModel`.
    """
    from speechkit.vad.model import load_model as _load

    return _load(path, device)
