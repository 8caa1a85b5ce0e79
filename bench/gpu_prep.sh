#!/usr/bin/env bash
# Run HERE, on the CPU machine (Debian 12, the project's dependencies, the CUDA toolkit), before
# a GPU session. The GPU machine has a driver, CUDA's libraries, nvcc and PyTorch, but none of
# our Debian libraries, no data and no package registry, and a device command may run for at
# most 10 minutes: so everything bench/gpu_proof.sh runs there is built and gathered here.
#
#   bash bench/gpu_prep.sh            # fills .gpu-proof/ (git-ignored, at most 60 MiB)
#
# .gpu-proof/ then holds:
#   bin.tar.gz   stripped sm_90 builds without -march=native (the gpu-proof CMake preset:
#                a CPU here may have AVX-512 that the GPU machine's CPU lacks), with MPI:
#                bin/vae, bin/vae_cuda_tests, bin/vae_cuda_mpi_tests, bin/gpu_kernels,
#                lib/libvae.so.0
#   debs/run/    the Debian packages of their runtime libraries, found with ldd (OpenBLAS,
#                gfortran, quadmath, gomp, png, freetype, brotli, zlib, Open MPI's libraries),
#                and Open MPI's launcher (openmpi-bin, openmpi-common, libpmix2: mpirun runs
#                from the unpacked tree with OPAL_PREFIX); not glibc, libstdc++, libgcc or
#                CUDA's own libraries, which the GPU machine has
#   debs/dev/    the -dev packages, for building there if the carried binaries do not load
#   data/        Fashion-MNIST's training and test images, as Debian ships them (.gz)
#   cpu-ref/     this machine's CPU-path run of the reference model, 10 epochs (metrics.csv,
#                config.json), made with the carried vae binary; cached while the CPU path's
#                sources (host/, include/, cmake/, CMakeLists.txt) stay the same
#   MANIFEST     what was built from which commit, the packages, the sizes
# and the device command is `bash bench/gpu_proof.sh $OUT` with carry [".gpu-proof"].
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/.gpu-proof
BUILD=$ROOT/build-gpu-proof  # the gpu-proof preset's binaryDir
LIMIT=$((60 * 1024 * 1024))  # the device tool carries 64 MiB with the tree; the rest is the tree's
FASHION=/usr/share/datasets/fashion-mnist
die() { echo "gpu_prep: $*" >&2; exit 1; }
start=$SECONDS

command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs Debian's apt-get and dpkg (this is the CPU machine's script)"
[[ -x /usr/local/cuda/bin/nvcc ]] || die "nvcc not found at /usr/local/cuda/bin/nvcc: the GPU builds need it"
for f in train-images-idx3-ubyte.gz t10k-images-idx3-ubyte.gz; do
  [[ -f $FASHION/$f ]] || die "$FASHION/$f not found; run: bash cmake/install_deps.sh"
done

echo "== build: cmake --preset gpu-proof (VAE_NATIVE=OFF, sm_90, MPI): vae, vae_cuda_tests, vae_cuda_mpi_tests, gpu_kernels"
cmake --preset gpu-proof >/dev/null
cmake --build --preset gpu-proof
grep -q '^VAE_NATIVE:BOOL=OFF$' "$BUILD/CMakeCache.txt" || die "$BUILD was configured with VAE_NATIVE=ON; remove it and run again"
files=("$BUILD/vae" "$BUILD/tests/cuda/vae_cuda_tests" "$BUILD/tests/cuda/vae_cuda_mpi_tests" "$BUILD/bench/gpu_kernels"
  "$BUILD/libvae.so.0")
for f in "${files[@]}"; do [[ -f $f ]] || die "$f was not built"; done

