"""SentencePiece tokenizers: train one on manifest texts, save and load it, encode text to piece ids and back.

A trained tokenizer is a folder of three files:

| file              | what it holds                                                                              |
| ----------------- | ------------------------------------------------------------------------------------------ |
| `tokenizer.model` | the SentencePiece model (the only file needed to encode; :meth:`Tokenizer.to_bytes`)        |
| `tokenizer.vocab` | one `piece<TAB>score` line per id, for people to read                                      |
| `tokenizer.json`  | metadata: `model_type`, `vocab_size`, `normalizer`, `speechkit_version`, training counts    |

Ids run over ``[0, vocab_size)``: id 0 is ``<unk>`` and every other id is an ordinary piece (there are no
``<s>``/``</s>``/``<pad>`` pieces). A transducer's blank is *not* a piece: models put it after the pieces, at
``vocab_size``. SentencePiece's own text normalisation is switched off ("identity" rule); instead the tokenizer
applies the speechkit normaliser it was trained with (``"english"`` or ``"none"``, see
:mod:`speechkit.text.normalize`), stored in ``tokenizer.json``, to every text it encodes. Those normalisers are
idempotent, so encoding already-normalised text gives the same ids. An English tokenizer has a piece for every
character the English normaliser can output (``a``-``z`` and ``'``), seen in training or not, so any English text
encodes without ``<unk>``; with normaliser ``"none"``, characters the training text lacked raise
:class:`UnknownCharactersError` (or become ``<unk>`` with ``allow_unknown=True``).

Example:
    >>> from speechkit.text.tokenizer import Tokenizer, TokenizerTrainConfig, train_tokenizer_from_manifests
    >>> tok = train_tokenizer_from_manifests(["train.json"], "data/tok", TokenizerTrainConfig(vocab_size=128))  # doctest: +SKIP
    >>> ids = tok.encode("Dr. Smith paid $5!")  # doctest: +SKIP
    >>> tok.decode(ids)  # doctest: +SKIP
    'doctor smith paid five dollars'
    >>> Tokenizer.load("data/tok").encode("doctor smith paid five dollars") == ids  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm

from speechkit.text.normalize import ENGLISH_ALPHABET, NORMALIZERS, get_normalizer

__all__ = [
    "METADATA_FILE",
    "MODEL_FILE",
    "VOCAB_FILE",
    "Tokenizer",
    "TokenizerError",
    "TokenizerNotFoundError",
    "TokenizerTrainConfig",
    "UnknownCharactersError",
    "train_tokenizer_from_manifests",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "tokenizer.model"
VOCAB_FILE = "tokenizer.vocab"
METADATA_FILE = "tokenizer.json"
MODEL_TYPES = ("bpe", "unigram")
# The trainer's thread count is stored inside the model, so it is fixed to keep models byte-identical across
# machines; BPE training hardly uses threads and unigram's EM is fast at ASR corpus sizes.
_TRAIN_THREADS = 4
# SentencePiece silently skips training sentences longer than this (in bytes) unless it is raised.
_SPM_MAX_SENTENCE = 4192


class TokenizerError(ValueError):
    """A tokenizer cannot be trained, loaded or used as asked; the message says what and where."""


class TokenizerNotFoundError(TokenizerError, FileNotFoundError):
    """No tokenizer model at the given path."""


class UnknownCharactersError(TokenizerError):
    """The normalised text holds characters that no piece of the tokenizer covers.

    Attributes:
        characters: the characters, each once, in order of first appearance.
        text: the normalised text.
        index: position of the text in a batch (``None`` for a single text).
    """

    def __init__(self, characters: list[str], text: str, index: int | None = None) -> None:
        self.characters = characters
        self.text = text
        self.index = index
        which = "text" if index is None else f"text {index} of the batch"
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(
            f"{which} has characters the tokenizer cannot represent: {' '.join(map(repr, characters))} "
            f"(normalised text: {shown!r}); pass allow_unknown=True to encode them as <unk>"
        )


@dataclass
class TokenizerTrainConfig:
    """How to train a tokenizer (:func:`train_tokenizer_from_manifests`).

    Attributes:
        vocab_size: number of pieces, ``<unk>`` included (the transducer blank is extra, not counted here).
        model_type: ``"bpe"`` or ``"unigram"``.
        character_coverage: fraction of the characters seen in training that get a piece of their own; the
            rarest of the rest become ``<unk>``. 1.0 suits small alphabets such as normalised English.
        normalize: apply the English normaliser to the training text; the tokenizer then stores ``"english"``
            and applies it to everything it encodes (``"none"`` otherwise: whitespace is only collapsed). With
            it (and ``character_coverage >= 0.98``, SentencePiece's condition) every character of the
            normaliser's alphabet gets a piece even if the training text lacks it, so any English text encodes
            without ``<unk>``; this needs ``vocab_size >= 29``.
        seed: random seed of the sentence sampling (``max_sentences``) and of the trainer.
        max_sentences: train on at most this many sentences, sampled with ``seed`` (0 = all).
    """

    vocab_size: int = 256
    model_type: str = "bpe"
    character_coverage: float = 1.0
    normalize: bool = True
    seed: int = 0
    max_sentences: int = 0

    def validate(self) -> None:
        """Check every field.

        Raises:
            TokenizerError: a field is out of range; the message names it.
        """
        if self.model_type not in MODEL_TYPES:
            raise TokenizerError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {self.model_type!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise TokenizerError(f"vocab_size must be an integer >= 2, got {self.vocab_size!r}")
        if not 0.0 < self.character_coverage <= 1.0:
            raise TokenizerError(f"character_coverage must be in (0, 1], got {self.character_coverage!r}")
        if self.max_sentences < 0:
            raise TokenizerError(f"max_sentences must be >= 0 (0 = all), got {self.max_sentences!r}")

    @property
    def normalizer(self) -> str:
        """Name of the normaliser this configuration trains with."""
        return "english" if self.normalize else "none"


class Tokenizer:
    """A SentencePiece model plus the text normaliser it was trained with.

    Ids are in ``[0, vocab_size)``; ``<unk>`` is :attr:`unk_id` (0 for tokenizers speechkit trains) and is only
    produced with ``allow_unknown=True``; no begin/end-of-sentence ids are ever produced. Build one with
    :func:`train_tokenizer_from_manifests`, :meth:`load` or :meth:`from_bytes`. Instances pickle (for data
    loader workers) and are safe to share between threads.

    Attributes:
        normalizer: name of the normaliser applied before encoding (``"english"`` or ``"none"``).
        metadata: the contents of ``tokenizer.json`` (model type, training counts ...); may be empty.

    Example:
        >>> tok = Tokenizer.load("data/tok")  # doctest: +SKIP
        >>> [tok.id_to_piece(i) for i in tok.encode("Hello, World!")]  # doctest: +SKIP
        ['▁hello', '▁world']
    """

    def __init__(
        self, model: bytes, normalizer: str, metadata: dict[str, Any] | None = None, *, source: str = "model bytes"
    ) -> None:
        """Wrap serialised SentencePiece model bytes; prefer :meth:`from_bytes` or :meth:`load`.

        Args:
            model: the bytes of a ``.model`` file.
            normalizer: name of the normaliser to apply before encoding.
            metadata: extra information to keep and save (``tokenizer.json``).
            source: where the bytes came from, for error messages.

        Raises:
            TokenizerError: the bytes are not a SentencePiece model, or the normaliser is unknown.
        """
        try:
            self._normalize = get_normalizer(normalizer)
        except ValueError as err:
            raise TokenizerError(f"{source}: {err}") from None
        self.normalizer = normalizer
        self._model = bytes(model)
        self._sp = _processor(self._model, source)
        self._unk = self._sp.unk_id()
        self.metadata: dict[str, Any] = dict(metadata or {})

    # -- construction and storage --------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, model: bytes, normalizer: str) -> Tokenizer:
        """A tokenizer from the bytes of a SentencePiece model (e.g. embedded in an exported model file).

        Args:
            model: what :meth:`to_bytes` returned (the contents of ``tokenizer.model``).
            normalizer: the normaliser name stored beside it (``"english"`` or ``"none"``).

        Returns:
            The tokenizer.

        Raises:
            TokenizerError: the bytes are not a SentencePiece model, or the normaliser name is unknown.
        """
        return cls(model, normalizer)

    def to_bytes(self) -> bytes:
        """The serialised SentencePiece model (the contents of ``tokenizer.model``).

        Returns:
            Bytes that :meth:`from_bytes` turns back into an equal tokenizer (with :attr:`normalizer`).
        """
        return self._model

    @classmethod
    def load(cls, path: str | Path, normalizer: str | None = None) -> Tokenizer:
        """Load a tokenizer from its folder or its ``tokenizer.model`` file.

        The normaliser comes from ``tokenizer.json`` beside the model. A bare SentencePiece ``.model`` with no
        ``tokenizer.json`` is used with normaliser ``"none"`` unless ``normalizer`` says otherwise.

        Args:
            path: a folder holding ``tokenizer.model``, or the path of a ``.model`` file.
            normalizer: use this normaliser instead of the stored one.

        Returns:
            The tokenizer.

        Raises:
            TokenizerNotFoundError: there is no model at ``path`` (a ``FileNotFoundError`` and a ``ValueError``).
            TokenizerError: the model or ``tokenizer.json`` is unreadable, or they do not belong together.
        """
        path = Path(path)
        model_path = path / MODEL_FILE if path.is_dir() else path
        if not model_path.is_file():
            where = f"{path} holds no {MODEL_FILE}" if path.is_dir() else f"tokenizer model not found: {path}"
            raise TokenizerNotFoundError(f"{where} (give the folder written by `speechkit tokenizer train` "
                                         f"or its {MODEL_FILE} file)")
        metadata: dict[str, Any] = {}
        meta_path = model_path.with_name(METADATA_FILE)
        if meta_path.is_file():
            try:
                metadata = json.loads(meta_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise TokenizerError(f"{meta_path}: not valid JSON ({err})") from None
            if not isinstance(metadata, dict):
                raise TokenizerError(f"{meta_path}: expected a JSON object, got {type(metadata).__name__}")
        name = normalizer or metadata.get("normalizer", "none")
        if name not in NORMALIZERS:
            where = "load(normalizer=...)" if normalizer else str(meta_path)
            raise TokenizerError(f"{where}: unknown normalizer {name!r} (known: {', '.join(sorted(NORMALIZERS))})")
        tok = cls(model_path.read_bytes(), name, metadata, source=str(model_path))
        declared = metadata.get("vocab_size")
        if declared is not None and declared != tok.vocab_size:
            raise TokenizerError(f"{meta_path} says vocab_size {declared} but {model_path} has {tok.vocab_size} "
                                 "pieces: the two files do not belong together")
        return tok

    def save(self, out_dir: str | Path) -> Path:
        """Write ``tokenizer.model``, ``tokenizer.vocab`` and ``tokenizer.json`` into a folder.

        Args:
            out_dir: the folder (created if missing; existing tokenizer files are replaced).

        Returns:
            The path of ``tokenizer.model``.
        """
        from speechkit import __version__

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / MODEL_FILE).write_bytes(self._model)
        vocab = "".join(f"{self._sp.id_to_piece(i)}\t{self._sp.get_score(i) + 0.0:g}\n" for i in range(self.vocab_size))
        (out / VOCAB_FILE).write_text(vocab, encoding="utf-8")
        meta = {**self.metadata, "vocab_size": self.vocab_size, "normalizer": self.normalizer,
                "speechkit_version": __version__}
        meta.setdefault("model_type", "unknown")
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return out / MODEL_FILE

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self._model, "normalizer": self.normalizer, "metadata": self.metadata}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], state["normalizer"], state["metadata"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return (f"Tokenizer(model_type={self.model_type!r}, vocab_size={self.vocab_size}, "
                f"normalizer={self.normalizer!r})")

    # -- vocabulary ------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of pieces, ``<unk>`` included; ids are ``0 .. vocab_size - 1`` (a transducer blank is extra)."""
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>``."""
        return self._unk

    @property
    def model_type(self) -> str:
        """``"bpe"`` or ``"unigram"`` as recorded in ``tokenizer.json`` (``"unknown"`` for a bare model)."""
        return str(self.metadata.get("model_type", "unknown"))

    def id_to_piece(self, i: int) -> str:
        """The piece of an id (``"▁"`` marks a word start).

        Args:
            i: an id in ``[0, vocab_size)``.

        Returns:
            The piece.

        Raises:
            TokenizerError: the id is out of range.
        """
        return self._sp.id_to_piece(self._check_id(i))

    def piece_to_id(self, piece: str) -> int:
        """The id of a piece.

        Args:
            piece: a piece of the vocabulary (e.g. ``"▁the"``).

        Returns:
            Its id.

        Raises:
            TokenizerError: the piece is not in the vocabulary (SentencePiece itself would silently answer
                the ``<unk>`` id).
        """
        i = self._sp.piece_to_id(piece)
        if i == self._unk and piece != self._sp.id_to_piece(self._unk):
            raise TokenizerError(f"{piece!r} is not a piece of this tokenizer")
        return i

    # -- text ------------------------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """Apply this tokenizer's normaliser (what :meth:`encode` does first).

        Args:
            text: any text.

        Returns:
            The normalised text.
        """
        return self._normalize(text)

    def encode(self, text: str, allow_unknown: bool = False) -> list[int]:
        """Normalise a text and split it into piece ids.

        Args:
            text: the text (normalised or not: the normaliser is idempotent).
            allow_unknown: encode characters no piece covers as :attr:`unk_id` instead of raising.

        Returns:
            Ids in ``[0, vocab_size)``; no begin/end-of-sentence ids. Empty for a text with nothing left after
            normalisation.

        Raises:
            UnknownCharactersError: (without ``allow_unknown``) the normalised text has characters the model
                cannot represent; the error lists them.
        """
        norm = self._normalize(text)
        ids: list[int] = self._sp.encode(norm, out_type=int)
        if not allow_unknown and self._unk in ids:
            raise UnknownCharactersError(self._unknown_in(norm), norm)
        return ids

    def encode_batch(self, texts: Sequence[str], allow_unknown: bool = False) -> list[list[int]]:
        """:meth:`encode` several texts.

        Args:
            texts: the texts.
            allow_unknown: encode characters no piece covers as :attr:`unk_id` instead of raising.

        Returns:
            One id list per text, in order.

        Raises:
            UnknownCharactersError: (without ``allow_unknown``) a text has characters the model cannot
                represent; the error gives its index in the batch and lists them.
        """
        norms = [self._normalize(t) for t in texts]
        batch: list[list[int]] = self._sp.encode(norms, out_type=int) if norms else []
        if not allow_unknown:
            for k, ids in enumerate(batch):
                if self._unk in ids:
                    raise UnknownCharactersError(self._unknown_in(norms[k]), norms[k], index=k)
        return batch

    def decode(self, ids: Iterable[int]) -> str:
        """Join piece ids back into text.

        Args:
            ids: ids in ``[0, vocab_size)`` (a list, or a 1-D tensor or array); strip a transducer blank first.

        Returns:
            The text; for ids from :meth:`encode` it equals the normalised input (``<unk>`` reads ``" ⁇ "``).

        Raises:
            TokenizerError: an id is out of range.
        """
        return self._sp.decode([self._check_id(i) for i in ids])

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of the normalised text that no piece covers (they would be encoded as ``<unk>``).

        Args:
            text: any text; the tokenizer's normaliser is applied first.

        Returns:
            Each such character once, in order of first appearance; empty when the text encodes cleanly.
        """
        norm = self._normalize(text)
        return self._unknown_in(norm) if self._unk in self._sp.encode(norm, out_type=int) else []

    def _unknown_in(self, norm: str) -> list[str]:
        # For <unk> SentencePiece returns the surface text as the piece, so the characters can be read off it.
        seen: dict[str, None] = {}
        ids, pieces = self._sp.encode(norm, out_type=int), self._sp.encode(norm, out_type=str)
        for i, piece in zip(ids, pieces, strict=True):
            if i == self._unk:
                seen.update((c, None) for c in piece if c != "\u2581" and not c.isspace())
        return list(seen)

    def _check_id(self, i: int) -> int:
        try:
            j = int(i)
        except (TypeError, ValueError):
            raise TokenizerError(f"token ids must be integers, got {i!r}") from None
        if not 0 <= j < self.vocab_size:
            hint = " (the transducer blank is not a piece: remove it first)" if j == self.vocab_size else ""
            raise TokenizerError(f"id {j} is out of range [0, {self.vocab_size}){hint}")
        return j


def _processor(model: bytes, where: str) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(model)
    except (RuntimeError, OSError, TypeError) as err:
        raise TokenizerError(f"{where}: not a SentencePiece model ({err})") from None
    return sp


def _names(manifests: Sequence[str | Path]) -> str:
    names = [str(m) for m in manifests]
    return ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:3])} and {len(names) - 3} more"


