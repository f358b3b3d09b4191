#!/usr/bin/env bash
# Builds the JRE base image from this machine's JDK, without any registry: jlink a small runtime,
# add the shared libraries it links against (the loader, libc, libm, libgcc_s, libstdc++, libz),
# and `docker import` the root filesystem. The container tests build the application image (the
# same deploy/docker/Dockerfile users build on eclipse-temurin) on top of it.
#
#   deploy/docker/build-local-base.sh [image-tag]      (default: distca/jre-base:local)
#
# Idempotent: an existing image with the tag is left alone unless DISTCA_REBUILD_BASE=1.
set -euo pipefail
tag="${1:-distca/jre-base:local}"
if [[ "${DISTCA_REBUILD_BASE:-}" != "1" ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already present"
  exit 0
fi
java_home="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac || command -v java)")")")}"
jlink="$java_home/bin/jlink"
[[ -x "$jlink" ]] || { echo "no jlink under $java_home (set JAVA_HOME to a JDK 17)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root/opt/java" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
# Modules the services use: JMX/management (Micrometer's JVM metrics), the JDK HTTP server (admin
# port), java.sql (Jackson and Arrow reference its types), jdk.unsupported (Netty, Arrow), naming
# and zipfs (class-path scanning), java.desktop (the plan tools' charts).
"$jlink" --add-modules java.base,java.logging,java.management,jdk.management,java.naming,jdk.unsupported,jdk.httpserver,java.sql,java.xml,java.desktop,jdk.zipfs,jdk.crypto.ec \
  --strip-debug --no-man-pages --no-header-files --compress=2 --output "$root/opt/java/openjdk"

# Every shared library the runtime links against, at the path the loader resolves it to here.
libs="$( { ldd "$root/opt/java/openjdk/bin/java"; find "$root/opt/java/openjdk" -name '*.so' -exec ldd {} \; ; } 2>/dev/null \
  | awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\/lib/ {print $1}' | sort -u)"
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\ndistca:x:1000:1000:distca:/tmp:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\ndistca:x:1000:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"

tar -C "$root" -c . | docker import \
  --change 'ENV JAVA_HOME=/opt/java/openjdk' \
  --change 'ENV PATH=/opt/java/openjdk/bin:/usr/bin:/bin' \
  - "$tag" >/dev/null
echo "built base image $tag ($(du -sh "$root" | cut -f1))"
