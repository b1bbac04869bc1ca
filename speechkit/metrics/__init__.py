"""Metrics: word and character error rates (:mod:`speechkit.metrics.wer`). Plain Python, imports no torch.

Example:
    >>> from speechkit.metrics import word_error_rate
    >>> word_error_rate(["hello world"], ["hello word"]).rate
    0.5
"""

from speechkit.metrics.wer import ErrorRate, char_error_rate, edit_counts, word_error_rate

__all__ = ["ErrorRate", "char_error_rate", "edit_counts", "word_error_rate"]
