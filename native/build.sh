#!/usr/bin/env bash
# Builds native/build/distca_attn.fatbin: SASS for sm_80 and sm_90a, plus compute_90a PTX.
# Prints ptxas resource usage (registers, shared memory, spills) for every kernel.
# Usage: native/build.sh [extra nvcc flags...]   (NVCC=/path/to/nvcc to pick a compiler)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${NVCC:-nvcc}"
if ! command -v "$nvcc" >/dev/null 2>&1; then
  echo "native/build.sh: nvcc not found; kernels not built" >&2
  exit 2
fi
# OUTPUT and GENCODE may be overridden to build benchmark variants (e.g. sm_90a only); LINEINFO=0
# leaves out the line tables (-lineinfo: for profilers; ptxas reports the same registers and spills
# without them, and the sm_90a image is a quarter of the bytes).
output="${OUTPUT:-$here/build/distca_attn.fatbin}"
lineinfo=-lineinfo
if [[ "${LINEINFO:-1}" == 0 ]]; then
  lineinfo=
fi
gencode="${GENCODE:--gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90a,code=compute_90a}"
mkdir -p "$(dirname "$output")"
# (pipefail: the pipeline fails when nvcc does, whatever grep finds)
# shellcheck disable=SC2086
if ! "$nvcc" --fatbin -std=c++17 -O3 $lineinfo $gencode \
  -Xptxas -v \
  -I "$here/include" \
  "$@" \
  -o "$output" "$here/src/distca_attn.cu" 2>&1 | tee "$output.ptxas.log" |
  { grep -E "Compiling entry|registers|spill|error|warning" || true; }; then
  echo "native/build.sh: nvcc failed (see $output.ptxas.log)" >&2
  exit 1
fi
if grep -E "[1-9][0-9]* bytes spill stores" "$output.ptxas.log" >/dev/null; then
  echo "native/build.sh: WARNING: register spills (see $output.ptxas.log)" >&2
fi
echo "built $output ($(stat -c %s "$output") bytes)"
