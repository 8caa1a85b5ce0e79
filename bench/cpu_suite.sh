#!/usr/bin/env bash
# The CPU benchmarks in one go, on a quiet machine, from the repository root:
#   bash bench/cpu_suite.sh [BUILD_DIR]
# 1. `vae bench` over the default sweep (batch 128, 1024, 4096 on the reference model and
#    784-1024-1024-64): the CPU path and PyTorch (eager; torch.compile where it exists),
#    one real epoch each for s/epoch and the test -ELBO;
# 2. on a CPU with AVX-512 whose environment picks other OpenBLAS kernels (this project's
#    machines set OPENBLAS_CORETYPE=Haswell), the same sweep again with
#    OPENBLAS_CORETYPE=SkylakeX for both sides (PyTorch's GEMMs are OpenBLAS's too), so that
#    each side can be compared at its best setting;
# 3. the kernel-level benchmark of each fused CPU pass against its unfused sequence.
# Writes bench/results/cpu-<UTC date>-<commit>.{log,bench.json,kernels.json}, and
# .skylakex.bench.json for step 2.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
build=${1:-build}
stamp=$(date -u +%Y%m%d-%H%M%S)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
[[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && commit="$commit-dirty"
base="bench/results/cpu-$stamp-$commit"
mkdir -p bench/results
status=0
{
  echo "cpu suite: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "== $build/vae bench --impl cpu,torch,torch-compile --json $base.bench.json"
  "$build/vae" bench --impl cpu,torch,torch-compile --json "$base.bench.json" || status=1
  echo
  if grep -qw avx512f /proc/cpuinfo && [[ "${OPENBLAS_CORETYPE:-}" != SkylakeX ]]; then
    echo "== OPENBLAS_CORETYPE=SkylakeX $build/vae bench --impl cpu,torch,torch-compile --json $base.skylakex.bench.json"
    OPENBLAS_CORETYPE=SkylakeX "$build/vae" bench --impl cpu,torch,torch-compile --json "$base.skylakex.bench.json" ||
      status=1
    echo
  fi
  echo "== $build/bench/cpu_kernels_bench"
  "$build/bench/cpu_kernels_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$base.kernels.json" --benchmark_out_format=json || status=1
} 2>&1 | tee "$base.log"
echo "wrote $base.* ($(cd bench/results && ls "$(basename "$base")".* | tr '\n' ' '))"
exit $status
