"""Spoken language ID: accuracy and confusion matrix of a speechkit LID model on held-out voices, per engine.

Two conditions, both on a corpus from ``speechkit prepare synth --langs ...`` (default ``data/synth_lid``):

- ``test``: the test split of ``--model`` (a model trained on the train split). The builder holds test voices out
  of training: whole voice groups where a language has at least three (English: espeak-ng accents, flite and
  festival speakers; Russian), and espeak-ng *variants* elsewhere (a language with one or two voice groups, e.g.
  German with espeak-ng only, or Italian with espeak-ng + festival ``lp``, hears the same base voices in every
  split; the corpus summary warns about these).
- ``heldout_engine``: ``--heldout-model``, a model trained with ``data.exclude_engines=[ENGINE]`` (the recipe
  option), scored on every utterance of ``--heldout-engine`` (all splits: it never heard that engine) of the
  languages that have it *and* another engine (festival: en, it, ru, ca), plus its test split without that engine.
  This is the "one engine held out entirely where a language has two" condition; the synth builder itself has no
  such option, so the hold-out is done at training time.

Reported per condition: accuracy overall, per language, per engine and per (language, engine), the confusion
matrix (rows = reference, columns = hypothesis, counts) and the real-time factor of ``classify`` (seconds of
compute per second of audio, batched, on this machine's CPU threads).

    .venv/bin/python bench/lid.py --model exp/lid_titanet/model.safetensors \
        [--heldout-model exp/lid_titanet_nofestival/model.safetensors --heldout-engine festival] \
        [--corpus data/synth_lid] [--threads 2] [--limit 0]

Prints tables and writes ``bench/results/lid.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechkit.data.lid import LIDDataset
from speechkit.lid import load_model
from speechkit.lid.model import LIDModel

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Scores:
    """Accuracy of one condition."""

    utterances: int = 0
    accuracy: float = 0.0
    per_language: dict[str, float] = field(default_factory=dict)
    per_engine: dict[str, float] = field(default_factory=dict)
    per_language_engine: dict[str, float] = field(default_factory=dict)
    counts_language_engine: dict[str, int] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)  # [reference][hypothesis], label order
    labels: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    rtf: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)


def score(lid: LIDModel, ds: LIDDataset, batch_size: int = 16) -> Scores:
    """Classify every utterance of ``ds`` (whole) and tally the results."""
    waves = [ds[i][0] for i in range(len(ds))]
    t0 = time.perf_counter()
    results = lid.classify_batch(waves, ds.sample_rate, batch_size)
    elapsed = time.perf_counter() - t0
    seconds = sum(w.shape[0] for w in waves) / ds.sample_rate
    index = {lang: i for i, lang in enumerate(lid.labels)}
    confusion = np.zeros((len(lid.labels), len(lid.labels)), dtype=np.int64)
    total: dict[str, Counter] = defaultdict(Counter)
    right: dict[str, Counter] = defaultdict(Counter)
    for e, r in zip(ds.entries, results, strict=True):
        confusion[index[e.lang], index[r.language]] += 1
        ok = r.language == e.lang
        engine = str(e.extra.get("engine", "?"))
        for kind, key in (("lang", e.lang), ("engine", engine), ("pair", f"{e.lang}/{engine}")):
            total[kind][key] += 1
            right[kind][key] += ok

    def acc(kind: str) -> dict[str, float]:
        return {k: right[kind][k] / n for k, n in sorted(total[kind].items())}

    return Scores(len(ds), float(np.trace(confusion)) / max(1, len(ds)), acc("lang"), acc("engine"), acc("pair"),
                  dict(sorted(total["pair"].items())), confusion.tolist(), list(lid.labels), round(seconds, 1),
                  elapsed / max(seconds, 1e-9), dict(ds.skipped))


def print_scores(name: str, s: Scores) -> None:
    print(f"\n== {name}: accuracy {s.accuracy:.4f} on {s.utterances} utterances ({s.audio_seconds / 60:.1f} min), "
          f"RTF {s.rtf:.4f}" + (f"; left out: {s.skipped}" if s.skipped else ""))
    print("per engine: " + ", ".join(f"{k} {v:.3f}" for k, v in s.per_engine.items()))
    print(f"{'lang':<5} {'acc':>6}  per engine (utterances)")
    for lang, a in s.per_language.items():
        pairs = [f"{k.split('/')[1]} {v:.3f} ({s.counts_language_engine[k]})" for k, v in s.per_language_engine.items()
                 if k.split("/")[0] == lang]
        print(f"{lang:<5} {a:>6.3f}  " + ", ".join(pairs))
    width = max(4, *(len(x) for x in s.labels)) + 1
    print("confusion (rows: reference, columns: hypothesis)")
    print(" " * width + "".join(f"{x:>{width}}" for x in s.labels))
    for lang, row in zip(s.labels, s.confusion, strict=True):
        if sum(row):
            print(f"{lang:<{width}}" + "".join(f"{n:>{width}}" for n in row))


def spread(entries: list, limit: int) -> list:
    """At most ``limit`` entries (0 = all), evenly spaced, so every language keeps some."""
    if not limit or len(entries) <= limit:
        return entries
    return [entries[round(i * len(entries) / limit)] for i in range(limit)]


def heldout_dataset(corpus: Path, lid: LIDModel, engine: str, limit: int) -> LIDDataset:
    """Every utterance of ``engine`` (all splits) in languages that also have another engine, plus the test split's
    other engines."""
    splits = [corpus / f"{s}.json" for s in ("train", "dev", "test")]
    engines: dict[str, set[str]] = defaultdict(set)
    for path in splits:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            engines[row["lang"]].add(row.get("engine", "?"))
    both = sorted(lang for lang, es in engines.items() if engine in es and len(es) > 1)
    if not both:
        raise ValueError(f"no language of {corpus} has engine {engine!r} and another one")
    print(f"held-out engine {engine}: languages that also have another engine: {', '.join(both)}")
    ds = LIDDataset(splits, lid.labels, skip_unknown=True)
    test = LIDDataset([corpus / "test.json"], lid.labels, skip_unknown=True)
    keep = [e for e in ds.entries if e.extra.get("engine") == engine and e.lang in both]
    keep += [e for e in test.entries if e.extra.get("engine") != engine]
    keep = spread(keep, limit)
    ds.skipped["not in the held-out-engine condition"] += len(ds.entries) - len(keep)
    ds.entries = keep
    return ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="LID model file trained on the corpus' train split")
    parser.add_argument("--corpus", default=str(ROOT / "data" / "synth_lid"))
    parser.add_argument("--heldout-model", default="", help="model trained with data.exclude_engines=[ENGINE]")
    parser.add_argument("--heldout-engine", default="festival")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="at most this many utterances per condition, evenly spaced (0 = all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lid.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    lid = load_model(args.model)
    print(lid)
    test = LIDDataset([corpus / "test.json"], lid.labels, skip_unknown=True)
    test.entries = spread(test.entries, args.limit)
    results: dict[str, object] = {
        "model": args.model, "corpus": str(corpus), "threads": args.threads, "machine": platform.processor() or
        platform.machine(), "date": time.strftime("%Y-%m-%d"), "test": asdict(score(lid, test, args.batch_size)),
    }
    print_scores("test split (held-out voices / variants)", Scores(**results["test"]))  # type: ignore[arg-type]
    if args.heldout_model:
        held = load_model(args.heldout_model)
        ds = heldout_dataset(corpus, held, args.heldout_engine, args.limit)
        s = score(held, ds, args.batch_size)
        results["heldout_engine"] = {"engine": args.heldout_engine, "model": args.heldout_model, **asdict(s)}
        print_scores(f"engine {args.heldout_engine} held out of training", s)
    else:
        print("\n(no --heldout-model: the held-out-engine condition is not measured)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
