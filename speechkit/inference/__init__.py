"""Inference without Lightning: offline transcription of files and arrays, and model evaluation.

- :func:`load_model` -> :class:`ASRModel`; :meth:`ASRModel.transcribe` -> list of :class:`Transcript`
  (:mod:`speechkit.inference.offline`); the user-facing facade is :mod:`speechkit.asr`;
- :func:`evaluate_manifest` -> :class:`ASREvalReport`: WER, CER, RTFx on a manifest
  (:mod:`speechkit.inference.evaluate`);
- :class:`Recognizer` (:class:`StreamingOptions`) -> :class:`Stream` -> :class:`StreamResult`: cache-aware streaming
  recognition of chunked-limited models (:mod:`speechkit.inference.streaming`);
- :mod:`speechkit.inference.commands`: ``speechkit transcribe`` and ``speechkit eval-asr``;
  :mod:`speechkit.inference.stream_cli`: ``speechkit stream``.

This package never imports Lightning or lhotse. Names are re-exported lazily, so ``import speechkit.inference``
imports no torch until one is used.

Example:
    >>> from speechkit.inference import load_model
    >>> model = load_model("exp/tdt/model.safetensors")  # doctest: +SKIP
    >>> model.transcribe(["a.wav", "b.wav"])[0].text  # doctest: +SKIP
    'hello world'
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ASRModel": "offline",
    "TokenTimestamp": "offline",
    "TranscribeOptions": "offline",
    "Transcript": "offline",
    "load_model": "offline",
    "ASREvalReport": "evaluate",
    "UtteranceResult": "evaluate",
    "evaluate_manifest": "evaluate",
    "Recognizer": "streaming",
    "Stream": "streaming",
    "StreamResult": "streaming",
    "StreamingOptions": "streaming",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"speechkit.inference.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'speechkit.inference' has no attribute {name!r}")
