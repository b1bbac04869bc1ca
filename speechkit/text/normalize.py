"""Text normalisation: turn written English into the words a speaker says, in a small fixed alphabet.

ASR models are trained on, and scored against, normalised transcripts, so the same policy must be applied to
training text, to references before WER and (through :class:`speechkit.text.tokenizer.Tokenizer`, which stores
the normaliser's name) to any text that is tokenized. :func:`normalize_english` is that policy for English; its
output holds only ``a``-``z``, the apostrophe and single spaces, and applying it twice changes nothing
(``normalize_english(normalize_english(x)) == normalize_english(x)``).

Policy of :func:`normalize_english`, in the order the rules apply (the test suite checks every example):

| rule | input | output |
| ---- | ----- | ------ |
| Unicode NFKC; curly quotes, primes and dashes folded to ASCII | `“Hi” – it’s ﬁne` | `hi it's fine` |
| accented Latin letters folded to ASCII (ß, æ, œ, ø, ł ... too) | `Crème brûlée at Straße` | `creme brulee at strasse` |
| letters with no ASCII form (Greek, Cyrillic, CJK ...) are removed | `pi is π` | `pi is` |
| titles and common abbreviations (need their period) | `Mr. and Mrs. Jones, Prof. X` | `mister and missus jones professor x` |
| `e.g.`, `i.e.`, `etc.`, `vs.`, `No.` before a number | `e.g. No. 5 etc.` | `for example number five et cetera` |
| `St.` / `Dr.` before a name: saint / doctor | `Dr. Who met St. Paul` | `doctor who met saint paul` |
| `St.` / `Dr.` after a number or capitalised word, not before a name | `at 10 Downing St., then Elm Dr.` | `at ten downing street then elm drive` |
| `Mr`, `Mrs`, `Ms`, `Dr`, `St` without period, before a capitalised word | `Dr Smith` | `doctor smith` |
| money: `$`, `£`, `€`, `¥`, `₹`, `¢` | `$5.50 and £3` | `five dollars fifty cents and three pounds` |
| money: cents only, one unit, a scale word | `$0.99, $1, $2.5 million` | `ninety nine cents one dollar two point five million dollars` |
| times `h:mm` (minutes 01-09 read "oh") | `10:30 or 7:05` | `ten thirty or seven oh five` |
| times on the hour: o'clock (1-12), hundred (0, 13-24) | `at 3:00 and 14:00` | `at three o'clock and fourteen hundred` |
| a.m. / p.m. after a time or an hour | `10:30am, 5 p.m.` | `ten thirty a m five p m` |
| ordinals (`st`, `nd`, `rd`, `th`) | `3rd, 21st, 100th` | `third twenty first one hundredth` |
| decades and plurals of numbers | `the 1990s and '80s` | `the nineteen nineties and eighties` |
| simple fractions (denominator 2-10), also mixed | `1/2, 3/4, 2 2/3` | `one half three quarters two and two thirds` |
| decimals: the digits after the point one by one | `2.5 and 3.14 and .5` | `two point five and three point one four and point five` |
| a 4-digit number 1100-2099 standing alone is a year | `1999, 2005, 2010, 1905` | `nineteen ninety nine two thousand five twenty ten nineteen oh five` |
| years on the hundred | `in 1900` | `in nineteen hundred` |
| cardinals (thousands separators understood) | `1,234,567` | `one million two hundred thirty four thousand five hundred sixty seven` |
| other numbers, digits and letters split | `42 mp3 files` | `forty two mp three files` |
| leading zeros: digit by digit | `007` | `zero zero seven` |
| a minus sign before a number | `-5 degrees` | `minus five degrees` |
| percent (after a number), degrees | `50% at 20°C, 1999%` | `fifty percent at twenty degrees celsius one thousand nine hundred ninety nine percent` |
| `&`, `@`, `+`, `#` before a number | `R&D @ 5 + #1` | `r and d at five plus number one` |
| lower case | `HELLO World` | `hello world` |
| apostrophes kept inside words only | `don't 'quote' the dogs' toys` | `don't quote the dogs toys` |
| every other character (punctuation, symbols) separates words | `well-known (sic) U.S.A.` | `well known sic u s a` |
| whitespace collapsed and stripped | `  many   spaces  ` | `many spaces` |

Numbers are spelled in American style without "and" (``105`` -> ``one hundred five``) and without hyphens; a
number of 37 or more digits (past the decillions) is read digit by digit. The rules for ``St.``/``Dr.`` are a
heuristic: ``Baker St. The end`` reads ``saint`` because a capitalised word follows.

:func:`normalize_none` only strips and collapses whitespace. :func:`get_normalizer` maps the names stored with a
tokenizer (``"english"``, ``"none"``) to these functions.

Example:
    >>> normalize_english("On March 3rd, 1999, Dr. Smith paid $5.50 -- at 10:30!")
    'on march third nineteen ninety nine doctor smith paid five dollars fifty cents at ten thirty'
    >>> spell_cardinal(2_000_017)
    'two million seventeen'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = [
    "ENGLISH_ALPHABET",
    "NORMALIZERS",
    "get_normalizer",
    "normalize_english",
    "normalize_none",
    "spell_cardinal",
    "spell_digits",
    "spell_ordinal",
    "spell_year",
]

ENGLISH_ALPHABET = "abcdefghijklmnopqrstuvwxyz'"
"""Every character :func:`normalize_english` can output, besides the space."""

# --------------------------------------------------------------------------------------------------------------
# Number spelling

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = (
    "_ thousand million billion trillion quadrillion quintillion sextillion septillion octillion nonillion decillion"
).split()
_MAX_SPELLED = 1000 ** len(_SCALES)  # 10**36: beyond the decillions there are no common names
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens])
        if ones:
            words.append(_ONES[ones])
    elif rest:
        words.append(_ONES[rest])
    return words


def spell_cardinal(n: int) -> str:
    """Spell an integer in English words (American style: no "and", no hyphens).

    Args:
        n: the number; negative numbers get "minus".

    Returns:
        The words, e.g. ``105`` -> ``"one hundred five"``, ``2_000_017`` -> ``"two million seventeen"``.

    Raises:
        ValueError: ``abs(n)`` is ``10**36`` or more (no common scale word; use :func:`spell_digits`).
    """
    if n < 0:
        return "minus " + spell_cardinal(-n)
    if n >= _MAX_SPELLED:
        raise ValueError(f"{n} has {len(str(n))} digits: numbers of 37 or more digits have no English name")
    if n == 0:
        return "zero"
    groups: list[list[str]] = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_below_thousand(group) + ([_SCALES[scale]] if scale else []))
        scale += 1
    return " ".join(word for group in reversed(groups) for word in group)


def spell_ordinal(n: int) -> str:
    """Spell an ordinal number: ``3`` -> ``"third"``, ``21`` -> ``"twenty first"``, ``100`` -> ``"one hundredth"``.

    Args:
        n: a non-negative integer below ``10**36``.

    Returns:
        The ordinal words.

    Raises:
        ValueError: ``n`` is negative or too large.
    """
    if n < 0:
        raise ValueError(f"ordinals are not negative, got {n}")
    *head, last = spell_cardinal(n).split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def spell_year(n: int) -> str:
    """Spell a number the way a year is read.

    ``1999`` -> ``"nineteen ninety nine"``, ``1905`` -> ``"nineteen oh five"``, ``1900`` -> ``"nineteen hundred"``,
    ``2005`` -> ``"two thousand five"`` (the first decade of a millennium is read as a cardinal),
    ``2010`` -> ``"twenty ten"``. Numbers outside 1000-9999 are spelled as cardinals.

    Args:
        n: the year.

    Returns:
        The words.
    """
    if not 1000 <= n <= 9999 or (n // 100) % 10 == 0 and n % 100 < 10:
        return spell_cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{spell_cardinal(high)} hundred"
    if low < 10:
        return f"{spell_cardinal(high)} oh {_ONES[low]}"
    return f"{spell_cardinal(high)} {spell_cardinal(low)}"


def spell_digits(digits: str) -> str:
    """Read a string of ASCII digits one by one: ``"007"`` -> ``"zero zero seven"``.

    Args:
        digits: ASCII digits only.

    Returns:
        The words.

    Raises:
        ValueError: ``digits`` holds something other than ASCII digits.
    """
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"expected ASCII digits, got {digits!r}")
    return " ".join(_ONES[int(d)] for d in digits)


def _number(digits: str) -> str:
    """Digits (thousands commas allowed) as words: leading zeros and huge numbers digit by digit."""
    digits = digits.replace(",", "")
    if (len(digits) > 1 and digits[0] == "0") or int(digits) >= _MAX_SPELLED:
        return spell_digits(digits)
    return spell_cardinal(int(digits))


def _plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith("x"):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


# --------------------------------------------------------------------------------------------------------------
# Character folding

_PUNCT_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'", "\u02bb": "'",
    "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2044": "/", "\u2215": "/",
})
# Latin letters that Unicode does not decompose into an ASCII letter plus accents.
_LETTER_FOLD = str.maketrans({
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
    "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ł": "l", "Ł": "L", "ı": "i", "ŋ": "ng", "Ŋ": "NG", "ħ": "h",
    "Ħ": "H", "ŧ": "t", "Ŧ": "T", "ſ": "s", "ĸ": "k",
})


def _fold_unicode(text: str) -> str:
    # Folding before NFKC too: NFKC turns the acute accent into a space plus a combining mark.
    text = unicodedata.normalize("NFKC", text.translate(_PUNCT_FOLD)).translate(_PUNCT_FOLD)
    if text.isascii():
        return text
    # Other scripts' decimal digits (Arabic-Indic, Devanagari ...) are still numbers.
    text = "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in text)
    text = unicodedata.normalize("NFKD", text.translate(_LETTER_FOLD))
    return "".join(c for c in text if not unicodedata.combining(c))


# --------------------------------------------------------------------------------------------------------------
# Abbreviations

_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "prof": "professor", "jr": "junior", "sr": "senior",
    "mt": "mount", "capt": "captain", "lt": "lieutenant", "col": "colonel", "sgt": "sergeant", "gen": "general",
    "rev": "reverend", "hon": "honorable", "ave": "avenue", "blvd": "boulevard", "rd": "road",
    "inc": "incorporated", "ltd": "limited", "corp": "corporation", "dept": "department", "fig": "figure",
    "vol": "volume", "approx": "approximately", "etc": "et cetera", "vs": "versus",
}
_ABBREV_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.IGNORECASE)
_LATIN_RE = re.compile(r"\b(?:(e)\.\s?g|(i)\.\s?e)\b\.?", re.IGNORECASE)
_NUMBER_ABBREV_RE = re.compile(r"\bno\.\s*(?=[0-9])|#\s?(?=[0-9])", re.IGNORECASE)
_ST_DR_RE = re.compile(r"\b(st|dr)\.", re.IGNORECASE)
_NAME_AFTER_RE = re.compile(r"\s+[A-Z]")
_WORD_BEFORE_RE = re.compile(r"(?:^|\s)(\S+)\s+$")
_BARE_TITLE_RE = re.compile(r"\b(Mr|Mrs|Ms|Dr|St)\b(?=\s+[A-Z])")
_SAINT_DOCTOR = {"st": ("saint", "street"), "dr": ("doctor", "drive")}


def _st_dr(m: re.Match[str]) -> str:
    title, place = _SAINT_DOCTOR[m.group(1).lower()]
    text = m.string
    if _NAME_AFTER_RE.match(text, m.end()):
        return f" {title} "
    before = _WORD_BEFORE_RE.search(text[max(0, m.start() - 40): m.start()])
    if before and (before.group(1)[0].isdigit() or before.group(1)[0].isupper() and before.group(1).isalpha()):
        return f" {place} "
    return f" {title} "


def _expand_abbreviations(text: str) -> str:
    text = _ST_DR_RE.sub(_st_dr, text)
    text = _BARE_TITLE_RE.sub(lambda m: _ABBREVIATIONS.get(m.group(1).lower()) or _SAINT_DOCTOR[m.group(1).lower()][0],
                              text)
    text = _LATIN_RE.sub(lambda m: " for example " if m.group(1) else " that is ", text)
    text = _NUMBER_ABBREV_RE.sub(" number ", text)
    return _ABBREV_RE.sub(lambda m: f" {_ABBREVIATIONS[m.group(1).lower()]} ", text)


# --------------------------------------------------------------------------------------------------------------
# Numbers in context. Each rule replaces digits by words, so a later rule never sees what an earlier one read.

_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
_CURRENCIES = {  # symbol -> (one, many, one hundredth, many hundredths)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_MINUS_RE = re.compile(r"(?<![\w.,])-(?=[0-9]|\.[0-9]|[$£€¥₹][0-9])")
_MONEY_RE = re.compile(
    r"([$£€¥₹])\s?(" + _NUM + r")?(?:\.([0-9]+))?(?![0-9])"
    r"(?:\s+(thousand|million|billion|trillion)\b)?", re.IGNORECASE)
_CENTS_RE = re.compile(r"(?<![0-9.,])(" + _NUM + r")\s?¢")
_AMPM = r"(?:\s?([ap])\.?\s?m\b\.?)"
_TIME_RE = re.compile(r"(?<![0-9:.,])([0-9]{1,2}):([0-5][0-9])(?![0-9]|:[0-9])" + _AMPM + "?", re.IGNORECASE)
_HOUR_AMPM_RE = re.compile(r"(?<![0-9:.,])([0-9]{1,2})" + _AMPM, re.IGNORECASE)
_ORDINAL_RE = re.compile(r"(?<![0-9.,])(" + _NUM + r")(st|nd|rd|th)(s?)\b", re.IGNORECASE)
_PLURAL_RE = re.compile(r"(?<![0-9.,])'?(" + _NUM + r")'?s\b")
_FRACTION_RE = re.compile(r"(?<![0-9.,/])(?:([0-9]+)\s+)?([0-9]+)/([0-9]+)(?![0-9]|/|[.,][0-9])")
_DECIMAL_RE = re.compile(r"(?<![0-9.,])(" + _NUM + r")?\.([0-9]+)(?![0-9]|[.,][0-9])")
_PERCENT_RE = re.compile(r"(?<=[0-9])\s?%")
_YEAR_RE = re.compile(r"(?<![0-9.,])(1[1-9][0-9]{2}|20[0-9]{2})(?![0-9]|[.,][0-9]| percent\b)")
_CARDINAL_RE = re.compile(r"(?<![0-9])(" + _NUM + r")(?![0-9])")
_DIGITS_RE = re.compile(r"[0-9]+")
_SYMBOLS = [
    (re.compile(r"°\s?C\b"), " degrees celsius "),
    (re.compile(r"°\s?F\b"), " degrees fahrenheit "),
    (re.compile("°"), " degrees "),
    (re.compile("&"), " and "),
    (re.compile("@"), " at "),
    (re.compile(r"\+"), " plus "),
]


def _money(m: re.Match[str]) -> str:
    symbol, whole, frac, scale = m.groups()
    if whole is None and frac is None:
        return m.group(0)  # a lone currency sign: removed later with the other symbols
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    amount = 0 if whole is None else int(whole.replace(",", ""))
    if scale:
        number = _number(whole or "0") + (f" point {spell_digits(frac)}" if frac else "")
        return f" {number} {scale.lower()} {many} "
    if frac is None:
        return f" {_number(whole)} {one if amount == 1 else many} "
    if len(frac) > 2 or sub_one is None:
        return f" {_number(whole or '0')} point {spell_digits(frac)} {many} "
    cents = int(frac.ljust(2, "0"))
    parts = []
    if amount or not cents:
        parts.append(f"{_number(whole or '0')} {one if amount == 1 else many}")
    if cents:
        parts.append(f"{spell_cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return f" {' '.join(parts)} "


def _clock(hour: int, minute: int, ampm: str | None) -> str:
    words = spell_cardinal(hour)
    if minute == 0:
        if not ampm:
            words += " o'clock" if 1 <= hour <= 12 else " hundred"
    elif minute < 10:
        words += f" oh {_ONES[minute]}"
    else:
        words += " " + spell_cardinal(minute)
    return f" {words} {ampm.lower() + ' m' if ampm else ''} "


def _time(m: re.Match[str]) -> str:
    hour, minute, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 24 or ampm and not 1 <= hour <= 12:
        # Not a time of day (a score, a ratio): both numbers as cardinals, the rest left as written.
        return f" {_number(m.group(1))} {_number(m.group(2))} {m.string[m.end(2):m.end()]}"
    return _clock(hour, minute, ampm)


def _hour_ampm(m: re.Match[str]) -> str:
    hour = int(m.group(1))
    if not 1 <= hour <= 12:
        return m.group(0)
    return f" {spell_cardinal(hour)} {m.group(2).lower()} m "


def _ordinal(m: re.Match[str]) -> str:
    digits = m.group(1).replace(",", "")
    if int(digits) >= _MAX_SPELLED:
        return m.group(0)
    words = spell_ordinal(int(digits))
    return f" {_plural(words) if m.group(3) else words} "


def _plural_number(m: re.Match[str]) -> str:
    digits = m.group(1)
    if int(digits.replace(",", "")) >= _MAX_SPELLED:
        return m.group(0)
    words = spell_year(int(digits)) if _YEAR_RE.fullmatch(digits) else _number(digits)
    return f" {_plural(words)} "


def _fraction_words(num: int, den: int) -> str:
    if den == 2:
        name = "half" if num == 1 else "halves"
    elif den == 4:
        name = "quarter" if num == 1 else "quarters"
    else:
        name = spell_ordinal(den) + ("" if num == 1 else "s")
    return f"{spell_cardinal(num)} {name}"


def _fraction(m: re.Match[str]) -> str:
    whole, num, den = m.group(1), int(m.group(2)), int(m.group(3))
    if not (2 <= den <= 10 and 1 <= num < den):
        return m.group(0)  # a ratio, date or score: the slash becomes a space and the numbers cardinals
    words = _fraction_words(num, den)
    return f" {_number(whole)} and {words} " if whole else f" {words} "


def _decimal(m: re.Match[str]) -> str:
    whole = f"{_number(m.group(1))} " if m.group(1) else ""
    return f" {whole}point {spell_digits(m.group(2))} "


def _expand_numbers(text: str) -> str:
    text = _MINUS_RE.sub(" minus ", text)
    text = _PERCENT_RE.sub(" percent ", text)
    text = _MONEY_RE.sub(_money, text)
    text = _CENTS_RE.sub(lambda m: f" {_number(m.group(1))} {'cent' if m.group(1) == '1' else 'cents'} ", text)
    text = _TIME_RE.sub(_time, text)
    text = _HOUR_AMPM_RE.sub(_hour_ampm, text)
    text = _ORDINAL_RE.sub(_ordinal, text)
    text = _PLURAL_RE.sub(_plural_number, text)
    text = _FRACTION_RE.sub(_fraction, text)
    text = _DECIMAL_RE.sub(_decimal, text)
    text = _YEAR_RE.sub(lambda m: f" {spell_year(int(m.group(1)))} ", text)
    text = _CARDINAL_RE.sub(lambda m: f" {_number(m.group(1))} ", text)
    return _DIGITS_RE.sub(lambda m: f" {_number(m.group(0))} ", text)


# --------------------------------------------------------------------------------------------------------------
# The normalisers

_NOT_ALPHABET_RE = re.compile(r"[^a-z']+")
# Only after the numbers have been spelled and separated can "5vs6" be seen as "five vs six".
_VS_RE = re.compile(r"\bvs\b")
_LOOSE_APOSTROPHE_RE = re.compile(r"'(?![a-z])|(?<![a-z])'")


def normalize_english(text: str) -> str:
    """Normalise English text to lower-case words in the alphabet ``a-z``, ``'`` and space.

    The policy (numbers, money, times, abbreviations, punctuation ...) is the table in this module's docstring.
    The function is idempotent and pure Python.

    Args:
        text: any text.

    Returns:
        The normalised text: words of ``a``-``z`` and inner apostrophes, separated by single spaces, no leading or
        trailing space (``""`` when nothing speakable is left).

    Raises:
        TypeError: ``text`` is not a string.

    Example:
        >>> normalize_english("I'd pay £3 for the 2nd edition (1999)!")
        "i'd pay three pounds for the second edition nineteen ninety nine"
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_english expects a str, got {type(text).__name__}")
    text = _fold_unicode(text)
    text = _expand_abbreviations(text)
    text = _expand_numbers(text)
    for pattern, words in _SYMBOLS:
        text = pattern.sub(words, text)
    text = _NOT_ALPHABET_RE.sub(" ", text.lower())
    # An apostrophe that is not inside a word separates words like any other punctuation ("a''b" -> "a b").
    text = _LOOSE_APOSTROPHE_RE.sub(" ", text)
    return " ".join(_VS_RE.sub("versus", text).split())


def normalize_none(text: str) -> str:
    """The "no normalisation" policy: strip the text and collapse runs of whitespace to one space.

    Args:
        text: any text.

    Returns:
        The text with single spaces between words.

    Raises:
        TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_none expects a str, got {type(text).__name__}")
    return " ".join(text.split())


NORMALIZERS: dict[str, Callable[[str], str]] = {"english": normalize_english, "none": normalize_none}
"""Normalisers by the name a tokenizer stores."""


def get_normalizer(name: str) -> Callable[[str], str]:
    """The normaliser registered under ``name``.

    Args:
        name: ``"english"`` or ``"none"`` (see :data:`NORMALIZERS`).

    Returns:
        A function ``str -> str``.

    Raises:
        ValueError: the name is unknown; the message lists the known names.
    """
    try:
        return NORMALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown text normalizer {name!r}; known: {', '.join(sorted(NORMALIZERS))}") from None
