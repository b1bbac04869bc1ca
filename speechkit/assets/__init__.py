"""The registry of bundled models: ``models.json`` maps a short name to a model file shipped in this folder.

Each entry of ``models.json`` has:

=============== ==========================================================================================
field           meaning
=============== ==========================================================================================
``name``        what users type: ``speechkit.asr.load_model("en-tdt-synth")``, ``--model en-tdt-synth``
``file``        the model file (one ``.safetensors`` file, :mod:`speechkit.modules.export`) in this folder
``kind``        ``"asr"``, ``"vad"``, ``"lid"``: which facade loads it
``description``  one line for people
``default``     the model a facade loads when given no name (exactly one per kind)
=============== ==========================================================================================

A registry entry may exist before its file does (the file is added when a model has been trained); asking for
such a model is an error that says so and how to train or pass one. This module imports nothing heavy.

Example:
    >>> from speechkit.assets import list_models
    >>> [m.name for m in list_models("asr")]
    ['en-tdt-synth']
    >>> default_model("asr").default
    True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "ASSETS_DIR",
    "REGISTRY_FILE",
    "BundledModel",
    "ModelNotFoundError",
    "default_model",
    "get_model",
    "list_models",
    "resolve_model_file",
]

ASSETS_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = ASSETS_DIR / "models.json"
# Where a user learns how to make a model when none is bundled yet.
TRAINING_HINT = {
    "asr": "train one with the recipe in recipes/asr/fastconformer_transducer (its README.md has the commands) "
           "and pass the exported file's path: load_model('exp/tdt/model.safetensors') "
           "or `speechkit transcribe --model exp/tdt/model.safetensors ...`",
    "lid": "pass the path of a model file, e.g. one trained with "
           "`python recipes/lid/titanet/train.py --config recipes/lid/titanet/conf/titanet_s.yaml ...` "
           "(see recipes/lid/titanet/README.md)",
    "vad": "reinstall speechkit to restore the bundled VAD model, or train one with "
           "`python recipes/vad/marblenet/train.py` (see recipes/vad/marblenet/README.md)",
}
# The name of the file a training recipe exports into its experiment folder; a folder given as a model is looked
# up for it.
EXPORTED_MODEL_FILE = "model.safetensors"


class ModelNotFoundError(FileNotFoundError):
    """A model name is not in the registry, its file is not bundled, or a model path does not exist."""


class RegistryError(ValueError):
    """``models.json`` is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class BundledModel:
    """One entry of ``models.json``.

    Attributes:
        name: the short name users pass.
        file: file name inside :data:`ASSETS_DIR`.
        kind: ``"asr"``, ``"vad"``, ``"lid"`` ...
        description: one line for people.
        default: loaded when no name is given.
    """

    name: str
    file: str
    kind: str
    description: str = ""
    default: bool = False

    @property
    def path(self) -> Path:
        """Where the file is (or will be) installed."""
        return ASSETS_DIR / self.file

    @property
    def available(self) -> bool:
        """Whether the file is present in this installation."""
        return self.path.is_file()


@lru_cache(maxsize=1)
def _registry() -> tuple[BundledModel, ...]:
    try:
        data = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RegistryError(f"{REGISTRY_FILE}: cannot read the model registry: {err}") from None
    models = []
    for i, item in enumerate(data.get("models", [])):
        missing = [k for k in ("name", "file", "kind") if not isinstance(item.get(k), str) or not item[k]]
        if missing:
            raise RegistryError(f"{REGISTRY_FILE}: model entry {i} lacks {', '.join(missing)}")
        models.append(BundledModel(item["name"], item["file"], item["kind"], str(item.get("description", "")),
                                   bool(item.get("default", False))))
    names = [m.name for m in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RegistryError(f"{REGISTRY_FILE}: model names listed twice: {', '.join(dup)}")
    for kind in {m.kind for m in models}:
        defaults = [m.name for m in models if m.kind == kind and m.default]
        if len(defaults) > 1:
            raise RegistryError(f"{REGISTRY_FILE}: several default {kind} models: {', '.join(defaults)}")
    return tuple(models)


def list_models(kind: str | None = None) -> list[BundledModel]:
    """The registry's entries (of one ``kind`` if given), available or not, in file order."""
    return [m for m in _registry() if kind is None or m.kind == kind]


def _known(kind: str | None) -> str:
    names = [m.name for m in list_models(kind)]
    return ", ".join(names) if names else "(none)"


def get_model(name: str, kind: str | None = None) -> BundledModel:
    """The registry entry called ``name``.

    Raises:
        ModelNotFoundError: no such name (of that ``kind``); the message lists the known names.
    """
    for m in _registry():
        if m.name == name and (kind is None or m.kind == kind):
            return m
    what = f"{kind} model" if kind else "model"
    raise ModelNotFoundError(
        f"unknown {what} name {name!r}: known names ({REGISTRY_FILE}): {_known(kind)}; "
        f"or pass the path of a model file"
    )


def default_model(kind: str = "asr") -> BundledModel:
    """The registry's default model of ``kind``.

    Raises:
        ModelNotFoundError: the registry has no default for ``kind``.
    """
    for m in _registry():
        if m.kind == kind and m.default:
            return m
    raise ModelNotFoundError(f"{REGISTRY_FILE} names no default {kind} model; {TRAINING_HINT.get(kind, '')}")


def _bundled_file(entry: BundledModel) -> Path:
    if not entry.available:
        raise ModelNotFoundError(
            f"the {entry.kind} model {entry.name!r} is listed in the registry {REGISTRY_FILE} but its file "
            f"{entry.path} is not installed (no model has been bundled yet); "
            f"{TRAINING_HINT.get(entry.kind, 'pass the path of a model file')}"
        )
    return entry.path


def resolve_model_file(name_or_path: str | os.PathLike[str] | None = None, kind: str = "asr") -> Path:
    """The model file meant by a registry name, a path, or nothing (the default model of ``kind``).

    An existing file wins over a registry name of the same spelling. A folder stands for the
    ``model.safetensors`` a training recipe exports into it.

    Args:
        name_or_path: ``None`` (the default bundled model), a registry name, a model file, or a folder holding
            ``model.safetensors``.
        kind: the kind of model wanted (``"asr"``).

    Returns:
        The path of an existing file.

    Raises:
        ModelNotFoundError: unknown name (the message lists the known ones), a bundled model whose file is not
            installed (the message says how to train one), or a path that does not exist.

    Example:
        >>> resolve_model_file("no-such-model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        speechkit.assets.ModelNotFoundError: unknown asr model name 'no-such-model': known names (...): en-tdt-synth; or pass the path of a model file
    """
    if name_or_path is None:
        return _bundled_file(default_model(kind))
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        return path
    if path.is_dir():
        if (path / EXPORTED_MODEL_FILE).is_file():
            return path / EXPORTED_MODEL_FILE
        raise ModelNotFoundError(f"{path} is a folder without a {EXPORTED_MODEL_FILE}: pass a model file")
    text = os.fspath(name_or_path)
    # Something spelled like a path is reported as a missing file, not as an unknown name.
    if os.sep in text or "/" in text or path.suffix:
        raise ModelNotFoundError(f"model file not found: {text}")
    return _bundled_file(get_model(text, kind))
