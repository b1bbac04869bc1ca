"""The exported model: ONE plain safetensors file holding the weights, the resolved YAML config and the tokenizer.

Loading needs torch, safetensors, omegaconf and sentencepiece, never Lightning: a model file is what inference,
the CLI and other people use; Lightning checkpoints are only for resuming training.

File layout (a standard ``.safetensors`` file; any safetensors reader can list the tensors):

- tensors: the model's ``state_dict``; floating-point tensors stored in ``dtype`` (float16 by default: half the
  size, and within ~1e-3 of the float32 outputs), integer buffers (e.g. BatchNorm's ``num_batches_tracked``) as is;
- metadata (string -> string, in the file header):

  ================== ====================================================================================
  key                value
  ================== ====================================================================================
  ``format``         ``"speechkit-model"``: marks a speechkit model file
  ``format_version`` :data:`FORMAT_VERSION`; readers refuse files newer than they understand
  ``kind``           what the file holds: ``"asr"`` (also ``"vad"``, ``"lid"`` later)
  ``speechkit_version`` the version that wrote the file
  ``config``         the resolved YAML config the network is rebuilt from
  ``tokenizer``      base64 of the SentencePiece model bytes (:meth:`Tokenizer.to_bytes`); may be empty
  ``normalizer``     the tokenizer's text normaliser (``"english"``, ``"none"``)
  ``dtype``          the floating-point type the weights are stored in
  ================== ====================================================================================

Example:
    >>> path = save_model_file("model.safetensors", model, to_yaml(cfg), tokenizer)  # doctest: +SKIP
    >>> mf = read_model_file(path)  # doctest: +SKIP
    >>> mf.kind, mf.tokenizer.vocab_size  # doctest: +SKIP
    ('asr', 256)
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.text.tokenizer import Tokenizer

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFile", "ModelFileError", "WeightTransfer", "read_model_file",
           "save_model_file", "transfer_weights"]

FORMAT = "speechkit-model"
#: Bump when a reader of the previous version could misread a new file.
FORMAT_VERSION = 1
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class ModelFileError(ValueError):
    """A file is not a speechkit model file, holds another kind of model, or was written by a newer speechkit."""


@dataclass
class ModelFile:
    """The contents of a model file (:func:`read_model_file`).

    Attributes:
        state_dict: tensors by name, in the dtype they were stored in.
        config_yaml: the resolved YAML config.
        tokenizer: the embedded tokenizer (``None`` when the file holds none, e.g. a VAD model).
        kind: ``"asr"``, ...
        version: the speechkit version that wrote the file.
        format_version: the file format version.
        dtype: name of the stored floating-point type.
        metadata: every header entry as stored (strings).
    """

    state_dict: dict[str, torch.Tensor]
    config_yaml: str
    tokenizer: Tokenizer | None
    kind: str
    version: str
    format_version: int = FORMAT_VERSION
    dtype: str = "float16"
    metadata: dict[str, str] = field(default_factory=dict)


def _dtype_name(dtype: torch.dtype) -> str:
    for name, dt in _DTYPES.items():
        if dt == dtype:
            return name
    raise ValueError(f"dtype must be one of torch.{', torch.'.join(_DTYPES)}, got {dtype}")


def save_model_file(
    path: str | Path,
    model: nn.Module,
    config_yaml: str,
    tokenizer: Tokenizer | None,
    kind: str = "asr",
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``model``'s weights, its config and its tokenizer as one safetensors file.

    The file is written to a temporary name and renamed, so an interrupted export never leaves a half file.

    Args:
        path: output file (``.safetensors``; parent folders are created).
        model: the network; its ``state_dict()`` is saved (floating tensors cast to ``dtype``, on the CPU).
        config_yaml: the resolved YAML config that rebuilds the network (e.g. ``to_yaml(ASRModelConfig)``).
        tokenizer: the tokenizer the model's ids belong to (``None`` for models without text output).
        kind: the kind of model (``"asr"``); readers check it.
        dtype: floating-point type of the stored weights (``torch.float16``, ``torch.bfloat16``, ``torch.float32``).

    Returns:
        The path written.

    Raises:
        ValueError: an unsupported ``dtype`` or an empty ``kind``.
    """
    from safetensors.torch import save_file

    from speechkit import __version__

    dtype_name = _dtype_name(dtype)
    if not kind:
        raise ValueError("kind must be a non-empty string such as 'asr'")
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if value.is_floating_point():
            value = value.to(dtype)
        # safetensors refuses views that share storage; a contiguous copy owns its memory.
        tensors[name] = value.contiguous().clone()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "speechkit_version": __version__,
        "config": config_yaml,
        "tokenizer": base64.b64encode(tokenizer.to_bytes()).decode("ascii") if tokenizer is not None else "",
        "normalizer": tokenizer.normalizer if tokenizer is not None else "",
        "dtype": dtype_name,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        # safetensors writes owner-only (0600) files; a model file is shared like any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read_header(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, read from its JSON header without loading any tensor."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: not a speechkit model file (too short to be a safetensors file)")
        size = int.from_bytes(head, "little")
        if size <= 0 or size > min(path.stat().st_size - 8, 100 * 2**20):
            raise ModelFileError(f"{path}: not a speechkit model file (no safetensors header)")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFileError(f"{path}: not a speechkit model file (its safetensors header is not JSON)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def read_model_file(path: str | Path, expected_kind: str | None = None, device: str = "cpu") -> ModelFile:
    """Read a model file written by :func:`save_model_file`.

    Args:
        path: the file.
        expected_kind: if given, the file's ``kind`` must equal it.
        device: where the tensors are loaded.

    Returns:
        A :class:`ModelFile` (tensors in their stored dtype).

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFileError: not a speechkit model file (any other safetensors file included), another kind of model,
            or a format version newer than this speechkit reads (the message says which version to upgrade to).
    """
    from safetensors.torch import load_file

    from speechkit import __version__

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    meta = _read_header(path)
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a speechkit model file (a safetensors file without the "
                             f"'format: {FORMAT}' header entry; export models with speechkit)")
    try:
        fmt = int(meta.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{path}: bad format_version {meta.get('format_version')!r}") from None
    writer = meta.get("speechkit_version", "unknown")
    if fmt > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model file format version {fmt} (written by speechkit {writer}) is newer than "
                             f"this speechkit {__version__} reads (up to {FORMAT_VERSION}): upgrade speechkit")
    kind = meta.get("kind", "")
    if expected_kind is not None and kind != expected_kind:
        raise ModelFileError(f"{path}: holds a {kind!r} model, not an {expected_kind!r} model")
    tokenizer = None
    if meta.get("tokenizer"):
        from speechkit.text.tokenizer import Tokenizer

        try:
            model_bytes = base64.b64decode(meta["tokenizer"], validate=True)
        except ValueError:
            raise ModelFileError(f"{path}: the embedded tokenizer is not valid base64") from None
        tokenizer = Tokenizer(model_bytes, meta.get("normalizer") or "none", source=f"{path} (embedded tokenizer)")
    state_dict = load_file(str(path), device=device)
    return ModelFile(state_dict=state_dict, config_yaml=meta.get("config", ""), tokenizer=tokenizer, kind=kind,
                     version=writer, format_version=fmt, dtype=meta.get("dtype", "unknown"), metadata=dict(meta))


@dataclass
class WeightTransfer:
    """What :func:`transfer_weights` did, name by name.

    Attributes:
        loaded: parameters and buffers of the model that now hold the source's values.
        shape_mismatch: ``"name: source (a, b) -> model (c, d)"`` for names in both whose shapes differ (left fresh).
        excluded: names of the model skipped because they match an ``exclude`` pattern (left fresh).
        missing: names of the model that the source lacks (left fresh).
        unused: names of the source that the model lacks (ignored).
    """

    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self, limit: int = 8) -> str:
        """Counts and the first ``limit`` names of each group, for the training log."""

        def names(group: list[str]) -> str:
            more = f", ... ({len(group) - limit} more)" if len(group) > limit else ""
            return ", ".join(group[:limit]) + more

        lines = [f"{len(self.loaded)} tensors loaded"]
        for label, group in (("left fresh, shapes differ", self.shape_mismatch),
                             ("left fresh, excluded", self.excluded),
                             ("left fresh, not in the source", self.missing),
                             ("in the source, not in the model", self.unused)):
            if group:
                lines.append(f"{len(group)} {label}: {names(group)}")
        return "; ".join(lines)


