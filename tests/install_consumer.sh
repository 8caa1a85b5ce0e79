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
# The package leaves the language standard to the consumer: C++20 stays C++20 (pkg-config's
# flags come after the consumer's own here, as in the README's line).
printf '#include <vae/vae.h>\n#if __cplusplus < 202002L\n#error "the package overrode -std=c++20"\n#endif\nint main() { return vae::ModelConfig{}.latent > 0 ? 0 : 1; }\n' > "$work/cxx20.cpp"
g++ -std=c++20 "$work/cxx20.cpp" -o "$work/cxx20" \
  $(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs vae) || { echo "C++20 consumer did not build"; exit 1; }
"$work/cxx20"
"$work/prefix/bin/vae" train --help >/dev/null
# README.md's "Using the library": its C++ blocks build against the installed package with the
# pkg-config line it gives (the first is a whole program; the second runs inside a main()),
# and the second runs when Fashion-MNIST is installed.
awk '/^## Using the library/{p=1; next} /^## /{p=0} p' "$src/README.md" > "$work/using.md"
awk '/^```cpp/{n++; on=1; next} /^```/{on=0} on && n==1' "$work/using.md" > "$work/readme_demo.cpp"
{ printf '#include <vae/vae.h>\n#include <iostream>\n#include <memory>\nint main() {\n'
  awk '/^```cpp/{n++; on=1; next} /^```/{on=0} on && n==2' "$work/using.md"
  printf '}\n'; } > "$work/readme_lowlevel.cpp"
grep -q 'vae::train(' "$work/readme_demo.cpp" || { echo "README.md: no C++ example found under 'Using the library'"; exit 1; }
grep -q 'make_backend' "$work/readme_lowlevel.cpp" || { echo "README.md: no lower-level C++ example found"; exit 1; }
pc="$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs vae)"
for f in readme_demo readme_lowlevel; do
  g++ "$work/$f.cpp" $pc -o "$work/$f" || { echo "README.md's example ($f.cpp above) does not build"; exit 1; }
done
if [[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]]; then
  (cd "$work" && OMP_NUM_THREADS=2 ./readme_lowlevel) || { echo "README.md's lower-level example failed"; exit 1; }
  test -f "$work/my.safetensors" || { echo "README.md's lower-level example wrote no checkpoint"; exit 1; }
fi
echo "installed package: find_package(vae) and pkg-config consumers built and ran"
