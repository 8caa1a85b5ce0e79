#!/usr/bin/env bash
# The GPU suite, in one go, on a machine with an NVIDIA GPU (H100/H200, sm_90). From the
# repository root:   bash bench/gpu_suite.sh
#
#   1. configure and build for sm_90 (Release, -DVAE_CUDA=ON) into build-gpu/
#   2. every test with ctest (CPU and GPU suites): pass / fail / skip counts; GPU tests that
#      skip on a GPU machine count as a failure
#   3. compute-sanitizer memcheck and racecheck on the GPU test binary (filtered to stay fast)
#   4. kernel-level benchmarks (build-gpu/bench/gpu_kernels): each fused kernel against the
#      unfused sequence it replaces, and the cuBLASLt GEMM + bias + ReLU epilogue against
#      cuBLAS + our bias_act kernel; JSON into bench/results/gpu-suite-<date>-<commit>-kernels.json
#   5. timings: `vae bench` when the binary has it, and timed training runs (`vae train`,
#      CUDA and CPU, 10 epochs, batch 128 and 4096, resident and streamed) with per-epoch
#      seconds and the final test -ELBO from metrics.csv, against the targets:
#        - a 60,000-item epoch in <= 25 ms at batch 128 on an H100;
#        - test -ELBO after 10 epochs within 0.5 nats of the CPU path.
#   6. (if ncu is there, informational) Nsight Compute's per-kernel times for a few steps.
#
# Writes bench/results/gpu-suite-<UTC date>-<commit>.log (everything) and .md (the results:
# device, driver, date, commit, each step's status and numbers). Keeps going after a failed
# step, records it, and exits non-zero if any step failed or a target was missed.
#
# Needs: nvcc 13 (PATH or /usr/local/cuda/bin), cmake >= 3.25, a C++17 compiler, OpenBLAS,
# zlib, libpng, CLI11, nlohmann-json and GoogleTest headers (Google Benchmark optional), and
# compute-sanitizer. No internet and no apt: what is missing is reported, not installed.
# Data: Fashion-MNIST from /usr/share/datasets/fashion-mnist, or data/fashion-mnist/ in the
# repository, or VAE_TRAIN / VAE_TEST; otherwise a synthetic 60,000 x 784 uint8 set is
# written (python3) and the results say so.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
# Stages: all by default, or a subset, e.g. `bash bench/gpu_suite.sh build test`, then
# `... memcheck`, `... racecheck kernels`, `... timings`: the device tool stops a command
# after 10 minutes (each step here stops itself after 540 s), and a warm machine keeps the
# build directory between calls. VAE_RESULTS_DIR (default bench/results) says where the log
# and results go; on the device machine pass VAE_RESULTS_DIR=$OUT so they come back.
ALL_STAGES="build test memcheck racecheck kernels timings ncu"
STAGES=" ${*:-$ALL_STAGES} "
for s in $STAGES; do
  case " $ALL_STAGES " in *" $s "*) ;; *) echo "gpu_suite: unknown stage '$s' (stages: $ALL_STAGES)" >&2; exit 2 ;; esac
done
want() { [[ "$STAGES" == *" $1 "* ]]; }
ROOT=$PWD
export PATH="$PATH:/usr/local/cuda/bin"

