"""The joint network's output layout, defined once for losses, modules and decoding.

A transducer joint emits, for every (frame t, label position u), one vector of logits. speechkit uses NeMo's
layouts so that checkpoints and numbers compare one to one:

| model       | last dimension of the logits                         | blank index | extra outputs                |
| ----------- | ---------------------------------------------------- | ----------- | ---------------------------- |
| RNN-T       | ``[tokens 0..V-1 | blank V]``                         | ``V``       | -                            |
| TDT         | ``[tokens 0..V-1 | blank V | durations 0..D-1]``      | ``V``       | D duration logits, own softmax |
| multi-blank | ``[tokens 0..V-1 | big blanks V..V+N-1 | blank V+N]`` | ``V+N``     | big blank of duration m_i at index ``V+N-1-i`` |

``V`` is the tokenizer's vocabulary size. ``blank=-1`` in the loss API always means "the last *token class*": index V
for RNN-T and TDT (never a duration logit) and V+N for multi-blank (never a big blank).

This module is a leaf: it imports nothing from speechkit and no torch, so every layer may use it.

Example:
    >>> layout = JointLayout.tdt(vocab_size=128, durations=(0, 1, 2, 3, 4))
    >>> layout.blank, layout.num_outputs, layout.duration_slice
    (128, 134, slice(129, 134, None))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["rnnt", "tdt", "multiblank"]


class LayoutError(ValueError):
    """A duration list, blank index or logits width does not fit the joint layout."""


def validate_durations(durations: Sequence[int], name: str = "durations") -> tuple[int, ...]:
    """Check a TDT duration list: integers, sorted ascending, unique, non-negative, containing 1 (0 optional).

    Args:
        durations: the frame advances a TDT joint can predict, e.g. ``[0, 1, 2, 3, 4]``.
        name: how errors name the list.

    Returns:
        The list as a tuple.

    Raises:
        LayoutError: the list breaks a rule; the message says which.
    """
    d = tuple(durations)
    if not d:
        raise LayoutError(f"{name} is empty: TDT needs at least the duration 1, e.g. [0, 1, 2, 3, 4]")
    if any(not isinstance(x, int) or isinstance(x, bool) for x in d):
        raise LayoutError(f"{name} must be integers, got {list(d)}")
    if any(x < 0 for x in d):
        raise LayoutError(f"{name} must be >= 0, got {list(d)}")
    if len(set(d)) != len(d):
        raise LayoutError(f"{name} must not repeat a value, got {list(d)}")
    if list(d) != sorted(d):
        raise LayoutError(f"{name} must be sorted ascending, got {list(d)}")
    if 1 not in d:
        # The loss's final blank arc and the decoder's "blank advances at least one frame" rule both need it.
        raise LayoutError(f"{name} must contain 1, got {list(d)}")
    return d


def validate_big_blank_durations(durations: Sequence[int], name: str = "big_blank_durations") -> tuple[int, ...]:
    """Check multi-blank big-blank durations: integers > 1, unique, sorted ascending (e.g. ``[2, 4, 8]``).

    Raises:
        LayoutError: the list breaks a rule; the message says which.
    """
    d = tuple(durations)
    if not d:
        raise LayoutError(f"{name} is empty: multi-blank RNN-T needs at least one big blank, e.g. [2, 4, 8]")
    if any(not isinstance(x, int) or isinstance(x, bool) for x in d):
        raise LayoutError(f"{name} must be integers, got {list(d)}")
    if any(x < 2 for x in d):
        raise LayoutError(f"{name} must all be >= 2 (duration 1 is the standard blank), got {list(d)}")
    if len(set(d)) != len(d) or list(d) != sorted(d):
        raise LayoutError(f"{name} must be unique and sorted ascending, got {list(d)}")
    return d


@dataclass(frozen=True)
class JointLayout:
    """Where tokens, blanks and durations sit in the joint's output vector.

    Attributes:
        kind: ``"rnnt"``, ``"tdt"`` or ``"multiblank"``.
        vocab_size: V, the number of real tokens (ids ``0..V-1``).
        durations: TDT frame advances (empty otherwise).
        big_blank_durations: multi-blank big-blank durations (empty otherwise).
    """

    kind: Kind
    vocab_size: int
    durations: tuple[int, ...] = ()
    big_blank_durations: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise LayoutError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.kind == "tdt":
            validate_durations(self.durations)
        elif self.durations:
            raise LayoutError(f"durations are for TDT only, got {list(self.durations)} for {self.kind}")
        if self.kind == "multiblank":
            validate_big_blank_durations(self.big_blank_durations)
        elif self.big_blank_durations:
            raise LayoutError(f"big_blank_durations are for multi-blank only, got them for {self.kind}")
        if self.kind not in ("rnnt", "tdt", "multiblank"):
            raise LayoutError(f"unknown joint kind {self.kind!r} (known: rnnt, tdt, multiblank)")

    @classmethod
    def rnnt(cls, vocab_size: int) -> JointLayout:
        return cls("rnnt", vocab_size)

    @classmethod
    def tdt(cls, vocab_size: int, durations: Sequence[int]) -> JointLayout:
        return cls("tdt", vocab_size, durations=tuple(durations))

    @classmethod
    def multiblank(cls, vocab_size: int, big_blank_durations: Sequence[int]) -> JointLayout:
        return cls("multiblank", vocab_size, big_blank_durations=tuple(big_blank_durations))

    @property
    def num_big_blanks(self) -> int:
        return len(self.big_blank_durations)

    @property
    def blank(self) -> int:
        """Index of the standard blank."""
        return self.vocab_size + self.num_big_blanks

    @property
    def num_token_classes(self) -> int:
        """Classes sharing the token softmax: tokens, big blanks and the blank."""
        return self.blank + 1

    @property
    def num_outputs(self) -> int:
        """Width of the joint's output vector."""
        return self.num_token_classes + len(self.durations)

    @property
    def token_slice(self) -> slice:
        """The logits that share one softmax (tokens, big blanks, blank)."""
        return slice(0, self.num_token_classes)

    @property
    def duration_slice(self) -> slice:
        """The TDT duration logits (an empty slice for other kinds)."""
        return slice(self.num_token_classes, self.num_outputs)

    def big_blank_index(self, i: int) -> int:
        """Index of the big blank with duration ``big_blank_durations[i]`` (NeMo's reversed order)."""
        if not 0 <= i < self.num_big_blanks:
            raise LayoutError(f"big blank {i} out of range: this layout has {self.num_big_blanks}")
        return self.blank - 1 - i

    def check_logits_width(self, width: int, name: str = "logits") -> None:
        """Raise LayoutError when the last dimension of the logits does not match the layout."""
        if width != self.num_outputs:
            raise LayoutError(
                f"{name} has {width} outputs per (t, u) but a {self.kind} joint with vocab_size {self.vocab_size}"
                + (f" and durations {list(self.durations)}" if self.durations else "")
                + (f" and big blanks {list(self.big_blank_durations)}" if self.big_blank_durations else "")
                + f" needs {self.num_outputs}")


def resolve_blank(blank: int, num_token_classes: int) -> int:
    """Turn a user's ``blank`` (``-1`` = the last token class) into an index in ``[0, num_token_classes)``.

    Args:
        blank: index given by the user; negative values count from the end of the *token* classes.
        num_token_classes: classes sharing the token softmax (V+1 for RNN-T/TDT, V+N+1 for multi-blank).

    Raises:
        LayoutError: the index falls outside the token classes.
    """
    b = blank + num_token_classes if blank < 0 else blank
    if not 0 <= b < num_token_classes:
        raise LayoutError(f"blank={blank} is outside the {num_token_classes} token classes")
    return b
