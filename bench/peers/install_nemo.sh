#!/usr/bin/env bash
# Installs NVIDIA NeMo 3.0.0 (ASR extra) into its own virtual environment, .peers/nemo (git-ignored).
# NeMo is a peer used only to produce golden fixtures and benchmark comparisons; it never goes into .venv
# because it pins many packages of its own and weighs 5-6 GB.
#
#   bash bench/peers/install_nemo.sh            # first run: ~5-6 GB download, tens of minutes
#   .peers/nemo/bin/python tests/fixtures/make_mel_golden.py
#
# A stamp file records what was installed, so a second run does nothing. Delete .peers/nemo to reinstall.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=.peers/nemo
TORCH_VERSION=2.11.0
NEMO_VERSION=3.0.0
STAMP="$VENV/.speechkit-installed"
WANT="nemo-toolkit[asr]==$NEMO_VERSION torch==$TORCH_VERSION torchaudio==$TORCH_VERSION"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "NeMo peer already installed in $VENV ($WANT); delete $VENV to reinstall"
  exit 0
fi

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned like speechkit's own, so NeMo's resolver keeps this exact build and the
# golden features are computed with the same torch.stft/mel code path speechkit uses.
"$VENV/bin/python" -m pip install "torch==$TORCH_VERSION" "torchaudio==$TORCH_VERSION"
"$VENV/bin/python" -m pip install "nemo-toolkit[asr]==$NEMO_VERSION" \
  "torch==$TORCH_VERSION" "torchaudio==$TORCH_VERSION"

# Fail here, not later in a fixture script, if the install is unusable.
"$VENV/bin/python" -c "
import nemo, torch
from nemo.collections.asr.modules import AudioToMelSpectrogramPreprocessor
assert nemo.__version__ == '$NEMO_VERSION', nemo.__version__
print('nemo', nemo.__version__, 'torch', torch.__version__)
"
echo "$WANT" > "$STAMP"
echo "NeMo peer installed in $VENV"