BUILD=${VAE_GPU_BUILD_DIR:-build-gpu}
JOBS=${VAE_GPU_JOBS:-$(nproc 2>/dev/null || echo 4)}
STAMP=$(date -u +%Y%m%d-%H%M%S)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
DIRTY=$(git status --porcelain 2>/dev/null | wc -l | tr -d ' ')
RESULTS_DIR=${VAE_RESULTS_DIR:-bench/results}
mkdir -p "$RESULTS_DIR"
STAGE_TAG=$(echo $STAGES | tr ' ' '+')
BASE="$RESULTS_DIR/gpu-suite-$STAMP-$COMMIT-$STAGE_TAG"
case "$BASE" in /*) ;; *) BASE="$ROOT/$BASE" ;; esac
LOG="$BASE.log"
RES="$BASE.md"
TMP=$(mktemp -d /tmp/vae-gpu-suite.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
SUITE_START=$SECONDS
FAILED=()

: >"$LOG"
: >"$RES"
say() { echo "$*" | tee -a "$LOG"; }
res() { echo "$*" >>"$RES"; }
fail() {  # fail "what": recorded in the results and counted
  FAILED+=("$1")
  res "- **FAILED**: $1"
  say "FAILED: $1"
}

# run_step NAME TIMEOUT_S CMD...: runs CMD (output to the log and to $TMP/NAME.out),
# records status and time; returns the command's exit code.
run_step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc
  say ""
  say "=== $name: $* ($((SECONDS - SUITE_START)) s into the suite)"
  timeout -k 10 "$limit" "$@" >"$TMP/$name.out" 2>&1
  rc=$?
  cat "$TMP/$name.out" >>"$LOG"
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    res "- $name: ok (${dt} s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    fail "$name: timed out after ${limit} s"
  else
    local last
    last=$(grep -v '^[[:space:]]*$' "$TMP/$name.out" | tail -1 | cut -c1-300)
    fail "$name: exit code $rc (${dt} s): ${last:-no output}"
  fi
  return $rc
}

have() { command -v "$1" >/dev/null 2>&1; }
header_found() {  # header_found RELATIVE_PATH
  local d cpath=${CPATH:-}
  for d in /usr/include /usr/local/include /usr/include/x86_64-linux-gnu /opt/local/include ${cpath//:/ }; do
    [ -n "$d" ] && [ -f "$d/$1" ] && return 0
  done
  return 1
}

# ---- 0. the machine ------------------------------------------------------------------------
res "# GPU suite $STAMP"
res ""
res "| | |"
res "| --- | --- |"
res "| date (UTC) | $(date -u '+%Y-%m-%d %H:%M:%S') |"
res "| commit | $COMMIT$([ "${DIRTY:-0}" != 0 ] && echo " + $DIRTY uncommitted changes") |"
if have nvidia-smi; then
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  GPU_MEM=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader 2>/dev/null | head -1)
else
  GPU_NAME="(nvidia-smi not found)"
  DRIVER="?"
  GPU_MEM="?"
fi
res "| device | ${GPU_NAME:-?} (${GPU_MEM:-?}) |"
res "| driver | ${DRIVER:-?} |"
res "| nvcc | $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' || echo 'not found') |"
res "| cmake | $(cmake --version 2>/dev/null | head -1) |"
res "| host | $(nproc) cores, $(uname -r) |"
res ""
say "vae GPU suite: $GPU_NAME, driver $DRIVER, commit $COMMIT; log $LOG"
nvidia-smi >>"$LOG" 2>&1 || true

res "## Steps"
# Carried dependencies (bench/gpu_deps.sh, run on the CPU machine, then `carry: [".gpu-deps"]`):
# unpack the Debian packages into /opt/vae-deps and point the compiler, CMake, the loader and
# the data there.
if ls .gpu-deps/*.deb >/dev/null 2>&1; then
  DEPS=/opt/vae-deps
  mkdir -p "$DEPS"
  for deb in .gpu-deps/*.deb; do dpkg -x "$deb" "$DEPS" || fail "cannot unpack $deb"; done
  ARCHLIB=$DEPS/usr/lib/x86_64-linux-gnu
  export CPATH="$DEPS/usr/include:$DEPS/usr/include/x86_64-linux-gnu:$DEPS/usr/include/freetype2${CPATH:+:$CPATH}"
  export CMAKE_PREFIX_PATH="$DEPS/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$ARCHLIB:$ARCHLIB/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$ARCHLIB/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  if [ -f "$DEPS/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" ] && [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    mkdir -p /usr/share/fonts/truetype/dejavu && cp "$DEPS/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" /usr/share/fonts/truetype/dejavu/
  fi
  FM=$DEPS/usr/share/datasets/fashion-mnist
  if [ -f "$FM/train-images-idx3-ubyte.gz" ] && [ -z "${VAE_TRAIN:-}" ]; then
    export VAE_TRAIN=$FM/train-images-idx3-ubyte.gz VAE_TEST=$FM/t10k-images-idx3-ubyte.gz
  fi
  res "- carried dependencies: $(ls .gpu-deps/*.deb | wc -l) Debian packages unpacked into $DEPS"
fi
EXTRA_CMAKE=()
MISSING=()
header_found CLI/CLI.hpp || MISSING+=("CLI11 (CLI/CLI.hpp; Debian: libcli11-dev)")
header_found nlohmann/json.hpp || MISSING+=("nlohmann-json (nlohmann/json.hpp; Debian: nlohmann-json3-dev)")
header_found cblas.h || header_found openblas/cblas.h || ls /usr/include/*/openblas*/cblas.h >/dev/null 2>&1 ||
  ls /opt/vae-deps/usr/include/*/openblas*/cblas.h >/dev/null 2>&1 ||
  MISSING+=("OpenBLAS (cblas.h; Debian: libopenblas-dev)")
