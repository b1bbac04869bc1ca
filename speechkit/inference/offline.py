"""Offline transcription: load an exported ASR model and turn whole files or arrays into text with timestamps.

:func:`load_model` finds the model file (a name from the bundled registry :mod:`speechkit.assets`, a path, or
nothing for the default model) and rebuilds the network without Lightning. :meth:`ASRModel.transcribe` takes
files (any format :func:`speechkit.audio.io.load_audio` reads, resampled to the model's rate) or float arrays
with their sample rate, decodes them in batches and returns one :class:`Transcript` per input, in input order.

Batching sorts the inputs by duration (longest first) so that each batch holds similar lengths and little
padding; results are put back in input order. Files are read one batch at a time, so memory holds one batch of
audio, not the whole list. Decoding is greedy (label looping; :mod:`speechkit.decoding.greedy`) under
``torch.inference_mode``; batched results equal one-by-one results.

**Empty input is an error**, not an empty transcript: a zero-length array or a file without samples raises a
``ValueError`` naming the input, because silently returning ``""`` for a broken file hides the breakage in a
batch of thousands. Audio shorter than one encoder frame (80 ms) is not empty: it gives a transcript with
no tokens.

**Long inputs.** Full self-attention costs memory and time quadratic in the input's length: the bundled model
needs 4.3 GB for ten minutes and goes past 24 GB for half an hour. Inputs of at least
:attr:`TranscribeOptions.long_audio_s` (2 minutes) are therefore encoded with a limited context of 128 frames
(about 10 s) on each side, which the encoder runs blockwise in linear memory: an hour takes 3.1 GB. On one long
recording this is also no less accurate than full context (``bench/long_audio.py``). Long and short inputs are
batched apart, so an input's transcript does not depend on its batch. Models trained with limited context keep
theirs; :attr:`TranscribeOptions.att_context_size` sets one context for every input.

**Cutting at pauses** (``TranscribeOptions(vad=True)``): a VAD model (the bundled one by default) finds the speech,
each segment keeps :attr:`TranscribeOptions.vad_pad_s` on either side and is cut at its quietest frame when longer
than :attr:`TranscribeOptions.max_segment_s`; the pieces of one input are decoded in batches and joined into one
:class:`Transcript` whose times are in the input's frame and whose ``segments`` say what was decoded. The front end
normalises each mel bin over its whole input, so a file whose voices or channels change (clips end to end, a
meeting) is recognised better in pieces: 64 % against 77 % WER on ten minutes of mixed test clips.

**Timestamps** (:class:`TokenTimestamp`, in seconds) come from the encoder frame each token was emitted at
(80 ms frames for FastConformer); TDT models also predict how many frames a token lasts, RNN-T and multi-blank
tokens last one frame (:mod:`speechkit.decoding.timestamps`). Spans are clipped to the audio's duration (the last
encoder frame may reach past the end of the samples).

Example:
    >>> import numpy as np
    >>> from speechkit.asr import load_model
    >>> model = load_model("exp/tdt/model.safetensors")  # doctest: +SKIP
    >>> [t.text for t in model.transcribe(["a.wav", "b.flac"])]  # doctest: +SKIP
    ['hello world', 'good morning']
    >>> t = model.transcribe(np.zeros(8000, np.float32), sample_rate=8000)[0]  # doctest: +SKIP
    >>> [(w.word, w.start, w.end) for w in t.words]  # doctest: +SKIP
    []
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from speechkit.decoding.greedy import GreedyOptions
from speechkit.decoding.hypotheses import Hypothesis
from speechkit.decoding.timestamps import WordTimestamp, token_timestamps, word_timestamps

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.modules.asr import ASRModelConfig, TransducerASR
    from speechkit.text.tokenizer import Tokenizer

__all__ = [
    "ASRModel",
    "AudioInput",
    "TokenTimestamp",
    "TranscribeOptions",
    "Transcript",
    "WordTimestamp",
    "load_model",
]

#: Inputs at least this long (seconds) use limited attention context by default (:class:`TranscribeOptions`).
LONG_AUDIO_S = 120.0

#: One input of :meth:`ASRModel.transcribe`: an audio file path or a mono float waveform ``(N,)``.
AudioInput = str | os.PathLike | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class TranscribeOptions:
    """How :meth:`ASRModel.transcribe` decodes.

    Attributes:
        max_symbols: most tokens one encoder frame may emit (:class:`~speechkit.decoding.GreedyOptions`).
        timestamps: compute token and word timestamps (``False`` leaves :attr:`Transcript.timestamps` and
            :attr:`Transcript.words` empty; it saves little time, the frames are decoded anyway).
        num_threads: torch CPU threads used while transcribing (``None`` = leave torch's setting); torch's
            setting is restored afterwards.
        cuda_graphs: on a GPU, replay the greedy decoder's loop bodies as CUDA graphs (the same results, fewer
            kernel launches; :mod:`speechkit.decoding.cuda_graphs`). The model keeps the captured graphs between
            batches. Ignored on CPU.
        att_context_size: ``(left, right)`` attention context in encoder frames (-1 = unlimited) for every input,
            in place of the model's own; ``None`` keeps the model's, with the long-audio switch below.
        long_audio_s: inputs at least this many seconds long are encoded with ``long_audio_context`` when the
            model attends to unlimited context (``None``: never switch). Full attention costs memory quadratic in
            the length: half an hour needs more than 24 GB, with limited context it takes under 2 GB.
        long_audio_context: the ``(left, right)`` context of long inputs; (128, 128) is about 10 s on each side
            at 80 ms frames, as long as the training utterances, and the encoder then runs blockwise in linear
            memory (:mod:`speechkit.modules.attention`).
        vad: cut each input at the speech segments a VAD model finds and transcribe the segments (batched), then
            join them into one transcript per input with times in the input's frame. For recordings with long
            pauses, changing speakers or channels: the front end then normalises each segment on its own.
        vad_model: the VAD model (registry name or file); ``None``: the bundled one.
        max_segment_s: with ``vad``, longer speech segments are cut at their least speech-like frame.
        vad_pad_s: with ``vad``, seconds added before and after each speech segment, in place of the VAD model's own
            padding (tuned for frame accuracy, the bundled one has none): the recogniser needs the edges of the
            first and last phones. 0.1 s is best on the synthetic test set (``bench/long_audio.py``); pieces
            closer than the VAD's ``min_duration_off`` after padding are decoded together.
    """

    max_symbols: int = 10
    timestamps: bool = True
    num_threads: int | None = None
    cuda_graphs: bool = False
    att_context_size: tuple[int, int] | None = None
    long_audio_s: float | None = LONG_AUDIO_S
    long_audio_context: tuple[int, int] = (128, 128)
    vad: bool = False
    vad_model: str | None = None
    max_segment_s: float = 20.0
    vad_pad_s: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.max_symbols, int) or self.max_symbols < 1:
            raise ValueError(f"TranscribeOptions.max_symbols must be an integer >= 1, got {self.max_symbols!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(f"TranscribeOptions.num_threads must be None or >= 1, got {self.num_threads!r}")
        if self.att_context_size is not None:
            object.__setattr__(self, "att_context_size", _context_pair("att_context_size", self.att_context_size))
        object.__setattr__(self, "long_audio_context", _context_pair("long_audio_context", self.long_audio_context))
        if min(self.long_audio_context) < 0:
            raise ValueError(f"TranscribeOptions.long_audio_context={self.long_audio_context}: both sides must be "
                             f"finite (>= 0) to bound memory")
        if self.long_audio_s is not None:
            _check_seconds("long_audio_s", self.long_audio_s, 0.0, strict=True)
        _check_seconds("max_segment_s", self.max_segment_s, 1.0)
        _check_seconds("vad_pad_s", self.vad_pad_s, 0.0)


def _check_seconds(name: str, value: Any, minimum: float, strict: bool = False) -> None:
    """A ValueError naming the field unless ``value`` is a number of seconds ``>= minimum`` (``> minimum``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and (value > minimum if strict else value >= minimum)):
        raise ValueError(f"TranscribeOptions.{name} must be a number of seconds {'>' if strict else '>='} "
                         f"{minimum:g}, got {value!r}")


