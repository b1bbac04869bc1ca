"""OOMptimizer: the largest batch size per bucket whose full training step fits in memory.

For each bucket, largest first, :func:`search_batch_size` tries a batch size; on success it doubles it (until a
failure is seen), on failure it halves it (until a success is seen), then bisects between the largest size that
fit and the smallest that failed until their relative gap ``(fail - ok) / fail`` is at most ``threshold``. The next
(smaller) bucket starts from twice the previous answer. A trial is a whole training step of the real model on a
dummy batch of the bucket's shape: forward, backward and an AdamW step (its moment buffers are part of the peak).

Two memory probes:

- :class:`CUDAProbe`: in this process, on a GPU; a trial fails when it raises an out-of-memory error, with the
  usable memory capped by ``memory_fraction`` (a safety margin for fragmentation and the real data's variety).
- :class:`CPUProbe`: a memory *budget* you give, so the search runs (and is tested) without a GPU: each trial runs
  in a fresh subprocess and its peak resident memory (``VmHWM`` of ``/proc/self/status``, Linux; it includes the
  interpreter, torch and the model) must stay within the budget.

The output is ready for :class:`speechkit.data.sampling.SamplerConfig` (bins are *upper bounds*, one batch size
each): ``sampler.bucket_duration_bins=[...]`` and ``sampler.bucket_batch_size=[...]``.

Example:
    >>> from speechkit.data.oomptimizer import search_batch_size
    >>> search_batch_size(lambda b: b <= 37, start=8, threshold=0.05)
    37
"""

from __future__ import annotations

import ast
import json
import logging
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CPUProbe", "CUDAProbe", "OOMptimizeCommand", "OOMptimizeResult", "bucket_shapes", "oomptimize",
           "oomptimize_command", "search_batch_size", "train_step"]

logger = logging.getLogger(__name__)


def search_batch_size(fits: Callable[[int], bool], start: int = 32, threshold: float = 0.05,
                      max_batch_size: int = 1 << 16) -> int:
    """The largest batch size ``b`` with ``fits(b)``, to within ``threshold`` (relative); 0 when even 1 fails.

    Args:
        fits: runs one trial.
        start: first size tried.
        threshold: stop once ``(smallest failing - largest fitting) / smallest failing <= threshold`` (or the
            two are adjacent).
        max_batch_size: never try more (returned when it fits).
    """
    ok, fail = 0, None  # largest size that fit, smallest that failed
    b = max(1, min(start, max_batch_size))
    while True:
        if fits(b):
            ok = max(ok, b)
            if b >= max_batch_size:
                return b
        else:
            fail = b if fail is None else min(fail, b)
            if b == 1:
                return 0
        if fail is None:
            b = min(2 * b, max_batch_size)
        elif ok == 0:
            b = max(1, b // 2)
        else:
            if fail - ok <= 1 or (fail - ok) / fail <= threshold:
                return ok
            b = (ok + fail) // 2


def bucket_shapes(buckets: Sequence[Any], tokens_per_second: float = 12.0) -> list[tuple[float, int]]:
    """``(seconds, tokens)`` of each bucket's worst case: 2-D pairs as given, 1-D bounds with ``ceil(ratio * s)``."""
    out = []
    for b in buckets:
        if isinstance(b, (int, float)):
            out.append((float(b), int(math.ceil(tokens_per_second * float(b)))))
        else:
            out.append((float(b[0]), int(b[1])))
    return out


def train_step(model: Any, optimizer: Any, batch_size: int, seconds: float, tokens: int, vocab_size: int,
               sample_rate: int, device: Any) -> None:
    """One forward + backward + optimizer step on a random batch of ``batch_size`` x ``seconds`` x ``tokens``."""
    import torch

    n = int(round(seconds * sample_rate))
    gen = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch_size, n, generator=gen)).to(device)
    audio_lens = torch.full((batch_size,), n, dtype=torch.long, device=device)
    targets = torch.randint(0, vocab_size, (batch_size, max(tokens, 1)), generator=gen).to(device)
    target_lens = torch.full((batch_size,), max(tokens, 1), dtype=torch.long, device=device)
    optimizer.zero_grad(set_to_none=True)
    out = model(audio, audio_lens, targets, target_lens)
    out.loss.backward()
    optimizer.step()


def _build(model_yaml: str, device: Any) -> tuple[Any, Any]:
    import torch
    from omegaconf import OmegaConf

    from speechkit.modules.asr import ASRModelConfig, TransducerASR

    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ASRModelConfig), OmegaConf.create(model_yaml)))
    model = TransducerASR.from_config(cfg).to(device).train()  # type: ignore[arg-type]
    return model, torch.optim.AdamW(model.parameters(), lr=1e-7)


