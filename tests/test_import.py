"""`import speechkit` must stay light: no numba, lhotse, lightning or librosa (and not even torch)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["numba", "lhotse", "lightning", "pytorch_lightning", "librosa", "torch"]


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_speechkit_is_light():
    assert _loaded_after("import speechkit") == []


def test_cli_and_package_inits_are_light():
    code = (
        "import speechkit.cli, speechkit.config, speechkit.audio, speechkit.text, speechkit.data\n"
        "import speechkit.data.manifests, speechkit.text.normalize"
    )
    assert _loaded_after(code) == []


def test_help_imports_no_command_module():
    code = "import speechkit.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []
