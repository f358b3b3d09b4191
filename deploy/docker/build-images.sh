#!/usr/bin/env bash
# Builds the images the Kubernetes manifests use, from a packaged build (cli/target):
#   distca/distca:<version>       JRE base (eclipse-temurin:17-jre): dispatcher, CPU servers, loadtest
#   distca/distca-cuda:<version>  CUDA runtime + JRE base: GPU attention servers
#
#   deploy/docker/build-images.sh [version]     (default 0.1.0; REGISTRY=my.registry/ prefixes the names)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version="${1:-0.1.0}"
registry="${REGISTRY:-}"
[[ -f "$here/cli/target/distca-cli.jar" && -d "$here/cli/target/lib" ]] || (cd "$here" && mvn -q -B -DskipTests package)
docker build -f "$here/deploy/docker/Dockerfile" -t "${registry}distca/distca:$version" "$here/cli/target"
docker build -f "$here/deploy/docker/Dockerfile.cuda-base" -t "${registry}distca/cuda-jre-base:12.6" "$here/deploy/docker"
docker build -f "$here/deploy/docker/Dockerfile" --build-arg "BASE_IMAGE=${registry}distca/cuda-jre-base:12.6" \
  -t "${registry}distca/distca-cuda:$version" "$here/cli/target"
