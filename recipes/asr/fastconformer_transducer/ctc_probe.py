"""A quick check that an encoder configuration starts to use the audio: train its CTC head alone for a few hundred
steps and watch the loss leave the blank-only plateau.

A transducer's prediction network can learn the training sentences by heart while the encoder learns nothing, so a
falling transducer loss says little in the first thousand steps. The CTC loss per token of an encoder that carries no
information stays near the entropy of the pieces (about 4.5 with 128 pieces, 5.5 with 512), and it drops below that
within a few hundred steps once the encoder starts to use the audio. The probe trains the recipe's encoder and CTC
head (no prediction network, no joint: about half the cost of a recipe step) with the recipe's data loader and prints
the loss every ``--log-every`` steps, and the greedy CTC WER on the first ``--dev-utts`` dev utterances every
``--eval-every`` steps. RESULTS.md's table "Why the first runs did not learn" was measured with it.

Usage (from the repository root)::

    python recipes/asr/fastconformer_transducer/ctc_probe.py --config recipes/asr/fastconformer_transducer/conf/tdt.yaml \\
        --steps 1000 --lr 3e-3 --warmup 200 --no-augment data.tokenizer.dir=data/synth_en/tok128 model.encoder.n_layers=4
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from speechkit.config import load_config
from speechkit.data.datasets import AugmentConfig
from speechkit.metrics.wer import word_error_rate
from speechkit.modules.asr import TransducerASR


def _load_recipe():  # noqa: ANN202 - the recipe's train.py, under a name no other recipe's train.py takes
    name = "fastconformer_transducer_train"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "train.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


_recipe = _load_recipe()
TrainConfig = _recipe.TrainConfig
build_loader = _recipe.build_loader
get_tokenizer = _recipe.get_tokenizer


@dataclass
class ProbeResult:
    """Mean CTC loss per token of each logged window, and the dev WERs of each evaluation."""

    steps: list[int] = field(default_factory=list)
    ctc_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    dev_wer: list[float] = field(default_factory=list)


def _lr(step: int, peak: float, warmup: int, total: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def run_probe(cfg: TrainConfig, steps: int, lr: float, warmup: int, augment: bool, log_every: int = 25,
              eval_every: int = 500, dev_utts: int = 80, threads: int = 0) -> ProbeResult:
    """Train the CTC head of ``cfg.model`` alone for ``steps`` steps (AdamW, linear warmup, cosine to lr / 10).

    Args:
        cfg: the recipe configuration (data, tokenizer, model; ``optim`` and ``trainer`` are not used).
        steps: optimizer steps.
        lr: peak learning rate; warmup: its linear warmup steps.
        augment: keep the waveform augmentation and SpecAugment of ``cfg`` (else both off).
        log_every: steps per printed loss; eval_every: steps between dev WER evaluations (0 = only at the end).
        dev_utts: dev utterances evaluated (the first of ``data.dev``; 0 = no evaluation).
        threads: torch CPU threads (0 = torch's default).

    Returns:
        The logged losses and WERs.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    tokenizer = get_tokenizer(cfg)
    cfg.model.vocab_size = tokenizer.vocab_size
    if cfg.model.ctc_weight <= 0:
        cfg.model.ctc_weight = 0.5  # the probe needs the CTC head; the weight itself is not used
    if not augment:
        cfg.data.augment = AugmentConfig(speed_factors=[], noise_prob=0.0)
        cfg.model.spec_augment.freq_masks = 0
        cfg.model.spec_augment.time_masks = 0
    net = TransducerASR.from_config(cfg.model)
    assert net.ctc is not None
    loader = build_loader(cfg, cfg.data.train, tokenizer, train=True)
    dev_batches = []
    if dev_utts and cfg.data.dev:
        for batch in build_loader(cfg, cfg.data.dev, tokenizer, train=False):
            dev_batches.append(batch)
            if sum(len(b["texts"]) for b in dev_batches) >= dev_utts:
                break
    params = [p for n, p in net.named_parameters() if not n.startswith(("prediction.", "joint."))]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=cfg.optim.weight_decay)
    result = ProbeResult()
    step, window, t0 = 0, [], time.time()
    net.train()
    while step < steps:
        for batch in loader:
            for group in opt.param_groups:
                group["lr"] = _lr(step, lr, warmup, steps)
            enc, enc_lens = net.encode(batch["audio"], batch["audio_lens"])
            log_probs = net.ctc(enc)
            lens = batch["token_lens"]
            loss = F.ctc_loss(log_probs.transpose(0, 1), batch["tokens"], enc_lens, lens, blank=net.ctc.blank_id,
                              reduction="sum", zero_infinity=True) / lens.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.trainer.gradient_clip_val or 1e9)
            opt.step()
            step += 1
            window.append(float(loss.detach()))
            if step % log_every == 0 or step == steps:
                result.steps.append(step)
                result.ctc_loss.append(sum(window) / len(window))
                print(f"step {step} ctc_loss {result.ctc_loss[-1]:.3f} lr {_lr(step, lr, warmup, steps):.2e} "
                      f"{time.time() - t0:.0f}s", flush=True)
                window = []
            if dev_batches and ((eval_every and step % eval_every == 0) or step == steps):
                net.eval()
                refs, hyps = [], []
                with torch.no_grad():
                    for b in dev_batches:
                        refs += b["texts"]
                        hyps += [tokenizer.decode(h.tokens) for h in net.decode_ctc(b["audio"], b["audio_lens"])]
                net.train()
                result.eval_steps.append(step)
                result.dev_wer.append(word_error_rate(refs, hyps).rate)
                print(f"step {step} dev_ctc_wer {result.dev_wer[-1]:.3f} ({len(refs)} utt.) e.g. {hyps[0]!r} "
                      f"for {refs[0]!r}", flush=True)
            if step >= steps:
                break
    return result


def main(argv: Sequence[str] | None = None) -> ProbeResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a recipe YAML (conf/tdt.yaml)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--no-augment", action="store_true", help="no waveform augmentation, no SpecAugment")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--dev-utts", type=int, default=80)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the recipe config")
    args = parser.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    return run_probe(cfg, args.steps, args.lr, args.warmup, not args.no_augment, args.log_every, args.eval_every,
                     args.dev_utts, args.threads)


if __name__ == "__main__":
    main()
