"""The LID facade: load an exported TitaNet language classifier and tell which language a waveform is in.

No Lightning is imported. ``load_model(path)`` reads a file written by ``recipes/lid/titanet/train.py``
(:meth:`speechkit.models.lid.LIDLightningModule.export`: kind ``"lid"``, YAML with ``labels``, ``score_scale`` and
``network``); ``load_model(None)`` means the bundled default LID model (``speechkit/assets/models.json``).

Example:
    >>> from speechkit.lid import load_model
    >>> lid = load_model("exp/lid/model.safetensors")  # doctest: +SKIP
    >>> result = lid.classify(samples, 16000)  # doctest: +SKIP
    >>> result.language, result.top(3)  # doctest: +SKIP
    ('de', [('de', 0.97), ('nl', 0.02), ('sv', 0.004)])
    >>> [r.language for r in lid.classify([a, b, c], 16000)]  # a batch  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from speechkit.lid import LIDResult
from speechkit.modules.titanet import TitaNet, TitaNetConfig

__all__ = ["LIDModel", "load_model"]

Waveform = np.ndarray | torch.Tensor


def _as_mono(samples: Waveform, index: int | None = None) -> np.ndarray:
    x = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    which = "" if index is None else f" (batch item {index})"
    if x.ndim != 1:
        raise ValueError(f"classify takes mono waveforms of shape (N,){which}, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"empty audio{which}: nothing to classify")
    return x.astype(np.float32, copy=False)


class LIDModel:
    """A TitaNet language classifier with its front end and label map, ready for inference (eval mode).

    Args:
        network: the :class:`TitaNet`.
        labels: language codes in class order.
        score_scale: probabilities are ``softmax(score_scale * logits)`` (the loss scale of a cosine classifier).
        source: where it was loaded from (shown in ``repr``).

    Raises:
        ValueError: the label count differs from the network's classes.
    """

    def __init__(self, network: TitaNet, labels: Sequence[str], score_scale: float = 1.0, source: str = "") -> None:
        if len(labels) != network.cfg.num_classes:
            raise ValueError(f"{len(labels)} labels for a network with {network.cfg.num_classes} classes")
        self.network = network.eval()
        self.cfg = network.cfg
        self.labels = list(labels)
        self.score_scale = score_scale
        self.source = source

    @property
    def sample_rate(self) -> int:
        """The rate the network expects (inputs at other rates are resampled)."""
        return self.cfg.features.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.network.parameters())
        return f"LIDModel(source={self.source!r}, languages={self.labels}, params={params})"

    def _prepare(self, samples: Waveform, sample_rate: int, index: int | None = None) -> np.ndarray:
        x = _as_mono(samples, index)
        if sample_rate != self.sample_rate:
            from speechkit.audio.io import resample

            x = resample(x, sample_rate, self.sample_rate)
        return x

    @torch.no_grad()
    def _forward(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities ``(B, C)`` and embeddings ``(B, D)`` of one padded batch."""
        n = max(x.shape[0] for x in waves)
        audio = torch.zeros(len(waves), n)
        for k, x in enumerate(waves):
            audio[k, : x.shape[0]] = torch.from_numpy(x)
        lens = torch.tensor([x.shape[0] for x in waves])
        logits, emb = self.network(audio.to(self.device), lens.to(self.device))
        return F.softmax(logits.float() * self.score_scale, dim=-1).cpu(), emb.float().cpu()

    def _result(self, probs: torch.Tensor, seconds: float) -> LIDResult:
        order = torch.argsort(probs, descending=True).tolist()
        scores = {self.labels[i]: float(probs[i]) for i in order}
        top = self.labels[order[0]]
        return LIDResult(top, scores[top], scores, round(seconds, 3))

    @overload
    def classify(self, samples: Waveform, sample_rate: int, batch_size: int = 16) -> LIDResult: ...

    @overload
    def classify(self, samples: Sequence[Waveform], sample_rate: int, batch_size: int = 16) -> list[LIDResult]: ...

    def classify(self, samples: Waveform | Sequence[Waveform], sample_rate: int,
                 batch_size: int = 16) -> LIDResult | list[LIDResult]:
        """The language of one waveform, or of each waveform of a list (classified in padded batches).

        Args:
            samples: a mono waveform ``(N,)`` (numpy or torch, float in [-1, 1]), or a list of them.
            sample_rate: their rate (resampled to :attr:`sample_rate` when different).
            batch_size: waveforms per forward pass for a list (sorted by length first, so little is padded; the
                results come back in input order).

        Returns:
            An :class:`LIDResult` for one waveform, a list of them (input order) for a list.

        Raises:
            ValueError: a waveform that is not 1-D, or an empty one (the message names the batch item).
        """
        if isinstance(samples, (np.ndarray, torch.Tensor)) and samples.ndim == 1:
            return self.classify_batch([samples], sample_rate, batch_size)[0]
        if isinstance(samples, (np.ndarray, torch.Tensor)):
            raise ValueError(f"classify takes a mono waveform (N,) or a list of them, got shape {tuple(samples.shape)}")
        return self.classify_batch(list(samples), sample_rate, batch_size)

    def classify_batch(self, batch: Sequence[Waveform], sample_rate: int, batch_size: int = 16) -> list[LIDResult]:
        """The language of each waveform of a list; see :meth:`classify`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        waves = [self._prepare(x, sample_rate, i) for i, x in enumerate(batch)]
        order = sorted(range(len(waves)), key=lambda i: waves[i].shape[0])
        results: list[LIDResult | None] = [None] * len(waves)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            probs, _ = self._forward([waves[i] for i in idx])
            for k, i in enumerate(idx):
                results[i] = self._result(probs[k], waves[i].shape[0] / self.sample_rate)
        return [r for r in results if r is not None]

    def embed(self, samples: Waveform, sample_rate: int) -> np.ndarray:
        """The utterance embedding (before the classifier), float32 ``(embedding_dim,)``.

        Raises:
            ValueError: not a non-empty 1-D waveform.
        """
        _, emb = self._forward([self._prepare(samples, sample_rate)])
        return emb[0].numpy()


def load_model(name_or_path: str | os.PathLike[str] | None = None, device: str = "cpu") -> LIDModel:
    """Load an LID model file, or the bundled default (``speechkit/assets/models.json``, kind ``"lid"``).

    Args:
        name_or_path: a model file, a folder holding ``model.safetensors``, a registry name, or ``None``.
        device: where to run.

    Returns:
        The :class:`LIDModel` (weights in float32 whatever the file stores).

    Raises:
        ModelNotFoundError: (a ``FileNotFoundError``) ``None`` while no LID model is bundled, an unknown name, or a
            missing path; the message says how to train a model.
        ModelFileError: (a ``ValueError``) not a speechkit LID model file, or a config without labels/network.
    """
    from omegaconf import OmegaConf

    from speechkit.assets import resolve_model_file
    from speechkit.modules.export import ModelFileError, read_model_file

    path = resolve_model_file(name_or_path, kind="lid")  # its errors name the file and how to get a model
    mf = read_model_file(path, expected_kind="lid", device=device)
    try:
        raw = OmegaConf.create(mf.config_yaml)
        labels = [str(x) for x in raw["labels"]]
        score_scale = float(raw.get("score_scale", 1.0))
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TitaNetConfig), raw["network"]))
    except Exception as err:  # noqa: BLE001 - any config failure means a bad file
        raise ModelFileError(f"{path}: its config does not describe a TitaNet language classifier "
                             f"(labels, score_scale, network): {err}") from None
    assert isinstance(cfg, TitaNetConfig)
    network = TitaNet(cfg)
    try:
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in mf.state_dict.items()})
    except RuntimeError as err:
        raise ModelFileError(f"{path}: the weights do not fit the network its config describes: {err}") from None
    try:
        return LIDModel(network.to(device), labels, score_scale, source=str(Path(path)))
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from None
