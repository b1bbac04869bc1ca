"""Training-step speed of a recipe's transducer on real batches: what sets how many steps the 2-hour CPU budget holds.

Builds the network, the data loader and the optimizer the way ``recipes/asr/fastconformer_transducer/train.py``
does for ``--config`` (augmentation included), draws ``--batches`` training batches in this process (timed: the
``data_ms`` column; the recipe loads them in a worker process beside the step), then times the train step on them:
forward with both losses, backward, gradient clipping at 1.0 and the optimizer step, the work Lightning wraps for
each step. The first two steps are warm-up; ``--rounds`` passes over the remaining batches are timed. With
``--profile`` it also prints the operators that took the most time in one pass (torch.profiler). With
``--loop-steps N`` it also times N steps the way the recipe runs them, each batch drawn from a loader with
``--loop-workers`` worker processes while the previous step computes (``loop_ms``): on 2 cores the loader's work
slows the step it runs beside. ``--joint-check`` compares the float32 and bfloat16 joints on 4 batches (loss and
gradient, same dropout masks) and times the joint's output projection and dropout mask both ways (``joint_check``).

To compare two commits, run this file with the other commit's package first on the path (the same batches come
from the same seed)::

    .venv/bin/python bench/train_step.py                                   # this tree
    git worktree add /tmp/before REV && PYTHONPATH=/tmp/before .venv/bin/python bench/train_step.py --out /tmp/b.json

Prints a table and writes ``bench/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "asr" / "fastconformer_transducer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(RECIPE / "conf" / "tdt.yaml"))
    parser.add_argument("--tokenizer", default="exp/fastconformer_tdt/tokenizer",
                        help="tokenizer folder (the bundled run's; any of the same vocabulary size works)")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--loop-steps", type=int, default=0,
                        help="also time this many steps of the recipe's own loop: batches drawn while training from "
                             "a loader with --loop-workers worker processes (0 = off)")
    parser.add_argument("--loop-workers", type=int, default=1, help="the recipe's trainer.num_workers")
    parser.add_argument("--joint-check", action="store_true",
                        help="also compare the float32 and bfloat16 joints on 4 batches (loss, gradient) and time the "
                             "joint's output projection and its dropout mask in both ways")
    parser.add_argument("overrides", nargs="*", help="recipe config overrides, key=value")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_step.json"))
    args = parser.parse_args()
    if args.batches < 3:
        parser.error("--batches must be at least 3 (two warm-up steps)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    import speechkit
    from speechkit.models.asr import OptimConfig
    from speechkit.models.recipe import load_recipe_script, parse_recipe_args

    recipe = load_recipe_script(RECIPE / "train.py", "asr_train_recipe")
    cfg = parse_recipe_args(recipe.TrainConfig, ["--config", args.config, f"data.tokenizer.dir={args.tokenizer}",
                                                 "trainer.num_workers=0", *args.overrides], "bench")
    tokenizer = recipe.get_tokenizer(cfg)
    model = recipe.build_model(cfg, tokenizer).model.train()
    loader = recipe.build_loader(cfg, cfg.data.train, tokenizer, train=True)
    batches_it = iter(loader)
    next(batches_it)  # the sampler's and the reader's start-up, not a batch's cost
    t0 = time.perf_counter()
    batches = [next(batches_it) for _ in range(args.batches)]
    data_ms = (time.perf_counter() - t0) / args.batches * 1e3
    try:  # the recipe's optimizer; commits before make_adamw built a plain AdamW with the same settings
        from speechkit.models.asr import make_adamw
        optimizer = make_adamw(model.parameters(), cfg.optim)
    except ImportError:
        o: OptimConfig = cfg.optim
        optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)

    def step(batch: dict) -> None:
        out = model(batch["audio"], batch["audio_lens"], batch["tokens"], batch["token_lens"])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for b in batches[:2]:
        step(b)
    timed = batches[2:]
    rounds = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for b in timed:
            step(b)
        rounds.append((time.perf_counter() - t0) / len(timed) * 1e3)
    step_ms = statistics.median(rounds)
    loop_ms = None
    if args.loop_steps > 0:
        # The wall time a step costs in training: on few cores the loader's worker competes with the step.
        cfg.trainer.num_workers = args.loop_workers
        live = iter(recipe.build_loader(cfg, cfg.data.train, tokenizer, train=True))
        for _ in range(3):
            step(next(live))
        t0 = time.perf_counter()
        for _ in range(args.loop_steps):
            step(next(live))
        loop_ms = (time.perf_counter() - t0) / args.loop_steps * 1e3
    audio_s = statistics.mean(float(b["audio_lens"].sum()) / cfg.model.features.sample_rate for b in timed)
    joint_check = _joint_check(model, timed[:4]) if args.joint_check else None
    row = {"config": Path(args.config).name, "step_ms": step_ms, "rounds_ms": rounds, "data_ms": data_ms,
           "batch_utterances": statistics.mean(int(b["audio"].shape[0]) for b in timed),
           "batch_audio_s": audio_s, "audio_s_per_s": audio_s / (step_ms / 1e3),
           "loop_ms": loop_ms, "loop_steps": args.loop_steps, "loop_workers": args.loop_workers,
           "joint_check": joint_check,
           "params": sum(p.numel() for p in model.parameters()), "optimizer_fused": bool(
               optimizer.defaults.get("fused"))}
    loop = f"{loop_ms:>9.1f}" if loop_ms is not None else f"{'-':>9}"
    print(f"{'config':<14}{'step ms':>9}{'data ms':>9}{'loop ms':>9}{'utts':>6}{'audio s':>9}{'audio s/s':>10}"
          "  rounds ms")
    print(f"{row['config']:<14}{step_ms:>9.1f}{data_ms:>9.1f}{loop}{row['batch_utterances']:>6.1f}{audio_s:>9.1f}"
          f"{row['audio_s_per_s']:>10.1f}  {', '.join(f'{r:.1f}' for r in rounds)}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in timed:
                step(b)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    result = {"what": "one recipe train step (forward, both losses, backward, clip, optimizer) on real batches, CPU",
              "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
              "speechkit": str(Path(speechkit.__file__).parent), "threads": args.threads,
              "overrides": args.overrides, "rows": [row]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


def _joint_check(model: torch.nn.Module, batches: list[dict]) -> dict:
    """float32 against bfloat16 joint on the same batches and dropout masks, then the two operations it speeds up."""
    import torch.nn.functional as F

    from speechkit.modules.dropout import dropout

    cfg = model.loss_config
    saved = cfg.joint_dtype
    per_batch = []
    for b in batches:
        res = {}
        for dtype in ("float32", "bfloat16"):
            cfg.joint_dtype = dtype
            model.zero_grad(set_to_none=True)
            torch.manual_seed(0)  # the same dropout masks and omega draw for both
            out = model(b["audio"], b["audio_lens"], b["tokens"], b["token_lens"],
                        generator=torch.Generator().manual_seed(0))
            out.loss.backward()
            grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).double()
            res[dtype] = (float(out.transducer_loss), grad)
        (l32, g32), (l16, g16) = res["float32"], res["bfloat16"]
        per_batch.append({"loss_rel_diff": abs(l16 - l32) / l32, "grad_norm_ratio": float(g16.norm() / g32.norm()),
                          "grad_cosine": float(F.cosine_similarity(g32, g16, dim=0))})
    cfg.joint_dtype = saved
    model.zero_grad(set_to_none=True)

    def ms(fn, reps: int = 10) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1e3

    # The largest batch's joint: (B, T', U+1, hidden) activations into the output projection.
    b = max(batches, key=lambda b: b["audio"].numel())
    with torch.no_grad():
        enc, enc_lens = model.encode(b["audio"], b["audio_lens"])
    joint = model.joint
    shape = (enc.shape[0], enc.shape[1], int(b["token_lens"].max()) + 1, joint.out.in_features)
    h = torch.randn(shape)
    w = joint.out.weight.detach()
    p = joint.dropout.p or 0.1
    timings = {
        "activation_shape": list(shape),
        "projection_float32_ms": ms(lambda: h @ w.T),
        "projection_bfloat16_ms": ms(lambda: h.bfloat16() @ w.T.bfloat16()),
        "mask_speechkit_ms": ms(lambda: dropout(h, p)),
        "mask_uniform_float_ms": ms(lambda: h * torch.rand_like(h).ge_(p).mul_(1 / (1 - p))),
        "f_dropout_ms": ms(lambda: F.dropout(h, p, True)),
    }
    print("joint check: float32 vs bfloat16 joint, per batch: "
          + "; ".join(f"loss {r['loss_rel_diff']:.2e} rel, grad norm x{r['grad_norm_ratio']:.4f}, "
                      f"cos {r['grad_cosine']:.5f}" for r in per_batch))
    print("joint check: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in timings.items()))
    return {"batches": per_batch, **timings}


if __name__ == "__main__":
    main()
