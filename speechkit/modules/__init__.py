"""Networks: the FastConformer encoder and its parts (subsampling, relative-position attention), the transducer
prediction network and joint, the CTC head.

Names are re-exported lazily, so ``import speechkit.modules`` does not import torch until one is used.

Example:
    >>> from speechkit.modules import FastConformerConfig, FastConformerEncoder
    >>> enc = FastConformerEncoder(FastConformerConfig.preset("tiny"))
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FastConformerConfig": "fastconformer",
    "FastConformerConfigError": "fastconformer",
    "FastConformerEncoder": "fastconformer",
    "ConformerBlock": "fastconformer",
    "nemo_state_dict_to_speechkit": "fastconformer",
    "DwStridingSubsampling": "subsampling",
    "subsampled_lengths": "subsampling",
    "AttentionContext": "attention",
    "AttentionMask": "attention",
    "RelPositionMultiHeadAttention": "attention",
    "RelPositionalEncoding": "attention",
    "Joint": "transducer",
    "PredictionNetwork": "transducer",
    "PredictionState": "transducer",
    "CTCHead": "ctc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"speechkit.modules.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'speechkit.modules' has no attribute {name!r}")
