#!/usr/bin/env bash
# Everything a lent GPU session should check, in one go (../shared/gpu/README.md): the CUDA tests, then the GPU
# timings. Each step's full log goes to $OUT; a short summary is printed last.
#
#   On the CPU machine:  ../shared/gpu/fetch_wheels.sh          (fills .whl/, git-ignored)
#   On the GPU machine:  bash bench/gpu_checks.sh [tests|bench|all]   (device tool: carry [".whl"])
#
# tests: `pytest -m cuda` over the whole suite (Numba CUDA loss kernels, GPU features and augmentation, greedy
#        decoding on the GPU, CUDA-graph decoding, the OOMptimizer's real-memory search, transcribe on cuda).
# bench: bench/decoding.py on the GPU with and without CUDA graphs (synthetic weights), bench/losses.py with its
#        CUDA shapes. JSON results land in $OUT (copy them to bench/results/ when they are to be kept).
set -uo pipefail
what=${1:-all}
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1
fi
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
summary=()
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember the last line and the exit status
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-10s rc=%-3s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" "$(tail -n 1 "$OUT/$name.log")")")
}
if [ "$what" = tests ] || [ "$what" = all ]; then
  step pytest python3 -m pytest -m cuda -q -p no:cacheprovider tests
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  step decoding python3 bench/decoding.py --device cuda --cuda-graphs --batch 1 16 --utterances 16 \
    --out "$OUT/decoding_cuda.json"
  step losses python3 bench/losses.py --shapes large,gpu --no-compile --out "$OUT/losses_cuda.json"
fi
echo "== logs in $OUT"
[ -f "$OUT/decoding.log" ] && grep -E "^(rnnt|tdt|multiblank) " "$OUT/decoding.log"
printf '%s\n' "${summary[@]}"