header_found png.h || MISSING+=("libpng (png.h; Debian: libpng-dev)")
header_found ft2build.h || header_found freetype2/ft2build.h || MISSING+=("FreeType (ft2build.h; Debian: libfreetype-dev)")
header_found zlib.h || MISSING+=("zlib (zlib.h; Debian: zlib1g-dev)")
if ! header_found gtest/gtest.h; then
  MISSING+=("GoogleTest (gtest/gtest.h; Debian: libgtest-dev): no tests can be built")
  EXTRA_CMAKE+=(-DVAE_BUILD_TESTS=OFF)
fi
if ! header_found benchmark/benchmark.h; then
  res "- note: Google Benchmark headers not found (Debian: libbenchmark-dev): no cpu_kernels_bench (gpu_kernels and vae bench are unaffected)"
fi
have nvcc || MISSING+=("nvcc (the CUDA toolkit, expected under /usr/local/cuda/bin)")
if [ ${#MISSING[@]} -gt 0 ]; then
  for m in "${MISSING[@]}"; do fail "missing dependency: $m"; done
fi
GEN=()
have ninja && GEN=(-G Ninja)

# ---- 1. build --------------------------------------------------------------------------------
BUILT=0
res "- stages: $STAGES"
if want build; then
  if run_step configure 300 cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DVAE_CUDA=ON \
    -DVAE_CUDA_ARCHITECTURES=90 "${EXTRA_CMAKE[@]}" &&
    run_step build 540 cmake --build "$BUILD" -j "$JOBS"; then
    BUILT=1
  fi
elif [ -x "$BUILD/vae" ]; then
  BUILT=1  # built by an earlier call of this script on this machine
  res "- build: using the existing $BUILD"
else
  fail "build: stage not requested and $BUILD/vae does not exist; run the build stage first"
fi
VAE="$BUILD/vae"
GPU_TESTS="$BUILD/tests/cuda/vae_cuda_tests"

# ---- 2. every test -------------------------------------------------------------------------
if ! want test; then
  :
elif [ $BUILT = 1 ] && [ -f "$BUILD/CTestTestfile.cmake" ]; then
  run_step ctest 540 ctest --test-dir "$BUILD" --output-on-failure -j 4 --timeout 300
  out="$TMP/ctest.out"
  total=$(grep -oE 'tests failed out of [0-9]+' "$out" | grep -oE '[0-9]+$' | tail -1)
  nfail=$(grep -oE '[0-9]+ tests failed out of' "$out" | grep -oE '^[0-9]+' | tail -1)
  nskip=$(grep -c '(Skipped)' "$out")
  total=${total:-0}
  nfail=${nfail:-0}
  res "  - ctest: $total tests: $((total - nfail - nskip)) passed, $nfail failed, $nskip skipped"
  grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Exception|Not Run|Subprocess aborted)' "$out" |
    sed 's/^ */    - failed: /' >>"$RES"
  # On a GPU machine no GPU test may skip.
  ctest --test-dir "$BUILD" -N -L gpu 2>/dev/null | grep -oE 'Test +#[0-9]+: .*' | sed -E 's/Test +#[0-9]+: //' >"$TMP/gpu_tests"
  ngpu=$(wc -l <"$TMP/gpu_tests" | tr -d ' ')
  gpu_skipped=$(grep '(Skipped)' "$out" | grep -cFf "$TMP/gpu_tests" 2>/dev/null)
  res "  - GPU tests (label gpu): $ngpu, skipped: ${gpu_skipped:-0}"
  [ "$ngpu" -gt 0 ] || fail "no GPU tests found (label gpu)"
  if [ "${gpu_skipped:-0}" -gt 0 ]; then
    why=$("$GPU_TESTS" --gtest_filter='CudaBackend.NameSaysDeviceAndArchitecture' 2>&1 | grep -m1 'no usable GPU')
    fail "$gpu_skipped GPU tests skipped on this machine: ${why:-see the log}"
  fi
else
  fail "ctest: not run (the build failed)"
fi

# ---- 3. compute-sanitizer ----------------------------------------------------------------------
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# The long CPU-heavy runs add nothing under the sanitizers; every kernel still runs.
MEMCHECK_FILTER='-CudaBackend.TwoHundredStepsTrackTheCpu:CudaBackend.SameSeedGivesBitIdenticalRuns:CudaInference.*For200Steps:CudaInference.SameSeedGivesBitIdenticalRunsOnEveryNewPath'
RACECHECK_FILTER='KernelMatchesItsCpuTwin.*:CudaBackend.OneStepMatchesTheCpu:CudaBackend.StreamedAndResidentDataAreBitIdentical:CudaInference.IwaeOneStepMatchesTheCpu:CudaInference.EstimateLogLikelihoodMatchesTheCpu:CudaInference.ComputeGradientMatchesTheCpu'
if ! want memcheck && ! want racecheck; then
  :
elif [ $BUILT = 1 ] && [ -x "$GPU_TESTS" ] && [ -x "$SANITIZER" ]; then
  for tool in memcheck racecheck; do
    want $tool || continue
    filter=$MEMCHECK_FILTER
    [ $tool = racecheck ] && filter=$RACECHECK_FILTER
    run_step "sanitizer-$tool" 540 "$SANITIZER" --tool "$tool" --error-exitcode 99 --print-limit 20 \
      "$GPU_TESTS" --gtest_filter="$filter"
    summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|HAZARD|errors' "$TMP/sanitizer-$tool.out" | tail -2 | tr '\n' ' ')
    tests=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$TMP/sanitizer-$tool.out" | tr '\n' ' ')
    res "  - $tool: ${summary:-no summary line}; ${tests:-no gtest summary}"
    if grep -q '^\[  SKIPPED' "$TMP/sanitizer-$tool.out"; then fail "sanitizer-$tool: tests skipped under the sanitizer"; fi
  done
elif [ ! -x "$SANITIZER" ]; then
  fail "compute-sanitizer not found (PATH or /usr/local/cuda/bin)"
else
  fail "compute-sanitizer: not run (no GPU test binary)"
fi

# ---- 4. kernel-level benchmarks ------------------------------------------------------------------
KERNELS_BIN="$BUILD/bench/gpu_kernels"
KERNELS_JSON="$BASE-kernels.json"
want kernels && res "" && res "## Kernel benchmarks (bench/gpu_kernels)"
if ! want kernels; then
  :
elif [ $BUILT = 1 ] && [ -x "$KERNELS_BIN" ]; then
  KERNELS_OK=0
  if run_step gpu-kernels 540 "$KERNELS_BIN" --json "$KERNELS_JSON"; then
    KERNELS_OK=1
    res "- JSON: $KERNELS_JSON"
  fi
  if [ -f "$TMP/gpu-kernels.out" ]; then
    res '```'
    grep -vE '^  .*: done$' "$TMP/gpu-kernels.out" | grep -v '^wrote ' >>"$RES"
    res '```'
    # (a failed run was counted by run_step already)
    if [ $KERNELS_OK = 1 ] && grep -q 'FAILED' "$TMP/gpu-kernels.out"; then
      fail "gpu-kernels: a case failed its check against its CPU twin or the fused kernel (see the check column)"
    fi
  fi
elif [ $BUILT = 1 ]; then
  fail "gpu-kernels: $KERNELS_BIN was not built"
fi

# ---- 5. timings ------------------------------------------------------------------------------
if want timings || want ncu; then
want timings && res "" && res "## Timings"
TRAIN=${VAE_TRAIN:-}
TEST=${VAE_TEST:-}
DATA_NOTE=""
if [ -z "$TRAIN" ]; then
  for d in /usr/share/datasets/fashion-mnist "$ROOT/data/fashion-mnist" "$ROOT/shared/fashion-mnist"; do
    if [ -f "$d/train-images-idx3-ubyte.gz" ] && [ -f "$d/t10k-images-idx3-ubyte.gz" ]; then
      TRAIN="$d/train-images-idx3-ubyte.gz"
      TEST="$d/t10k-images-idx3-ubyte.gz"
      DATA_NOTE="Fashion-MNIST ($d)"
      break
    fi
  done
fi
if [ -z "$TRAIN" ] && have python3; then
  # Synthetic stand-in with Fashion-MNIST's shape: blurred blobs, 20 prototypes x 97 noise
  # patterns, uint8 NPY. Timings hold; the -ELBO target becomes CUDA-vs-CPU agreement.
  python3 - "$TMP" <<'PY' >>"$LOG" 2>&1
import math, random, sys
out = sys.argv[1]
rng = random.Random(1)
D = 784
def proto():
    img = [0.0] * D
    for _ in range(3):
        cx, cy, s = rng.uniform(6, 22), rng.uniform(6, 22), rng.uniform(2, 6)
        for y in range(28):
            for x in range(28):
                img[y * 28 + x] += math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    m = max(img)
    return [min(255, int(255 * v / m)) for v in img]
protos = [proto() for _ in range(20)]
noise = [[rng.randrange(-40, 41) for _ in range(D)] for _ in range(97)]
pool = [bytes(max(0, min(255, p[i] + n[i])) for i in range(D)) for p in protos for n in noise]
def write(path, count):
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d), }" % (count, D)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
        f.write(b"".join(pool[(i * 7919 + 13) % len(pool)] for i in range(count)))
