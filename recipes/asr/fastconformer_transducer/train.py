"""Train a FastConformer transducer (TDT, RNN-T or multi-blank; optionally hybrid with CTC), export it, report WER.

Usage (from the repository root; see README.md for the whole pipeline)::

    python recipes/asr/fastconformer_transducer/train.py --config recipes/asr/fastconformer_transducer/conf/tdt.yaml \
        data.train=[data/synth_en/train.json] data.dev=[data/synth_en/dev.json] exp_dir=exp/tdt
    ... exp_dir=exp/tdt resume=last                    # continue from exp/tdt/checkpoints/last.ckpt
    ... exp_dir=exp/tdt_ft init_from=en-tdt-synth      # start from a model file's (or bundled model's) weights
    ... exp_dir=exp/tdt mode=export                    # checkpoint (resume=..., default last) -> model file
    ... exp_dir=exp/tdt mode=export average=5          # the mean weights of it and the 4 kept before it
    ... exp_dir=exp/tdt mode=evaluate data.test=[...]  # WER of the exported model file on dev and test

``mode=train`` trains (Lightning: ``last.ckpt`` every ``trainer.checkpoint_every_n_steps`` steps for resuming, the
best ``val_wer`` checkpoint, CSV logs under ``exp_dir/logs``), then exports the model file (fp16) to
``export_path`` (default ``exp_dir/model.safetensors``), reloads it *without* Lightning and prints its dev (and
test) WER. Every key of the YAML and of ``key=value`` overrides is checked against :class:`TrainConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from speechkit.config import ConfigError, save_config
from speechkit.data.datasets import AugmentConfig, make_dataloader, open_cuts
from speechkit.data.sampling import SamplerConfig
from speechkit.data.shar import make_shar_dataloader
from speechkit.metrics.wer import ErrorRate, word_error_rate
from speechkit.models.asr import ASRLightningModule, OptimConfig, transcribe_batch
from speechkit.models.callbacks import SamplerResume
from speechkit.models.recipe import (TrainerConfig, build_trainer, load_averaged_checkpoint, parse_recipe_args,
                                     prepare_run, resolve_checkpoint)
from speechkit.modules.asr import ASRModelConfig, TransducerASR
from speechkit.modules.export import ModelFile, read_model_file, transfer_weights
from speechkit.text.tokenizer import Tokenizer, TokenizerTrainConfig, train_tokenizer_from_manifests


@dataclass
class TokenizerSection:
    """``dir``: an existing tokenizer folder; empty: train one on ``data.train`` into ``exp_dir/tokenizer``."""

    dir: str = ""
    vocab_size: int = 256
    model_type: str = "bpe"


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # NeMo .json or Lhotse .jsonl.gz manifests
    dev: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)  # evaluated after training and in mode=evaluate
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    max_duration: float | None = None  # padded seconds of audio per batch; set: overrides sampler.max_duration
    num_buckets: int | None = None  # set: overrides sampler.num_buckets
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # training batches: 1-D / 2-D bucketing
    shar_dir: str = ""  # Lhotse Shar shards (speechkit.data.shar.write_shar) to train on instead of data.train
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    on_bad_text: str = "error"  # or "skip": count and skip transcripts the tokenizer cannot encode


@dataclass
class ASRTrainerConfig(TrainerConfig):
    """The shared ``trainer.*`` keys (:class:`speechkit.models.recipe.TrainerConfig`) and gradient accumulation."""

    accumulate_grad_batches: int = 1


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ASRModelConfig = field(default_factory=ASRModelConfig)  # vocab_size 0: taken from the tokenizer
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: ASRTrainerConfig = field(default_factory=ASRTrainerConfig)
    exp_dir: str = "exp/fastconformer_tdt"
    seed: int = 0
    resume: str = ""  # a checkpoint path, or "last" = exp_dir/checkpoints/last.ckpt
    # Warm start: a model file, a folder holding model.safetensors, or a bundled model name. Its tensors whose names
    # and shapes match the new network's are copied in (the rest stay fresh; the log lists them); its tokenizer is
    # used unless data.tokenizer.dir names one. Ignored when resuming (the checkpoint has the weights).
    init_from: str = ""
    init_exclude: list[str] = field(default_factory=list)  # fnmatch patterns of names not to copy ("joint.*")
    export_path: str = ""  # default exp_dir/model.safetensors
    # Export the mean weights of this many newest checkpoints (the last and trainer.keep_checkpoints - 1 before it;
    # icefall's --avg); 0 or 1: the last checkpoint's own weights.
    average: int = 0
    mode: str = "train"  # train | export | evaluate


@dataclass
class RunResult:
    model_path: Path
    wer: dict[str, ErrorRate]  # split name -> pooled WER of the exported model
    global_step: int = 0


def read_init_model(cfg: TrainConfig) -> ModelFile | None:
    """The model file ``init_from`` names (None when empty); a bundled name or a folder is resolved first."""
    if not cfg.init_from:
        return None
    from speechkit.assets import resolve_model_file

    return read_model_file(resolve_model_file(cfg.init_from, kind="asr"), expected_kind="asr")


def get_tokenizer(cfg: TrainConfig, init: ModelFile | None = None) -> Tokenizer:
    """The configured tokenizer, or the one trained earlier in exp_dir, or the ``init_from`` model's (saved into
    exp_dir so that a resumed run keeps its ids), or a new one trained on data.train."""
    tok_cfg = cfg.data.tokenizer
    if tok_cfg.dir:
        return Tokenizer.load(tok_cfg.dir)
    out = Path(cfg.exp_dir) / "tokenizer"
    if (out / "tokenizer.model").is_file():  # resuming: the ids must not change
        return Tokenizer.load(out)
    if init is not None and init.tokenizer is not None:
        if tok_cfg.vocab_size != init.tokenizer.vocab_size:
            print(f"data.tokenizer.vocab_size={tok_cfg.vocab_size} is not used: init_from={cfg.init_from!r} brings "
                  f"its own tokenizer ({init.tokenizer.vocab_size} pieces)")
        init.tokenizer.save(out)
        return init.tokenizer
    if not cfg.data.train or not all(p.endswith(".json") for p in cfg.data.train):
        raise ConfigError("data.tokenizer.dir is empty: training a tokenizer needs NeMo .json manifests in data.train")
    return train_tokenizer_from_manifests(cfg.data.train, out, TokenizerTrainConfig(tok_cfg.vocab_size,
                                                                                    tok_cfg.model_type))


def build_model(cfg: TrainConfig, tokenizer: Tokenizer) -> ASRLightningModule:
    """Config -> LightningModule; ``model.vocab_size`` comes from the tokenizer."""
    if cfg.model.vocab_size not in (0, tokenizer.vocab_size):
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} but the tokenizer has {tokenizer.vocab_size} "
                          "pieces (leave model.vocab_size at 0)")
    cfg.model.vocab_size = tokenizer.vocab_size
    return ASRLightningModule(cfg.model, cfg.optim, tokenizer, seed=cfg.seed)


def build_loader(cfg: TrainConfig, paths: list[str], tokenizer: Tokenizer, train: bool, rank: int = 0,
                 world_size: int = 1) -> torch.utils.data.DataLoader:
    """Training: ``data.sampler`` as configured. Evaluation: a plain duration budget (no filters, nothing left out)."""
    sampler = dataclasses.replace(cfg.data.sampler)
    if cfg.data.max_duration is not None:
        sampler.max_duration = cfg.data.max_duration
    if cfg.data.num_buckets is not None:
        sampler.num_buckets = cfg.data.num_buckets
    if train and cfg.data.shar_dir:
        # Shards split by rank x worker, the sampler inside each worker; endless, so training is step-based.
        return make_shar_dataloader(cfg.data.shar_dir, tokenizer, sampler, rank=rank, world_size=world_size,
                                    num_workers=cfg.trainer.num_workers, seed=cfg.seed, augment=cfg.data.augment,
                                    sample_rate=cfg.model.features.sample_rate, on_bad_text=cfg.data.on_bad_text)
    if not train:
        sampler = SamplerConfig(max_duration=sampler.max_duration, num_buckets=sampler.num_buckets,
                                quadratic_duration=sampler.quadratic_duration)
    return make_dataloader(open_cuts(paths), tokenizer, sampler.max_duration, shuffle=train, seed=cfg.seed,
                           rank=rank, world_size=world_size, num_workers=cfg.trainer.num_workers,
                           augment=cfg.data.augment if train else None, sampler=sampler,
                           sample_rate=cfg.model.features.sample_rate, on_bad_text=cfg.data.on_bad_text)


def evaluate(model_path: Path, cfg: TrainConfig) -> dict[str, ErrorRate]:
    """WER of an exported model file on data.dev and data.test, loaded without Lightning; hypotheses are written
    to exp_dir/hyps_<split>.txt (``cut_id<TAB>hypothesis<TAB>reference``)."""
    model, tokenizer, _ = TransducerASR.from_model_file(model_path, "cuda" if torch.cuda.is_available() else "cpu")
    results: dict[str, ErrorRate] = {}
    for split, paths in (("dev", cfg.data.dev), ("test", cfg.data.test)):
        if not paths:
            continue
        total, lines = ErrorRate(), []
        for batch in build_loader(cfg, paths, tokenizer, train=False):
            hyps = transcribe_batch(model, tokenizer, batch)
            total = total + word_error_rate(batch["texts"], hyps)
            lines += [f"{i}\t{h}\t{r}\n" for i, h, r in zip(batch["cut_ids"], hyps, batch["texts"], strict=True)]
        Path(cfg.exp_dir, f"hyps_{split}.txt").write_text("".join(sorted(lines)))
        results[split] = total
        print(f"{split} WER {total}")
    return results


def warm_start(module: ASRLightningModule, init: ModelFile, cfg: TrainConfig) -> None:
    """Copy the ``init_from`` model's matching tensors into the new network and print what was and was not copied.

    Raises:
        ConfigError: the two tokenizers differ and ``init_exclude`` is empty: the prediction network's embedding and
            the joint's and CTC head's outputs would then mean other pieces than they were trained for.
    """
    if (init.tokenizer is None or init.tokenizer.to_bytes() != module.tokenizer.to_bytes()) and not cfg.init_exclude:
        raise ConfigError(f"init_from={cfg.init_from!r}: its tokenizer differs from this run's, so its output layers "
                          "mean other pieces; leave data.tokenizer.dir empty to use its tokenizer, or list the "
                          "vocabulary-bound layers in init_exclude (e.g. ['prediction.embed.*', 'joint.out.*', "
                          "'ctc.*'])")
    report = transfer_weights(module.model, init.state_dict, cfg.init_exclude)
    if not report.loaded:
        raise ConfigError(f"init_from={cfg.init_from!r}: no tensor of it fits this network ({report.summary()})")
    print(f"init_from {cfg.init_from}: {report.summary()}")


def train(cfg: TrainConfig, tokenizer: Tokenizer, export_path: Path, init: ModelFile | None = None) -> int:
    """Fit (or resume, or start from ``init``'s weights), then export; returns the final global step."""
    exp = Path(cfg.exp_dir)
    module = build_model(cfg, tokenizer)
    ckpt_path = resolve_checkpoint(exp, cfg.resume)
    if init is not None and ckpt_path is None:
        warm_start(module, init, cfg)
    elif init is not None:
        print(f"init_from={cfg.init_from!r} is not applied: resuming from {ckpt_path}, which holds the weights")
    save_config(cfg, exp / "config.yaml")
    sampler_resume = SamplerResume()  # its sampler is attached once the trainer knows the rank (below)
    trainer = build_trainer(cfg.trainer, exp, "val_wer", "min", callbacks=[sampler_resume],
                            accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
                            use_distributed_sampler=False)  # Lhotse's sampler shards by rank itself
    # The trainer knows its rank and world size before fit() launches DDP processes (the script re-runs per rank).
    rank, world = trainer.global_rank, trainer.world_size
    train_loader = build_loader(cfg, cfg.data.train, tokenizer, train=True, rank=rank, world_size=world)
    sampler_resume.attach(train_loader.sampler)  # resume=last continues the epoch where it stopped
    dev_loader = build_loader(cfg, cfg.data.dev, tokenizer, train=False, rank=rank, world_size=world)
    trainer.fit(module, train_loader, dev_loader, ckpt_path=ckpt_path)
    if module.skipped_audio or module.skipped_text:
        print(f"data: skipped {module.skipped_audio} cuts with unreadable audio and {module.skipped_text} with "
              "unencodable transcripts (rank 0; see the warnings above for the cut ids)")
    if trainer.is_global_zero:
        if cfg.average > 1:
            _restore_average(module, cfg, "last")
        module.export(export_path)
    return trainer.global_step


def _restore_average(module: ASRLightningModule, cfg: TrainConfig, resume: str) -> int:
    ckpt = load_averaged_checkpoint(cfg.exp_dir, resume, cfg.average)
    ckpt.restore(module)
    if "averaged_from" in ckpt.data:
        print(f"average={cfg.average}: the mean weights of {', '.join(ckpt.data['averaged_from'])}")
    return ckpt.global_step


def export_checkpoint(cfg: TrainConfig, tokenizer: Tokenizer, export_path: Path) -> int:
    """mode=export: a Lightning checkpoint (resume=..., default last), or the mean of ``average`` of them, -> the
    model file."""
    module = build_model(cfg, tokenizer)
    step = _restore_average(module, cfg, cfg.resume)
    module.export(export_path)
    return step


def main(argv: Sequence[str] | None = None) -> RunResult:
    cfg = parse_recipe_args(TrainConfig, argv, __doc__.split("\n\n")[0])
    export_path = prepare_run(cfg)
    step = 0
    if cfg.mode != "evaluate":
        init = read_init_model(cfg) if cfg.mode == "train" else None
        tokenizer = get_tokenizer(cfg, init)
        if cfg.mode == "train":
            if not (cfg.data.train or cfg.data.shar_dir) or not cfg.data.dev:
                raise ConfigError("data.train (or data.shar_dir) and data.dev need at least one manifest each")
            step = train(cfg, tokenizer, export_path, init)
        else:
            step = export_checkpoint(cfg, tokenizer, export_path)
    if rank_zero_only.rank != 0:  # DDP: only rank 0 exports and evaluates
        return RunResult(export_path, {}, step)
    if cfg.mode != "evaluate":
        print(f"exported {export_path} ({export_path.stat().st_size / 2**20:.1f} MiB) at step {step}")
    if cfg.mode == "export":
        return RunResult(export_path, {}, step)
    return RunResult(export_path, evaluate(export_path, cfg), step)


if __name__ == "__main__":
    main()