def _train_model(texts: list[str], cfg: TokenizerTrainConfig, where: str) -> bytes:
    """Run SentencePiece's trainer in-process on ``texts``; its messages become :class:`TokenizerError`."""
    spm.SetRandomGeneratorSeed(cfg.seed)
    writer = io.BytesIO()
    longest = max(len(t.encode("utf-8")) for t in texts)
    extra: dict[str, Any] = {}
    if cfg.normalize and cfg.character_coverage >= 0.98:
        # A test sentence with a "q" the training text lacked must still encode: give every letter a piece.
        extra["required_chars"] = ENGLISH_ALPHABET
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=writer,
            vocab_size=cfg.vocab_size,
            model_type=cfg.model_type,
            character_coverage=cfg.character_coverage,
            # Our normaliser already ran; SentencePiece's NFKC would make decode(encode(x)) != x.
            normalization_rule_name="identity",
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            input_sentence_size=0, shuffle_input_sentence=False,
            max_sentence_length=max(_SPM_MAX_SENTENCE, longest + 1),
            num_threads=_TRAIN_THREADS,
            minloglevel=2,  # its progress log would flood the terminal; errors still come back as exceptions
            **extra,
        )
    except RuntimeError as err:
        msg = str(err)
        high = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", msg)
        if high:
            raise TokenizerError(
                f"vocab_size {cfg.vocab_size} is too large for the text of {where}: a {cfg.model_type} model of "
                f"this text has at most {high.group(2)} pieces; use a smaller --vocab-size (or more text)"
            ) from None
        low = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", msg)
        if low:
            raise TokenizerError(
                f"vocab_size {cfg.vocab_size} is too small for the text of {where}: the characters alone need "
                f"{low.group(2)} pieces; use a larger --vocab-size or a lower --character-coverage"
            ) from None
        raise TokenizerError(f"SentencePiece could not train on the text of {where}: {msg}") from None
    return writer.getvalue()


