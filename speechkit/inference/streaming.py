"""Streaming recognition: a stateless :class:`Recognizer` and one :class:`Stream` per utterance (or conversation).

The shape is sherpa-onnx's: the recognizer holds the model, the tokenizer and the options, and nothing about any
utterance; each stream holds everything about its own audio. Audio goes in with :meth:`Stream.accept_waveform` in
chunks of any size and at any sample rate; :meth:`Recognizer.decode` runs every ready stream together (their
encoder and decoder states are stacked into one batch: one encoder call, one decoder call); the text so far is in
:attr:`Stream.result`::

    recognizer = Recognizer.from_pretrained("exp/tdt_streaming/model.safetensors")
    stream = recognizer.create_stream()
    for chunk in microphone():                      # float32 samples, any size
        stream.accept_waveform(16000, chunk)
        while recognizer.is_ready(stream):
            recognizer.decode([stream])
        print(stream.result.text)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode([stream])
    print(stream.result.committed)

**Exactness.** The pipeline is exact stage by stage, so the streamed tokens equal the offline tokens of the same
model (:meth:`Recognizer.transcribe`) for any chunking: the resampler keeps the input context its filter needs (see
:class:`StreamingResampler`), the front end carries pre-emphasis and STFT context
(:class:`speechkit.audio.streaming.StreamingFeatures`), the cache-aware encoder keeps attention and convolution caches
(``FastConformerEncoder.streaming_forward``), and greedy decoding continues from the previous hypothesis and state
(:mod:`speechkit.decoding.streaming`). This needs a model trained for streaming: ``chunked_limited`` attention,
causal subsampling and convolutions, features without per-utterance normalisation (the recipe's
``tdt_streaming.yaml``); :class:`Recognizer` refuses other models.

**Endpointing** splits a long stream into segments. A segment ends (its result becomes final, the decoder starts a
new hypothesis; the encoder goes on) when it holds speech and then ``trailing_silence`` seconds of decoded audio
pass without speech, but not before ``min_utterance`` seconds; a segment that reaches ``max_utterance`` seconds is
ended anyway. "Speech" is a token from the decoder, or with ``use_vad`` a speech frame of the VAD model
(:func:`speechkit.vad.load_model`). Endpointing changes the decoder's context, so only streams without endpoints
(``endpointing=False``, or no long pause) are guaranteed to equal offline decoding.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from speechkit.decoding.greedy import GreedyOptions
from speechkit.decoding.streaming import DecoderStreamState, StreamingCTCDecoder, StreamingTransducerDecoder
from speechkit.decoding.timestamps import token_timestamps

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.inference.offline import ASRModel
    from speechkit.modules.asr import TransducerASR
    from speechkit.text.tokenizer import Tokenizer

__all__ = [
    "STREAMING_MODEL_KIND",
    "NotAStreamingModelError",
    "Recognizer",
    "Stream",
    "StreamResult",
    "StreamingOptions",
    "StreamingResampler",
]

#: The registry kind (``speechkit/assets/models.json``) of the bundled streaming ASR model that
#: :meth:`Recognizer.from_pretrained` loads when given no name.
STREAMING_MODEL_KIND = "asr-streaming"

_STREAMING_HINT = ("train one with recipes/asr/fastconformer_transducer/conf/tdt_streaming.yaml "
                   "(chunked_limited attention, causal subsampling and convolutions, normalize: none) and pass the "
                   "exported file's path: Recognizer.from_pretrained('exp/tdt_streaming/model.safetensors')")


class NotAStreamingModelError(ValueError):
    """The model cannot stream exactly (offline attention, symmetric convolutions, normalised features ...)."""


@dataclass(frozen=True)
class StreamingOptions:
    """How a :class:`Recognizer` decodes and segments.

    Attributes:
        att_context_size: ``(left, right)`` attention context in encoder frames, one of the options the model was
            trained with (multi-lookahead models); ``right`` sets the look-ahead: ``right x 80 ms`` per chunk of
            ``right + 1`` frames. ``None``: the model's default (its first option).
        decoder: ``"transducer"``, or ``"ctc"`` for the CTC head of a hybrid model.
        max_symbols: most tokens one encoder frame may emit (as offline).
        endpointing: split the stream into segments at pauses (see the module docstring).
        trailing_silence: seconds without speech after speech that end a segment.
        min_utterance: a segment is not ended by silence before it is this many seconds long.
        max_utterance: a segment is ended when it reaches this many seconds (``None``: no limit).
        use_vad: detect speech for endpointing with the VAD model instead of the decoder's tokens.
        vad_model: VAD model file or registry name for ``use_vad`` (``None``: the bundled one).
        vad_threshold: speech probability from which a VAD frame counts as speech.
    """

    att_context_size: tuple[int, int] | None = None
    decoder: str = "transducer"
    max_symbols: int = 10
    endpointing: bool = True
    trailing_silence: float = 1.2
    min_utterance: float = 0.0
    max_utterance: float | None = 20.0
    use_vad: bool = False
    vad_model: str | None = None
    vad_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.att_context_size is not None:
            if len(self.att_context_size) != 2 or not all(isinstance(v, int) for v in self.att_context_size):
                raise ValueError(f"StreamingOptions.att_context_size={self.att_context_size!r}: expected (left, right)")
            object.__setattr__(self, "att_context_size", tuple(self.att_context_size))
        if self.decoder not in ("transducer", "ctc"):
            raise ValueError(f"StreamingOptions.decoder={self.decoder!r}: choose 'transducer' or 'ctc'")
        if not isinstance(self.max_symbols, int) or self.max_symbols < 1:
            raise ValueError(f"StreamingOptions.max_symbols={self.max_symbols!r}: must be an integer >= 1")
        if not self.trailing_silence > 0:
            raise ValueError(f"StreamingOptions.trailing_silence={self.trailing_silence!r}: must be > 0 seconds")
        if not self.min_utterance >= 0:
            raise ValueError(f"StreamingOptions.min_utterance={self.min_utterance!r}: must be >= 0 seconds")
        if self.max_utterance is not None and not self.max_utterance > 0:
            raise ValueError(f"StreamingOptions.max_utterance={self.max_utterance!r}: must be > 0 seconds or None")
        if not 0.0 < self.vad_threshold < 1.0:
            raise ValueError(f"StreamingOptions.vad_threshold={self.vad_threshold!r}: must be in (0, 1)")


@dataclass(frozen=True)
class TokenSpan:
    """One token of a :class:`StreamResult` and its time span (seconds from the stream's start).

    Attributes:
        piece: the SentencePiece piece (``"▁"`` starts a word).
        start, end: seconds (``end == start`` for a TDT token of duration 0).
    """

    piece: str
    start: float
    end: float


@dataclass(frozen=True)
class StreamResult:
    """The recognition result of one segment of a stream.

    Attributes:
        segment: index of the segment in its stream (0, 1, ... one per endpoint).
        text: the segment's text (partial while ``is_final`` is false: later audio may add tokens).
        committed: the text of every final segment of the stream so far, joined by spaces (this one included
            when it is final).
        tokens: the segment's pieces.
        token_ids: the segment's token ids.
        timestamps: one :class:`TokenSpan` per token, in seconds from the start of the stream.
        start: where the segment starts, in seconds from the start of the stream.
        end: how far the segment has been decoded (its end once final), in seconds.
        is_final: the segment is closed (an endpoint, or the end of the input).
    """

    segment: int
    text: str
    committed: str
    tokens: list[str]
    token_ids: list[int]
    timestamps: list[TokenSpan]
    start: float
    end: float
    is_final: bool

    @property
    def partial(self) -> str:
        """The text not committed yet: :attr:`text` while the segment is open, ``""`` once it is final."""
        return "" if self.is_final else self.text

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        """A JSON-ready dict: ``type`` (``"partial"`` / ``"final"``), ``text``, ``start``, ``end``, ``tokens``
        (pieces with their spans) and ``segment``."""
        return {
            "type": "final" if self.is_final else "partial",
            "segment": self.segment,
            "text": self.text,
            "start": round(self.start, decimals),
            "end": round(self.end, decimals),
            "tokens": [{"token": t.piece, "start": round(t.start, decimals), "end": round(t.end, decimals)}
                       for t in self.timestamps],
        }


class StreamingResampler:
    """Resample audio arriving in chunks so that the output equals :func:`speechkit.audio.io.resample` of the whole.

    torchaudio's band-limited resampler (behind :func:`~speechkit.audio.io.resample`) works on blocks: with
    ``g = gcd(orig, new)``, input block ``k`` (``orig / g`` samples) gives output block ``k`` (``new / g`` samples),
    computed from the input samples ``[k o - w, (k + 1) o + w)`` (``o = orig / g``; ``w`` = the filter's
    half-width in input samples, ``ceil(6 o / (0.99 min(o, n)))`` with torchaudio's defaults), zeros outside the
    signal. So this class keeps ``w`` samples of context before the first block not yet output, resamples
    buffer slices with :func:`~speechkit.audio.io.resample`, and keeps only the output blocks whose whole input
    window was present; :meth:`flush` pads the end with zeros as the offline call does. The output lags the input
    by ``w + o`` input samples (under 1 ms for the usual rates). Sample values equal the offline ones up to float
    rounding (the same products summed by the same convolution; the tests check equality to 1e-6).

    Args:
        orig_sample_rate: rate of the input, Hz.
        new_sample_rate: rate of the output, Hz.
    """

    def __init__(self, orig_sample_rate: int, new_sample_rate: int) -> None:
        for name, rate in (("orig_sample_rate", orig_sample_rate), ("new_sample_rate", new_sample_rate)):
            if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
                raise ValueError(f"{name} must be a positive integer (Hz), got {rate!r}")
        self.orig = int(orig_sample_rate)
        self.new = int(new_sample_rate)
        g = math.gcd(self.orig, self.new)
        self._o, self._n = self.orig // g, self.new // g
        # One spare sample of context: the formula is torchaudio's, and more context never changes the result.
        self._w = math.ceil(6 * self._o / (0.99 * min(self._o, self._n))) + 1
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # absolute input index of _buf[0] (a multiple of o)
        self._received = 0  # input samples so far
        self._next_block = 0  # first block not output yet
        self._module: Any = None

    def _resample(self, x: np.ndarray) -> np.ndarray:
        # torchaudio's Resample module is speechkit.audio.io.resample's computation with the filter kernel built
        # once instead of on every call (the tests check both give the same samples).
        if self._module is None:
            import torchaudio

            self._module = torchaudio.transforms.Resample(self.orig, self.new, dtype=torch.float32)
        with torch.inference_mode():
            return self._module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def _take(self, stop_block: int, end: int, out_len: int | None) -> np.ndarray:
        """Output blocks ``[next_block, stop_block)`` from the input up to absolute sample ``end``."""
        ctx_blocks = -(-self._w // self._o)
        start = max(0, self._next_block - ctx_blocks) * self._o
        seg = self._buf[start - self._buf_start: end - self._buf_start]
        y = self._resample(seg)
        first = (self._next_block - start // self._o) * self._n
        stop = first + (stop_block - self._next_block) * self._n if out_len is None else first + out_len
        out = y[first:stop]
        self._next_block = stop_block
        keep = max(0, self._next_block - ctx_blocks) * self._o
        self._buf = self._buf[keep - self._buf_start:]
        self._buf_start = keep
        return out

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Add input samples ``(N,)``; returns the output samples that are now final ``(M,)`` (maybe none)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.orig == self.new:
            return x
        self._buf = np.concatenate([self._buf, x])
        self._received += x.shape[0]
        # Block k needs the input up to (k + 1) o + w.
        stop_block = max(0, (self._received - self._w) // self._o)
        if stop_block <= self._next_block:
            return np.zeros(0, dtype=np.float32)
        return self._take(stop_block, stop_block * self._o + self._w, None)

    def flush(self) -> np.ndarray:
        """The remaining output ``(M,)``, the signal's end zero padded as in the offline call; resets the state."""
        if self.orig == self.new:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n * self._received // self._o)  # ceil(new * N / orig), as torchaudio truncates
        left = total - self._next_block * self._n
        out = np.zeros(0, dtype=np.float32)
        if left > 0 and self._received > self._next_block * self._o - self._w:
            out = self._take(self._next_block + -(-left // self._n), self._received, left)
        module = self._module
        self.__init__(self.orig, self.new)  # type: ignore[misc]
        self._module = module
        return out


class _VadTracker:
    """Speech / non-speech of the recent audio of one stream, from a VAD model, for endpointing.

    The network sees ``context`` seconds of past audio before each new piece (its receptive field is about 0.9 s);
    probabilities near piece edges may differ slightly from offline ones, which endpointing tolerates.
    """

    def __init__(self, vad: Any, threshold: float, context: float = 1.0) -> None:
        self.vad = vad
        self.threshold = threshold
        self.hop = round(vad.frame_shift * vad.sample_rate)
        self.ctx = int(context / vad.frame_shift) * self.hop
        self.history = np.zeros(0, dtype=np.float32)
        self.buf = np.zeros(0, dtype=np.float32)
        self.frames = 0  # VAD frames classified so far
        self.last_speech_end = None  # seconds: end of the last speech frame

    def accept(self, samples: np.ndarray, final: bool = False) -> None:
        """Add samples at the VAD's rate; classifies every whole frame (and the partial last one when final)."""
        self.buf = np.concatenate([self.buf, samples])
        whole = self.buf.shape[0] if final else self.buf.shape[0] // self.hop * self.hop
        if whole == 0:
            return
        audio = np.concatenate([self.history, self.buf[:whole]])
        probs = self.vad.frame_probs(audio, self.vad.sample_rate)[self.history.shape[0] // self.hop:]
        speech = np.nonzero(probs >= self.threshold)[0]
        if speech.size:
            self.last_speech_end = (self.frames + int(speech[-1]) + 1) * self.vad.frame_shift
        self.frames += probs.shape[0]
        self.history = audio[-self.ctx:] if self.ctx else audio[:0]
        self.buf = self.buf[whole:]


class Stream:
    """The per-utterance state of streaming recognition; make one with :meth:`Recognizer.create_stream`.

    Holds the resampler, front-end, encoder and decoder states, the features not encoded yet, and the segments
    found so far. Not thread-safe: feed one stream from one thread (different streams may be fed from different
    threads while another thread runs :meth:`Recognizer.decode`; a lock guards the hand-over).
    """

    def __init__(self, recognizer: Recognizer) -> None:
        from speechkit.audio.streaming import StreamingFeatures

        self._recognizer = recognizer
        self._lock = threading.Lock()
        self._features = StreamingFeatures(recognizer.feature_config)
        self._resampler: StreamingResampler | None = None
        self._input_rate: int | None = None
        self._pending: list[torch.Tensor] = []  # (F, t) feature pieces not given to the encoder yet
        self._pending_frames = 0
        self._mel_fed = 0  # feature frames given to the encoder so far
        self._samples = 0  # samples at the model's rate
        self._input_finished = False
        self._done = False
        self._encoder_state = recognizer._init_encoder_state()
        self._decoder_state = recognizer._decoder.init_state(1, recognizer.device)
        self._segment = 0
        self._segment_start = 0  # encoder frame where the current segment starts
        self._segments: list[StreamResult] = []
        self._vad = recognizer._make_vad_tracker()

    def __repr__(self) -> str:
        return (f"Stream(seconds={self.seconds:.2f}, decoded={self.decoded_seconds:.2f}, segment={self._segment}, "
                f"input_finished={self._input_finished}, done={self._done})")

    @property
    def seconds(self) -> float:
        """Audio accepted so far, in seconds."""
        return self._samples / self._recognizer.sample_rate

    @property
    def decoded_seconds(self) -> float:
        """Audio decoded so far (encoder frames out x frame duration), in seconds."""
        return int(self._decoder_state.frames_seen[0]) * self._recognizer.frame_seconds

    @property
    def is_done(self) -> bool:
        """The input has finished and every frame has been decoded: :attr:`result` is final."""
        return self._done

    def accept_waveform(self, sample_rate: int, samples: np.ndarray | torch.Tensor | Sequence[float]) -> None:
        """Add audio: mono float samples in [-1, 1], any number, at ``sample_rate`` (resampled to the model's rate).

        Args:
            sample_rate: rate of ``samples`` in Hz; must stay the same for the whole stream.
            samples: ``(N,)`` float waveform (numpy, torch or a list).

        Raises:
            ValueError: not 1-D, not float, not finite, a changed rate, or audio after :meth:`input_finished`.
        """
        if self._input_finished:
            raise ValueError("accept_waveform() after input_finished(): create a new stream for new audio")
        if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        if self._input_rate is None:
            self._input_rate = int(sample_rate)
            self._resampler = StreamingResampler(int(sample_rate), self._recognizer.sample_rate)
        elif sample_rate != self._input_rate:
            raise ValueError(f"this stream's audio is at {self._input_rate} Hz; got a chunk at {sample_rate} Hz "
                             "(the rate cannot change within a stream)")
        a = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
        if a.ndim != 1:
            raise ValueError(f"samples must be a mono waveform of shape (N,), got shape {tuple(a.shape)}")
        if a.size and not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"samples must be float in [-1, 1], got dtype {a.dtype} (for 16-bit PCM divide by 32768)")
        if not np.isfinite(a).all():
            raise ValueError("samples hold NaN or infinite values")
        assert self._resampler is not None
        self._push(self._resampler.accept(a.astype(np.float32, copy=False)), final=False)

    def input_finished(self) -> None:
        """No more audio: the remaining samples are flushed through the front end; decode until not ready."""
        if self._input_finished:
            return
        if self._resampler is not None:
            self._push(self._resampler.flush(), final=False)
        self._input_finished = True
        tail = self._features.flush()
        with self._lock:
            if tail.shape[-1]:
                self._pending.append(tail)
                self._pending_frames += tail.shape[-1]
        if self._vad is not None:
            self._vad.accept(np.zeros(0, dtype=np.float32), final=True)

    def _push(self, samples: np.ndarray, final: bool) -> None:
        """Model-rate samples -> features (and the VAD)."""
        if samples.shape[0] == 0:
            return
        self._samples += samples.shape[0]
        feats = self._features.accept(torch.from_numpy(np.ascontiguousarray(samples)))
        with self._lock:
            if feats.shape[-1]:
                self._pending.append(feats)
                self._pending_frames += feats.shape[-1]
        if self._vad is not None:
            self._vad.accept(samples, final=final)

    def _take_features(self, max_frames: int | None = None) -> torch.Tensor:
        """The first ``max_frames`` pending feature frames (all with ``None``), ``(F, T)``, removed from the queue."""
        with self._lock:
            pieces, self._pending, self._pending_frames = self._pending, [], 0
            if not pieces:
                return torch.zeros(self._recognizer.feature_config.n_mels, 0)
            feats = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
            if max_frames is not None and feats.shape[-1] > max_frames:
                self._pending, self._pending_frames = [feats[:, max_frames:]], feats.shape[-1] - max_frames
                feats = feats[:, :max_frames]
            return feats

    @property
    def segments(self) -> list[StreamResult]:
        """The final results of the segments closed so far, in order."""
        return list(self._segments)

    @property
    def result(self) -> StreamResult:
        """The current segment's result: partial while the stream runs; once :attr:`is_done`, the last segment's
        final result (an empty final result when the stream had no speech after its last endpoint)."""
        if self._done:
            return self._segments[-1]
        return self._recognizer._segment_result(self, is_final=False)


class Recognizer:
    """Streaming speech recognition with one model, shared by any number of :class:`Stream` objects.

    Holds the network, the tokenizer, the decoder and the options; no per-utterance state.

    Args:
        model: an :class:`~speechkit.inference.offline.ASRModel` (``speechkit.asr.load_model``) whose encoder is
            a streaming FastConformer.
        options: :class:`StreamingOptions` (defaults when ``None``). ``att_context_size`` is applied to the model's
            encoder here (it is the model's setting for offline decoding too).

    Raises:
        NotAStreamingModelError: the model was not built for streaming; an ``att_context_size`` it was not trained
            with; ``decoder="ctc"`` without a CTC head.

    Example:
        >>> rec = Recognizer.from_pretrained("exp/tdt_streaming/model.safetensors")  # doctest: +SKIP
        >>> s = rec.create_stream()  # doctest: +SKIP
        >>> s.accept_waveform(16000, samples); s.input_finished()  # doctest: +SKIP
        >>> while rec.is_ready(s): rec.decode([s])  # doctest: +SKIP
        >>> s.result.committed  # doctest: +SKIP
        'hello world'
    """

    def __init__(self, model: ASRModel, options: StreamingOptions | None = None) -> None:
        self.model = model
        self.options = options or StreamingOptions()
        self.network: TransducerASR = model.network.eval()
        self.tokenizer: Tokenizer = model.tokenizer
        encoder = self.network.encoder
        _check_streaming_model(self.network, model.source)
        if self.options.att_context_size is not None:
            trained = encoder.cfg.att_context_options
            if tuple(self.options.att_context_size) not in [tuple(p) for p in trained]:
                raise NotAStreamingModelError(
                    f"StreamingOptions.att_context_size={self.options.att_context_size}: the model was trained with "
                    f"{trained}; other contexts would not match its training")
            encoder.set_att_context_size(*self.options.att_context_size)
        greedy = GreedyOptions(max_symbols=self.options.max_symbols)
        if self.options.decoder == "ctc":
            if self.network.ctc is None:
                raise NotAStreamingModelError("StreamingOptions.decoder='ctc' needs a hybrid model with a CTC head")
            self._decoder: StreamingTransducerDecoder | StreamingCTCDecoder = StreamingCTCDecoder(
                blank=self.network.ctc.blank_id)
        else:
            self._decoder = StreamingTransducerDecoder(self.network.prediction, self.network.joint, greedy)
        self._greedy = greedy
        feats = self.network.frontend.cfg
        self.geometry = encoder.streaming_geometry(
            hop_s=feats.hop_length / feats.sample_rate,
            frontend_lookahead_s=(feats.n_fft - feats.n_fft // 2) / feats.sample_rate)
        self._vad_model = self._load_vad() if self.options.use_vad else None

    def __repr__(self) -> str:
        return f"Recognizer({self.model!r}, {self.options})"

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike[str] | None = None, options: StreamingOptions | None = None,
                        device: torch.device | str = "cpu") -> Recognizer:
        """Load a streaming model by registry name or path (``None``: the bundled streaming model).

        Args:
            name: a registry name (``speechkit/assets/models.json``), a model file, a folder holding
                ``model.safetensors``, or ``None`` for the default model of kind :data:`STREAMING_MODEL_KIND`.
            options: :class:`StreamingOptions`.
            device: where to run.

        Raises:
            ModelNotFoundError: (a ``FileNotFoundError``) no streaming model bundled (when ``name`` is ``None``), an
                unknown name, a missing path.
            NotAStreamingModelError: the model is an offline model.
        """
        from speechkit.assets import ModelNotFoundError, resolve_model_file
        from speechkit.inference.offline import load_model

        if name is None:
            try:
                path = resolve_model_file(None, kind=STREAMING_MODEL_KIND)
            except ModelNotFoundError as err:
                raise ModelNotFoundError(f"no streaming ASR model is bundled ({err}); {_STREAMING_HINT}") from None
        else:
            path = resolve_model_file(name, kind=None)  # type: ignore[arg-type]
        return cls(load_model(path, device=device), options)

    # -- properties -----------------------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) of the model's front end; input audio is resampled to it."""
        return int(self.network.sample_rate)

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder frame (0.08 for FastConformer)."""
        return float(self.network.frame_seconds)

    @property
    def feature_config(self) -> Any:
        """The model's :class:`~speechkit.audio.features.FeatureConfig`."""
        return self.network.frontend.cfg

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        return next(self.network.parameters()).device

    # -- streams --------------------------------------------------------------------------------------------------

    def create_stream(self) -> Stream:
        """A new, empty stream."""
        with torch.inference_mode():
            return Stream(self)

    def _init_encoder_state(self) -> Any:
        return self.network.encoder.init_state(1, self.device)

    def is_ready(self, stream: Stream) -> bool:
        """Whether :meth:`decode` would make progress on ``stream``: a chunk's worth of features is waiting, or the
        input has finished and the stream has not been flushed yet."""
        self._check_stream(stream)
        if stream._done:
            return False
        if stream._input_finished:
            return True
        return self._chunks(stream._mel_fed + stream._pending_frames) > self._chunks(stream._mel_fed)

    def _next_chunk_need(self, mel_fed: int) -> int:
        """Feature frames to add to ``mel_fed`` so that the next encoder chunk is complete."""
        g = self.geometry
        k = self._chunks(mel_fed)
        return g.first_chunk_mel_frames + k * g.chunk_mel_frames - mel_fed

    def _chunks(self, mel_frames: int) -> int:
        """Encoder chunks that ``mel_frames`` feature frames complete."""
        g = self.geometry
        if mel_frames < g.first_chunk_mel_frames:
            return 0
        return 1 + (mel_frames - g.first_chunk_mel_frames) // g.chunk_mel_frames

    def decode(self, streams: Sequence[Stream]) -> None:
        """Decode the next chunk of every ready stream of ``streams`` together: stack their states, one encoder
        call, one decoder call, unstack. Streams that are not ready are left alone. Each call advances a stream by
        one encoder chunk (a finished stream's last call takes its remaining audio): call it while
        :meth:`is_ready` to catch up.

        Args:
            streams: streams of this recognizer (any number; each at most once).

        Raises:
            ValueError: a stream of another recognizer, or the same stream twice.
        """
        if len({id(s) for s in streams}) != len(streams):
            raise ValueError("decode() got the same stream more than once")
        ready = [s for s in streams if self.is_ready(s)]
        for s in [s for s in ready if s._input_finished and s._samples == 0]:
            # No audio at all: nothing to encode (the causal subsampling would still make one frame of nothing).
            self._close_segment(s, last=True)
        ready = [s for s in ready if not s._done]
        if not ready:
            return
        with torch.inference_mode():
            self._decode_batch(ready)
        for s in ready:
            self._after_decode(s)

    def _decode_batch(self, ready: list[Stream]) -> None:
        device = self.device
        # One encoder chunk per stream and call (the last call of a finished stream takes the rest): endpoints are
        # checked after every chunk, and a stream that fell behind does not make the batch wait on all its backlog.
        feats, finals = [], []
        for s in ready:
            need = self._next_chunk_need(s._mel_fed)
            last = s._input_finished and s._pending_frames <= need
            feats.append(s._take_features(None if last else need))
            finals.append(last)
            s._mel_fed += feats[-1].shape[-1]
        lens = [f.shape[-1] for f in feats]
        x = torch.zeros(len(ready), feats[0].shape[0], max(lens), dtype=feats[0].dtype)
        for b, f in enumerate(feats):
            x[b, :, : f.shape[-1]] = f
        dtype = next(self.network.parameters()).dtype
        x = x.to(device=device, dtype=dtype)
        x_lens = torch.tensor(lens, dtype=torch.long, device=device)
        final = torch.tensor(finals, dtype=torch.bool, device=device)
        enc_state = type(ready[0]._encoder_state).stack([s._encoder_state for s in ready])
        y, y_lens, enc_state = self.network.encoder.streaming_forward(x, x_lens, enc_state, final=final)
        dec_in = self.network.ctc(y) if self.options.decoder == "ctc" else y  # type: ignore[misc]
        dec_state = DecoderStreamState.stack([s._decoder_state for s in ready])
        dec_state = self._decoder.decode_chunk(dec_in, y_lens, dec_state, final=final)
        for s, es, ds in zip(ready, enc_state.unstack(), dec_state.unstack(), strict=True):
            s._encoder_state, s._decoder_state = es, ds

    def _check_stream(self, stream: Stream) -> None:
        if not isinstance(stream, Stream) or stream._recognizer is not self:
            raise ValueError("this stream was not created by this recognizer (use recognizer.create_stream())")

    # -- results and endpointing ----------------------------------------------------------------------------------

    def _segment_result(self, stream: Stream, is_final: bool, clamp_end: bool = True) -> StreamResult:
        state = stream._decoder_state
        ids = [int(t) for t in state.tokens[0]]
        pieces = [self.tokenizer.id_to_piece(t) for t in ids]
        text = self.tokenizer.decode(ids)
        feats = self.feature_config
        durations = state.durations[0] if state.kind in ("tdt", "ctc") else None
        spans = token_timestamps(state.frames[0], durations, subsampling_factor=self.network.encoder.cfg.subsampling_factor,
                                 hop_s=feats.hop_length / feats.sample_rate)
        audio_end = stream.seconds
        start = min(stream._segment_start * self.frame_seconds, audio_end)
        # At an endpoint the decoded time may run a few feature frames past the samples received (an encoder frame's
        # nominal end); it is where the next segment starts, so it is kept as is and the segments tile the stream.
        end = min(stream.decoded_seconds, audio_end) if clamp_end else stream.decoded_seconds
        # The last encoder frame covers padding past the final sample: keep spans inside the segment. At an endpoint
        # that is the decoded time, not the samples received so far, so the spans do not depend on how fast the audio
        # arrived (a server's clients send at any pace).
        stamps = [TokenSpan(p, min(s, end), min(e, end)) for p, (s, e) in zip(pieces, spans, strict=True)]
        committed = [r.text for r in stream._segments if r.text]
        if is_final and text:
            committed.append(text)
        return StreamResult(stream._segment, text, " ".join(committed), pieces, ids, stamps, start, end, is_final)

    def _after_decode(self, stream: Stream) -> None:
        """Close the segment at an endpoint or at the end of the input."""
        if bool(stream._decoder_state.finished[0]):
            self._close_segment(stream, last=True)
            return
        if self.options.endpointing and self._is_endpoint(stream):
            self._close_segment(stream, last=False)

    def _is_endpoint(self, stream: Stream) -> bool:
        opts = self.options
        state = stream._decoder_state
        now = stream.decoded_seconds
        start = stream._segment_start * self.frame_seconds
        length = now - start
        if opts.max_utterance is not None and length >= opts.max_utterance:
            return True
        if length < opts.min_utterance:
            return False
        if stream._vad is not None:
            speech_end = stream._vad.last_speech_end
            if speech_end is None or speech_end <= start:
                return False
        else:
            if not state.tokens[0]:
                return False
            last = state.frames[0][-1] + (max(state.durations[0][-1], 1) if state.kind in ("tdt", "ctc") else 1)
            speech_end = last * self.frame_seconds
        return now - speech_end >= opts.trailing_silence

    def _close_segment(self, stream: Stream, last: bool) -> None:
        result = self._segment_result(stream, is_final=True, clamp_end=last)
        # An empty segment after an endpoint is not a segment, unless the stream had none at all.
        if result.token_ids or not stream._segments:
            stream._segments.append(result)
        if last:
            stream._done = True
            return
        stream._decoder_state = self._decoder.reset(stream._decoder_state)
        stream._segment += 1
        stream._segment_start = int(stream._decoder_state.frames_seen[0])

    # -- VAD ------------------------------------------------------------------------------------------------------

    def _load_vad(self) -> Any:
        from speechkit.assets import ModelNotFoundError
        from speechkit.vad import load_model as load_vad

        try:
            return load_vad(self.options.vad_model, device=str(self.device))
        except ModelNotFoundError as err:
            raise ModelNotFoundError(f"StreamingOptions.use_vad=True needs a VAD model: {err}; or set "
                                     "use_vad=False to end segments on the decoder's silence") from None

    def _make_vad_tracker(self) -> _VadTracker | None:
        if self._vad_model is None:
            return None
        if self._vad_model.sample_rate != self.sample_rate:
            raise NotAStreamingModelError(f"the VAD model runs at {self._vad_model.sample_rate} Hz but the ASR model "
                                          f"at {self.sample_rate} Hz")
        return _VadTracker(self._vad_model, self.options.vad_threshold)

    # -- offline comparison ---------------------------------------------------------------------------------------

    def transcribe(self, samples: np.ndarray | torch.Tensor, sample_rate: int) -> StreamResult:
        """Decode a whole utterance offline with the same model and decoder (for comparison with streaming).

        Args:
            samples: ``(N,)`` mono float waveform.
            sample_rate: its rate in Hz (resampled to :attr:`sample_rate` in one piece).

        Returns:
            One final :class:`StreamResult` (segment 0) for the whole utterance, no endpointing.

        Raises:
            ValueError: not 1-D float finite audio, or an empty one.
        """
        net = self.network
        clean = self.model._check_array(samples, 0, sample_rate)
        audio = torch.from_numpy(np.ascontiguousarray(clean))[None].to(self.device)
        lens = torch.tensor([audio.shape[1]], device=self.device)
        with torch.inference_mode():
            if self.options.decoder == "ctc":
                hyp = net.decode_ctc(audio, lens)[0]
            else:
                hyp = net.decode(audio, lens, self._greedy)[0]
        ids = [int(t) for t in hyp.tokens]
        pieces = [self.tokenizer.id_to_piece(t) for t in ids]
        feats = self.feature_config
        spans = token_timestamps(hyp.frames, hyp.durations, subsampling_factor=net.encoder.cfg.subsampling_factor,
                                 hop_s=feats.hop_length / feats.sample_rate)
        seconds = clean.shape[0] / self.sample_rate
        stamps = [TokenSpan(p, min(s, seconds), min(e, seconds)) for p, (s, e) in zip(pieces, spans, strict=True)]
        text = self.tokenizer.decode(ids)
        return StreamResult(0, text, text, pieces, ids, stamps, 0.0, seconds, True)


def _check_streaming_model(network: TransducerASR, source: str | None) -> None:
    """Raise :class:`NotAStreamingModelError` naming every setting that keeps ``network`` from streaming exactly."""
    enc = network.encoder.cfg
    problems = []
    if enc.att_context_style != "chunked_limited":
        problems.append(f"encoder.att_context_style={enc.att_context_style!r} (needs 'chunked_limited')")
    if not enc.causal_downsampling:
        problems.append("encoder.causal_downsampling=False (needs True)")
    if enc.conv_context != "causal":
        problems.append(f"encoder.conv_context={enc.conv_context!r} (needs 'causal')")
    if network.frontend.cfg.normalize != "none":
        problems.append(f"features.normalize={network.frontend.cfg.normalize!r} (needs 'none': per-utterance "
                        "statistics are not known while streaming)")
    if not hasattr(network.encoder, "streaming_forward"):
        problems.append("the encoder has no streaming_forward")
    if problems:
        where = f"{source}: " if source else ""
        raise NotAStreamingModelError(f"{where}not a streaming model: {'; '.join(problems)}. {_STREAMING_HINT}")
