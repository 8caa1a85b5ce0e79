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
# 3. the headline case again, batch 128 on the reference model, in 5 rounds per core type
#    (each round one `vae bench` with both sides), so that a stretch of noise on a shared
#    machine shows as one bad round rather than as the result: the median of the rounds;
# 4. the kernel-level benchmark of each fused CPU pass against its unfused sequence.
# Writes bench/results/cpu-<UTC date>-<commit>.{log,bench.json,kernels.json,b128.json}, and
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
  coretypes=("${OPENBLAS_CORETYPE:-}")  # the environment's, and SkylakeX where it adds one
  grep -qw avx512f /proc/cpuinfo && [[ "${OPENBLAS_CORETYPE:-}" != SkylakeX ]] && coretypes+=(SkylakeX)
  if (( ${#coretypes[@]} > 1 )); then
    echo "== OPENBLAS_CORETYPE=SkylakeX $build/vae bench --impl cpu,torch,torch-compile --json $base.skylakex.bench.json"
    OPENBLAS_CORETYPE=SkylakeX "$build/vae" bench --impl cpu,torch,torch-compile --json "$base.skylakex.bench.json" ||
      status=1
    echo
  fi
  rounds=$(mktemp -d)
  for round in 1 2 3 4 5; do
    for ct in "${coretypes[@]}"; do
      env ${ct:+OPENBLAS_CORETYPE=$ct} "$build/vae" bench --impl cpu,torch --batch 128 --models ref --epochs 0 --steps 500 \
        --json "$rounds/${ct:-default}-$round.json" > /dev/null || status=1
    done
  done
  echo "== batch 128, 784-400-20: ${#coretypes[@]} core type(s) x 5 rounds of \`vae bench --impl cpu,torch --batch 128 --models ref --epochs 0 --steps 500\`"
  /usr/bin/python3 - "$rounds" "$base.b128.json" <<'PY' || status=1
import glob, json, os, statistics, sys
rounds, out = sys.argv[1], sys.argv[2]
summary = {}
for path in sorted(glob.glob(os.path.join(rounds, "*.json"))):
    doc = json.load(open(path))
    ms = {r["impl"]: r["ms_per_step_median"] for r in doc["results"] if r.get("ok")}
    ct = doc.get("OPENBLAS_CORETYPE") or "default"
    summary.setdefault(ct, []).append({"cpu_ms": ms.get("vae-cpu"), "torch_ms": ms.get("torch")})
print(f"{'OPENBLAS_CORETYPE':<18} {'round':>5} {'vae-cpu ms':>11} {'torch ms':>9} {'ratio':>6}")
for ct, rows in summary.items():
    for i, r in enumerate(rows, 1):
        r["ratio"] = r["torch_ms"] / r["cpu_ms"]
        print(f"{ct:<18} {i:>5} {r['cpu_ms']:>11.3f} {r['torch_ms']:>9.3f} {r['ratio']:>5.2f}x")
    med = {k: statistics.median(r[k] for r in rows) for k in ("cpu_ms", "torch_ms", "ratio")}
    print(f"{ct:<18} {'median':>5} {med['cpu_ms']:>11.3f} {med['torch_ms']:>9.3f} {med['ratio']:>5.2f}x")
    summary[ct] = {"rounds": rows, "median": med}
json.dump(summary, open(out, "w"), indent=2)
PY
  rm -rf "$rounds"
  echo
  echo "== $build/bench/cpu_kernels_bench"
  "$build/bench/cpu_kernels_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$base.kernels.json" --benchmark_out_format=json || status=1
} 2>&1 | tee "$base.log"
echo "wrote $base.* ($(cd bench/results && ls "$(basename "$base")".* | tr '\n' ' '))"
exit $status