def train_tokenizer_from_manifests(
    manifests: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    cfg: TokenizerTrainConfig | None = None,
) -> Tokenizer:
    """Train a SentencePiece tokenizer on the ``text`` fields of NeMo manifests and save it in ``out_dir``.

    Every line must have a non-empty ``text`` (a bad line is an error naming file and line; lines marked
    ``_skipme`` are skipped and counted). Texts that are empty after normalisation are skipped and counted.
    The counts are logged and kept in ``tokenizer.json`` (``sentences``, ``empty_after_normalizing``,
    ``skipped_lines``). Training is deterministic: the same texts, configuration and seed give the same
    ``tokenizer.model`` bytes.

    Args:
        manifests: NeMo JSON-lines manifest(s).
        out_dir: folder for ``tokenizer.model``, ``tokenizer.vocab`` and ``tokenizer.json`` (created).
        cfg: training options (defaults: BPE, 256 pieces, English normaliser).

    Returns:
        The trained tokenizer.

    Raises:
        ManifestError: a manifest is missing or has a bad line (a ``ValueError`` naming file and line).
        TokenizerError: a configuration field is invalid, there is no text, or the vocabulary size does not
            fit the text (the message names the manifests and suggests a --vocab-size).

    Example:
        >>> tok = train_tokenizer_from_manifests(["train.json"], "data/tok",
        ...                                      TokenizerTrainConfig(vocab_size=64, model_type="unigram"))  # doctest: +SKIP
    """
    from speechkit.data.manifests import ManifestReport, read_manifest

    cfg = cfg if cfg is not None else TokenizerTrainConfig()
    cfg.validate()
    if isinstance(manifests, (str, Path)):
        manifests = [manifests]
    if not manifests:
        raise TokenizerError("no manifests given to train the tokenizer on")
    where = _names(manifests)
    normalize = get_normalizer(cfg.normalizer)
    report = ManifestReport()
    texts: list[str] = []
    empty = 0
    for path in manifests:
        for entry in read_manifest(path, skip_bad=False, report=report, require_text=True):
            text = normalize(entry.text or "")
            if text:
                texts.append(text)
            else:
                empty += 1
    if not texts:
        raise TokenizerError(f"no text to train a tokenizer on in {where}: {report.kept} entries, {empty} of them "
                             f"empty after the {cfg.normalizer!r} normaliser")
    if empty or report.skipped:
        logger.warning("tokenizer training on %s: %d texts empty after normalising skipped; %s",
                       where, empty, report)
    if cfg.max_sentences and len(texts) > cfg.max_sentences:
        texts = random.Random(cfg.seed).sample(texts, cfg.max_sentences)
    model = _train_model(texts, cfg, where)
    metadata = {
        "model_type": cfg.model_type,
        "character_coverage": cfg.character_coverage,
        "seed": cfg.seed,
        "trained_on": [str(m) for m in manifests],
        "sentences": len(texts),
        "empty_after_normalizing": empty,
        "skipped_lines": report.skipped,
    }
    tok = Tokenizer(model, cfg.normalizer, metadata)
    tok.save(out_dir)
    return tok
