from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from speechkit import __version__, cli


@dataclass
class EchoOptions:
    files: list[str] = field(metadata={"help": "input files"})
    out_dir: str = field(metadata={"help": "where to write"})
    rate: float = field(default=1.0, metadata={"help": "a rate"})
    langs: list[str] = field(default_factory=lambda: ["en"], metadata={"help": "languages"})
    limit: int | None = field(default=None, metadata={"help": "optional limit"})
    fast: bool = field(default=False, metadata={"help": "go fast"})


def echo(opts: EchoOptions) -> str:
    return repr(opts)


ECHO = cli.Command("echo", "echo options", f"{__name__}:EchoOptions", f"{__name__}:echo", positional=("files",))


@pytest.fixture
def with_echo(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (ECHO,))


def test_fields_become_flags(with_echo, capsys):
    assert cli.main(["echo", "a.wav", "b.wav", "--out-dir", "o", "--rate", "0.5", "--langs", "de", "fr", "--fast"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == repr(EchoOptions(["a.wav", "b.wav"], "o", 0.5, ["de", "fr"], None, True))


def test_required_flag_and_type_errors(with_echo, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["echo", "a.wav"])
    assert e.value.code == 2 and "--out-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["echo", "a.wav", "--out-dir", "o", "--rate", "fast"])
    assert "invalid float value: 'fast'" in capsys.readouterr().err


def test_yaml_config_supplies_values_and_flags_win(with_echo, tmp_path, capsys):
    y = tmp_path / "o.yaml"
    y.write_text("out_dir: from_yaml\nrate: 2.0\n")
    assert cli.main(["echo", "x", "--config", str(y), "--rate", "3"]) == 0
    assert capsys.readouterr().out.strip() == repr(EchoOptions(["x"], "from_yaml", 3.0))
    y.write_text("out_dir: o\nrat: 2.0\n")
    with pytest.raises(SystemExit):
        cli.main(["echo", "x", "--config", str(y)])
    assert "unknown key 'rat'" in capsys.readouterr().err


def test_top_level_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for c in cli.COMMANDS:
        assert c.name in out and c.help in out


def test_unknown_and_incomplete_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prepare"])
    assert "needs a subcommand: prepare synth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["transcribez"])
    assert "unknown command 'transcribez'" in capsys.readouterr().err


def test_every_registered_command_builds_its_parser():
    for c in cli.COMMANDS:
        parser, schema = cli.build_parser(c)
        assert parser.prog == f"speechkit {c.name}"
        assert parser.format_help()


def test_console_entry_points():
    out = subprocess.run([sys.executable, "-m", "speechkit", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"speechkit {__version__}"
    exe = __import__("shutil").which("speechkit")
    if exe is None:  # pip install -e puts it next to the interpreter
        from pathlib import Path

        exe = str(Path(sys.executable).with_name("speechkit"))
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "prepare synth" in out.stdout
