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
# 3. the headline case again, batch 128 on the reference model, per core type in 20
#    interleaved rounds of 50 steps of each side (`vae bench` interleaves its timing), so that
#    a stretch of noise on a shared machine falls on both sides: the median of the rounds'
#    ratios, and their spread;
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
  # torch.compile where this PyTorch has it (Debian's 1.13 has not; `vae bench` exits 1 when an
  # implementation it was asked for fails, so it is asked for only where it exists)
  impls=cpu,torch
  /usr/bin/python3 -c 'import sys, torch; sys.exit(0 if hasattr(torch, "compile") else 1)' 2>/dev/null &&
    impls+=,torch-compile
  echo "== $build/vae bench --impl $impls --json $base.bench.json"
  "$build/vae" bench --impl "$impls" --json "$base.bench.json" || status=1
  echo
  coretypes=("${OPENBLAS_CORETYPE:-}")  # the environment's, and SkylakeX where it adds one
  grep -qw avx512f /proc/cpuinfo && [[ "${OPENBLAS_CORETYPE:-}" != SkylakeX ]] && coretypes+=(SkylakeX)
  if (( ${#coretypes[@]} > 1 )); then
    echo "== OPENBLAS_CORETYPE=SkylakeX $build/vae bench --impl $impls --json $base.skylakex.bench.json"
    OPENBLAS_CORETYPE=SkylakeX "$build/vae" bench --impl "$impls" --json "$base.skylakex.bench.json" ||
      status=1
    echo
  fi
  rounds=$(mktemp -d)
  for ct in "${coretypes[@]}"; do
    env ${ct:+OPENBLAS_CORETYPE=$ct} "$build/vae" bench --impl cpu,torch --batch 128 --models ref --epochs 0 \
      --steps 1000 --repeats 20 --json "$rounds/${ct:-default}.json" > /dev/null || status=1
  done
  echo "== batch 128, 784-400-20, per core type: \`vae bench --impl cpu,torch --batch 128 --models ref --epochs 0 --steps 1000 --repeats 20\`"
  echo "   (20 interleaved rounds of 50 steps of each side; ratio = PyTorch ms / vae-cpu ms of the same round)"
  /usr/bin/python3 - "$rounds" "$base.b128.json" <<'PY' || status=1
import glob, json, os, statistics, sys
rounds, out = sys.argv[1], sys.argv[2]
summary = {}
def pct(v, q):
    v = sorted(v); pos = q * (len(v) - 1); i = int(pos); f = pos - i
    return v[i] * (1 - f) + v[min(i + 1, len(v) - 1)] * f
print(f"{'OPENBLAS_CORETYPE':<18} {'vae-cpu ms':>11} {'torch ms':>9} {'ratio':>6} {'ratio p10-p90':>14}  rounds' ratios")
for path in sorted(glob.glob(os.path.join(rounds, "*.json"))):
    doc = json.load(open(path))
    res = {r["impl"]: r for r in doc["results"] if r.get("ok")}
    ct = doc.get("OPENBLAS_CORETYPE") or "default"
    if "vae-cpu" not in res or "torch" not in res:
        print(f"{ct:<18} a side failed: {[r.get('error') for r in doc['results'] if not r.get('ok')]}")
        continue
    cpu, torch = res["vae-cpu"]["ms_per_step_rounds"], res["torch"]["ms_per_step_rounds"]
    ratios = [t / c for c, t in zip(cpu, torch)]
    row = {"cpu_ms": statistics.median(cpu), "torch_ms": statistics.median(torch),
           "ratio": res["vae-cpu"]["speedup_vs_torch"], "ratio_p10": pct(ratios, 0.1), "ratio_p90": pct(ratios, 0.9),
           "rounds": [{"cpu_ms": c, "torch_ms": t, "ratio": t / c} for c, t in zip(cpu, torch)],
           "commit": doc.get("commit"), "date": doc.get("date")}
    summary[ct] = row
    print(f"{ct:<18} {row['cpu_ms']:>11.3f} {row['torch_ms']:>9.3f} {row['ratio']:>5.2f}x {row['ratio_p10']:>6.2f}-{row['ratio_p90']:.2f}x  "
          + " ".join(f"{r:.2f}" for r in ratios))
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
