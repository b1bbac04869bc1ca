"""Sentence pools for the corpus builder: the texts Debian ships, per language.

``speechkit prepare synth`` needs sentences a synthesiser can read aloud and whose transcript is unambiguous. This
module finds them in installed packages and cleans them. A sentence is kept when it is made of letters, spaces and
light punctuation only (no digits, symbols or all-capital words, which synthesisers read in ways a transcript cannot
predict) and has between ``min_words`` and ``max_words`` words. Every rejected sentence is counted by reason.

| source     | what it reads                                         | languages (Debian package)                         |
| ---------- | ----------------------------------------------------- | -------------------------------------------------- |
| fortunes   | ``/usr/share/games/fortunes[/<lang>]``, split into sentences | en (fortunes), de, es, it, ru, pl (fortunes-<lang>) |
| wordnet    | WordNet glosses and their quoted example phrases      | en (wordnet-base)                                   |
| bible      | SWORD modules through ``diatheke``                    | en (sword-text-kjv), es (sword-text-sparv)          |
| wordlist   | random word sequences from ``/usr/share/dict/<name>``  | en, de, fr, es, it, pt, nl, pl, uk, bg, da, nb, sv, ca (w<lang>) |
| ``FILE``   | any UTF-8 text file, one sentence per line             | any                                                 |

Example:
    >>> from speechkit.data.texts import sentence_pool
    >>> pool = sentence_pool("en", ["wordnet"], seed=0)  # doctest: +SKIP
    >>> pool.sentences[:2], pool.rejected  # doctest: +SKIP
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FORTUNE_ROOT = Path("/usr/share/games/fortunes")
DICT_ROOT = Path("/usr/share/dict")
WORDNET_ROOT = Path("/usr/share/wordnet")
# Files under the English fortune folder that are pictures or code rather than prose.
FORTUNE_SKIP = {"art", "ascii-art", "perl", "translate-me", "linuxcookie", "computers"}

# language -> (word list file, Debian package)
WORDLISTS: dict[str, tuple[str, str]] = {
    "en": ("american-english", "wamerican"), "de": ("ngerman", "wngerman"), "fr": ("french", "wfrench"),
    "es": ("spanish", "wspanish"), "it": ("italian", "witalian"), "pt": ("portuguese", "wportuguese"),
    "nl": ("dutch", "wdutch"), "pl": ("polish", "wpolish"), "uk": ("ukrainian", "wukrainian"),
    "bg": ("bulgarian", "wbulgarian"), "da": ("danish", "wdanish"), "nb": ("bokmaal", "wnorwegian"),
    "sv": ("swedish", "wswedish"), "ca": ("catalan", "wcatalan"),
}
# language -> fortune folder relative to FORTUNE_ROOT ("" is the English one) and its Debian package
FORTUNES: dict[str, tuple[str, str]] = {
    "en": ("", "fortunes"), "de": ("de", "fortunes-de"), "es": ("es", "fortunes-es"), "it": ("it", "fortunes-it"),
    "ru": ("ru", "fortunes-ru"), "pl": ("pl", "fortunes-pl"),
}
BIBLES: dict[str, tuple[str, str]] = {"en": ("engKJV2006eb", "sword-text-kjv"), "es": ("spaRV1909eb", "sword-text-sparv")}
DEFAULT_SOURCES: dict[str, list[str]] = {"en": ["fortunes", "wordnet"]}

_PUNCT_OK = set(" ,.;:!?'\"-()")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")


class TextSourceError(ValueError):
    """A text source is unknown, not installed for the language, or yields no usable sentence."""


@dataclass
class SentencePool:
    """Clean, de-duplicated sentences of one language with the counts of what was rejected.

    Attributes:
        lang: language code.
        sentences: the kept sentences as the synthesiser will read them.
        sources: kept sentences per source name.
        rejected: rejected sentences per reason (digits, symbols, capitals, length, duplicate).
    """

    lang: str
    sentences: list[str] = field(default_factory=list)
    sources: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    for a, b in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2013", "-"), ("\u2014", "-")):
        text = text.replace(a, b)
    return " ".join(text.split())


def check_sentence(text: str, min_words: int, max_words: int) -> str | None:
    """Why a sentence is unusable for synthesis, or None when it is fine.

    Args:
        text: a sentence (already whitespace-folded).
        min_words: fewest words allowed.
        max_words: most words allowed.

    Returns:
        A reason (``"digits"``, ``"symbols"``, ``"capitals"``, ``"length"``) or None.
    """
    if any(c.isdigit() for c in text):
        return "digits"
    if any(not (c.isalpha() or c in _PUNCT_OK) for c in text):
        return "symbols"
    words = text.split()
    if not min_words <= len(words) <= max_words:
        return "length"
    # Synthesisers spell out all-capital words letter by letter; the transcript could not say so.
    if any(len(w.strip(".,;:!?'\"()-")) > 1 and w.strip(".,;:!?'\"()-").isupper() for w in words):
        return "capitals"
    if not any(c.isalpha() for c in text):
        return "symbols"
    return None


def _fortune_entries(folder: Path) -> Iterator[str]:
    # Other languages' packages put symbolic links to their files into the English folder: follow none.
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and p.stem not in FORTUNE_SKIP
                   and "asciiart" not in p.name)
    for path in files:
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for entry in raw.split("\n%\n"):
            lines = [ln for ln in entry.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            # Quoted dialogue and poems lose their meaning when split; prose lines join into sentences.
            yield from _SENT_SPLIT.split(_fold(" ".join(lines)))


def _wordnet_phrases() -> Iterator[str]:
    for pos in ("noun", "verb", "adj", "adv"):
        path = WORDNET_ROOT / f"data.{pos}"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                gloss = line.split("|", 1)[1]
                for part in gloss.split(";"):
                    part = part.strip().strip('"').strip()
                    if part:
                        yield part[0].upper() + part[1:] + ("" if part[-1] in ".!?" else ".")


def _bible_verses(module: str) -> Iterator[str]:
    out = subprocess.run(["diatheke", "-b", module, "-f", "plain", "-k", "Gen 1:1-Rev 22:21"],
                         capture_output=True, text=True, check=False)
    # Verse lines read "<Book> <chapter>:<verse>: text"; headings ("A Psalm of David.") stand on lines of their own.
    verse = re.compile(r"^\s*(?:I{1,3} )?[A-Z][A-Za-z ]+ \d+:\d+:\s*(.+)$")
    for line in out.stdout.splitlines():
        m = verse.match(line)
        if m:
            # Capitals in these texts are typography (LORD, a verse's first word), not acronyms to spell.
            text = " ".join(w.capitalize() if w.isupper() and len(w) > 1 else w for w in m.group(1).split())
            yield from _SENT_SPLIT.split(_fold(text))


def _word_sequences(path: Path, rng: random.Random, count: int, min_words: int, max_words: int) -> Iterator[str]:
    words = [w for w in path.read_text(encoding="utf-8", errors="replace").split()
             if w.isalpha() and not w.isupper() and "'" not in w and len(w) > 1]
    if not words:
        return
    for _ in range(count):
        n = rng.randint(min_words, max(min_words, min(max_words, 12)))
        yield " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."


def available_sources(lang: str) -> list[str]:
    """Names of the text sources installed for a language (``"FILE"`` sources are always possible)."""
    found = []
    if lang in FORTUNES and (FORTUNE_ROOT / FORTUNES[lang][0]).is_dir():
        found.append("fortunes")
    if lang == "en" and (WORDNET_ROOT / "data.noun").is_file():
        found.append("wordnet")
    if lang in BIBLES and shutil.which("diatheke"):
        found.append("bible")
    if lang in WORDLISTS and (DICT_ROOT / WORDLISTS[lang][0]).is_file():
        found.append("wordlist")
    return found


def _missing_source_error(lang: str, source: str) -> TextSourceError:
    table = {"fortunes": FORTUNES, "wordlist": WORDLISTS, "bible": BIBLES}
    package = table.get(source, {}).get(lang, (None, None))[1] if source in table else (
        "wordnet-base" if source == "wordnet" and lang == "en" else None)
    if package:
        return TextSourceError(f"text source '{source}' for language '{lang}' is not installed: "
                               f"apt-get install {package} (or `make setup-multilang`)")
    return TextSourceError(f"no text source '{source}' exists for language '{lang}' "
                           f"(known: fortunes, wordnet, bible, wordlist, or a text file path)")


def _raw_sentences(lang: str, source: str, rng: random.Random, min_words: int, max_words: int,
                   wordlist_count: int) -> Iterable[str]:
    path = Path(source)
    if source not in ("fortunes", "wordnet", "bible", "wordlist"):
        if not path.is_file():
            raise TextSourceError(f"text file not found: {source}")
        return (_fold(ln) for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip())
    if source not in available_sources(lang):
        raise _missing_source_error(lang, source)
    if source == "fortunes":
        return _fortune_entries(FORTUNE_ROOT / FORTUNES[lang][0])
    if source == "wordnet":
        return _wordnet_phrases()
    if source == "bible":
        return _bible_verses(BIBLES[lang][0])
    return _word_sequences(DICT_ROOT / WORDLISTS[lang][0], rng, wordlist_count, min_words, max_words)


def sentence_pool(
    lang: str,
    sources: Sequence[str] = (),
    seed: int = 0,
    min_words: int = 3,
    max_words: int = 30,
    wordlist_count: int = 20000,
) -> SentencePool:
    """Collect, clean, de-duplicate and shuffle the sentences of a language.

    Args:
        lang: language code (``en``, ``de``, ...).
        sources: source names (see the module table) or text file paths; empty = the language's defaults
            (fortunes + WordNet for English; otherwise fortunes where installed, else the word list).
        seed: shuffling seed (the pool order is deterministic per seed).
        min_words: shortest sentence kept.
        max_words: longest sentence kept.
        wordlist_count: how many word sequences a word list yields.

    Returns:
        The :class:`SentencePool`.

    Raises:
        TextSourceError: a source is unknown or not installed (the message names the Debian package), or no
            sentence survives cleaning.
    """
    if not sources:
        installed = available_sources(lang)
        if not installed and lang not in DEFAULT_SOURCES:
            raise TextSourceError(f"no text is installed for language '{lang}': give --texts FILE (one sentence a "
                                  f"line), or install its fortunes-{lang} / w* word list package if Debian has one")
        sources = DEFAULT_SOURCES.get(lang) or (["fortunes"] if "fortunes" in installed else ["wordlist"])
    rng = random.Random(seed)
    pool = SentencePool(lang)
    seen: set[str] = set()
    for source in sources:
        for sent in _raw_sentences(lang, source, rng, min_words, max_words, wordlist_count):
            reason = check_sentence(sent, min_words, max_words)
            # Two sentences that differ only in punctuation or case have the same transcript.
            key = " ".join(re.sub(r"[^\w' ]", " ", sent.casefold()).split())
            if reason is None and key in seen:
                reason = "duplicate"
            if reason:
                pool.rejected[reason] += 1
                continue
            seen.add(key)
            pool.sentences.append(sent)
            pool.sources[Path(source).name if source not in ("fortunes", "wordnet", "bible", "wordlist") else source] += 1
    if not pool.sentences:
        raise TextSourceError(f"no usable sentence for language '{lang}' in sources {list(sources)} "
                              f"(rejected: {dict(pool.rejected)})")
    rng.shuffle(pool.sentences)
    return pool
