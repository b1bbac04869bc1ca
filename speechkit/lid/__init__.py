"""Spoken language identification: the model facade (:func:`load_model` -> :class:`~speechkit.lid.model.LIDModel`)
and its result type. Importing this package pulls in no torch and no Lightning.

Example:
    >>> from speechkit.lid import load_model
    >>> lid = load_model("exp/lid/model.safetensors")  # doctest: +SKIP
    >>> lid.classify(samples, 16000)  # doctest: +SKIP
    LIDResult(language='de', score=0.97, ...)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from speechkit.lid.model import LIDModel

__all__ = ["LIDResult", "load_model"]


@dataclass(frozen=True)
class LIDResult:
    """The language of one utterance.

    Attributes:
        language: the most probable language code.
        score: its probability.
        scores: probability of every language the model knows, highest first (a dict in that order).
        duration: seconds of audio classified.
    """

    language: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(language, probability)`` pairs, highest first."""
        return list(self.scores.items())[: max(0, k)]


def load_model(name_or_path: str | os.PathLike[str] | None = None, device: str = "cpu") -> LIDModel:
    """Load an LID model file as a :class:`~speechkit.lid.model.LIDModel` (``.classify(samples, sample_rate)``);
    see :func:`speechkit.lid.model.load_model`. ``None`` loads the bundled 12-language model."""
    from speechkit.lid.model import load_model as _load

    return _load(name_or_path, device)
