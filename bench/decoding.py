"""Greedy decoding speed: RNN-T vs TDT vs multi-blank label looping, decoder time only (encoder output given).

Every model type decodes the SAME encoder outputs (``--utterances`` of ``--seconds`` of audio each at 80 ms per
encoder frame), in batches of 1 and of 16 by default, on CPU: a row's seconds are the time to decode all of them.
Prints a table and writes ``bench/results/decoding.json``.

    python bench/decoding.py [--batch 1 16] [--seconds 10] [--repeat 5] [--threads 1] [--model PATH ...]

**Synthetic weights** (the default, until trained models exist): random prediction nets and joints at
FastConformer-transducer sizes (encoder 512, prediction 640, joint 640, 1024 tokens). The blank logit bias of each
joint is calibrated by bisection so that it emits about one token per ``--frames-per-token`` encoder frames on the
benchmark utterances; the TDT duration biases favour 1-3 frames (mean about 2); multi-blank uses big blanks
[2, 4, 8]. Random weights do not behave like trained ones (labels come in bursts; see ``max_symbols_frames`` in the
results), so these numbers compare the decoders' mechanics, not real-model speed.

**Trained models**: ``--model PATH`` (repeatable) loads an exported model file with ``TransducerASR.from_model_file`` and
decodes with its ``prediction`` and ``joint``. With ``--manifest FILE`` (a NeMo manifest, e.g. the synthetic test
split) each model decodes **its own encoder's output** on that audio (the first ``--utterances`` lines, or all with
``--utterances 0``), as a real system would; ``--encoder-out FILE`` gives fixed encoder outputs instead (a
``torch.save`` dict with ``y`` ``(B, T, D)`` and ``y_lens`` ``(B,)``), otherwise random ones of the model's width.
The encoder's time is not counted.

Each row also gives the work any greedy decoder must do on that audio, counted one utterance at a time:
``decisions`` (joint evaluations: RNN-T takes one per frame plus one per label, TDT and multi-blank skip frames) and
``prediction_steps`` (one per label). Their ratio between two models bounds the speed-up a faster loop can reach.
``joint_us`` and ``prediction_step_us`` are the batch-1 costs of one joint evaluation and of one prediction step.
TDT rows add ``mean_token_duration`` and ``mean_blank_jump`` (frames per blank decision): a TDT model only beats
RNN-T when these are well above 1.

**GPU**: ``--device cuda`` decodes there (the timings include the final copy of the results to the host);
``--cuda-graphs`` adds, for every model, a row decoded by
:class:`~speechkit.decoding.cuda_graphs.GraphedGreedyDecoder` (one per model and batch size, captured during the
warm-up run), next to the ordinary label-looping rows.

    python bench/decoding.py --device cuda --cuda-graphs --batch 1 16 --out /tmp/decoding_gpu.json

    python bench/decoding.py --model exp/fastconformer_tdt/model.safetensors \
        --model exp/fastconformer_rnnt/model.safetensors --manifest data/synth_en/test.json --utterances 0
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechkit.decoding import GraphedGreedyDecoder, GreedyOptions, greedy_transducer_decode  # noqa: E402
from speechkit.losses.layout import JointLayout  # noqa: E402
from speechkit.modules.transducer import Joint, PredictionNetwork  # noqa: E402

FRAME_S = 0.08  # 8x subsampling of 10 ms features
ENCODER_DIM, PRED_DIM, JOINT_DIM, VOCAB = 512, 640, 640, 1024
SYNTHETIC = {
    "rnnt": JointLayout.rnnt(VOCAB),
    "tdt": JointLayout.tdt(VOCAB, (0, 1, 2, 3, 4)),
    "multiblank": JointLayout.multiblank(VOCAB, (2, 4, 8)),
}
TDT_DURATION_BIAS = (-3.0, 0.0, 0.5, 0.0, -1.0)  # argmax mostly 1-3 frames


@dataclass
class Model:
    name: str
    kind: str
    prediction: PredictionNetwork
    joint: Joint
    synthetic: bool
    blank_bias: float | None = None
    network: object | None = None  # the whole TransducerASR (trained models), for --manifest
    enc: tuple[torch.Tensor, torch.Tensor] | None = None  # its own encoder output (B, T, D), (B,)


def _synthetic(kind: str, calib: torch.Tensor, calib_lens: torch.Tensor, frames_per_token: float,
               seed: int) -> Model:
    """Random model whose blank bias is bisected so that it emits one token per ``frames_per_token`` frames of
    ``calib`` ``(B, T, D)``."""
    torch.manual_seed(seed)
    layout = SYNTHETIC[kind]
    pred = PredictionNetwork(VOCAB, hidden=PRED_DIM).eval()
    joint = Joint(ENCODER_DIM, PRED_DIM, JOINT_DIM, layout=layout).eval()
    blanks = slice(layout.vocab_size, layout.num_token_classes)
    base = joint.out.bias.detach().clone()
    if kind == "tdt":
        base[layout.duration_slice] += torch.tensor(TDT_DURATION_BIAS)
    target = 1.0 / frames_per_token

    def rate(bias: float) -> float:
        with torch.no_grad():
            joint.out.bias.copy_(base)
            joint.out.bias[blanks] += bias
        hyps = greedy_transducer_decode(calib, calib_lens, pred, joint)
        return sum(len(h) for h in hyps) / float(calib_lens.sum())

    lo, hi = -5.0, 10.0  # tokens per frame falls as the blank bias rises
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate(mid) > target else (lo, mid)
    bias = (lo + hi) / 2
    rate(bias)
    return Model(kind, kind, pred, joint, synthetic=True, blank_bias=bias)


def _trained(path: str) -> Model:
    from speechkit.modules.asr import TransducerASR

    # The network itself, not the transcription facade: the bench times the decoder parts alone.
    model, _, _ = TransducerASR.from_model_file(path)
    joint = model.joint
    name = Path(path).parent.name if Path(path).stem == "model" else Path(path).stem  # exp/<run>/model.safetensors
    return Model(name, joint.layout.kind, model.prediction.eval(), joint.eval(), synthetic=False,
                 network=model.eval())


def _encode_manifest(model: Model, manifest: str, limit: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The model's own encoder output on the manifest's audio: ``(B, T, D)``, ``(B,)`` and the audio seconds."""
    from speechkit.audio.io import load_audio
    from speechkit.data.manifests import read_manifest, resolve_audio_path

    entries = list(read_manifest(manifest))
    entries = entries[:limit] if limit > 0 else entries
    net = model.network
    outs, lens, seconds = [], [], 0.0
    with torch.no_grad():
        for e in entries:
            x = torch.from_numpy(load_audio(resolve_audio_path(manifest, e.audio_filepath), net.sample_rate))
            y, y_len = net.encode(x[None], torch.tensor([x.numel()]))
            outs.append(y[0, : int(y_len[0])])
            lens.append(int(y_len[0]))
            seconds += x.numel() / net.sample_rate
    f = torch.nn.utils.rnn.pad_sequence(outs, batch_first=True)
    return f, torch.tensor(lens), seconds


