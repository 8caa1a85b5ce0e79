#!/usr/bin/env bash
# Installs what vae needs from Debian 12's packages; only what is missing, so it is cheap
# to run again. python3-venv and python3-dev: the Python package (pip install . in a venv). With --test it adds what the test suite needs besides (PyTorch and numpy
# for the cross-check; clang and its sanitizer runtimes for the fuzz targets; Boost.Context
# for the CPU emulator of the GPU suites, tests/emu).
# The CUDA toolkit (nvcc optional, cuRAND required) is expected at /usr/local/cuda.
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config libopenblas-openmp-dev libsleef-dev libcli11-dev
          nlohmann-json3-dev zlib1g-dev libpng-dev libfreetype-dev fonts-dejavu-core libgtest-dev libbenchmark-dev
          dataset-fashion-mnist python3 python3-venv python3-dev libopenmpi-dev openmpi-bin)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(python3 python3-numpy python3-torch clang libclang-rt-14-dev binutils libboost-context-dev)
elif [[ -n "${1:-}" ]]; then
  echo "usage: $0 [--test]" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo=sudo
  echo "install_deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cuda=${CUDA_HOME:-/usr/local/cuda}
if [[ ! -e "$cuda/include/curand.h" ]]; then
  echo "install_deps: the CUDA toolkit was not found at $cuda (cuRAND is needed even for the CPU path);" \
       "install CUDA 12 or newer there, or set CUDA_HOME" >&2
  exit 1
fi
echo "install_deps: all dependencies are present"