write(out + "/train.npy", 60000)
write(out + "/test.npy", 10000)
PY
  if [ -f "$TMP/train.npy" ]; then
    TRAIN="$TMP/train.npy"
    TEST="$TMP/test.npy"
    DATA_NOTE="synthetic 60,000 x 784 uint8 (Fashion-MNIST not found): the -ELBO numbers are not Fashion-MNIST's"
  fi
fi
[ -n "$TRAIN" ] && [ -z "$DATA_NOTE" ] && DATA_NOTE="$TRAIN / $TEST (VAE_TRAIN / VAE_TEST)"

# train_run NAME ARGS...: a timed training run; prints "median_epoch_s first_epoch_s final_test_elbo".
declare -A EPOCH_MEDIAN FINAL_ELBO
train_run() {
  local name=$1
  shift
  local out="$TMP/run-$name"
  if run_step "train-$name" 300 "$VAE" train --train "$TRAIN" --test "$TEST" --epochs 10 --seed 1 --out "$out" "$@"; then
    local csv="$out/metrics.csv"
    # epochs 2..10: the first includes graph capture and warm-up
    local med first elbo per
    med=$(awk -F, 'NR>2 {print $6}' "$csv" | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); else print "nan"}')
    first=$(awk -F, 'NR==2 {print $6}' "$csv")
    elbo=$(awk -F, 'END {print $3}' "$csv")
    per=$(awk -F, 'NR>1 {printf "%s%s", sep, $6; sep=" "}' "$csv")
    EPOCH_MEDIAN[$name]=$med
    FINAL_ELBO[$name]=$elbo
    res "  - $name ($*): median epoch $med s (epochs 2-10; first $first s), test -ELBO after 10 epochs $elbo; per epoch: $per"
    grep -m1 '^training on' "$TMP/train-$name.out" | sed 's/^/    - /' >>"$RES"
  fi
}