def _context_pair(name: str, value: Any) -> tuple[int, int]:
    """``value`` as a ``(left, right)`` pair of integers >= -1, else a ValueError naming the field."""
    try:
        left, right = value
    except (TypeError, ValueError):
        raise ValueError(f"TranscribeOptions.{name}={value!r}: expected (left, right) in encoder frames") from None
    for v in (left, right):
        if isinstance(v, bool) or not isinstance(v, int) or v < -1:
            raise ValueError(f"TranscribeOptions.{name}={value!r}: expected integers >= -1 (-1 = unlimited)")
    return int(left), int(right)


@dataclass(frozen=True)
class TokenTimestamp:
    """One token and its time span.

    Attributes:
        piece: the SentencePiece piece (``"▁"`` marks the start of a word).
        start, end: seconds from the start of the audio (``end == start`` for a TDT token of duration 0).
    """

    piece: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """The recognition result of one input.

    Attributes:
        text: the decoded text (the tokenizer's normalised form: for English, lower case without punctuation).
        tokens: the pieces, in order.
        token_ids: the token ids, in order.
        timestamps: one :class:`TokenTimestamp` per token (empty with ``TranscribeOptions(timestamps=False)``).
        words: the words with their spans (:class:`~speechkit.decoding.WordTimestamp`; empty without timestamps).
        audio_seconds: duration of the input.
        source: the file path as given, ``None`` for arrays.
        segments: with ``TranscribeOptions(vad=True)``, the ``(start, end)`` seconds of the speech segments that
            were decoded (none when the VAD found no speech); empty when the whole input was decoded.
    """

    text: str
    tokens: list[str]
    token_ids: list[int]
    timestamps: list[TokenTimestamp]
    words: list[WordTimestamp]
    audio_seconds: float
    source: str | None = None
    segments: list[tuple[float, float]] = field(default_factory=list)

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        """A JSON-ready dict (what ``speechkit transcribe --json`` prints), times rounded to ``decimals``.

        ``segments`` (a list of ``[start, end]``) is there only when the input was cut by a VAD.
        """
        out = {
            "audio": self.source,
            "text": self.text,
            "duration": round(self.audio_seconds, decimals),
            "tokens": list(self.tokens),
            "timestamps": [{"token": t.piece, "start": round(t.start, decimals), "end": round(t.end, decimals)}
                           for t in self.timestamps],
            "words": [{"word": w.word, "start": round(w.start, decimals), "end": round(w.end, decimals)}
                      for w in self.words],
        }
        if self.segments:
            out["segments"] = [[round(a, decimals), round(b, decimals)] for a, b in self.segments]
        return out


@dataclass
class _Item:
    """An input waiting to be decoded: its position, how to get its samples, and its length for sorting."""

    index: int
    num_samples: int
    source: str | None
    load: Callable[[], np.ndarray]


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ASRModel:
    """A transducer ASR model ready to transcribe: the network, its tokenizer and its configuration.

    Build one with :func:`load_model`; the constructor wraps an in-memory network (e.g. right after training).

    Args:
        network: the :class:`~speechkit.modules.asr.TransducerASR` (put in eval mode here).
        tokenizer: the tokenizer of the network's token ids.
        config: the configuration the network was built from (kept for reference; may be ``None``).
        source: where the model came from (a file path), for messages.

    Example:
        >>> model = load_model("exp/tdt/model.safetensors")  # doctest: +SKIP
        >>> model.transcribe("hello.wav")[0].text  # doctest: +SKIP
        'hello world'
    """

    def __init__(
        self, network: TransducerASR, tokenizer: Tokenizer, config: ASRModelConfig | None = None,
        source: str | None = None,
    ) -> None:
        if network.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"the network has {network.vocab_size} tokens but the tokenizer has "
                             f"{tokenizer.vocab_size} pieces")
        self.network = network.eval()
        self.tokenizer = tokenizer
        self.config = config if config is not None else getattr(network, "config", None)
        self.source = source
        self._vad_models: dict[str | None, Any] = {}  # VAD models of TranscribeOptions(vad=True), by name

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.network.parameters()) / 1e6
        return (f"ASRModel({self.network.layout.kind}, {self.tokenizer.vocab_size} tokens, {params:.1f}M parameters, "
                f"{self.sample_rate} Hz, device={self.device}, source={self.source!r})")

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) the network's front end expects; inputs are resampled to it."""
        return int(self.network.sample_rate)

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        return next(self.network.parameters()).device

    def to(self, device: torch.device | str) -> ASRModel:
        """Move the network to ``device`` (in place); returns ``self``."""
        self.network.to(device)
        return self

    # -- inputs --------------------------------------------------------------------------------------------------

    def _items(self, inputs: AudioInput | Sequence[AudioInput], sample_rate: int | None) -> list[_Item]:
        from speechkit.audio.io import audio_info

        if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)):
            inputs = [inputs]
        elif not isinstance(inputs, (list, tuple)):
            raise TypeError(f"transcribe() takes a path, an array, or a list of them; got {type(inputs).__name__}")
        items: list[_Item] = []
        # Every file is checked before any decoding starts: a typo in the 900th path fails in a second, not an hour.
        for i, x in enumerate(inputs):
            if isinstance(x, (str, os.PathLike)):
                path = Path(x)
                if not path.is_file():
                    raise FileNotFoundError(f"audio file not found: {os.fspath(x)}")
                info = audio_info(path)
                est = int(round(info.duration * self.sample_rate))
                items.append(_Item(i, est, os.fspath(x), self._file_loader(path)))
            elif isinstance(x, (np.ndarray, torch.Tensor)):
                samples = self._check_array(x, i, sample_rate)
                items.append(_Item(i, samples.shape[0], None, lambda s=samples: s))
            else:
                raise TypeError(f"input {i}: expected a path or a float array, got {type(x).__name__}")
        return items

    def _file_loader(self, path: Path) -> Callable[[], np.ndarray]:
        from speechkit.audio.io import load_audio

        # load_audio raises AudioError (a ValueError) naming the file when it has no samples.
        return lambda: load_audio(path, sample_rate=self.sample_rate)

    def _check_array(self, x: np.ndarray | torch.Tensor, i: int, sample_rate: int | None) -> np.ndarray:
        from speechkit.audio.io import resample

        if sample_rate is None:
            raise ValueError(f"input {i} is an array: pass sample_rate= (the rate of its samples in Hz); "
                             f"it is resampled to the model's {self.sample_rate} Hz")
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if a.ndim != 1:
            raise ValueError(f"input {i}: expected a mono waveform of shape (N,), got shape {tuple(a.shape)} "
                             f"(down-mix channels first, e.g. samples.mean(axis=1))")
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"input {i}: expected float samples in [-1, 1], got dtype {a.dtype} "
                             f"(for 16-bit PCM divide by 32768)")
        if a.shape[0] == 0:
            raise ValueError(f"input {i}: empty audio (0 samples)")
        if not np.isfinite(a).all():
            raise ValueError(f"input {i}: the waveform holds NaN or infinite values")
        return resample(a.astype(np.float32, copy=False), sample_rate, self.sample_rate)

    # -- decoding -------------------------------------------------------------------------------------------------

    def transcribe(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        sample_rate: int | None = None,
        batch_size: int = 16,
        options: TranscribeOptions | None = None,
    ) -> list[Transcript]:
        """Transcribe audio files and/or waveforms.

        Args:
            inputs: a path (``str`` / ``Path``), a mono float waveform ``(N,)`` (numpy or torch), or a list of them
                (mixing is allowed).
            sample_rate: rate of the waveforms in Hz (required when any input is an array; files carry their own
                rate and ignore it). Everything is resampled to :attr:`sample_rate`.
            batch_size: utterances decoded together.
            options: :class:`TranscribeOptions` (defaults when ``None``).

        Returns:
            One :class:`Transcript` per input, in input order (a single input still gives a list of one).

        Raises:
            FileNotFoundError: a file does not exist (checked for all files before decoding starts).
            ValueError: an array without ``sample_rate``, not 1-D, not float, empty or not finite; a file without
                samples or that no decoder reads (``AudioError``). The message names the input.

        Example:
            >>> model.transcribe(["a.wav", samples], sample_rate=8000, batch_size=8)  # doctest: +SKIP
        """
        options = options or TranscribeOptions()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        items = self._items(inputs, sample_rate)
        if options.vad:
            return [self._transcribe_segmented(it, batch_size, options) for it in items]
        # Longest first: similar lengths share a batch (little padding) and a memory error shows up at once.
        order = sorted(items, key=lambda it: -it.num_samples)
        results: list[Transcript | None] = [None] * len(items)
        greedy = GreedyOptions(max_symbols=options.max_symbols, cuda_graphs=options.cuda_graphs)
        device = self.device
        with _torch_threads(options.num_threads), torch.inference_mode():
            for batch, context in self._batches(order, batch_size, options):
                waves = [it.load() for it in batch]
                lens = [w.shape[0] for w in waves]
                # Padded in numpy: the inputs may be read-only arrays, which torch.from_numpy warns about.
                padded = np.zeros((len(waves), max(lens)), dtype=np.float32)
                for b, w in enumerate(waves):
                    padded[b, : w.shape[0]] = w
                audio = torch.from_numpy(padded).to(device)  # (B, N)
                audio_lens = torch.tensor(lens, dtype=torch.long, device=device)  # (B,)
                with _attention_context(self.network.encoder, context):
                    hyps = self.network.decode(audio, audio_lens, greedy)
                for it, w, hyp in zip(batch, waves, hyps, strict=True):
                    results[it.index] = self._transcript(hyp, w.shape[0] / self.sample_rate, it.source, options)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _transcribe_segmented(self, item: _Item, batch_size: int, options: TranscribeOptions) -> Transcript:
        """One input cut at its VAD speech segments; the segments are decoded in batches and joined."""
        from speechkit.vad.postprocess import split_long_segments, speech_segments

        vad = self._vad(options.vad_model)
        wave = item.load()
        seconds = wave.shape[0] / self.sample_rate
        probs = vad.frame_probs(wave, self.sample_rate)
        segs = speech_segments(probs, replace(vad.postprocess, frame_shift=vad.frame_shift,
                                              pad_onset=options.vad_pad_s, pad_offset=options.vad_pad_s))
        segs = split_long_segments(segs, probs, vad.frame_shift, options.max_segment_s)
        bounds = [(int(round(g.start * self.sample_rate)), min(int(round(g.end * self.sample_rate)), wave.shape[0]))
                  for g in segs]
        bounds = [(a, b) for a, b in bounds if b > a]
        parts = self.transcribe([wave[a:b] for a, b in bounds], sample_rate=self.sample_rate, batch_size=batch_size,
                                options=replace(options, vad=False)) if bounds else []
        tokens: list[str] = []
        ids: list[int] = []
        stamps: list[TokenTimestamp] = []
        words: list[WordTimestamp] = []
        for (a, _), part in zip(bounds, parts, strict=True):
            shift = a / self.sample_rate
            words += [WordTimestamp(w.word, w.start + shift, w.end + shift, w.first_token + len(tokens),
                                    w.last_token + len(tokens)) for w in part.words]
            stamps += [TokenTimestamp(t.piece, t.start + shift, t.end + shift) for t in part.timestamps]
            tokens += part.tokens
            ids += part.token_ids
        text = " ".join(p.text for p in parts if p.text)
        spans = [(a / self.sample_rate, b / self.sample_rate) for a, b in bounds]
        return Transcript(text, tokens, ids, stamps, words, seconds, item.source, spans)

    def _vad(self, name: str | None) -> Any:
        """The VAD model ``name`` (``None``: bundled), loaded once per ASR model and kept."""
        if name not in self._vad_models:
            from speechkit.vad import load_model as load_vad

            self._vad_models[name] = load_vad(name, device=str(self.device))
        return self._vad_models[name]

    def _batches(self, order: list[_Item], batch_size: int,
                 options: TranscribeOptions) -> Iterator[tuple[list[_Item], tuple[int, int] | None]]:
        """Batches of ``order`` (longest first), each with the attention context to encode it with.

        ``None`` keeps the model's context. Long inputs never share a batch with short ones, so an input's
        transcript does not depend on what it was batched with.
        """
        if options.att_context_size is not None:
            contexts = [options.att_context_size] * len(order)
        else:
            ctx = self.network.encoder.att_context
            unlimited = ctx.style == "regular" and (ctx.left < 0 or ctx.right < 0)
            limit = None if options.long_audio_s is None or not unlimited else options.long_audio_s
            contexts = [options.long_audio_context if limit is not None and it.num_samples >= limit * self.sample_rate
                        else None for it in order]
        start = 0
        while start < len(order):
            stop = start + 1
            while stop < len(order) and stop - start < batch_size and contexts[stop] == contexts[start]:
                stop += 1
            yield order[start:stop], contexts[start]
            start = stop

    def _transcript(self, hyp: Hypothesis, seconds: float, source: str | None, options: TranscribeOptions) -> Transcript:
        ids = [int(t) for t in hyp.tokens]
        pieces = [self.tokenizer.id_to_piece(t) for t in ids]
        stamps: list[TokenTimestamp] = []
        words: list[WordTimestamp] = []
        if options.timestamps:
            feats = self.network.frontend.cfg
            hop_s = feats.hop_length / feats.sample_rate
            spans = token_timestamps(hyp.frames, hyp.durations,
                                     subsampling_factor=self.network.encoder.cfg.subsampling_factor, hop_s=hop_s)
            # The last encoder frame covers padding past the final sample: keep spans inside the audio.
            spans = [(min(s, seconds), min(e, seconds)) for s, e in spans]
            stamps = [TokenTimestamp(p, s, e) for p, (s, e) in zip(pieces, spans, strict=True)]
            words = word_timestamps(pieces, spans)
        return Transcript(self.tokenizer.decode(ids), pieces, ids, stamps, words, seconds, source)


