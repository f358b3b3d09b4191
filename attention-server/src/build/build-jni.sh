#!/usr/bin/env bash
# Builds the CUDA backend's JNI shim (src/main/c/distca_tma.c: cuTensorMapEncodeTiled, which JCuda
# does not bind) into OUTPUT_DIR/libdistca_tma-linux-x86_64.so, packaged into the jar beside the
# kernels.
#
#   build-jni.sh SOURCE_DIR OUTPUT_DIR
#
# Without a C compiler, JDK headers or on another platform it says so and exits 0: the backend then
# runs the forward without the warp-specialized kernel. A compile error with a compiler present
# fails the build. The library is rebuilt only when its source is newer.
set -euo pipefail
src_dir=${1:?usage: build-jni.sh SOURCE_DIR OUTPUT_DIR}
out_dir=${2:?usage: build-jni.sh SOURCE_DIR OUTPUT_DIR}
lib="$out_dir/libdistca_tma-linux-x86_64.so"

not_built() {
  echo "[distca] JNI shim NOT built: $1. The CUDA backend will not use the warp-specialized forward."
  exit 0
}
[[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] || not_built "not linux-x86_64"
cc="${CC:-$(command -v gcc || command -v cc || true)}"
[[ -n "$cc" ]] || not_built "no C compiler (gcc or cc)"
java_home="${JAVA_HOME:-}"
if [[ -z "$java_home" ]]; then
  javac="$(command -v javac || true)"
  [[ -n "$javac" ]] && java_home="$(dirname "$(dirname "$(readlink -f "$javac")")")"
fi
[[ -n "$java_home" && -f "$java_home/include/jni.h" ]] || not_built "no JDK headers (JAVA_HOME/include/jni.h)"

mkdir -p "$out_dir"
if [[ -f "$lib" && ! "$src_dir/distca_tma.c" -nt "$lib" ]]; then
  echo "[distca] JNI shim up to date: $lib"
  exit 0
fi
"$cc" -std=c11 -O2 -fPIC -shared -Wall -Wextra -Werror \
  -I "$java_home/include" -I "$java_home/include/linux" \
  -o "$lib.tmp" "$src_dir/distca_tma.c" -ldl
mv -f "$lib.tmp" "$lib"
echo "[distca] JNI shim built: $lib"
