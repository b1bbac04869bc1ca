# speechkit: `make demo` and `make test` work on a fresh Debian/Ubuntu machine (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .stamps/setup
# Debian packages: audio tools, the speech synthesisers and the texts `speechkit prepare synth` builds corpora from.
APT_PACKAGES := espeak-ng espeak-ng-data sox libsox-fmt-all ffmpeg flite festival festvox-kallpc16k \
	festvox-kdlpc16k festvox-us-slt-hts fortunes wamerican wordnet-base pocketsphinx-testdata
# Extra voices and texts for the multi-language corpus (`make setup-multilang`).
APT_MULTILANG := $(APT_PACKAGES) fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl wngerman wfrench \
	wspanish witalian festvox-ru festvox-italp16k festvox-suopuhe-lj festvox-czech-dita festival-czech \
	festvox-ca-ona-hts festival-ca festival-hi festvox-hi-nsk diatheke sword-text-kjv sword-text-sparv \
	wportuguese wdutch wpolish wcatalan wswedish wukrainian wdanish wnorwegian wbulgarian
# Voices from Debian's contrib and non-free components, for extra training voices (`make setup-extra-voices`;
# recipes/asr/fastconformer_transducer/RESULTS.md): SVOX Pico, the English MBROLA voices (en1 us1 us2 us3) and the
# MBROLA voices espeak-ng lets read English with another language's speaker (`--engines mbrola-accented`). Their
# audio is not shipped.
APT_EXTRA_VOICES := libttspico-utils mbrola mbrola-en1 mbrola-us1 mbrola-us2 mbrola-us3 mbrola-af1 mbrola-nl2 \
	mbrola-fr1 mbrola-fr4 mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6 mbrola-gr2 mbrola-hu1 \
	mbrola-pl1 mbrola-ro1 mbrola-sw1 mbrola-sw2
PYTEST_FAST := -m "not slow and not cuda"

.PHONY: setup setup-multilang setup-extra-voices demo test test-all bench peers peers-whisper peers-vad bench-asr-peers bench-vad clean-stamps

setup: $(STAMP)

# The stamp depends on what decides the installation, so a second `make setup` installs nothing.
$(STAMP): setup.cfg pyproject.toml Makefile
	@APT_PACKAGES="$(APT_PACKAGES)" bash .ci/apt-install
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "speechkit needs Python >= 3.11, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)
	@echo "setup done: $(VENV) (run 'make clean-stamps' to force a reinstall)"

setup-multilang: setup
	@APT_PACKAGES="$(APT_MULTILANG)" bash .ci/apt-install

setup-extra-voices: setup
	@APT_PACKAGES="$(APT_EXTRA_VOICES)" APT_COMPONENTS="contrib non-free" bash .ci/apt-install

demo: setup
	$(VENV)/bin/speechkit demo

test: setup
	$(PY) -m pytest $(PYTEST_FAST) -q

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/import_time.py
	$(PY) bench/synth.py
	$(PY) bench/losses.py

# Peer toolkits live in their own virtual environments under .peers/ (git-ignored), never in .venv.
peers: peers-whisper peers-vad
	bash bench/peers/install_nemo.sh

# Whisper tiny.en + base on faster-whisper (CPU, no torch): ~335 MB download.
peers-whisper:
	bash bench/peers/install_whisper.sh

# silero-vad (its ONNX model on onnxruntime, no torch) + webrtcvad: ~25 MB download.
peers-vad:
	bash bench/peers/install_vad.sh

# speechkit's bundled VAD against silero-vad and webrtcvad (held-out noise mixtures and LibriVox at clean/10/0 dB).
bench-vad: setup peers-vad
	$(VENV)/bin/speechkit prepare librivox --out-dir data/librivox
	$(PY) bench/vad.py

# Whisper on the real LibriVox clips and the tiny synthetic test set (WER, RTFx), scored by speechkit's WER.
bench-asr-peers: setup peers-whisper
	$(VENV)/bin/speechkit prepare librivox --out-dir data/librivox
	$(PY) bench/asr_peers.py data/librivox/librivox.json
	$(PY) bench/asr_peers.py manifests/tiny/test.json

clean-stamps:
	rm -rf .stamps
