"""WER / CER against hand-worked alignments."""

from __future__ import annotations

import math

import pytest

from speechkit.metrics import ErrorRate, char_error_rate, edit_counts, word_error_rate


def counts(r: ErrorRate) -> tuple[int, int, int, int, int]:
    return r.substitutions, r.deletions, r.insertions, r.hits, r.reference_length


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        # identical: 3 hits
        ("a b c", "a b c", (0, 0, 0, 3, 3)),
        # one substitution in the middle
        ("a b c", "a x c", (1, 0, 0, 2, 3)),
        # one deletion: "b" missing
        ("a b c", "a c", (0, 1, 0, 2, 3)),
        # one insertion: "x" between a and b
        ("a b c", "a x b c", (0, 0, 1, 3, 3)),
        # empty hypothesis: every reference word deleted
        ("a b c", "", (0, 3, 0, 0, 3)),
        # empty reference: every hypothesis word inserted
        ("", "a b", (0, 0, 2, 0, 0)),
        # shifted sentence: "the cat sat" vs "cat sat down": delete "the", insert "down" (2 edits; 3 substitutions
        # would cost 3)
        ("the cat sat", "cat sat down", (0, 1, 1, 2, 3)),
        # tie between 1 substitution and a deletion + insertion: substitution preferred (cost 1 < 2 anyway)
        ("a b", "a c", (1, 0, 0, 1, 2)),
    ],
)
def test_edit_counts_hand_worked(ref: str, hyp: str, expected: tuple[int, ...]) -> None:
    r = edit_counts(ref.split(), hyp.split())
    assert counts(r) == expected
    assert r.utterances == 1
    # Invariant: hits + substitutions + deletions = reference length.
    assert r.hits + r.substitutions + r.deletions == r.reference_length


def test_classic_kitten_sitting_levenshtein_distance() -> None:
    # kitten -> sitting: k->s, e->i, insert g = 3 edits over 6 reference characters.
    r = edit_counts(list("kitten"), list("sitting"))
    assert (r.errors, r.substitutions, r.insertions, r.deletions) == (3, 2, 1, 0)


def test_corpus_wer_pools_edits_not_rates() -> None:
    # Utterance 1: 1 error / 1 word (rate 1.0); utterance 2: 0 errors / 9 words. Pooled: 1/10, not mean 0.5.
    refs = ["hello", "one two three four five six seven eight nine"]
    hyps = ["yellow", "one two three four five six seven eight nine"]
    r = word_error_rate(refs, hyps)
    assert r.rate == pytest.approx(0.1)
    assert r.utterances == 2
    assert word_error_rate(refs[0], hyps[0]) + word_error_rate(refs[1], hyps[1]) == r


def test_wer_can_exceed_one_and_whitespace_is_ignored() -> None:
    r = word_error_rate(["a"], ["  x   y z "])
    assert counts(r) == (1, 0, 2, 0, 1)
    assert r.rate == pytest.approx(3.0)


def test_empty_reference_rates() -> None:
    assert word_error_rate([""], [""]).rate == 0.0
    assert math.isinf(word_error_rate([""], ["a"]).rate)
    assert ErrorRate().rate == 0.0


def test_cer_counts_characters_and_single_spaces() -> None:
    # "ab cd" vs "abcd": the missing space is one deletion over 5 characters.
    r = char_error_rate(["ab  cd"], ["abcd"])
    assert counts(r) == (0, 1, 0, 4, 5)
    assert r.rate == pytest.approx(0.2)
    # "cat" vs "cut": one substitution.
    assert char_error_rate("cat", "cut").substitutions == 1


def test_mismatched_lists_raise() -> None:
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])


def test_str_reads_like_a_report() -> None:
    s = str(word_error_rate(["a b c d"], ["a x c"]))
    assert s.startswith("50.00% (2 errors / 4: 1 sub, 1 del, 0 ins")