@contextlib.contextmanager
def _attention_context(encoder: Any, context: tuple[int, int] | None) -> Iterator[None]:
    """Encode with ``context`` = ``(left, right)`` inside the block (``None``: unchanged); the model's is restored."""
    if context is None:
        yield
        return
    saved = encoder.att_context
    encoder.set_att_context_size(*context)
    try:
        yield
    finally:
        encoder.att_context = saved


def load_model(name_or_path: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu") -> ASRModel:
    """Load an ASR model: the default bundled one, one from the registry by name, or a model file.

    Args:
        name_or_path: ``None`` for the default bundled model, a name from :mod:`speechkit.assets`
            (``speechkit/assets/models.json``), the path of a model file exported by a recipe
            (:func:`speechkit.modules.export.save_model_file`), or a folder holding ``model.safetensors``.
        device: where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...).

    Returns:
        An :class:`ASRModel` in eval mode.

    Raises:
        ModelNotFoundError: (a ``FileNotFoundError``) an unknown name (the message lists the known names), a
            bundled model whose file is not installed yet (the message says how to train one), or a missing path.
        ModelFileError: (a ``ValueError``) the file is not a speechkit ASR model file or is too new.

    Example:
        >>> from speechkit.asr import load_model
        >>> model = load_model("exp/tdt/model.safetensors")  # doctest: +SKIP
        >>> model.transcribe("hello.wav")[0].text  # doctest: +SKIP
        'hello world'
    """
    from speechkit.assets import resolve_model_file
    from speechkit.modules.asr import TransducerASR

    path = resolve_model_file(name_or_path, kind="asr")
    network, tokenizer, cfg = TransducerASR.from_model_file(path, device=device)
    return ASRModel(network, tokenizer, cfg, source=str(path))