def _time(model: Model, f: torch.Tensor, lens: torch.Tensor, batch: int, repeat: int,
          graphs: bool = False) -> tuple[float, list]:
    """Median seconds to decode all of ``f`` in batches of ``batch`` (so every batch size decodes the same audio);
    ``graphs``: with a :class:`GraphedGreedyDecoder` (captured in the warm-up run)."""
    graphed = GraphedGreedyDecoder(model.prediction, model.joint) if graphs else None

    def run() -> list:
        hyps = []
        for i in range(0, f.shape[0], batch):
            if graphed is not None:
                hyps += graphed(f[i:i + batch], lens[i:i + batch])
            else:
                hyps += greedy_transducer_decode(f[i:i + batch], lens[i:i + batch], model.prediction, model.joint)
        return hyps

    run()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        hyps = run()
        times.append(time.perf_counter() - t)
    return statistics.median(times), hyps


def _count_work(model: Model, f: torch.Tensor, lens: torch.Tensor) -> dict[str, int]:
    """Greedy decisions (joint evaluations) and prediction-network steps, one utterance at a time: what the
    decoder must compute whatever its implementation. RNN-T takes one decision per frame plus one per label; TDT
    and multi-blank skip frames, and every model takes one prediction step per label."""
    counts = {"decisions": 0, "prediction_steps": 0}
    joint_call, step_call = model.joint.joint_after_projection, model.prediction.step

    def joint(fp: torch.Tensor, gp: torch.Tensor) -> torch.Tensor:
        counts["decisions"] += fp.shape[0]
        return joint_call(fp, gp)

    def step(labels: torch.Tensor, state: object = None, input_gates: torch.Tensor | None = None) -> tuple:
        counts["prediction_steps"] += labels.shape[0]
        return step_call(labels, state, input_gates)

    model.joint.joint_after_projection, model.prediction.step = joint, step  # instance attributes shadow methods
    try:
        for i in range(f.shape[0]):
            greedy_transducer_decode(f[i:i + 1], lens[i:i + 1], model.prediction, model.joint)
    finally:
        del model.joint.joint_after_projection, model.prediction.step
    counts["prediction_steps"] -= f.shape[0]  # the start symbol's step, one per utterance
    return counts