class CPUProbe:
    """Trial = a train step in a fresh subprocess whose peak RSS must stay within ``budget_bytes``."""

    def __init__(self, model_yaml: str, budget_bytes: int, timeout_s: float = 600.0) -> None:
        self.model_yaml = model_yaml
        self.budget_bytes = budget_bytes
        self.timeout_s = timeout_s
        self.peaks: dict[tuple[float, int, int], int] = {}

    def peak_bytes(self, batch_size: int, seconds: float, tokens: int) -> int | None:
        """Peak RSS of the trial process, or ``None`` when it died (e.g. killed for memory)."""
        spec = json.dumps({"model": self.model_yaml, "batch_size": batch_size, "seconds": seconds, "tokens": tokens})
        try:
            proc = subprocess.run([sys.executable, "-m", "speechkit.data.oomptimizer"], input=spec, text=True,
                                  capture_output=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            logger.info("trial %d x %.1f s failed: %s", batch_size, seconds, proc.stderr.strip()[-500:])
            return None
        peak = int(proc.stdout.strip().splitlines()[-1])
        self.peaks[(seconds, tokens, batch_size)] = peak
        return peak

    def __call__(self, batch_size: int, seconds: float, tokens: int) -> bool:
        peak = self.peak_bytes(batch_size, seconds, tokens)
        ok = peak is not None and peak <= self.budget_bytes
        logger.info("batch %d x %.2f s x %d tokens: peak %s MB -> %s", batch_size, seconds, tokens,
                    "?" if peak is None else f"{peak / 2**20:.0f}", "fits" if ok else "too big")
        return ok


class CUDAProbe:
    """Trial = a train step on the GPU in this process; out-of-memory (within ``memory_fraction``) is a failure."""

    def __init__(self, model_yaml: str, memory_fraction: float = 0.9, device: str = "cuda") -> None:
        import torch

        self.device = torch.device(device)
        torch.cuda.set_per_process_memory_fraction(memory_fraction, self.device)
        self.model, self.optimizer = _build(model_yaml, self.device)
        self.vocab_size = self.model.vocab_size
        self.sample_rate = self.model.sample_rate

    def __call__(self, batch_size: int, seconds: float, tokens: int) -> bool:
        import torch

        torch.cuda.reset_peak_memory_stats(self.device)
        try:
            train_step(self.model, self.optimizer, batch_size, seconds, tokens, self.vocab_size, self.sample_rate,
                       self.device)
            torch.cuda.synchronize(self.device)
        except torch.cuda.OutOfMemoryError:
            ok = False
        except RuntimeError as err:  # cuFFT and cuDNN report exhausted memory as internal errors
            if "CUFFT_INTERNAL_ERROR" not in str(err) and "out of memory" not in str(err).lower():
                raise
            ok = False
        else:
            ok = True
        # No empty_cache between trials: the fragmentation of a real run is part of what must fit.
        self.optimizer.zero_grad(set_to_none=True)
        logger.info("batch %d x %.2f s: peak %.0f MB -> %s", batch_size, seconds,
                    torch.cuda.max_memory_allocated(self.device) / 2**20, "fits" if ok else "OOM")
        return ok


@dataclass
class OOMptimizeResult:
    """Bins (upper bounds, as given) and the batch size found for each."""

    bucket_duration_bins: list[Any]
    bucket_batch_size: list[int]

    def __str__(self) -> str:
        return (f"sampler.bucket_duration_bins={json.dumps(self.bucket_duration_bins, separators=(',', ':'))}\n"
                f"sampler.bucket_batch_size={json.dumps(self.bucket_batch_size, separators=(',', ':'))}")


def oomptimize(buckets: Sequence[Any], probe: Callable[[int, float, int], bool], start_batch_size: int = 32,
               threshold: float = 0.05, tokens_per_second: float = 12.0, max_batch_size: int = 1 << 16
               ) -> OOMptimizeResult:
    """Per-bucket batch sizes (largest bucket searched first; each next one starts at twice the last answer).

    Args:
        buckets: 1-D upper bounds in seconds, or 2-D ``[seconds, tokens]`` pairs, sorted ascending.
        probe: ``probe(batch_size, seconds, tokens) -> fits``.
        start_batch_size: first size tried for the largest bucket.
        threshold: relative precision of each answer.
        tokens_per_second: output tokens of a 1-D bucket's dummy batch per second of audio.
        max_batch_size: cap of the search.

    Raises:
        ValueError: a bucket where even batch size 1 does not fit.
    """
    shapes = bucket_shapes(buckets, tokens_per_second)
    sizes = [0] * len(shapes)
    start = start_batch_size
    for i in sorted(range(len(shapes)), key=lambda k: shapes[k], reverse=True):
        seconds, tokens = shapes[i]
        sizes[i] = search_batch_size(lambda b, s=seconds, t=tokens: probe(b, s, t), start, threshold, max_batch_size)
        if sizes[i] == 0:
            raise ValueError(f"bucket {buckets[i]}: even a batch of 1 ({seconds} s, {tokens} tokens) does not fit")
        start = 2 * sizes[i]
    return OOMptimizeResult([b if isinstance(b, (int, float)) else list(b) for b in buckets], sizes)


@dataclass
class OOMptimizeCommand:
    """Options of ``speechkit data oomptimize``."""

    # Not `--config`: that flag of every command reads the command's own options from YAML.
    recipe: str = field(metadata={"help": "recipe YAML whose `model:` section is the model to fit"})
    buckets: str = field(default="[5,10,15,20,25,30]", metadata={
        "help": "1-D upper bounds '[5,10,...]' or 2-D pairs '[[5,40],[5,80],...]' (from `data estimate-bins`)"})
    memory_budget_gb: float | None = field(default=None, metadata={
        "help": "CPU mode: peak resident memory budget of a training process (GB); unset: use the GPU"})
    threshold: float = field(default=0.05, metadata={"help": "relative gap at which the bisection stops"})
    start_batch_size: int = field(default=32, metadata={"help": "first batch size tried for the largest bucket"})
    memory_fraction: float = field(default=0.9, metadata={"help": "GPU mode: usable fraction of GPU memory"})
    tokens_per_second: float = field(default=12.0, metadata={"help": "1-D buckets: dummy tokens per second"})
    vocab_size: int = field(default=0, metadata={
        "help": "model vocabulary when the config's model.vocab_size is 0 (default: data.tokenizer.vocab_size)"})


def _model_yaml(opts: OOMptimizeCommand) -> str:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(opts.recipe)
    model = cfg.get("model", OmegaConf.create({}))
    if not model.get("vocab_size", 0):
        vocab = opts.vocab_size or OmegaConf.select(cfg, "data.tokenizer.vocab_size", default=0)
        if not vocab:
            raise ValueError(f"{opts.recipe}: model.vocab_size is 0 and there is no data.tokenizer.vocab_size; "
                             "pass --vocab-size")
        model.vocab_size = int(vocab)
    return OmegaConf.to_yaml(model)


def oomptimize_command(opts: OOMptimizeCommand) -> OOMptimizeResult:
    """Run the search with the CPU budget probe (``--memory-budget-gb``) or on the GPU."""
    try:
        buckets = ast.literal_eval(opts.buckets)
    except (ValueError, SyntaxError) as err:
        raise ValueError(f"--buckets: not a list: {opts.buckets!r} ({err})") from None
    model_yaml = _model_yaml(opts)
    probe: Callable[[int, float, int], bool]
    if opts.memory_budget_gb is not None:
        probe = CPUProbe(model_yaml, int(opts.memory_budget_gb * 2**30))
    else:
        import torch

        if not torch.cuda.is_available():
            raise ValueError("no CUDA device: give a CPU memory budget with --memory-budget-gb")
        probe = CUDAProbe(model_yaml, opts.memory_fraction)
    return oomptimize(buckets, probe, opts.start_batch_size, opts.threshold, opts.tokens_per_second)


def _trial_main() -> None:
    """Subprocess entry of :class:`CPUProbe`: one train step, then print the peak RSS in bytes."""
    import torch

    spec = json.loads(sys.stdin.read())
    torch.manual_seed(0)
    model, optimizer = _build(spec["model"], torch.device("cpu"))
    train_step(model, optimizer, spec["batch_size"], spec["seconds"], spec["tokens"], model.vocab_size,
               model.sample_rate, torch.device("cpu"))
    # VmHWM, not ru_maxrss: Linux carries the parent's resident size at fork into the child's ru_maxrss across exec,
    # so a big parent (a test runner, a benchmark) would inflate every trial; VmHWM belongs to this process's memory.
    with open("/proc/self/status") as f:
        hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(hwm_kib * 1024)


if __name__ == "__main__":
    _trial_main()
