#!/usr/bin/env bash
# Builds the CUDA kernels of native/ into one fatbin for the attention server's jar.
#
#   build-cuda-kernels.sh NATIVE_DIR OUTPUT_DIR
#
# Writes OUTPUT_DIR/distca_attn.fatbin (SASS for sm_80 and sm_90a plus compute_90a PTX). Missing nvcc
# or missing sources are not errors: the script says the kernels were not built and exits 0, and the
# server then runs on its CPU backend. A compile error with nvcc present fails the build, because a
# jar without kernels would silently lose the GPU path on every machine.
#
# NATIVE_DIR/build.sh, where present, owns the compile (its flags, its NATIVE_DIR/build/ output);
# otherwise nvcc runs here on NATIVE_DIR/src/*.cu. Environment: NVCC (explicit compiler), CUDA_HOME,
# DISTCA_NVCC_FLAGS (extra nvcc flags), DISTCA_CUDA_SKIP=1 (skip). The fatbin is rebuilt only when a
# file under NATIVE_DIR (outside NATIVE_DIR/build) is newer than it.
set -euo pipefail

native_dir=${1:?usage: build-cuda-kernels.sh NATIVE_DIR OUTPUT_DIR}
out_dir=${2:?usage: build-cuda-kernels.sh NATIVE_DIR OUTPUT_DIR}
fatbin="$out_dir/distca_attn.fatbin"

not_built() {
  echo "[distca] CUDA kernels were NOT built: $1. The attention server will fall back to the CPU backend."
  exit 0
}

if [[ "${DISTCA_CUDA_SKIP:-0}" == 1 ]]; then
  not_built "DISTCA_CUDA_SKIP=1"
fi

nvcc=""
for candidate in "${NVCC:-}" "$(command -v nvcc 2>/dev/null || true)" \
    "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    nvcc=$candidate
    break
  fi
done
[[ -n "$nvcc" ]] || not_built "nvcc not found (looked at \$NVCC, PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)"

[[ -d "$native_dir/src" ]] || not_built "no kernel sources at $native_dir/src"
shopt -s nullglob
sources=("$native_dir"/src/*.cu)
shopt -u nullglob
(( ${#sources[@]} > 0 )) || not_built "no .cu files in $native_dir/src"

mkdir -p "$out_dir"
if [[ -f "$fatbin" ]] && [[ -z "$(find "$native_dir" -path "$native_dir/build" -prune -o -type f -newer "$fatbin" -print -quit)" ]]; then
  echo "[distca] CUDA kernels up to date: $fatbin"
  exit 0
fi

gencode=(
  -gencode=arch=compute_80,code=sm_80
  -gencode=arch=compute_90a,code=sm_90a
  -gencode=arch=compute_90a,code=compute_90a
)
tmp="$fatbin.tmp"
rm -f "$tmp"
echo "[distca] building CUDA kernels with $nvcc ($("$nvcc" --version | tail -1))"

if [[ -f "$native_dir/build.sh" ]]; then
  # The kernel build owns its flags and writes NATIVE_DIR/build/distca_attn.fatbin; extra arguments
  # are extra nvcc flags.
  # shellcheck disable=SC2086 # DISTCA_NVCC_FLAGS is a list of flags
  started="$(mktemp)"
  trap 'rm -f "$started"' EXIT
  NVCC="$nvcc" bash "$native_dir/build.sh" ${DISTCA_NVCC_FLAGS:-}
  built="$native_dir/build/distca_attn.fatbin"
  # Judge by the output, not only the exit status: a stale fatbin from an earlier build must not pass.
  if [[ ! -f "$built" || ! "$built" -nt "$started" ]]; then
    echo "[distca] CUDA kernel build FAILED: $native_dir/build.sh left no fresh $built (compiler errors above)." \
      "Fix native/ or build with -Ddistca.cuda.skip=true." >&2
    exit 1
  fi
  cp "$built" "$tmp"
else
  unit="$native_dir/src/${sources[0]##*/}"
  if (( ${#sources[@]} > 1 )); then
    # One module holds every kernel, so several translation units are compiled as one (unity build).
    unit="$out_dir/distca_attn_unity.cu"
    : > "$unit"
    for source in "${sources[@]}"; do
      echo "#include \"$(cd "$(dirname "$source")" && pwd)/$(basename "$source")\"" >> "$unit"
    done
  fi
  # shellcheck disable=SC2086 # DISTCA_NVCC_FLAGS is a list of flags
  if ! "$nvcc" -fatbin -O3 -std=c++17 "${gencode[@]}" -I "$native_dir/include" \
      ${DISTCA_NVCC_FLAGS:-} -o "$tmp" "$unit"; then
    echo "[distca] CUDA kernel build FAILED (compiler errors above). Fix native/ or build with -Ddistca.cuda.skip=true." >&2
    exit 1
  fi
fi

[[ -s "$tmp" ]] || { echo "[distca] kernel build produced no fatbin at $tmp" >&2; exit 1; }
mv -f "$tmp" "$fatbin"
echo "[distca] CUDA kernels built: $fatbin ($(wc -c < "$fatbin") bytes)"