def _unit_costs(model: Model, dim: int, calls: int = 2000) -> dict[str, float]:
    """Microseconds of one batch-1 joint evaluation and of one prediction step (LSTM step + joint projection), the
    two costs a greedy decoder pays per decision and per label."""
    device = next(model.joint.parameters()).device
    fp = model.joint.project_encoder(torch.randn(1, dim, device=device))
    state = model.prediction.init_state(1, device)
    label = torch.zeros(1, dtype=torch.long, device=device)
    gp = model.joint.project_prediction(model.prediction.step(label, state)[0])

    def joint() -> None:
        model.joint.joint_after_projection(fp, gp)

    gates = model.prediction.input_gates()  # as the decoders do: fetched once per call, not per step

    def step() -> None:
        model.joint.project_prediction(model.prediction.step(label, state, gates)[0])

    costs = {}
    with torch.no_grad():
        for name, fn in (("joint_us", joint), ("prediction_step_us", step)):
            for _ in range(100):
                fn()
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            costs[name] = (time.perf_counter() - t) / calls * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--utterances", type=int, default=16, help="decoded in batches of each --batch size")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per utterance")
    parser.add_argument("--frames-per-token", type=float, default=3.5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the bench machine is shared)")
    parser.add_argument("--model", action="append", default=[], help="exported model file(s); default: synthetic")
    parser.add_argument("--encoder-out", help="torch.save'd {'y': (B, T, D), 'y_lens': (B,)} to decode")
    parser.add_argument("--manifest", help="trained models: decode each model's own encoder output on this audio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--cuda-graphs", action="store_true", help="with --device cuda: also time CUDA-graph decoding")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "decoding.json"))
    args = parser.parse_args()
    if args.cuda_graphs and not args.device.startswith("cuda"):
        parser.error("--cuda-graphs needs --device cuda")
    torch.set_num_threads(args.threads)

    frames = round(args.seconds / FRAME_S)
    gen = torch.Generator().manual_seed(args.seed)
    models = [_trained(p) for p in args.model]
    dim = models[0].joint.enc.in_features if models else ENCODER_DIM
    if args.manifest:
        if not models:
            parser.error("--manifest needs --model")
        for m in models:
            f_m, lens_m, audio_s_manifest = _encode_manifest(m, args.manifest, args.utterances)
            m.enc = (f_m, lens_m)
        f_all, lens_all = models[0].enc
    elif args.encoder_out:
        saved = torch.load(args.encoder_out, weights_only=True)
        f_all, lens_all = saved["y"], saved["y_lens"]
    else:
        f_all = torch.randn(args.utterances, frames, dim, generator=gen)
        lens_all = torch.full((args.utterances,), frames)
    if not models:
        # Calibrated on the benchmark utterances themselves: every model type emits the target token count on them.
        models = [_synthetic(k, f_all, lens_all, args.frames_per_token, args.seed + i)
                  for i, k in enumerate(SYNTHETIC)]

    device = torch.device(args.device)
    for m in models:
        m.prediction.to(device)
        m.joint.to(device)
    work = {m.name: {**_count_work(m, *(m.enc if m.enc is not None else (f_all, lens_all))),
                     **_unit_costs(m, m.joint.enc.in_features)} for m in models}
    rows = []
    for batch, model, graphs in [(b, m, g) for b in args.batch for m in models
                                 for g in ([False, True] if args.cuda_graphs else [False])]:
        f, lens = model.enc if model.enc is not None else (f_all, lens_all)
        audio_s = audio_s_manifest if args.manifest else float(lens.sum()) * FRAME_S
        seconds, hyps = _time(model, f.to(device), lens.to(device), batch, args.repeat, graphs)
        tokens = sum(len(h) for h in hyps)
        counts = [Counter(h.frames) for h in hyps]
        row = {
            "model": model.name, "model_type": model.kind, "synthetic_weights": model.synthetic,
            "device": args.device, "cuda_graphs": graphs, "batch": batch, "seconds": seconds, "tokens": tokens,
            "frames": int(lens.sum()),
            "audio_seconds": audio_s, "rtfx": audio_s / seconds,
            "frames_per_token": int(lens.sum()) / max(tokens, 1),
            **work[model.name],
            "max_symbols_frames": sum(1 for c in counts for n in c.values() if n >= GreedyOptions().max_symbols),
        }
        if model.kind == "tdt":
            durations = [d for h in hyps for d in h.durations]
            row["mean_token_duration"] = sum(durations) / max(len(durations), 1)
            # Blank decisions are the joint evaluations that emit no label; the frames the tokens do not cover are
            # the blanks' (the last jump of an utterance may overshoot its end, so this is a close lower bound).
            blanks = row["decisions"] - row["prediction_steps"]
            row["mean_blank_jump"] = max(row["frames"] - sum(durations), 0) / max(blanks, 1)
        if model.blank_bias is not None:
            row["blank_bias"] = model.blank_bias
        rows.append(row)

    w = max([20] + [len(r["model"]) + 2 for r in rows])
    print(f"{'model':<{w}}{'batch':>6}{'seconds':>10}{'tokens':>8}{'frames':>8}{'frm/tok':>8}{'decis.':>8}{'RTFx':>9}"
          "  notes")
    for r in rows:
        note = "synthetic weights" if r["synthetic_weights"] else "trained"
        note += f", {r['device']}" + (" + CUDA graphs" if r["cuda_graphs"] else "")
        if "mean_token_duration" in r:
            note += f", mean duration {r['mean_token_duration']:.2f}, blank jump {r['mean_blank_jump']:.2f}"
        print(f"{r['model']:<{w}}{r['batch']:>6}{r['seconds']:>10.4f}{r['tokens']:>8}{r['frames']:>8}"
              f"{r['frames_per_token']:>8.2f}{r['decisions']:>8}{r['rtfx']:>9.0f}  {note}")
    result = {
        "what": f"greedy label-looping decoding time given encoder outputs (decoder + joint only), {args.device}",
        "weights": "synthetic (random, blank bias calibrated)" if not args.model else "trained",
        "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "threads": args.threads, "repeat": args.repeat,
        "audio": args.manifest or ("encoder outputs of " + args.encoder_out if args.encoder_out else
                                   f"random encoder outputs, {args.utterances} x {args.seconds} s"),
        "sizes": {"encoder": dim, "prediction": PRED_DIM, "joint": JOINT_DIM, "vocab": VOCAB} if not args.model else None,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
