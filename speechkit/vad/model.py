"""The VAD facade: load an exported MarbleNet model file and get frame speech probabilities or speech segments.

No Lightning is imported. ``load_model(path)`` reads a file written by
``recipes/vad/marblenet/train.py`` (:meth:`speechkit.models.vad.VADLightningModule.export`); ``load_model()``
(no argument) loads the bundled default VAD model (``speechkit/assets/vad_marblenet.safetensors``, registry entry
``marblenet-vad-synth``: 91 k parameters, float16, about 190 KB).

A model file's config may carry a ``postprocess:`` section (the fields of :class:`PostProcessingOptions`, e.g. the
onset/offset tuned on a dev set); it becomes the model's default post-processing (:attr:`VADModel.postprocess`),
used by :meth:`VADModel.segments` and ``speechkit vad`` unless options are given. Without one, NeMo's frame-VAD
defaults apply. ``recipes/vad/marblenet/bundle.py`` writes such a file.

Example:
    >>> from speechkit.vad import load_model
    >>> vad = load_model()  # doctest: +SKIP
    >>> probs = vad.frame_probs(samples, 16000)  # (T,) one per 20 ms  # doctest: +SKIP
    >>> vad.segments(samples, 16000)  # doctest: +SKIP
    [Segment(start=0.38, end=2.1), ...]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechkit.modules.marblenet import MarbleNet, MarbleNetConfig
from speechkit.vad.postprocess import PostProcessingOptions, Segment, StreamingSegmenter, speech_segments

__all__ = ["VADModel", "load_model"]

#: The config section of a model file that holds its default post-processing.
POSTPROCESS_KEY = "postprocess"


class VADModel:
    """A frame VAD network with its front end, ready for inference (eval mode, no gradients).

    Args:
        network: a frame-mode :class:`MarbleNet`.
        source: where it was loaded from (shown in ``repr``).
        postprocess: default post-processing of :meth:`segments` and :meth:`stream_segments` (``None``: NeMo's
            frame-VAD defaults); its ``frame_shift`` is set to the network's.

    Attributes:
        postprocess: the default post-processing (from the model file's ``postprocess:`` config section).
    """

    def __init__(self, network: MarbleNet, source: str = "", postprocess: PostProcessingOptions | None = None) -> None:
        self.network = network.eval()
        self.cfg = network.cfg
        self.source = source
        self.postprocess = replace(postprocess or PostProcessingOptions(), frame_shift=self.cfg.frame_shift)

    @property
    def sample_rate(self) -> int:
        return self.cfg.features.sample_rate

    @property
    def frame_shift(self) -> float:
        """Seconds per probability frame (0.02)."""
        return self.cfg.frame_shift

    def __repr__(self) -> str:
        return f"VADModel(source={self.source!r}, frame_shift={self.frame_shift}, params={self.network.num_parameters()})"

    @torch.no_grad()
    def frame_probs(self, samples: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """Speech probability per frame.

        Args:
            samples: mono waveform ``(N,)``, float in [-1, 1].
            sample_rate: its rate (resampled to the model's when different).

        Returns:
            float32 ``(T,)`` with ``T = ceil(N' / hop)`` frames of ``frame_shift`` seconds (``N'`` = samples at the
            model's rate; a partial last frame gets a probability too).

        Raises:
            ValueError: not a 1-D waveform.
        """
        x = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"frame_probs takes one mono waveform of shape (N,), got shape {x.shape}")
        if sample_rate != self.sample_rate:
            from speechkit.audio.io import resample

            x = resample(x.astype(np.float32), sample_rate, self.sample_rate)
        hop = round(self.frame_shift * self.sample_rate)
        frames = -(-x.shape[0] // hop)
        if frames == 0:
            return np.zeros(0, dtype=np.float32)
        padded = np.zeros(frames * hop, dtype=np.float32)
        padded[: x.shape[0]] = x
        device = next(self.network.parameters()).device
        probs, lens = self.network.speech_probs(torch.from_numpy(padded)[None].to(device),
                                                torch.tensor([padded.shape[0]], device=device))
        return probs[0, : int(lens[0])].cpu().numpy().astype(np.float32)

    def segments(self, samples: np.ndarray | torch.Tensor, sample_rate: int,
                 options: PostProcessingOptions | None = None) -> list[Segment]:
        """Speech segments (seconds) of a waveform ``(N,)``; ``options`` default to :attr:`postprocess`."""
        opts = replace(options or self.postprocess, frame_shift=self.frame_shift)
        return speech_segments(self.frame_probs(samples, sample_rate), opts)

    def stream_segments(self, chunks: Iterator[np.ndarray], sample_rate: int,
                        options: PostProcessingOptions | None = None, context_seconds: float = 1.0,
                        ) -> Iterator[Segment]:
        """Speech segments of audio arriving in chunks, each yielded as soon as it is final.

        The network sees ``context_seconds`` of past audio before each chunk (its receptive field is about 0.9 s
        either side), so probabilities near chunk edges differ slightly from offline ones; the post-processing
        itself is exact (:class:`StreamingSegmenter`). ``options`` default to :attr:`postprocess`.
        """
        opts = replace(options or self.postprocess, frame_shift=self.frame_shift)
        seg = StreamingSegmenter(opts)
        hop = round(self.frame_shift * self.sample_rate)
        ctx = int(context_seconds / self.frame_shift) * hop
        history = np.zeros(0, dtype=np.float32)
        buf = np.zeros(0, dtype=np.float32)
        for chunk in chunks:
            c = np.asarray(chunk, dtype=np.float32)
            if sample_rate != self.sample_rate:
                from speechkit.audio.io import resample

                c = resample(c, sample_rate, self.sample_rate)
            buf = np.concatenate([buf, c])
            whole = buf.shape[0] // hop * hop
            if whole == 0:
                continue
            audio = np.concatenate([history, buf[:whole]])
            probs = self.frame_probs(audio, self.sample_rate)[history.shape[0] // hop :]
            history, buf = audio[-ctx:] if ctx else audio[:0], buf[whole:]
            yield from seg.accept(probs)
        if buf.shape[0]:
            audio = np.concatenate([history, buf])
            yield from seg.accept(self.frame_probs(audio, self.sample_rate)[history.shape[0] // hop :])
        yield from seg.finish()


def _postprocess_options(section: Any, path: Path) -> PostProcessingOptions:
    """A model file's ``postprocess:`` config section -> options; unknown keys or bad values name the file."""
    from speechkit.modules.export import ModelFileError

    if not isinstance(section, dict):
        raise ModelFileError(f"{path}: its config's {POSTPROCESS_KEY} section is not a mapping")
    known = {f.name for f in fields(PostProcessingOptions)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ModelFileError(f"{path}: unknown {POSTPROCESS_KEY} key(s) {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(sorted(known))}")
    try:
        return PostProcessingOptions(**section)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: bad {POSTPROCESS_KEY} section: {err}") from None


def load_model(name_or_path: str | os.PathLike[str] | None = None, device: str = "cpu") -> VADModel:
    """Load a VAD model file, or the bundled default model.

    Args:
        name_or_path: a model file, a folder holding ``model.safetensors``, a registry name (``"marblenet-vad-synth"``),
            or ``None`` for the bundled default.
        device: where to run.

    Returns:
        The model in eval mode (float32 weights, whatever the file stores), with the file's default post-processing.

    Raises:
        ModelNotFoundError: (a ``FileNotFoundError``) an unknown name, a missing path, or (``None``) a bundled file
            missing from the installation.
        ModelFileError: (a ``ValueError``) not a speechkit VAD model file, or a bad config.
    """
    from omegaconf import OmegaConf

    from speechkit.assets import resolve_model_file
    from speechkit.modules.export import ModelFileError, read_model_file

    path = resolve_model_file(name_or_path, kind="vad")  # its errors name the file and how to get a model
    mf = read_model_file(path, expected_kind="vad", device=device)
    try:
        raw = OmegaConf.to_container(OmegaConf.create(mf.config_yaml or "{}"))
    except Exception as err:  # noqa: BLE001 - any YAML failure means a bad file
        raise ModelFileError(f"{path}: its config is not YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: its config is not a mapping")
    postprocess = _postprocess_options(raw.pop(POSTPROCESS_KEY), Path(path)) if POSTPROCESS_KEY in raw else None
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(MarbleNetConfig), OmegaConf.create(raw)))
    except Exception as err:  # noqa: BLE001 - any config failure means a bad file
        raise ModelFileError(f"{path}: its config does not describe a MarbleNet: {err}") from None
    assert isinstance(cfg, MarbleNetConfig)
    network = MarbleNet(cfg)
    network.load_state_dict({k: v.float() for k, v in mf.state_dict.items()})
    return VADModel(network.to(device), source=str(Path(path)), postprocess=postprocess)
