#!/usr/bin/env bash
# Installs the VAD peers into their own virtual environment, .peers/vad (git-ignored), without torch:
#
#   webrtcvad   (PyPI webrtcvad-wheels: the WebRTC GMM VAD, C; decisions per 10/20/30 ms frame, modes 0-3)
#   silero-vad  (installed with --no-deps: only its ONNX model file, silero_vad/data/silero_vad.onnx, is used; it
#                runs on onnxruntime + numpy in bench/peers/vad_peers.py, so torch is never needed)
#
#   bash bench/peers/install_vad.sh            # ~25 MB download
#   .peers/vad/bin/python bench/peers/vad_peers.py --list wavs.txt --out scores.json
#   .venv/bin/python bench/vad.py
#
# Every package is pinned, so the peer numbers in recipes/vad/marblenet/RESULTS.md can be reproduced. A stamp file
# records what was installed, so a second run does nothing. Delete .peers/vad to reinstall.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=.peers/vad
STAMP="$VENV/.speechkit-installed"
# onnxruntime and what it pulls in (pinned as pip resolved them on Python 3.11, 2026-11), and webrtcvad.
RUNTIME="onnxruntime==1.32.0 numpy==2.4.6 flatbuffers==25.12.19 packaging==26.3 protobuf==7.36.2
  webrtcvad-wheels==2.0.14.post1"
# silero-vad's own dependencies (torch, torchaudio) are left out on purpose: only its model file is used.
NODEPS="silero-vad==6.2.3"
WANT="$(echo $RUNTIME) nodeps: $NODEPS"

die() { echo "install_vad.sh: error: $*" >&2; exit 1; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "VAD peers already installed in $VENV; delete $VENV to reinstall"
  exit 0
fi

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # word splitting of the package lists is intended
"$VENV/bin/python" -m pip install -q $RUNTIME
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --no-deps $NODEPS
"$VENV/bin/python" -c "import torch" 2>/dev/null && die "torch is installed in $VENV; it must not be (delete $VENV)"

# Fail here, not in a benchmark, if a peer does not load or run (one second of silence each).
"$VENV/bin/python" bench/peers/vad_peers.py --self-test || die "bench/peers/vad_peers.py --self-test failed"
echo "$WANT" > "$STAMP"
echo "VAD peers installed in $VENV"