if ! want timings; then
  :
elif [ $BUILT = 1 ] && [ -x "$VAE" ] && [ -n "$TRAIN" ]; then
  res "- data: $DATA_NOTE"
  if "$VAE" bench --help >/dev/null 2>&1; then
    # The CUDA backend against PyTorch eager and torch.compile (CUDA graphs) in the same run:
    # the targets at batch 128 (10x eager, 3x compile per epoch) and the %sgemm at 4096.
    # Interleaved rounds of 100 steps of each side.
    run_step bench-cuda 540 "$VAE" bench --impl cuda,torch,torch-compile --models ref --batch 128,4096 --epochs 3 \
      --steps 1000 --repeats 10 --train "$TRAIN" --test "$TEST" --json "$BASE-bench-cuda.json"
    run_step bench-cpu 300 "$VAE" bench --impl cpu --models ref --batch 128 --steps 20 --repeats 3 --warmup 3 \
      --epochs 0 --train "$TRAIN" --test "$TEST" --json "$BASE-bench-cpu.json"
    if grep -qE 'vae-cuda +n/a' "$TMP/bench-cuda.out" 2>/dev/null; then
      fail "vae bench: the CUDA backend did not run: $(grep -m1 -oE 'vae-cuda +n/a.*' "$TMP/bench-cuda.out")"
    fi
    for b in bench-cuda bench-cpu; do
      if [ -f "$TMP/$b.out" ]; then
        res "  - \`vae $b\` table:"
        res '```'
        grep -vE '^(wrote|$)' "$TMP/$b.out" | tail -20 >>"$RES"
        res '```'
      fi
    done
  else
    res "- \`vae bench\` not in this build: timed training runs only"
  fi
  train_run cuda-b128 --device cuda --batch 128
  train_run cuda-b128-streamed --device cuda --batch 128 --stream-data
  train_run cuda-b4096 --device cuda --batch 4096
  train_run cpu-b128 --device cpu --batch 128

  res ""
  res "## Targets"
  e=${EPOCH_MEDIAN[cuda-b128]:-}
  if [ -n "$e" ]; then
    if awk -v e="$e" 'BEGIN {exit !(e <= 0.025)}'; then
      res "- epoch at batch 128 on the GPU: $e s <= 0.025 s: **met**"
    else
      res "- epoch at batch 128 on the GPU: $e s > 0.025 s"
      fail "TARGET MISSED: 60,000-item epoch at batch 128 took $e s (target 0.025 s)"
    fi
  else
    fail "TARGET not measured: epoch time at batch 128 (the CUDA run failed)"
  fi
  g=${FINAL_ELBO[cuda-b128]:-}
  c=${FINAL_ELBO[cpu-b128]:-}
  if [ -n "$g" ] && [ -n "$c" ]; then
    d=$(awk -v g="$g" -v c="$c" 'BEGIN {d = g - c; if (d < 0) d = -d; print d}')
    if awk -v d="$d" 'BEGIN {exit !(d <= 0.5)}'; then
      res "- test -ELBO after 10 epochs: CUDA $g vs CPU $c, |diff| $d <= 0.5 nats: **met**"
    else
      res "- test -ELBO after 10 epochs: CUDA $g vs CPU $c, |diff| $d > 0.5 nats"
      fail "TARGET MISSED: test -ELBO CUDA $g vs CPU $c differ by $d nats (target 0.5)"
    fi
  else
    fail "TARGET not measured: test -ELBO after 10 epochs (a training run failed)"
  fi
  # From vae bench's JSON: the ratios to PyTorch at batch 128 and the step's share of the
  # SGEMM rate at batch 4096.
  if [ -f "$BASE-bench-cuda.json" ] && have python3; then
    python3 - "$BASE-bench-cuda.json" >"$TMP/targets.txt" 2>&1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = {(x["impl"], x["batch"]): x for x in d["results"] if x.get("ok")}
