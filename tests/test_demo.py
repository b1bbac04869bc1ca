"""`speechkit demo` (what `make demo` runs) builds a corpus and reports stats, features and a tokenizer."""

from __future__ import annotations

import re
import shutil

import pytest

from speechkit import cli

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the Debian voices (make setup)")


def test_demo_reports_every_section(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out-dir", str(out), "--minutes", "0.5", "--vocab-size", "40", "--num-jobs", "1"]) == 0
    printed = capsys.readouterr().out
    for title in ("1. corpus built", "2. what is in it", "3. log-mel features", "4. BPE tokenizer"):
        assert f"== {title}" in printed
    assert "decoded back:" in printed and (out / "tokenizer" / "tokenizer.model").is_file()
    # A second run reuses the corpus instead of synthesising it again.
    assert cli.main(["demo", "--out-dir", str(out), "--minutes", "0.5", "--vocab-size", "40", "--num-jobs", "1"]) == 0
    reused = re.search(r"(\d+) reused from an earlier run", capsys.readouterr().out)
    assert reused and int(reused.group(1)) > 0