# Assemble in a new folder and swap it in at the end, so a failed prep leaves no half folder.
NEW=$DIR.new
rm -rf "$NEW"
mkdir -p "$NEW"/{bin/bin,bin/lib,debs/run,debs/dev,data,cpu-ref}
strip -o "$NEW/bin/bin/vae" "$BUILD/vae"
strip -o "$NEW/bin/bin/vae_cuda_tests" "$BUILD/tests/cuda/vae_cuda_tests"
strip -o "$NEW/bin/bin/vae_cuda_mpi_tests" "$BUILD/tests/cuda/vae_cuda_mpi_tests"
strip -o "$NEW/bin/bin/gpu_kernels" "$BUILD/bench/gpu_kernels"
strip -o "$NEW/bin/lib/libvae.so.0" "$(readlink -f "$BUILD/libvae.so.0")"
# gzip, not xz: tar needs the xz program for .xz, and a minimal image may lack it.
tar -C "$NEW/bin" -czf "$NEW/bin.tar.gz" bin lib
rm -rf "${NEW:?}/bin"

# The runtime libraries: whatever ldd resolves outside the base system and CUDA, by the
# package that owns it, at the version installed here (what the binaries were linked with).
# bench/gpu_proof.sh keeps the same two lists of what the GPU machine is expected to have.
base_re='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libvae)\.so'
cuda_re='^(libcuda|libcudart|libcublas|libcublasLt|libcurand|libnvrtc|libnvJitLink)\.so'
declare -A run_pkgs=()
while read -r name path; do
  [[ $name =~ $base_re || $name =~ $cuda_re ]] && continue
  [[ $path == "not" ]] && die "ldd: $name not found for the carried binaries"
  real=$(readlink -f "$path")
  tail=${real#/usr}  # Debian 12 is usr-merged: a package may own /lib/... or /usr/lib/...
  pkg=$(dpkg -S "*$tail" 2>/dev/null | awk -F': ' -v t="$tail" '$2 ~ t"$" {sub(/:.*/, "", $1); print $1; exit}' || true)
  [[ -n $pkg ]] || die "no Debian package owns $real (needed by the carried binaries as $name)"
  run_pkgs[$pkg]=1
done < <(ldd "${files[@]}" | awk '$2 == "=>" {print $1, $3}' | sort -u)
# mpirun (orterun), its help texts and configuration, and PMIx, which it loads as a plugin.
for pkg in openmpi-bin openmpi-common libpmix2; do run_pkgs[$pkg]=1; done
# The -dev packages of cmake/install_deps.sh that libvae, vae, the GPU tests and gpu_kernels
# build against (the GPU machine has CMake, ninja, a C++ compiler and the CUDA toolkit).
dev_pkgs=(libopenblas-openmp-dev libcli11-dev nlohmann-json3-dev libgtest-dev libpng-dev zlib1g-dev libfreetype-dev)
echo "== Debian packages: runtime ${!run_pkgs[*]}; for a build there ${dev_pkgs[*]}"
run_list=("${!run_pkgs[@]}")
# The archive's versions, not necessarily the installed ones (the archive keeps only the
# latest security update): the runtime and -dev packages then match each other. The MANIFEST
# names any that differ from what the binaries were linked with here (same sonames).
# apt-get download writes into the current directory; as root it warns that _apt cannot
# write there, which is harmless.
(cd "$NEW/debs/run" && apt-get download -qq "${run_list[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
(cd "$NEW/debs/dev" && apt-get download -qq "${dev_pkgs[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
# Plain names (package_arch.deb): the versions' '+', '%' and ':' need not travel.
for deb in "$NEW"/debs/*/*.deb; do
  mv "$deb" "$(dirname "$deb")/$(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Architecture).deb"
done
[[ $(ls "$NEW/debs/run" | wc -l) -eq ${#run_list[@]} ]] || die "apt-get download: not every runtime package came (${run_list[*]})"
[[ $(ls "$NEW/debs/dev" | wc -l) -eq ${#dev_pkgs[@]} ]] || die "apt-get download: not every -dev package came (${dev_pkgs[*]})"
carried() {  # the carried packages as name=version, and where the installed version differs
  local deb p v i
  for deb in "$@"; do
    p=$(dpkg-deb -f "$deb" Package) v=$(dpkg-deb -f "$deb" Version)
    i=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo none)
    echo "$p=$v$([[ $i != "$v" ]] && echo " (installed here: $i)")"
  done
}

# Only the images: the runs need no labels (the latent space is 20-D).
cp "$FASHION/train-images-idx3-ubyte.gz" "$FASHION/t10k-images-idx3-ubyte.gz" "$NEW/data/"

# The CPU path's reference run, with the carried binary and the defaults (784-400-20, batch
# 128, Adam 1e-3, seed 1, 10 epochs). It takes a minute or two on 2 cores, so it is kept
# while the CPU path's sources are unchanged (committed or not).
key=$( { git ls-files -s host include cmake CMakeLists.txt; git diff HEAD -- host include cmake CMakeLists.txt
         git ls-files -o --exclude-standard host include cmake | xargs -r cat; } | sha256sum | cut -c1-16)
if [[ -f $DIR/cpu-ref/key && $(cat "$DIR/cpu-ref/key") == "$key" && -f $DIR/cpu-ref/metrics.csv ]]; then
  echo "== CPU reference: cached ($DIR/cpu-ref, key $key)"
  cp "$DIR"/cpu-ref/{metrics.csv,config.json,train.log,key} "$NEW/cpu-ref/"
else
  echo "== CPU reference: vae train --device cpu --epochs 10 (the reference model; about a minute on 2 cores)"
  tmp=$(mktemp -d)
  OMP_WAIT_POLICY=passive "$BUILD/vae" train --device cpu --epochs 10 --seed 1 --out "$tmp/run" >"$tmp/train.log" 2>&1 ||
    { cat "$tmp/train.log" >&2; die "the CPU reference run failed"; }
  cp "$tmp/run/metrics.csv" "$tmp/run/config.json" "$tmp/train.log" "$NEW/cpu-ref/"
  echo "$key" >"$NEW/cpu-ref/key"
  rm -rf "$tmp"
fi
cpu_elbo=$(awk -F, 'END {print $3}' "$NEW/cpu-ref/metrics.csv")
[[ $(wc -l <"$NEW/cpu-ref/metrics.csv") -eq 11 ]] || die "the CPU reference has not 10 epochs: $NEW/cpu-ref/metrics.csv"

commit=$(git rev-parse --short HEAD)
[[ -n "$(git status --porcelain --untracked-files=no)" ]] && commit="$commit-dirty"
{
  echo "commit=$commit"
  echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "build=cmake preset gpu-proof: Release, VAE_CUDA=ON, VAE_CUDA_ARCHITECTURES=90, VAE_NATIVE=OFF"
  echo "nvcc=$(/usr/local/cuda/bin/nvcc --version | grep -o 'release [0-9.]*, V[0-9.]*')"
  echo "compiler=$(c++ --version | head -1)"
  echo "runtime_packages=$(carried "$NEW"/debs/run/*.deb | paste -sd ';' | sed 's/;/; /g')"
  echo "dev_packages=$(carried "$NEW"/debs/dev/*.deb | paste -sd ';' | sed 's/;/; /g')"
  echo "cpu_ref_key=$key"
  echo "cpu_ref_test_elbo=$cpu_elbo"
  echo "cpu_ref_cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
} >"$NEW/MANIFEST"
size=$(du -sb "$NEW" | cut -f1)
echo "size=$size" >>"$NEW/MANIFEST"
if ((size > LIMIT)); then
  du -sh "$NEW"/* >&2
  die "$NEW holds $((size / 1048576)) MiB, more than the 60 MiB that may travel"
fi
rm -rf "$DIR"
mv "$NEW" "$DIR"
echo "gpu_prep: $DIR: $((size / 1048576)) MiB ($(du -sh "$DIR"/* | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}' | sed "s|$DIR/||g")); commit $commit; CPU reference test -ELBO $cpu_elbo; $((SECONDS - start)) s"
echo "gpu_prep: device command: bash bench/gpu_proof.sh \$OUT   (carry [\".gpu-proof\"], timeout_s 600)"