missed = []
def epoch(impl, b):
    x = r.get((impl, b))
    return x["epoch_seconds"] if x and x.get("epoch_seconds") else None
g = epoch("vae-cuda", 128)
for impl, want in (("torch", 10.0), ("torch-compile", 3.0)):
    t = epoch(impl, 128)
    if g and t:
        ok = t / g >= want
        print(f"- batch 128 epoch: vae-cuda {g:.4f} s, {impl} {t:.4f} s: {t / g:.2f}x (target {want:.0f}x): {'**met**' if ok else 'missed'}")
        if not ok: missed.append(f"{impl} ratio {t / g:.2f}x < {want:.0f}x")
    else:
        print(f"- batch 128 epoch vs {impl}: not measured"); missed.append(f"{impl} ratio not measured")
x = r.get(("vae-cuda", 4096))
if x:
    f = x["fraction_of_sgemm"]
    print(f"- batch 4096: the step's GEMM rate {x['gemm_gflops_per_s']:.0f} GFLOP/s = {100 * f:.1f}% of cuBLAS SGEMM "
          f"{d['sgemm_gflops'].get('cuda', 0):.0f} GFLOP/s (target 50%): {'**met**' if f >= 0.5 else 'missed'}")
    if f < 0.5: missed.append(f"batch 4096 at {100 * f:.1f}% of the SGEMM rate")
