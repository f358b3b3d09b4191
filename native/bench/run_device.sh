#!/usr/bin/env bash
# One device session: GPU facts, correctness, then benchmarks. Logs under $OUT (or ./out).
# Usage (repo root, fatbin prebuilt in native/build/): native/bench/run_device.sh [check|bench|all] [bench args...]
set -uo pipefail
out="${OUT:-out}"; mkdir -p "$out"
what="${1:-all}"; shift || true
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv | tee "$out/gpu.txt"
date -u +"%Y-%m-%dT%H:%M:%SZ" | tee -a "$out/gpu.txt"
rc=0
if [ "$what" = check ] || [ "$what" = all ]; then
  python3 native/bench/check.py 2>&1 | tee "$out/check.log"; rc=${PIPESTATUS[0]}
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  python3 native/bench/bench.py --markdown "$out/bench.md" "$@" 2>&1 | tee "$out/bench.log"
fi
exit $rc
