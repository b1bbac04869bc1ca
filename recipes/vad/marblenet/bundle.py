"""Turn a trained VAD experiment into the bundled model file: float16 weights plus the dev-tuned post-processing.

Reads ``<exp_dir>/model.safetensors`` (exported by ``train.py``, float32), the thresholds ``train.py`` tuned on dev
(``<exp_dir>/metrics.json``: ``onset``, ``offset``, ``pad``) and the rest of the post-processing settings
(``<exp_dir>/config.yaml``: ``postprocess.min_duration_on`` ...), and writes one model file whose config carries a
``postprocess:`` section, which :func:`speechkit.vad.load_model` makes the model's default (``speechkit vad`` uses
it unless told otherwise)::

    python recipes/vad/marblenet/bundle.py --exp-dir exp/vad --out speechkit/assets/vad_marblenet.safetensors

Weights are stored in float16 (:func:`speechkit.modules.export.save_model_file`, as the ASR export does): half the
size of float32, and frame probabilities within ~1e-3 of the float32 model's (printed).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from speechkit.modules.export import read_model_file, save_model_file
from speechkit.vad.model import POSTPROCESS_KEY, load_model

PP_FIELDS = ("onset", "offset", "pad_onset", "pad_offset", "min_duration_on", "min_duration_off",
             "filter_speech_first", "frame_shift")


def bundle(exp_dir: Path, out: Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``out`` from ``exp_dir``'s exported model, tuned thresholds and post-processing config.

    Args:
        exp_dir: a ``train.py`` experiment folder (``model.safetensors``, ``metrics.json``, ``config.yaml``).
        out: the model file to write.
        dtype: stored weight type.

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: a file of the experiment is missing.
        ValueError: ``metrics.json`` lacks the tuned thresholds.
    """
    src = exp_dir / "model.safetensors"
    metrics_path, config_path = exp_dir / "metrics.json", exp_dir / "config.yaml"
    for p in (src, metrics_path, config_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (run recipes/vad/marblenet/train.py with exp_dir={exp_dir} first)")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    missing = [k for k in ("onset", "offset", "pad") if k not in metrics]
    if missing:
        raise ValueError(f"{metrics_path}: lacks the tuned {', '.join(missing)} (written by train.py's evaluation)")
    run_cfg = OmegaConf.to_container(OmegaConf.load(config_path))
    assert isinstance(run_cfg, dict)
    pp = {k: v for k, v in dict(run_cfg.get("postprocess") or {}).items() if k in PP_FIELDS}
    pp.update(onset=float(metrics["onset"]), offset=float(metrics["offset"]), pad_onset=float(metrics["pad"]),
              pad_offset=float(metrics["pad"]))

    network = load_model(src).network
    model_yaml = read_model_file(src, expected_kind="vad").config_yaml
    cfg = OmegaConf.to_container(OmegaConf.create(model_yaml))
    assert isinstance(cfg, dict)
    cfg[POSTPROCESS_KEY] = pp
    save_model_file(out, network, OmegaConf.to_yaml(OmegaConf.create(cfg)), None, kind="vad", dtype=dtype)

    # The stored copy must behave like the trained one: compare frame probabilities on a noisy test signal.
    x = (np.random.default_rng(0).standard_normal(16000 * 4) * 0.05).astype(np.float32)
    x[16000:40000] += 0.3 * np.sin(2 * np.pi * 220 * np.arange(24000) / 16000).astype(np.float32)
    diff = float(np.abs(load_model(out).frame_probs(x, 16000) - load_model(src).frame_probs(x, 16000)).max())
    print(f"wrote {out} ({out.stat().st_size / 1000:.0f} KB, {str(dtype).removeprefix('torch.')}); post-processing "
          f"{pp}; max |p_{str(dtype).removeprefix('torch.')} - p_float32| = {diff:.2e} on a 4 s test signal")
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp-dir", required=True, help="experiment folder of recipes/vad/marblenet/train.py")
    parser.add_argument("--out", default="speechkit/assets/vad_marblenet.safetensors", help="model file to write")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    args = parser.parse_args(argv)
    return bundle(Path(args.exp_dir), Path(args.out), getattr(torch, args.dtype))


if __name__ == "__main__":
    main()