else:
    print("- batch 4096 SGEMM share: not measured"); missed.append("SGEMM share not measured")
for m in missed: print("MISSED " + m)
PY
    grep -v '^MISSED ' "$TMP/targets.txt" >>"$RES"
    while read -r _ m; do fail "TARGET: $m"; done < <(grep '^MISSED ' "$TMP/targets.txt")
  fi
  s=${FINAL_ELBO[cuda-b128-streamed]:-}
  if [ -n "$s" ] && [ -n "$g" ]; then
    if [ "$s" = "$g" ]; then
      res "- streamed and resident data: identical test -ELBO ($s)"
    else
      fail "streamed data gave test -ELBO $s, resident $g: they must be bit-identical"
    fi
  fi
else
  fail "timings: not run (no vae binary or no data)"
fi

fi  # timings or ncu

# ---- 6. Nsight Compute (informational) ------------------------------------------------------------
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if want ncu && [ $BUILT = 1 ] && [ -x "$NCU" ] && [ -n "${TRAIN:-}" ]; then
  res ""
  res "## Nsight Compute (informational, not counted)"
  if timeout -k 10 300 "$NCU" --graph-profiling node --launch-skip 200 --launch-count 60 --print-summary per-kernel \
    "$VAE" train --train "$TRAIN" --test "$TEST" --epochs 1 --device cuda --out "$TMP/ncu-run" >"$TMP/ncu.out" 2>&1; then
    res '```'
    grep -E '^ +[a-zA-Z_].*\(|Duration|Kernel Name|^  [a-z_]+' "$TMP/ncu.out" | head -80 >>"$RES"
    res '```'
  else
    res "- ncu did not finish (permissions for GPU counters?); see the log"
  fi
  cat "$TMP/ncu.out" >>"$LOG"
fi

# ---- summary -----------------------------------------------------------------------------------
res ""
res "## Summary"
res "- total time: $((SECONDS - SUITE_START)) s"
if [ ${#FAILED[@]} -eq 0 ]; then
  res "- everything passed"
  say "gpu_suite: everything passed ($((SECONDS - SUITE_START)) s); results in $RES"
  exit 0
fi
res "- ${#FAILED[@]} failure(s):"
for f in "${FAILED[@]}"; do res "  - $f"; done
say "gpu_suite: ${#FAILED[@]} failure(s); results in $RES"
exit 1
