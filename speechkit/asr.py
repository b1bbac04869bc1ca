"""Speech recognition in three lines: load a model, transcribe files or arrays, read text and timestamps.

``load_model()`` loads the default bundled English model (when one is installed; see :mod:`speechkit.assets`),
``load_model("name")`` a bundled model by name, ``load_model("path/model.safetensors")`` a model a recipe exported.
The implementation lives in :mod:`speechkit.inference.offline`; this module is the short name to import.

Example:
    >>> import speechkit.asr
    >>> model = speechkit.asr.load_model("exp/tdt/model.safetensors")  # doctest: +SKIP
    >>> for t in model.transcribe(["a.wav", "b.flac"]):  # doctest: +SKIP
    ...     print(t.source, t.text, [(w.word, round(w.start, 2)) for w in t.words])
    a.wav hello world [('hello', 0.24), ('world', 0.64)]
    b.flac good morning [('good', 0.16), ('morning', 0.48)]
"""

from __future__ import annotations

from speechkit.assets import ModelNotFoundError, list_models
from speechkit.decoding.timestamps import WordTimestamp
from speechkit.inference.evaluate import ASREvalReport, evaluate_manifest
from speechkit.inference.offline import ASRModel, TokenTimestamp, TranscribeOptions, Transcript, load_model

__all__ = [
    "ASREvalReport",
    "ASRModel",
    "ModelNotFoundError",
    "TokenTimestamp",
    "TranscribeOptions",
    "Transcript",
    "WordTimestamp",
    "evaluate_manifest",
    "list_models",
    "load_model",
]
