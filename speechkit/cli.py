"""The ``speechkit`` command line (also ``python -m speechkit``).

Each subcommand is a row of :data:`COMMANDS`: a dataclass that holds its options and a function that takes
that dataclass and returns a printable summary. The dataclass fields become ``--flags`` (underscores become
dashes; ``help`` comes from the field's metadata; a field without a default is a required option unless it is
named positional), so the options a user types and the Python API are the same thing. ``--config FILE.yaml``
loads values for the same fields from YAML; flags given on the command line win. Only the chosen command's
module is imported, so ``speechkit --help`` stays fast.

Run ``speechkit --help`` for the list of commands and ``speechkit <command> --help`` for the options.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from speechkit import __version__


@dataclass(frozen=True)
class Command:
    """One CLI subcommand: ``schema`` and ``run`` are ``"module:attribute"`` strings resolved on use."""

    name: str
    help: str
    schema: str
    run: str
    positional: tuple[str, ...] = ()
    epilog: str = ""


COMMANDS: tuple[Command, ...] = (
    Command(
        "prepare synth",
        "build a speech corpus with the speech synthesisers Debian ships (16 kHz wav + NeMo manifests + cuts)",
        "speechkit.data.synth:SynthConfig",
        "speechkit.data.synth:prepare_synth",
        epilog="example: speechkit prepare synth --out-dir data/synth_en --hours 1",
    ),
    Command(
        "prepare librispeech",
        "write NeMo manifests and Lhotse cuts for a folder in LibriSpeech's layout",
        "speechkit.data.librispeech:LibriSpeechConfig",
        "speechkit.data.librispeech:prepare_librispeech",
        positional=("corpus_dir",),
        epilog="example: speechkit prepare librispeech /data/LibriSpeech --out-dir data/librispeech",
    ),
    Command(
        "prepare nemo",
        "import and validate NeMo JSON-lines manifest(s): clean manifest + Lhotse cuts + report",
        "speechkit.data.nemo_import:NemoImportConfig",
        "speechkit.data.nemo_import:import_nemo_manifest",
        positional=("manifest",),
        epilog="example: speechkit prepare nemo train.json --out-dir data/mycorpus --skip-bad",
    ),
    Command(
        "prepare librivox",
        "NeMo manifest of the 5 real LibriVox utterances Debian's pocketsphinx-testdata ships (16 kHz wav + cuts)",
        "speechkit.data.librivox:LibriVoxConfig",
        "speechkit.data.librivox:prepare_librivox",
        epilog="example: speechkit prepare librivox --out-dir data/librivox",
    ),
    Command(
        "prepare vad",
        "frame-labelled VAD mixtures (speech between silences, noise, tones, reverb) from a speech manifest",
        "speechkit.data.vad_mixtures:VadMixtureConfig",
        "speechkit.data.vad_mixtures:prepare_vad",
        epilog="example: speechkit prepare vad --speech data/synth_en/train.json --out-dir data/vad --hours 2",
    ),
    Command(
        "tokenizer train",
        "train a SentencePiece BPE or unigram tokenizer on the texts of NeMo manifests",
        "speechkit.commands:TokenizerTrainCommand",
        "speechkit.commands:train_tokenizer_command",
        positional=("manifest",),
        epilog="example: speechkit tokenizer train data/synth_en/train.json --out-dir data/tok --vocab-size 256",
    ),
    Command(
        "tokenizer encode",
        "show how a trained tokenizer splits text into pieces and ids",
        "speechkit.commands:TokenizerEncodeCommand",
        "speechkit.commands:encode_command",
        positional=("text",),
    ),
    Command(
        "info",
        "summarise NeMo manifest(s): hours, utterances, durations, speakers, languages, characters",
        "speechkit.commands:InfoCommand",
        "speechkit.commands:info_command",
        positional=("manifest",),
        epilog="example: speechkit info manifests/tiny/train.json",
    ),
    Command(
        "features",
        "compute log-mel features of audio files and print their shape and statistics",
        "speechkit.commands:FeaturesCommand",
        "speechkit.commands:features_command",
        positional=("audio",),
    ),
    Command(
        "transcribe",
        "transcribe audio files with an ASR model (text, or JSON lines with token and word timestamps)",
        "speechkit.inference.commands:TranscribeCommand",
        "speechkit.inference.commands:transcribe_command",
        positional=("files",),
        epilog="example: speechkit transcribe --model exp/tdt/model.safetensors --json a.wav b.flac",
    ),
    Command(
        "stream",
        "streaming recognition of an audio file (optionally in simulated real time) or of raw PCM on stdin",
        "speechkit.inference.stream_cli:StreamCommand",
        "speechkit.inference.stream_cli:stream_command",
        positional=("file",),
        epilog="example: speechkit stream --model exp/tdt_streaming/model.safetensors --realtime --json a.wav; "
               "arecord -f S16_LE -r 16000 -c 1 | speechkit stream -",
    ),
    Command(
        "serve",
        "streaming recognition server: many clients over WebSocket, decoded together in batches",
        "speechkit.inference.server:ServeCommand",
        "speechkit.inference.server:serve_command",
        epilog="protocol: connect to ws://HOST:PORT/asr (query ?sample_rate=8000 for other rates; with a token: "
               "header 'Authorization: Bearer TOKEN' or ?token=TOKEN, else HTTP 401); send binary messages of raw "
               "s16le mono PCM, then the text {\"type\": \"end\"} (or EOS). The server sends JSON text: "
               "{\"type\": \"partial\"|\"final\", \"segment\", \"text\", \"start\", \"end\", \"tokens\"}, "
               "a final per segment and at the end, then closes; errors are {\"type\": \"error\", \"code\", "
               "\"message\"}. GET /health returns JSON status and counters. "
               "example: SPEECHKIT_SERVE_TOKEN=secret speechkit serve --model exp/tdt_streaming/model.safetensors "
               "--port 8765; client: python -c \"from speechkit.inference.client import transcribe_file; "
               "print(transcribe_file('ws://127.0.0.1:8765/asr', 'a.wav', token='secret')[-1]['text'])\"",
    ),
    Command(
        "eval-asr",
        "word and character error rates and speed (RTFx) of an ASR model on a NeMo manifest",
        "speechkit.inference.commands:EvalASRCommand",
        "speechkit.inference.commands:eval_asr_command",
        positional=("manifest",),
        epilog="example: speechkit eval-asr --model exp/tdt/model.safetensors --group-by engine data/synth_en/test.json",
    ),
    Command(
        "data estimate-bins",
        "bucket bins from manifest metadata: 1-D duration boundaries, or 2-D [duration, tokens] with --tokenizer",
        "speechkit.data.bins:EstimateBinsCommand",
        "speechkit.data.bins:estimate_bins_command",
        positional=("manifest",),
        epilog="example: speechkit data estimate-bins data/train.json --buckets 30 --sub-buckets 2 --tokenizer tok/",
    ),
    Command(
        "data oomptimize",
        "largest batch size per bucket whose training step fits (GPU, or a CPU memory budget)",
        "speechkit.data.oomptimizer:OOMptimizeCommand",
        "speechkit.data.oomptimizer:oomptimize_command",
        epilog="example: speechkit data oomptimize --recipe recipes/asr/fastconformer_transducer/conf/tdt.yaml "
               "--buckets '[[5,40],[10,80]]' --memory-budget-gb 8",
    ),
    Command(
        "vad",
        "speech segments of audio files with a MarbleNet VAD model (start/end lines, or JSON lines)",
        "speechkit.vad.commands:VadCommand",
        "speechkit.vad.commands:vad_command",
        positional=("files",),
        epilog="example: speechkit vad --model exp/vad/model.safetensors --json a.wav",
    ),
    Command(
        "lid",
        "spoken language of audio files with a TitaNet LID model (top languages with probabilities, or JSON lines)",
        "speechkit.lid.commands:LidCommand",
        "speechkit.lid.commands:lid_command",
        positional=("files",),
        epilog="example: speechkit lid --model exp/lid/model.safetensors --top-k 3 --json a.wav b.flac",
    ),
    Command(
        "demo",
        "build a small corpus and show what speechkit sees in it (stats, features, tokenizer)",
        "speechkit.demo:DemoConfig",
        "speechkit.demo:run_demo",
    ),
)


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _add_field(
    parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any, positional: bool, enforce_required: bool
) -> None:
    tp, optional = _unwrap_optional(tp)
    help_text = f.metadata.get("help", "")
    has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    kwargs: dict[str, Any] = {"help": help_text + (f" (default: {default})" if has_default else "")}
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence):
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
        inner, _ = _unwrap_optional(inner)
        kwargs.update(nargs="+" if not has_default else "*", type=inner)
    elif tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif tp in (int, float, str):
        kwargs["type"] = tp
    else:
        kwargs["type"] = str
    if positional:
        if has_default:
            kwargs["nargs"] = "?" if "nargs" not in kwargs else "*"
        parser.add_argument(f.name, metavar=f.name.upper(), default=argparse.SUPPRESS, **kwargs)
        return
    flag = "--" + f.name.replace("_", "-")
    if not has_default and not optional:
        # With --config the YAML may supply the value; load_config then reports what is still missing.
        kwargs["required"] = enforce_required
        kwargs["help"] = help_text + " (required)"
    parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, **kwargs)


def build_parser(cmd: Command, enforce_required: bool = True) -> tuple[argparse.ArgumentParser, type]:
    """The argparse parser of one command, with one option per field of its schema dataclass."""
    schema = _resolve(cmd.schema)
    parser = argparse.ArgumentParser(
        prog=f"speechkit {cmd.name}", description=cmd.help, epilog=cmd.epilog or None,
    )
    hints = typing.get_type_hints(schema)
    # The command's own fields first, then those of a shared base (e.g. decoding flags), so --help leads with what
    # is particular to the command.
    own = schema.__dict__.get("__annotations__", {})
    for f in sorted(dataclasses.fields(schema), key=lambda f: f.name not in own):
        if f.metadata.get("cli", True):
            _add_field(parser, f, hints[f.name], f.name in cmd.positional, enforce_required)
    parser.add_argument("--config", dest="_config", metavar="FILE.yaml", default=None,
                        help="read option values from a YAML file (command-line flags win)")
    return parser, schema


def _top_parser() -> argparse.ArgumentParser:
    lines = []
    width = max(len(c.name) for c in COMMANDS)
    for c in COMMANDS:
        lines.append(f"  {c.name.ljust(width)}  {c.help}")
    parser = argparse.ArgumentParser(
        prog="speechkit",
        description="speechkit: train and run speech models (ASR, VAD, language ID) offline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(lines) + "\n\nRun 'speechkit <command> --help' for its options.",
    )
    parser.add_argument("--version", action="version", version=f"speechkit {__version__}")
    parser.add_argument("command", nargs="*", help="the command (see below)")
    return parser


def _match(argv: list[str]) -> tuple[Command | None, int]:
    words: list[str] = []
    for tok in argv:
        if tok.startswith("-"):
            break
        words.append(tok)
    for n in range(len(words), 0, -1):
        name = " ".join(words[:n])
        for c in COMMANDS:
            if c.name == name:
                return c, n
    return None, 0


def run_command(cmd: Command, args: list[str]) -> Any:
    """Parse ``args`` for ``cmd``, build its config dataclass and call its function; returns its result."""
    from speechkit.config import ConfigError, load_config

    with_yaml = any(a == "--config" or a.startswith("--config=") for a in args)
    parser, schema = build_parser(cmd, enforce_required=not with_yaml)
    ns = vars(parser.parse_args(args))
    config_file = ns.pop("_config", None)
    try:
        cfg = load_config(schema, config_file, values=ns)
    except ConfigError as err:
        parser.error(str(err))
    fn: Callable[[Any], Any] = _resolve(cmd.run)
    return fn(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``speechkit`` console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd, n = _match(argv)
    if cmd is None:
        parser = _top_parser()
        ns = parser.parse_args(argv)
        if ns.command:
            prefix = " ".join(ns.command)
            group = [c.name for c in COMMANDS if c.name.startswith(prefix + " ")]
            if group:
                parser.error(f"'speechkit {prefix}' needs a subcommand: {', '.join(group)}")
            near = [c.name for c in COMMANDS if c.name.split()[0] == ns.command[0]]
            hint = f"; did you mean: {', '.join(near)}" if near else ""
            parser.error(f"unknown command '{prefix}'{hint}")
        parser.print_help()
        return 0
    try:
        result = run_command(cmd, argv[n:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        # Errors raised for bad input carry their own explanation (file, line, field): show it plainly.
        print(f"speechkit {cmd.name}: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
