"""Token and word timestamps from decoded frame indices. Pure functions on Python lists.

An encoder frame lasts ``subsampling_factor * hop_s`` seconds (8 x 10 ms = 80 ms for FastConformer). A token
emitted at frame ``f`` starts at ``f * frame_s``. Where it ends depends on the model:

- TDT: ``start + duration * frame_s`` (the predicted duration; 0 gives a zero-length token);
- CTC: ``start + run_length * frame_s``;
- RNN-T / multi-blank (no duration): ``start + frame_s``, one frame (NeMo's convention).

Words come from SentencePiece pieces: a piece starting with ``"▁"`` (U+2581) starts a new word; other pieces
continue the current one.

Example:
    >>> spans = token_timestamps([0, 3, 4, 9], [2, 1, 0, 3], subsampling_factor=8)
    >>> [(round(s, 2), round(e, 2)) for s, e in spans]
    [(0.0, 0.16), (0.24, 0.32), (0.32, 0.32), (0.72, 0.96)]
    >>> [(w.word, round(w.start, 2), round(w.end, 2)) for w in word_timestamps(["▁he", "llo", "▁wor", "ld"], spans)]
    [('hello', 0.0, 0.32), ('world', 0.32, 0.96)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WORD_START", "WordTimestamp", "frame_seconds", "token_timestamps", "word_timestamps"]

WORD_START = "\u2581"  # SentencePiece's word-boundary marker "▁"


@dataclass(frozen=True)
class WordTimestamp:
    """A word and its time span.

    Attributes:
        word: the text, with the word-boundary markers removed.
        start, end: seconds.
        first_token, last_token: indices of its first and last piece in the token sequence (inclusive).
    """

    word: str
    start: float
    end: float
    first_token: int
    last_token: int


def frame_seconds(subsampling_factor: int = 8, hop_s: float = 0.01) -> float:
    """Seconds per encoder frame: ``subsampling_factor * hop_s``."""
    if subsampling_factor < 1 or hop_s <= 0:
        raise ValueError(f"subsampling_factor must be >= 1 and hop_s > 0, got {subsampling_factor}, {hop_s}")
    return subsampling_factor * hop_s


def token_timestamps(
    frames: Sequence[int],
    durations: Sequence[int] | None = None,
    *,
    subsampling_factor: int = 8,
    hop_s: float = 0.01,
) -> list[tuple[float, float]]:
    """(start, end) seconds of each token.

    Args:
        frames: encoder frame of each token (``Hypothesis.frames``).
        durations: frames each token covers (``Hypothesis.durations``: TDT, CTC); ``None`` means one frame each.
        subsampling_factor: encoder frames per feature frame.
        hop_s: feature hop in seconds.

    Returns:
        One ``(start, end)`` per token.
    """
    step = frame_seconds(subsampling_factor, hop_s)
    if durations is None:
        durations = [1] * len(frames)
    elif len(durations) != len(frames):
        raise ValueError(f"got {len(frames)} frames but {len(durations)} durations")
    return [(f * step, (f + d) * step) for f, d in zip(frames, durations, strict=True)]


def word_timestamps(pieces: Sequence[str], spans: Sequence[tuple[float, float]]) -> list[WordTimestamp]:
    """Group SentencePiece pieces into words with time spans.

    A word starts at a piece beginning with ``"▁"`` (or at the first piece); its span runs from its first piece's
    start to its last piece's end. Pieces that are only markers (``"▁"``) carry no text but still start a word.
    Words with no text at all (a trailing lone ``"▁"``) are dropped.

    Args:
        pieces: the token pieces, e.g. ``tokenizer.id_to_piece(ids)``.
        spans: ``(start, end)`` per piece, from :func:`token_timestamps`.

    Returns:
        The words in order.
    """
    if len(pieces) != len(spans):
        raise ValueError(f"got {len(pieces)} pieces but {len(spans)} spans")
    words: list[WordTimestamp] = []
    text, first = "", -1
    for i, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or first < 0:
            if first >= 0 and text:
                words.append(WordTimestamp(text, spans[first][0], spans[i - 1][1], first, i - 1))
            text, first = "", i
        text += piece.replace(WORD_START, "")
    if first >= 0 and text:
        words.append(WordTimestamp(text, spans[first][0], spans[-1][1], first, len(pieces) - 1))
    return words
