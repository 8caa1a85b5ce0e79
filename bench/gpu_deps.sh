#!/usr/bin/env bash
# Run HERE (on the CPU machine, which reaches Debian's archive) before a GPU session: the GPU
# machine has nvcc, cmake, ninja and PyTorch but no package registry, and lacks libvae's
# libraries and the data. This downloads their Debian packages into .gpu-deps/ (ignored by
# git); name .gpu-deps in the device tool's `carry` list and bench/gpu_suite.sh unpacks them
# there into /opt/vae-deps (never into /).
#   bash bench/gpu_deps.sh && du -sh .gpu-deps      # about 45 MB; the carry limit is 64 MB
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0 libsleef-dev libsleef3 libcli11-dev nlohmann-json3-dev
          libgtest-dev libbenchmark-dev libbenchmark1debian libpng-dev libpng16-16 zlib1g-dev libfreetype-dev
          libfreetype6 libbrotli1 fonts-dejavu-core dataset-fashion-mnist)
mkdir -p .gpu-deps
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu-deps/' "$exclude" 2>/dev/null || echo '/.gpu-deps/' >> "$exclude"
cd .gpu-deps
rm -f ./*.deb
apt-get download "${packages[@]}"
ls -1 ./*.deb | wc -l | xargs echo "downloaded packages:"
