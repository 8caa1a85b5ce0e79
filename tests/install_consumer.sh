#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds examples/consumer against
# the installed package twice (CMake's find_package and pkg-config) and runs both.
# usage: install_consumer.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
trap 'echo "install_consumer: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
build=$1
src=$2
work=$(mktemp -d /tmp/vae-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -L "$work/prefix/lib/libvae.so.0" || { echo "no SONAME link libvae.so.0 installed"; exit 1; }
# (awk reads all of objdump's output: `grep -q` would close the pipe early and, under
# pipefail, fail the check whenever objdump was still writing)
soname=$(objdump -p "$work/prefix/lib/libvae.so" | awk '$1 == "SONAME" {print $2}')
[[ "$soname" == libvae.so.0 ]] || { echo "libvae.so has SONAME '$soname', expected libvae.so.0"; exit 1; }
cmake -S "$src/examples/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$work/consumer" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/consumer/vae_consumer"
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" g++ "$src/examples/consumer/main.cpp" -o "$work/consumer_pc" \
  $(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs vae)
"$work/consumer_pc"
"$work/prefix/bin/vae" train --help >/dev/null
echo "installed package: find_package(vae) and pkg-config consumers built and ran"