def transfer_weights(model: nn.Module, source: Mapping[str, torch.Tensor],
                     exclude: Sequence[str] = ()) -> WeightTransfer:
    """Copy every tensor of ``source`` whose name and shape match one of ``model``'s into it (a warm start).

    This is fine-tuning's partial initialisation (NeMo's ``init_from_nemo_model``): e.g. a streaming model starts
    from an offline model's weights; what changed shape (a causal subsampling's wider output projection) or was
    excluded keeps its fresh initialisation, and nothing is skipped without being listed in the result.

    Args:
        model: the network to initialise (in place).
        source: tensors by ``state_dict`` name (e.g. :attr:`ModelFile.state_dict`); cast to the model's dtypes.
        exclude: ``fnmatch`` patterns of names to leave alone (``"joint.*"``, ``"*.conv_norm.*"``).

    Returns:
        A :class:`WeightTransfer` naming what was loaded and what was not, and why.
    """
    result = WeightTransfer()
    target = model.state_dict()
    with torch.no_grad():
        for name, tensor in target.items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
                result.excluded.append(name)
            elif name not in source:
                result.missing.append(name)
            elif tuple(source[name].shape) != tuple(tensor.shape):
                result.shape_mismatch.append(f"{name}: source {tuple(source[name].shape)} -> "
                                             f"model {tuple(tensor.shape)}")
            else:
                tensor.copy_(source[name].to(dtype=tensor.dtype))  # state_dict tensors share the model's storage
                result.loaded.append(name)
    result.unused = [name for name in source if name not in target]
    return result
