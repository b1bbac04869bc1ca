"""Word and character error rates: Levenshtein alignment with substitution / deletion / insertion counts.

``WER = (S + D + I) / N`` with N the number of reference words. A corpus-level rate is the total edits over the
total reference words (not the mean of per-utterance rates, which would weight a two-word utterance like a
fifty-word one): add :class:`ErrorRate` results with ``+`` or pass whole lists to :func:`word_error_rate`.

Texts are compared as given, split on whitespace: normalise them first (a tokenizer's ``normalize``, which is what
the decoded text of a model already is). CER compares characters of the whitespace-collapsed text, spaces included
(a missing word boundary is an error).

Plain Python; no torch.

Example:
    >>> r = word_error_rate(["the cat sat on the mat", "hello"], ["a cat sat on mat", "hello there"])
    >>> (r.substitutions, r.deletions, r.insertions, r.reference_length)
    (1, 1, 1, 7)
    >>> round(r.rate, 4)
    0.4286
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ErrorRate", "char_error_rate", "edit_counts", "word_error_rate"]


@dataclass(frozen=True)
class ErrorRate:
    """Edit counts between references and hypotheses; add two results to pool them.

    Attributes:
        substitutions: reference units replaced by another unit.
        deletions: reference units missing from the hypothesis.
        insertions: hypothesis units with no reference counterpart.
        hits: reference units matched exactly.
        reference_length: units in the references (= hits + substitutions + deletions).
        utterances: pairs counted.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0
    reference_length: int = 0
    utterances: int = 0

    @property
    def errors(self) -> int:
        """Total edits S + D + I."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Edits per reference unit (may exceed 1). An empty reference gives 0.0 when the hypothesis is empty too and
        ``inf`` otherwise (every inserted unit is an error with nothing to divide by)."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_length

    def __add__(self, other: ErrorRate) -> ErrorRate:
        if not isinstance(other, ErrorRate):
            return NotImplemented
        return ErrorRate(self.substitutions + other.substitutions, self.deletions + other.deletions,
                         self.insertions + other.insertions, self.hits + other.hits,
                         self.reference_length + other.reference_length, self.utterances + other.utterances)

    def __str__(self) -> str:
        return (f"{100 * self.rate:.2f}% ({self.errors} errors / {self.reference_length}: {self.substitutions} sub, "
                f"{self.deletions} del, {self.insertions} ins; {self.utterances} utterances)")


def edit_counts(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> ErrorRate:
    """Minimum-edit alignment of two sequences and its substitution / deletion / insertion counts.

    Among the alignments of minimum total cost (each edit costs 1) the counts are those of one fixed choice:
    ties prefer a match or substitution, then a deletion, then an insertion, so results are deterministic.

    Args:
        reference: the reference units (words, characters, token ids ...).
        hypothesis: the hypothesis units.

    Returns:
        An :class:`ErrorRate` for this one pair (``utterances == 1``).

    Example:
        >>> edit_counts(list("kitten"), list("sitting")).errors
        3
    """
    n, m = len(reference), len(hypothesis)
    # cost[j] / ops[j]: best (cost, (S, D, I)) to align reference[:i] with hypothesis[:j], one row at a time.
    prev = [(j, (0, 0, j)) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, (0, i, 0))]
        r = reference[i - 1]
        for j in range(1, m + 1):
            dc, (ds, dd, di) = prev[j - 1]
            same = r == hypothesis[j - 1]
            diag = (dc + (0 if same else 1), (ds + (0 if same else 1), dd, di))
            uc, (us, ud, ui) = prev[j]
            up = (uc + 1, (us, ud + 1, ui))  # delete reference[i-1]
            lc, (ls, ld, li) = cur[j - 1]
            left = (lc + 1, (ls, ld, li + 1))  # insert hypothesis[j-1]
            best = diag
            if up[0] < best[0]:
                best = up
            if left[0] < best[0]:
                best = left
            cur.append(best)
        prev = cur
    _, (s, d, ins) = prev[m]
    return ErrorRate(substitutions=s, deletions=d, insertions=ins, hits=n - s - d, reference_length=n, utterances=1)


def _pairs(references: str | Iterable[str], hypotheses: str | Iterable[str]) -> list[tuple[str, str]]:
    refs = [references] if isinstance(references, str) else list(references)
    hyps = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    return list(zip(refs, hyps, strict=True))


def word_error_rate(references: str | Iterable[str], hypotheses: str | Iterable[str]) -> ErrorRate:
    """Corpus-level word error rate: total word edits over total reference words.

    Args:
        references: one reference text or a list of them.
        hypotheses: the matching hypothesis text(s).

    Returns:
        The pooled :class:`ErrorRate`; ``.rate`` is the WER.

    Raises:
        ValueError: the two lists differ in length.
    """
    total = ErrorRate()
    for ref, hyp in _pairs(references, hypotheses):
        total = total + edit_counts(ref.split(), hyp.split())
    return total


def char_error_rate(references: str | Iterable[str], hypotheses: str | Iterable[str]) -> ErrorRate:
    """Corpus-level character error rate over whitespace-collapsed texts (single spaces count as characters).

    Args:
        references: one reference text or a list of them.
        hypotheses: the matching hypothesis text(s).

    Returns:
        The pooled :class:`ErrorRate`; ``.rate`` is the CER.

    Raises:
        ValueError: the two lists differ in length.
    """
    total = ErrorRate()
    for ref, hyp in _pairs(references, hypotheses):
        total = total + edit_counts(" ".join(ref.split()), " ".join(hyp.split()))
    return total
