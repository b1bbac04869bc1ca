"""Shared test setup: markers, the tiny corpus location, and skipping CUDA tests on machines without a GPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The Numba CUDA kernels run under Numba's CUDA simulator on machines without a GPU, so CI exercises their logic.
# The switch is read when numba is first imported, so it is set here, before any test module imports numba.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "manifests" / "tiny"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: then no CUDA either
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The bundled tiny corpus (manifests/tiny): train/dev/test manifests with 16 kHz wavs."""
    assert (TINY / "train.json").is_file(), "manifests/tiny is missing: see manifests/tiny/README.md"
    return TINY


@pytest.fixture
def nothing_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model registry as it would be with no model in it (the bundled files stay in place): the real
    "no default model" errors, with their hints."""
    import speechkit.assets as assets

    monkeypatch.setattr(assets, "_registry", lambda: ())


def _mean_of(model_path: Path, checkpoints: list[Path]) -> None:
    """The model file's float tensors are the mean of the checkpoints' (stored in fp16), which differ."""
    import torch

    from speechkit.modules.export import read_model_file

    states = [torch.load(c, map_location="cpu", weights_only=False)["state_dict"] for c in checkpoints]
    exported = read_model_file(model_path).state_dict
    moved = 0
    for name, tensor in exported.items():
        if tensor.is_floating_point() and "running_" not in name:
            parts = [st["model." + name].float() for st in states]
            assert torch.allclose(tensor.float(), sum(parts) / len(parts), rtol=2e-3, atol=1e-4), name
            moved += int(not torch.equal(parts[0], parts[-1]))
    assert moved > 5


@pytest.fixture
def assert_mean_of():
    """Checks that a recipe's exported model file holds the mean weights of the given Lightning checkpoints."""
    return _mean_of
